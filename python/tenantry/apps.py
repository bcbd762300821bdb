from django.apps import AppConfig, apps
from django.core.exceptions import ImproperlyConfigured


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
        _install_observers()
        if apps.is_installed("django.contrib.admin"):
            from . import dashboard

            dashboard.install()  # the usage pages of every AdminSite
        try:
            import celery  # noqa: F401
        except ImportError:
            return
        from . import celery as tenantry_celery  # noqa: F401  (publish and run signals)


def _install_observers() -> None:
    """OpenTelemetry's ``tenant.id`` when its API is installed; the
    ``tenantry_*`` metrics when ``TENANT_METRICS`` is on (which needs
    prometheus_client)."""
    from . import conf, tracing

    tracing.install()
    try:
        enabled = conf.current().metrics_enabled
    except ImproperlyConfigured:
        # A broken DJUST_CONFIG: `manage.py check` names every problem at
        # once, and TenantMiddleware refuses to start; ready() must not hide
        # them behind the first one.
        return
    try:
        from . import metrics
    except ImportError as exc:
        if exc.name != "prometheus_client":
            raise
        if enabled:
            raise ImproperlyConfigured(
                'DJUST_CONFIG["TENANT_METRICS"] is True but prometheus_client is not '
                "installed: pip install 'tenantry[metrics]' (docs/observability.md)."
            ) from exc
        return
    metrics.sync()
