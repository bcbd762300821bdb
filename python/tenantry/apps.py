from django.apps import AppConfig


class TenantryConfig(AppConfig):
    name = "tenantry"
    verbose_name = "tenantry (multi-tenancy)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, conf, registry  # noqa: F401  (checks and signal receivers)
