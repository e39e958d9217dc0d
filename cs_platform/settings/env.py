"""The one place the environment is read.

The embedded default needs no environment at all: secrets it needs are generated under `var/`
on first run. Production (`cs_platform.settings.production`) requires them and fails at start-up
naming the one that is missing.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parents[2]

env = environ.Env()
# A .env file is optional; variables already set win over it.
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env.str("CS_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()


def generated_secret(name: str) -> str:
    """Return a secret kept under var/ (created on first use, readable by its owner only)."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / f"{name}.secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def required(name: str) -> str:
    value = env.str(name, default="")
    if not value:
        raise SystemExit(f"Missing required setting: set the environment variable {name}.")
    return value
