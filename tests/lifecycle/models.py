from django.db import models

from tenantry import TenantManager
from tenantry.models import AbstractTenant


class Account(AbstractTenant):
    """A registry model with an active flag (``tenantry deactivate``)."""

    is_active = models.BooleanField(default=True)

    class Meta:
        app_label = "lifecycle"


class Ticket(models.Model):
    """A scoped model keyed by a foreign key to the registry row."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE)
    title = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="account")
    all_tenants = models.Manager()

    class Meta:
        app_label = "lifecycle"


class Legacy(models.Model):
    """A model of a single-tenant app on its way to multi-tenant
    (docs/adopting.md): the tenant column is still nullable."""

    tenant_id = models.CharField(max_length=128, null=True, blank=True, db_index=True)
    title = models.CharField(max_length=100)

    class Meta:
        app_label = "lifecycle"
