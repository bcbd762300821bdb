from django.db import models

from tenantry import TenantManager


class Place(models.Model):
    """The root of an inheritance chain: it holds the tenant column."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        app_label = "dbapi"
        ordering = ["id"]


class Shop(Place):
    """A child table with no tenant column: its policy joins ``Place``."""

    licence = models.CharField(max_length=100)

    class Meta:
        app_label = "dbapi"


class Kiosk(Shop):
    """Two levels down: the policy joins the root, ``Place``."""

    stall = models.CharField(max_length=100)

    class Meta:
        app_label = "dbapi"
