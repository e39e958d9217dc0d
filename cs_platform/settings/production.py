"""Production: every secret and service location comes from the environment."""

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
