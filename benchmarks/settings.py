"""Django settings shared by the benchmarks (in-memory SQLite, no network)."""

SECRET_KEY = "tenantry-benchmarks"
DEBUG = False
ALLOWED_HOSTS = [".example.com", "example.com", "testserver"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "channels",
    "djust",
    "tenantry",
    "benchmarks.benchapp",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CACHES = {  # bench_cache.py
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "KEY_FUNCTION": "tenantry.cache.make_key",
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
ROOT_URLCONF = "benchmarks.benchapp.urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DJUST_CONFIG = {"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING_CONFIG = None
