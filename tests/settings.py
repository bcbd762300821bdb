"""Django settings for the test suite: SQLite, real djust, real channels."""

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
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenantry.middleware.TenantMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",  # the admin (tests/test_admin.py)
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

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING_CONFIG = None
