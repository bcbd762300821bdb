"""Abstract models for the tenant registry; subclass them in your app and
point ``TENANT_MODEL`` / ``TENANT_DOMAIN_MODEL`` at the subclasses."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from ._core import is_valid_tenant_id


def validate_tenant_slug(value: str) -> None:
    if not is_valid_tenant_id(value):
        raise ValidationError(
            "%(value)r is not a valid tenant id: use 1-128 of A-Z a-z 0-9 . _ - "
            "(not starting with . or -).",
            params={"value": value},
            code="invalid_tenant_id",
        )


class AbstractTenant(models.Model):
    """``slug`` is the tenant id; ``settings`` becomes ``tenant.settings``."""

    slug = models.CharField(max_length=128, unique=True, validators=[validate_tenant_slug])
    name = models.CharField(max_length=200)
    settings = models.JSONField(default=dict, blank=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name or self.slug


class AbstractTenantDomain(models.Model):
    """A custom domain (``shop.acme-corp.com``) served as a tenant."""

    domain = models.CharField(max_length=253, unique=True)
    tenant_id = models.CharField(max_length=128, validators=[validate_tenant_slug])

    class Meta:
        abstract = True

    def clean(self) -> None:
        super().clean()
        from .registry import validate_custom_domain

        self.domain = self.domain.strip().lower().rstrip(".")
        validate_custom_domain(self.domain, self.tenant_id)

    def save(self, *args, **kwargs):
        # Lookups use the host as Django validates it: lowercase, no port,
        # no trailing dot. (tenantry.registry refuses platform hosts on save.)
        self.domain = self.domain.strip().lower().rstrip(".")
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.domain} → {self.tenant_id}"
