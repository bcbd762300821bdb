from django.db import models

from tenantry import TenantManager
from tenantry.models import AbstractTenant


class Tenant(AbstractTenant):
    class Meta:
        app_label = "benchapp"


class Record(models.Model):
    """A tenant's row (benchmarks/bench_rls.py)."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    title = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="tenant_id")

    class Meta:
        app_label = "benchapp"
        ordering = ["id"]
