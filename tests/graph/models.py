"""Every relation kind that reaches a tenant-scoped model
(tests/isolation/test_isolation_graph.py)."""

from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models

from tenantry import TenantManager


class Bookmark(models.Model):
    """A scoped generic foreign key holder: it may point at any row."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    note = models.CharField(max_length=100, blank=True)
    content_type = models.ForeignKey(ContentType, null=True, on_delete=models.CASCADE)
    object_id = models.PositiveBigIntegerField(null=True)
    target = GenericForeignKey("content_type", "object_id")

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        ordering = ["id"]


class Pin(models.Model):
    """A plain (unscoped) generic foreign key holder."""

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.PositiveBigIntegerField()
    target = GenericForeignKey("content_type", "object_id")

    class Meta:
        ordering = ["id"]


# -- multi-table inheritance ------------------------------------------------------------


class Place(models.Model):
    """A scoped parent; its children are scoped through it."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)
    bookmarks = GenericRelation(Bookmark)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Shop(Place):
    """A plain child of a scoped parent (its table has no tenant column)."""

    kind = models.CharField(max_length=50, blank=True)


class Outlet(Shop):
    """Two levels below the scoped parent."""

    code = models.CharField(max_length=20, blank=True)


class Asset(models.Model):
    """An unscoped parent."""

    label = models.CharField(max_length=100)


class Vehicle(Asset):
    """A child that declares the tenant field itself under an unscoped parent."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    plate = models.CharField(max_length=20)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()


class Machine(Asset):
    """A sibling of Vehicle: another scoped child of the same parent rows."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    serial = models.CharField(max_length=20)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()


# -- proxies ---------------------------------------------------------------------------


class PlainPlace(Place):
    """A proxy that declares its own plain `objects`: Django's manager
    inheritance drops Place's TenantManager (tenantry.E202), yet its rows
    stay scoped."""

    objects = models.Manager()

    class Meta:
        proxy = True


class SamePlace(Place):
    """A proxy that inherits Place's managers."""

    class Meta:
        proxy = True


# -- references ---------------------------------------------------------------------------


class Ticket(models.Model):
    """A foreign key without a database constraint."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    title = models.CharField(max_length=100)
    place = models.ForeignKey(
        Place, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False
    )

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        ordering = ["id"]


class Visit(models.Model):
    """A plain (unscoped) model with a foreign key to a scoped one."""

    place = models.ForeignKey(Place, on_delete=models.CASCADE)
    note = models.CharField(max_length=100, blank=True)


class Person(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Team(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)
    members = models.ManyToManyField(Person, through="Membership", related_name="teams")
    watchers = models.ManyToManyField(Person, blank=True, related_name="watched")

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        ordering = ["id"]


class PlainTeam(Team):
    """A proxy with its own plain `objects` (tenantry.E202), to link through."""

    objects = models.Manager()

    class Meta:
        proxy = True


class Membership(models.Model):
    """An explicit, unscoped through model."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE)
    person = models.ForeignKey(Person, on_delete=models.CASCADE)
    role = models.CharField(max_length=50, blank=True)


# -- a plain default manager ----------------------------------------------------------------


class Label(models.Model):
    """Scoped, but its default manager is plain (the old advice for the
    admin and dumpdata)."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)

    objects = models.Manager()
    scoped = TenantManager(tenant_field="tenant_id")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Card(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    title = models.CharField(max_length=100)
    label = models.ForeignKey(Label, null=True, blank=True, on_delete=models.SET_NULL)
    labels = models.ManyToManyField(Label, blank=True, related_name="cards")

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title
