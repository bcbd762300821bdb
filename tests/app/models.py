from django.db import models

from tenantry import TenantManager
from tenantry.models import AbstractTenant, AbstractTenantDomain


class Item(models.Model):
    """A tenant-scoped row keyed by a plain id column."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        app_label = "app"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.name}"


class Organization(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        app_label = "app"


class Project(models.Model):
    """A tenant-scoped row keyed by a foreign key to the tenant's row."""

    organization = models.ForeignKey(Organization, to_field="slug", on_delete=models.CASCADE)
    title = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="organization")

    class Meta:
        app_label = "app"
        ordering = ["id"]


class Tenant(AbstractTenant):
    """The registry model of the tests (TENANT_MODEL = "app.Tenant")."""

    class Meta:
        app_label = "app"


class Domain(AbstractTenantDomain):
    class Meta:
        app_label = "app"


class RlsFolder(models.Model):
    """Row-level security suite (tests/test_rls.py): policy by tenant_id."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        app_label = "app"
        ordering = ["id"]


class RlsNote(models.Model):
    """Row-level security suite: policy by tenant_id; a foreign key to an
    RlsFolder (select_related across tenants)."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    title = models.CharField(max_length=100)
    folder = models.ForeignKey(
        RlsFolder, null=True, on_delete=models.CASCADE, related_name="notes"
    )

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        app_label = "app"
        ordering = ["id"]


class RlsMeter(models.Model):
    """Row-level security suite: an integer tenant column (the policy casts
    the setting to the column's type)."""

    tenant_number = models.IntegerField(db_index=True)
    reading = models.IntegerField()

    objects = TenantManager(tenant_field="tenant_number")
    all_tenants = models.Manager()

    class Meta:
        app_label = "app"
        ordering = ["id"]
