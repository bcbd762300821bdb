"""Abstract models for the tenant registry; subclass them in your app and
point ``TENANT_MODEL`` / ``TENANT_DOMAIN_MODEL`` at the subclasses."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.db import models

from . import conf
from ._core import is_valid_tenant_id, normalize_domain
from .registry import (
    domain_tenant_id_problem,
    invalid_tenant_id_message,
    new_tenant_id_problem,
    validate_custom_domain,
)


def new_incarnation() -> str:
    """A new incarnation: the UTC creation time (incarnations sort by age)
    and 48 random bits, e.g. ``20261130T101500123456Z-3f9a1c2b7d4e``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(6)}"


def validate_tenant_slug(value: str) -> None:
    if not is_valid_tenant_id(value):
        raise ValidationError(invalid_tenant_id_message(value), code="invalid_tenant_id")


def _is_registry(model: type[models.Model]) -> str | None:
    """The id field of ``model`` when it is ``TENANT_MODEL``, else None."""
    found = conf.current().tenant_model
    if found is None or model._meta.label_lower != found[0].lower():
        return None
    return found[1]


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

    def clean(self) -> None:
        """A new tenant's id must be one a request can carry
        (``tenantry.registry.new_tenant_id_problem``, the rule of ``manage.py
        tenantry create``); every INSERT is held to it too
        (``tenantry.lifecycle.on_insert``). A saved row's id never changes."""
        super().clean()
        id_field = _is_registry(type(self))
        if id_field is None or not self._state.adding:
            return
        value = getattr(self, id_field)
        if value in (None, "") or not is_valid_tenant_id(str(value)):
            return  # the field's own validators say it
        problem = new_tenant_id_problem(value, using=self._state.db, exclude_pk=self.pk)
        if problem:
            raise ValidationError({id_field: problem}, code="unusable_tenant_id")

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
        if self.tenant_id and is_valid_tenant_id(str(self.tenant_id)):
            problem = domain_tenant_id_problem(self.tenant_id, using=self._state.db)
            if problem:
                raise ValidationError({"tenant_id": problem}, code="tenant_id_case_twin")

    def save(self, *args, **kwargs):
        # Lookups use the host as Django validates it: lowercase, no port,
        # no trailing dot. (tenantry.registry refuses platform hosts on save.)
        self.domain = normalize_domain(self.domain)
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.domain} → {self.tenant_id}"


class TenantSuspension(models.Model):
    """A suspended tenant (``manage.py tenantry suspend``,
    ``tenantry.suspension.suspend``): admission refuses it until the row
    goes (``resume``). Keyed by the tenant id, not a foreign key, so it works
    with a ``TENANT_VALIDATOR`` as with a ``TENANT_MODEL``; the registry's
    lookup reads it with the tenant (cached for ``TENANT_CACHE_TTL``).
    The column is not named ``tenant_id`` on purpose: the row is the
    operator's, not the tenant's (a tenant's export and write rules do not
    cover it); deleting or creating the tenant removes it.

    Its Meta also carries tenantry's ``impersonate`` permission
    (``tenantry.impersonate``, docs/operations.md#impersonation)."""

    suspended_tenant = models.CharField(max_length=128, unique=True)
    reason = models.TextField(blank=True, default="")
    suspended_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "tenantry"
        db_table = "tenantry_suspension"
        permissions = [("impersonate", "Can act as a member of a tenant (impersonation)")]

    def __str__(self) -> str:
        return f"{self.suspended_tenant} (suspended)"
