from django.apps import AppConfig


class TenantryConfig(AppConfig):
    name = "tenantry"
    verbose_name = "tenantry (multi-tenancy)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.exceptions import ImproperlyConfigured

        from . import cache, checks, conf, lifecycle, live, registry, wall  # noqa: F401
        from .channels import install_djust_broadcasts
        from .db import rls  # noqa: F401  (binds row-level security on new connections)
        from .presence import install_djust_presence_backend
        from .state import install_djust_state_backend

        wall.install()  # the ORM's first wall, derived from the model graph
        lifecycle.install()
        cache.install()

        live.install()
        for install in (install_djust_presence_backend, install_djust_state_backend):
            try:
                install()
            except ImproperlyConfigured:
                pass  # reported by the system checks (manage.py check), with its key
        install_djust_broadcasts()
        try:
            import celery  # noqa: F401
        except ImportError:
            return
        from . import celery as tenantry_celery  # noqa: F401  (publish and run signals)
