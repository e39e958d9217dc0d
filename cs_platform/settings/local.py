"""The embedded default (`make run`): no services needed, secrets generated under var/."""

from cs_platform.settings.base import *
from cs_platform.settings.env import env, generated_secret

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or generated_secret("django_secret_key")
PSEUDONYM_KEY = env.str("PSEUDONYM_KEY", default="") or generated_secret("pseudonym_key")
DATA_ENCRYPTION_KEY = env.str("DATA_ENCRYPTION_KEY", default="") or generated_secret(
    "data_encryption_key"
)
