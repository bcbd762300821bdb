from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models

from tenantry import TenantManager


class Board(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    title = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        app_label = "collaboration"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.title}"


class Label(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        app_label = "collaboration"
        ordering = ["id"]


class Card(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    text = models.CharField(max_length=100)
    board = models.ForeignKey(Board, null=True, blank=True, on_delete=models.CASCADE)
    labels = models.ManyToManyField(Label, blank=True)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        app_label = "collaboration"
        ordering = ["id"]


class Pin(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    content_type = models.ForeignKey(ContentType, null=True, on_delete=models.CASCADE)
    object_id = models.CharField(max_length=64, null=True)
    target = GenericForeignKey("content_type", "object_id")

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        app_label = "collaboration"
        ordering = ["id"]
