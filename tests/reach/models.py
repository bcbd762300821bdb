"""What a tenant may reach through the ORM beyond its own table
(tests/isolation/test_isolation_reach.py)."""

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models

from tenantry import TenantManager


class Category(models.Model):
    """A shared catalogue: no tenant."""

    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Folder(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)
    code = models.CharField(max_length=100, unique=True, null=True, blank=True)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Item(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)
    secret = models.CharField(max_length=100, default="", blank=True)
    ref = models.CharField(max_length=100, unique=True, null=True, blank=True)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL)
    folder = models.ForeignKey(Folder, null=True, blank=True, on_delete=models.CASCADE)
    folder_code = models.ForeignKey(
        Folder,
        null=True,
        blank=True,
        to_field="code",
        on_delete=models.CASCADE,
        related_name="by_code",
        db_constraint=False,
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, to_field="ref", on_delete=models.CASCADE
    )

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Badge(models.Model):
    """A one-to-one by ``to_field``."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    folder = models.OneToOneField(
        Folder, null=True, blank=True, to_field="code", on_delete=models.CASCADE
    )

    objects = TenantManager(tenant_field="tenant_id")


class Tag(models.Model):
    """Shared tags: no tenant."""

    name = models.CharField(max_length=100)


class Doc(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    title = models.CharField(max_length=100)
    tags = models.ManyToManyField(Tag, blank=True, related_name="docs")
    marks = models.ManyToManyField(Tag, blank=True, through="Mark", related_name="marked")
    shelves = models.ManyToManyField(Folder, blank=True, through="Shelf", related_name="docs")

    objects = TenantManager(tenant_field="tenant_id")

    class Meta:
        ordering = ["title"]


class Mark(models.Model):
    """An explicit through model between a scoped and a shared model, with
    data of its own: its rows are the tenant of their Doc's."""

    doc = models.ForeignKey(Doc, on_delete=models.CASCADE)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE)
    note = models.CharField(max_length=100, blank=True)
    #: An extra, nullable reference to a scoped row: an empty one links
    #: nothing (docs/postgresql.md#many-to-many-link-tables).
    backup = models.ForeignKey(
        Folder, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )


class Shelf(models.Model):
    """A through model whose end is a ``to_field`` reference."""

    doc = models.ForeignKey(Doc, on_delete=models.CASCADE)
    folder = models.ForeignKey(Folder, to_field="code", on_delete=models.CASCADE)


class Box(models.Model):
    """A scoped multi-table parent."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="tenant_id")


class Crate(Box):
    """Its child: no tenant column; a foreign key to the shared Category of its own."""

    secret = models.CharField(max_length=100, default="")
    shelf = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL)


class Place(models.Model):
    """An unscoped multi-table parent."""

    name = models.CharField(max_length=100)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL)


class Shop(Place):
    """A scoped child of the unscoped Place (it declares the tenant column)."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    secret = models.CharField(max_length=100, default="")

    objects = TenantManager(tenant_field="tenant_id")


class Kiosk(Shop):
    pin = models.CharField(max_length=100, default="")


class Note(models.Model):
    """A scoped model with a reference to the unscoped parent."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    text = models.CharField(max_length=100)
    place = models.ForeignKey(Place, null=True, blank=True, on_delete=models.CASCADE)
    places = models.ManyToManyField(Place, blank=True, related_name="noted")

    objects = TenantManager(tenant_field="tenant_id")


class Pin(models.Model):
    """A scoped generic foreign key holder with a text object id."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    content_type = models.ForeignKey(
        ContentType, null=True, on_delete=models.CASCADE, related_name="+"
    )
    object_id = models.CharField(max_length=64, null=True)
    target = GenericForeignKey("content_type", "object_id")

    objects = TenantManager(tenant_field="tenant_id")


class Visit(models.Model):
    """A plain model with a reference to the unscoped parent."""

    place = models.ForeignKey(Place, on_delete=models.CASCADE)


class Member(models.Model):
    """Keyed by a plain ``tenant_id`` column, no TenantManager: tenant-owned
    by the column's name (tenantry.ownership)."""

    tenant_id = models.CharField(max_length=128)
    user_name = models.CharField(max_length=100)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL)


class Seat(models.Model):
    """Keyed by a column of another name: declared (ReachConfig.ready)."""

    org_slug = models.CharField(max_length=128)
    label = models.CharField(max_length=50)


class Pass(models.Model):
    """A scoped model with a reference to a tenant-owned model that has no TenantManager."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    member = models.ForeignKey(Member, null=True, blank=True, on_delete=models.CASCADE)

    objects = TenantManager(tenant_field="tenant_id")
