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


class SharedBoard(models.Model):
    """A board one tenant owns and may grant to another
    (``tenantry.sharing.grant``): the seed has acme grant its "Launch plan"
    to globex with a write grant, and both tenants' users meet in its live
    room (``board.views.SharedBoardView``, docs/collaboration.md#live-rooms)."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    title = models.CharField(max_length=80)
    #: One note a line (a write grant lets globex add notes: ``save()``).
    notes = models.TextField(blank=True, default="")

    objects = TenantManager(tenant_field="tenant_id")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title
