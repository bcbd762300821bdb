"""Every shape of reference and key an import must get right
(docs/operations.md#export-and-import): generic foreign keys (default and
custom field names; integer, text and char object ids; a GenericRelation on
the other side), values unique across tenants (unique=True, unique_together,
a UniqueConstraint with and without a condition, a one-to-one to a shared
model), and primary keys the database does not generate (char, UUID with and
without a default). Behind row-level security on PostgreSQL."""

import uuid

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models

from tenantry import TenantManager


class Scoped(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        abstract = True


# -- generic foreign keys ------------------------------------------------------------------


class Remark(Scoped):
    """Custom field names and a char object id."""

    text = models.CharField(max_length=100, blank=True)
    kind = models.ForeignKey(ContentType, null=True, on_delete=models.CASCADE, related_name="+")
    ref = models.CharField(max_length=64, null=True)
    about = GenericForeignKey("kind", "ref")


class Sheet(Scoped):
    """The target side, with a GenericRelation back to the remarks."""

    title = models.CharField(max_length=100)
    remarks = GenericRelation(Remark, content_type_field="kind", object_id_field="ref")


class Flag(Scoped):
    """Default field names and a text object id."""

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE, related_name="+")
    object_id = models.TextField()
    target = GenericForeignKey()


class Mark(Scoped):
    """A positive integer object id."""

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE, related_name="+")
    object_id = models.PositiveIntegerField()
    target = GenericForeignKey("content_type", "object_id")


# -- primary keys the database does not generate ------------------------------------------


class Code(Scoped):
    code = models.CharField(max_length=40, primary_key=True)
    label = models.CharField(max_length=100, blank=True)


class Token(Scoped):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    label = models.CharField(max_length=100, blank=True)


class Grant(Scoped):
    id = models.UUIDField(primary_key=True)
    label = models.CharField(max_length=100, blank=True)


class Use(Scoped):
    """References to each of them: foreign keys and a many-to-many."""

    code = models.ForeignKey(Code, null=True, on_delete=models.CASCADE)
    token = models.ForeignKey(Token, null=True, on_delete=models.CASCADE)
    grant = models.ForeignKey(Grant, null=True, on_delete=models.CASCADE)
    tokens = models.ManyToManyField(Token, blank=True, related_name="uses")


# -- values unique across tenants -------------------------------------------------------------


class Site(Scoped):
    """A custom domain: unique across tenants."""

    host = models.CharField(max_length=253, unique=True)


class Pair(Scoped):
    kind = models.CharField(max_length=20)
    number = models.IntegerField()

    class Meta:
        unique_together = [("kind", "number")]


class Handle(Scoped):
    """Unique only among public handles."""

    name = models.CharField(max_length=40)
    public = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(public=True), name="porting_public_handle"
            )
        ]


class Ledger(Scoped):
    """Unique per tenant only: never a conflict."""

    number = models.IntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "number"], name="porting_ledger_number")
        ]


class Profile(Scoped):
    """One per user: a one-to-one to a shared model."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
