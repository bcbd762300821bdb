from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    """Models for the tenant lifecycle commands (create/delete/deactivate/adopt)
    and the testing plugin: a registry with an active flag, and a model that
    starts single-tenant."""

    name = "tests.lifecycle"
    label = "lifecycle"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tenantry import ownership

        # docs/registry.md#which-models-hold-a-tenants-data: a column of another name.
        ownership.declare("lifecycle.Seat", field="org_slug")
