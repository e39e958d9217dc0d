"""Production: every secret and service location comes from the environment."""

import importlib.util
import json
from typing import Any

from cs_platform.settings.env import env, required

# Checked before base settings load, so a missing DATABASE_URL never falls back to embedded mode.
_DATABASE_URL = required("DATABASE_URL")
_SECRET_KEY = required("DJANGO_SECRET_KEY")
_DATA_ENCRYPTION_KEY = required("DATA_ENCRYPTION_KEY")
_PSEUDONYM_KEY = required("PSEUDONYM_KEY")

from cs_platform.settings.base import *  # noqa: E402

DEBUG = False
SECRET_KEY = _SECRET_KEY
DATA_ENCRYPTION_KEY = _DATA_ENCRYPTION_KEY
PSEUDONYM_KEY = _PSEUDONYM_KEY
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost"])
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"},
}


def _storage_from_environment(prefix: str, alias: str, setting: str) -> None:
    """`<prefix>_BACKEND` (a Django storage class) and `<prefix>_OPTIONS` (its options, a JSON
    object) make STORAGES[alias], which COMPLIANCE[setting] then names. Unset: nothing changes.
    Anything wrong stops the start with a message naming the variable."""
    backend = env.str(f"{prefix}_BACKEND", default="")
    if not backend:
        return
    if COMPLIANCE[setting]:
        raise SystemExit(f"Set {prefix}_BACKEND or {prefix}, not both.")
    module = backend.rpartition(".")[0]
    if not module or importlib.util.find_spec(module) is None:
        raise SystemExit(
            f"{prefix}_BACKEND: no module {module!r} (for S3, install django-storages[s3])."
        )
    try:
        options = json.loads(env.str(f"{prefix}_OPTIONS", default="{}"))
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{prefix}_OPTIONS is not valid JSON: {exc}") from None
    if not isinstance(options, dict):
        raise SystemExit(f"{prefix}_OPTIONS must be a JSON object.")
    storage: dict[str, Any] = {"BACKEND": backend, "OPTIONS": options}
    STORAGES[alias] = storage
    COMPLIANCE[setting] = alias


# Compliance storages: any Django storage class (S3 through django-storages:
# "storages.backends.s3.S3Storage") with its options as a JSON object. S3 credentials come the
# usual boto3 way (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or an instance role), not from the
# JSON. Unset: files on this machine.
# Cold storage for retention archives (unset: gzip files under COMPLIANCE_ARCHIVE_DIR).
_storage_from_environment("COMPLIANCE_ARCHIVE_STORAGE", "compliance_archive", "ARCHIVE_STORAGE")
# Erasure reports and access exports, personal data: keep it private (unset: files under
# COMPLIANCE_FILES_DIR).
_storage_from_environment("COMPLIANCE_FILES_STORAGE", "compliance_files", "FILES_STORAGE")
