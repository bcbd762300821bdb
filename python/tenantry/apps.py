from django.apps import AppConfig


class TenantryConfig(AppConfig):
    name = "tenantry"
    verbose_name = "tenantry (multi-tenancy)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import audit_trail, cache, checks, conf, lifecycle, registry, wall  # noqa: F401
        from .db import rls  # noqa: F401  (binds row-level security on new connections)
        from .djust.installation import install as install_djust

        wall.install()  # the ORM's first wall, derived from the model graph
        lifecycle.install()
        audit_trail.install()  # TENANT_AUDIT_STORE: the stored, chained trail
        cache.install()
        install_djust()  # every djust touchpoint (tenantry.djust)
        try:
            import celery  # noqa: F401
        except ImportError:
            return
        from . import celery as tenantry_celery  # noqa: F401  (publish and run signals)
