#!/usr/bin/env bash
# Install the Debian packages named as arguments when missing. As root it installs them; as any
# other user it prints the exact command to run and stops.
set -euo pipefail
missing=()
for package in "$@"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "Installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "These Debian packages are needed. Install them, then run make again:"
  echo "  sudo apt-get install -y ${missing[*]}"
  exit 1
fi
