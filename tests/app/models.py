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

    #: The tenant's database alias, '' for default (TENANT_DATABASE_FIELD,
    #: tests/fleet_data/test_dedicated.py); a database default too, for inserts
    #: naming their fields (tests/isolation/test_lifecycle_routes.py).
    database = models.CharField(max_length=64, blank=True, default="", db_default="")

    class Meta:
        app_label = "app"


class Domain(AbstractTenantDomain):
    class Meta:
        app_label = "app"


# -- isolation rules (tests/isolation/test_isolation_orm.py): scoped models that refer
# to each other by ForeignKey, OneToOne and ManyToMany, and one scoped by a
# foreign key to the registry model.


class Folder(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        app_label = "app"
        ordering = ["id"]


class Tag(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        app_label = "app"
        ordering = ["id"]


class Document(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    title = models.CharField(max_length=100)
    folder = models.ForeignKey(Folder, null=True, blank=True, on_delete=models.CASCADE)
    tags = models.ManyToManyField(Tag, blank=True)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        app_label = "app"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "title"], name="app_document_tenant_title")
        ]


class Summary(models.Model):
    """A OneToOne from a scoped model to another."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    document = models.OneToOneField(Document, on_delete=models.CASCADE)
    text = models.CharField(max_length=200, blank=True)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        app_label = "app"


class Note(models.Model):
    """Scoped by a foreign key to the registry model (``tenant.raw`` is the row)."""

    org = models.ForeignKey(Tenant, on_delete=models.CASCADE)
    text = models.CharField(max_length=200)

    objects = TenantManager(tenant_field="org")
    all_tenants = models.Manager()

    class Meta:
        app_label = "app"
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["org", "text"], name="app_note_org_text")]

# -- row-level security (tests/isolation/test_rls.py)


class RlsFolder(models.Model):
    """Row-level security suite (tests/isolation/test_rls.py): policy by tenant_id."""

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
