"""Settings of the Celery worker the tests start (tests/django/test_celery.py): the
test settings plus the jobs app, a SQLite file the worker processes share
(``TENANTRY_CELERY_DB``), jobs.Tenant as the registry, and the broker and
result backend on the suite's Redis (``TENANTRY_CELERY_REDIS``)."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DJUST_CONFIG, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.jobs"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TENANTRY_CELERY_DB", ":memory:"),
        "OPTIONS": {"timeout": 30},
    }
}
# SQLite whatever run this is (TENANT_RLS is PostgreSQL's, set on its run).
DJUST_CONFIG = {
    **{key: value for key, value in DJUST_CONFIG.items() if key != "TENANT_RLS"},
    "TENANT_MODEL": "jobs.Tenant",
}
