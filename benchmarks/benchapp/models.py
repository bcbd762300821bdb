from django.db import models

from tenantry import TenantManager
from tenantry.models import AbstractTenant


class Tenant(AbstractTenant):
    class Meta:
        app_label = "benchapp"


# bench_writes: the same two tables twice, scoped (TenantManager, isolation
# guards on) and plain (Django's Manager, no guard), to time one against the
# other in the same run.

class Folder(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="tenant_id")

    class Meta:
        app_label = "benchapp"


class Doc(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    title = models.CharField(max_length=100)
    folder = models.ForeignKey(Folder, on_delete=models.CASCADE)

    objects = TenantManager(tenant_field="tenant_id")

    class Meta:
        app_label = "benchapp"


class PlainFolder(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)

    class Meta:
        app_label = "benchapp"


class PlainDoc(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    title = models.CharField(max_length=100)
    folder = models.ForeignKey(PlainFolder, on_delete=models.CASCADE)

    class Meta:
        app_label = "benchapp"


# bench_writes' baseline: the same tables with a column name tenantry does not
# take for a tenant field (a ``tenant_id`` column makes a model tenant-owned,
# docs/registry.md#which-models-hold-a-tenants-data, and guarded).


class BareFolder(models.Model):
    owner_key = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)

    class Meta:
        app_label = "benchapp"


class BareDoc(models.Model):
    owner_key = models.CharField(max_length=128, db_index=True)
    title = models.CharField(max_length=100)
    folder = models.ForeignKey(BareFolder, on_delete=models.CASCADE)

    class Meta:
        app_label = "benchapp"


class Tag(models.Model):
    """A tenant's tag of records (benchmarks/bench_links.py)."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="tenant_id")

    class Meta:
        app_label = "benchapp"
        ordering = ["id"]


class Record(models.Model):
    """A tenant's row (benchmarks/bench_rls.py); its tags are links of a
    many-to-many table (benchmarks/bench_links.py)."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    title = models.CharField(max_length=100)
    tags = models.ManyToManyField(Tag, blank=True, related_name="records")

    objects = TenantManager(tenant_field="tenant_id")

    class Meta:
        app_label = "benchapp"
        ordering = ["id"]
