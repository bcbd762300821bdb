from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    """Models for the tenant lifecycle commands (create/delete/deactivate/adopt)
    and the testing plugin: a registry with an active flag, and a model that
    starts single-tenant."""

    name = "tests.lifecycle"
    label = "lifecycle"
    default_auto_field = "django.db.models.BigAutoField"
