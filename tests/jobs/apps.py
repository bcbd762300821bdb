from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Models of the Celery tests (installed by tests/settings_celery.py only)."""

    name = "tests.jobs"
    label = "jobs"
    default_auto_field = "django.db.models.BigAutoField"
