from django.db import models

from tenantry import TenantManager
from tenantry.models import AbstractTenant


class Tenant(AbstractTenant):
    """A tenant: slug (the subdomain), name, and settings (theme, tagline)."""


class Item(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=80)
    created = models.DateTimeField(auto_now_add=True)

    objects = TenantManager(tenant_field="tenant_id")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name
