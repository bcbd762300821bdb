from django.db import models

from tenantry import TenantManager
from tenantry.models import AbstractTenant


class Tenant(AbstractTenant):
    """The worker's registry (TENANT_MODEL = "jobs.Tenant"); only active
    tenants get for_each_tenant()'s messages."""

    is_active = models.BooleanField(default=True)

    class Meta:
        app_label = "jobs"


class Note(models.Model):
    """A tenant-scoped row the tasks read."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    text = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        app_label = "jobs"
        ordering = ["id"]
