"""Abstract models for the tenant registry; subclass them in your app and
point ``TENANT_MODEL`` / ``TENANT_DOMAIN_MODEL`` at the subclasses."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.db import models

from ._core import is_valid_tenant_id, normalize_domain
from .registry import validate_custom_domain


def new_incarnation() -> str:
    """A new incarnation: the UTC creation time (incarnations sort by age)
    and 48 random bits, e.g. ``20261130T101500123456Z-3f9a1c2b7d4e``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(6)}"


def validate_tenant_slug(value: str) -> None:
    if not is_valid_tenant_id(value):
        raise ValidationError(
            "%(value)r is not a valid tenant id: use 1-128 of A-Z a-z 0-9 . _ - "
            "(not starting with . or -).",
            params={"value": value},
            code="invalid_tenant_id",
        )


class AbstractTenant(models.Model):
    """``slug`` is the tenant id; ``settings`` becomes ``tenant.settings``;
    ``incarnation`` is set once, when the row is created: a tenant deleted
    and created again under the same id is a new incarnation
    (docs/registry.md#incarnations). Neither ``slug`` nor ``incarnation`` of
    a saved row may change (``tenantry.lifecycle``)."""

    slug = models.CharField(max_length=128, unique=True, validators=[validate_tenant_slug])
    name = models.CharField(max_length=200)
    settings = models.JSONField(default=dict, blank=True)
    incarnation = models.CharField(max_length=40, default=new_incarnation, editable=False)

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
        self.domain = normalize_domain(self.domain)
        validate_custom_domain(self.domain, self.tenant_id)

    def save(self, *args, **kwargs):
        # Lookups use the host as Django validates it: lowercase, no port,
        # no trailing dot. (tenantry.registry refuses platform hosts on save.)
        self.domain = normalize_domain(self.domain)
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.domain} → {self.tenant_id}"
