"""Settings for the test suite: the real (embedded or DATABASE_URL) PostgreSQL with pgvector."""

from cs_platform.settings.base import *
from cs_platform.settings.env import generated_secret

DEBUG = False
SECRET_KEY = generated_secret("django_secret_key")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; tests only
