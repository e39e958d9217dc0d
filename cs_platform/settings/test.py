"""Settings for the test suite: the real (embedded or DATABASE_URL) PostgreSQL with pgvector."""

from cs_platform.settings.base import *
from cs_platform.settings.env import generated_secret

DEBUG = False
SECRET_KEY = generated_secret("django_secret_key")
DATA_ENCRYPTION_KEY = generated_secret("data_encryption_key")
PSEUDONYM_KEY = generated_secret("pseudonym_key")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; tests only

# One test database per run, so two test runs on one machine (CI beside a developer) never
# drop each other's database.
DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}

# The audit log's TRUNCATE guard (apps/audit/migrations/0002_append_only.py) lets a session
# through only when it sets audit.allow_truncate: Django empties all tables with one TRUNCATE
# after every transactional test, and only test connections should be allowed to. UPDATE and
# DELETE of audit rows stay refused here as everywhere.
_db_options = DATABASES["default"].setdefault("OPTIONS", {})
_db_options["options"] = f"{_db_options.get('options', '')} -c audit.allow_truncate=on".strip()

# The chat and console sockets answer on worker threads; connections kept open by those threads
# would stop the test database from being dropped at the end of the run.
DATABASES["default"]["CONN_MAX_AGE"] = 0

# Every test calls the API from 127.0.0.1: the per-IP limit is tested on its own settings.
API_RATE_LIMITS = {**API_RATE_LIMITS, "IP": "100000/min"}
