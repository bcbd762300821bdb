"""Django settings for the test suite: SQLite (or PostgreSQL with
``TENANTRY_TEST_DB=postgres``), real djust, real channels."""

import os

SECRET_KEY = "tenantry-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = [
    ".example.com",
    "example.com",
    ".localhost",
    "localhost",
    "testserver",
    "127.0.0.1",
    "[::1]",
]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "channels",
    "djust",
    "tenantry",
    "tests.app",
    "tests.pieces",
    "tests.lifecycle",
    "tests.dbapi",
    "tests.graph",
    "tests.reach",
    "tests.porting",
    "tests.collaboration",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenantry.middleware.TenantMiddleware",
    # the admin (tests/isolation/test_admin.py)
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.app.urls"
ASGI_APPLICATION = "tests.app.asgi.application"
LIVEVIEW_ALLOWED_MODULES = ["tests.app", "tests.pieces"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
        "TEST": {"NAME": ":memory:"},
    }
}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

DJUST_CONFIG = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_EXEMPT_PATHS": ["/public/"],
}

TEST_DB = os.environ.get("TENANTRY_TEST_DB", "sqlite")
if TEST_DB == "postgres":
    # HOST and PORT of the session's cluster are filled in by
    # tests/postgres_fixtures.py; the role is the non-superuser app role.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "tenantry",
            "USER": "tenantry_app",
            "TEST": {"NAME": "test_tenantry"},
        }
    }
    # The second wall on every query of the run (policies: tests/app/migrations/0003).
    DJUST_CONFIG["TENANT_RLS"] = True
elif TEST_DB != "sqlite":
    raise ValueError(f"TENANTRY_TEST_DB must be 'sqlite' or 'postgres', got {TEST_DB!r}")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# pytest-django's live_server (tests/observability/test_dashboard_browser.py)
# serves STATIC_URL itself and fails every request without one.
STATIC_URL = "/static/"
LOGGING_CONFIG = None
