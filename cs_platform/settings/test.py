"""Settings for the test suite: the real (embedded or DATABASE_URL) PostgreSQL with pgvector."""

from cs_platform.settings.base import *
from cs_platform.settings.env import generated_secret

DEBUG = False
SECRET_KEY = generated_secret("django_secret_key")
DATA_ENCRYPTION_KEY = generated_secret("data_encryption_key")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; tests only

# One test database per run, so two test runs on one machine (CI beside a developer) never
# drop each other's database.
DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
