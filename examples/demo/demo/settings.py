"""The demo: two tenants, acme and globex, at http://acme.localhost:8000/ and
http://globex.localhost:8000/ (browsers send *.localhost to loopback).
Embedded defaults: in-memory presence/state backends and SQLite.
``DEMO_DATABASE=postgres`` (``DEMO_DATABASE=postgres scripts/demo.sh``):
PostgreSQL named by libpq's PG* variables, with row-level security on."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "tenantry-demo-not-secret"
DEBUG = True
# Django's own DEBUG default for an empty list is [".localhost", "127.0.0.1", "[::1]"].
ALLOWED_HOSTS = [".localhost", "localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "daphne",  # runserver speaks ASGI (HTTP + WebSocket)
    "django.contrib.admin",  # per tenant: acme.localhost:8000/admin/ (board/admin.py)
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "djust",
    "tenantry",
    "board",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Ends a support impersonation on time, before the tenant is admitted.
    "tenantry.impersonation.ImpersonationMiddleware",
    "tenantry.middleware.TenantMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "demo.urls"
ASGI_APPLICATION = "demo.asgi.application"
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DB", str(BASE_DIR / "db.sqlite3")),
        # Concurrent writers (WebSocket events run on a thread pool) wait
        # for the lock instead of failing; WAL lets readers run meanwhile.
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}

# Sessions in process memory, like the rest of the demo's embedded defaults.
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "tenantry.context_processors.tenant",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

STATIC_URL = "/static/"
# Each tenant's logo lives under MEDIA_ROOT/tenants/<id>/ (tenantry.storage)
# and is served by a view that reads the tenant's folder, never by URL.
MEDIA_ROOT = os.environ.get("DEMO_MEDIA", str(BASE_DIR / "media"))
# The demo's admin listens on loopback only; no brute-force protection app.
SILENCED_SYSTEM_CHECKS = ["djust.A030"]

# Every log line names its tenant ("-" where none is bound): docs/logging.md.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"tenant": {"()": "tenantry.logging.TenantFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(tenant)s] %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["tenant"],
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"board": {"level": "INFO"}},
}
LIVEVIEW_CONFIG = {
    "hvr_enabled": False,  # hot view replacement needs watchdog
    # djust limits WebSockets per client IP (10); the load test connects
    # hundreds from 127.0.0.1.
    "rate_limit": {"max_connections_per_ip": int(os.environ.get("DEMO_WS_PER_IP", "10"))},
}
LIVEVIEW_ALLOWED_MODULES = ["board"]

DJUST_CONFIG = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "localhost",
    # Only rows of board.Tenant are tenants; their name and settings (theme,
    # tagline) reach templates as tenant.name / tenant.settings.
    "TENANT_MODEL": "board.Tenant",
    # /admin/ on a host without a tenant (localhost:8000/admin/) is the
    # superuser's read-only view of every tenant (docs/admin.md).
    "TENANT_EXEMPT_PATHS": ["/static/", "/admin/"],
    "PRESENCE_BACKEND": "tenant_memory",
    "STATE_BACKEND": "tenant_memory",
    # Rate-limit counts in process memory (board.views.items_api limits
    # each client address; docs/ratelimits.md#memory-and-redis).
    "RATE_LIMIT_BACKEND": "tenant_memory",
    # Feature flags' defaults; a tenant's settings["flags"] wins (acme turns
    # item_export on: the board shows its link, /export/ answers).
    "TENANT_FLAGS": {"item_export": False},
}
if os.environ.get("DEMO_API_RATE"):
    # The soak makes the API's limit small enough to reach.
    DJUST_CONFIG["TENANT_RATE_LIMITS"] = {
        "api": {"rate": os.environ["DEMO_API_RATE"], "key": "tenant+ip"}
    }
#: Keys of the memory rate-limit store (all tenants; board/apps.py applies
#: it). The soak makes it small, so a shard fills and neighbours try to push
#: out a limited client's count.
DEMO_RATE_LIMIT_MAX_KEYS = int(os.environ.get("DEMO_RATE_LIMIT_MAX_KEYS", "0")) or None
if os.environ.get("DEMO_STATE_TENANT_MAX_BYTES"):
    # One tenant's share of the memory state store (the soak's attacker fills it).
    DJUST_CONFIG["STATE_TENANT_MAX_BYTES"] = int(os.environ["DEMO_STATE_TENANT_MAX_BYTES"])
if os.environ.get("DEMO_PRESENCE_TIMEOUT"):
    # The process-death test lets a killed server's connections expire fast.
    DJUST_CONFIG["PRESENCE_TIMEOUT"] = float(os.environ["DEMO_PRESENCE_TIMEOUT"])
if os.environ.get("DEMO_REDIS_URL"):
    # The load tests run the demo on Redis-backed presence and view state.
    DJUST_CONFIG["PRESENCE_BACKEND"] = "tenant_redis"
    DJUST_CONFIG["STATE_BACKEND"] = "tenant_redis"
    DJUST_CONFIG["REDIS_URL"] = os.environ["DEMO_REDIS_URL"]

if os.environ.get("DEMO_RATE_LIMIT_REDIS"):
    # The fleet tests: rate-limit counts in Redis, shared by every process.
    DJUST_CONFIG["RATE_LIMIT_BACKEND"] = "tenant_redis"
if os.environ.get("DEMO_CHANNEL_LAYER_URL"):
    # Several processes of the demo (the fleet tests, docs/deployment.md):
    # one channel layer in Redis, and sessions every process can read.
    # channels_redis has no Redis Cluster support: this is a plain Redis.
    # Its receive loop blocks on BZPOPMIN for up to 5 s (brpop_timeout);
    # under redis-py 8 a socket_timeout below that makes idle consumers
    # crash, so it is set above it.
    _layer = {"address": os.environ["DEMO_CHANNEL_LAYER_URL"], "socket_timeout": 15}
    if os.environ.get("DEMO_CHANNEL_LAYER") == "pubsub":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [_layer]},
            }
        }
    else:
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [_layer]},
            }
        }
    SESSION_ENGINE = "django.contrib.sessions.backends.db"

if os.environ.get("DEMO_DATABASE") == "postgres":
    # scripts/demo.sh and the soak test start a throwaway PostgreSQL and name
    # it in PGHOST/PGPORT/PGUSER/PGDATABASE; the role is not a superuser, so
    # the policies of board/migrations/0003_rls.py bind it.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("PGDATABASE", "tenantry"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "tenantry_app"),
            # Under ASGI every request has its own connection: Django's advice
            # is no persistent connections there (CONN_MAX_AGE = 0).
            "CONN_MAX_AGE": 0,
        }
    }
    DJUST_CONFIG["TENANT_RLS"] = True

# Celery, when installed (demo/celery.py): no broker or worker in the demo,
# every job runs in place, in the process that sends it.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_BROKER_URL = "memory://"

LOGIN_URL = "/support/login/"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
