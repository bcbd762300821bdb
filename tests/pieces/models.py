"""Tenant-scoped models that refer to each other, for the admin tests."""

from django.db import models

from tenantry import TenantManager


class Named(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        abstract = True
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Category(Named):
    class Meta(Named.Meta):
        verbose_name_plural = "categories"


class Keyword(Named):
    pass


class Article(models.Model):
    tenant_id = models.CharField(max_length=128, db_index=True)
    title = models.CharField(max_length=100)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.CASCADE)
    keywords = models.ManyToManyField(Keyword, blank=True)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title


class Comment(models.Model):
    """Edited inline on the article's page."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    article = models.ForeignKey(Article, on_delete=models.CASCADE)
    text = models.CharField(max_length=200)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        ordering = ["id"]
