from django.apps import AppConfig
from django.conf import settings


class BoardConfig(AppConfig):
    name = "board"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        if settings.DEMO_RATE_LIMIT_MAX_KEYS:
            from tenantry.ratelimit import TenantRateLimiter

            TenantRateLimiter.set_memory_limit(settings.DEMO_RATE_LIMIT_MAX_KEYS)
