"""The tenant registry (``TENANT_MODEL`` or ``TENANT_VALIDATOR``) and custom
domains (``TENANT_DOMAIN_MODEL``).

The Rust core caches every lookup (found and not found) for
``TENANT_CACHE_TTL`` seconds, at most ``TENANT_CACHE_SIZE`` entries of each
kind; this module holds the loaders it calls on a miss, and drops the caches
when a tenant or domain row is saved or deleted in this process. Other
processes see changes when their cached entry expires (the TTL bounds it), or
when you call :func:`invalidate_tenant` there.

A custom domain may not claim the platform's own hosts: the main domain, or
a ``<label>.<main domain>`` host that the subdomain rule serves as another
tenant (or as none). Such a row is refused when saved
(:func:`validate_custom_domain`, a ``ValidationError``) and, if it reached
the database another way, ignored by lookups and audited (``domain.ignored``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import BooleanField
from django.db.models.signals import post_delete, post_save, pre_save

from . import _core, audit, conf
from ._core import TenantInfo

__all__ = [
    "active_field",
    "invalidate_tenant",
    "make_domain_loader",
    "make_tenant_loader",
    "validate_custom_domain",
]

Details = tuple[Any, Any, Any]  # (name, settings, raw)


def invalidate_tenant(tenant_id: str | None = None) -> None:
    """Forget the cached lookup of ``tenant_id`` (or of every tenant and
    custom domain when None) in this process."""
    _core.invalidate_tenant(tenant_id)


#: Names of a registry model's boolean "this tenant is live" flag.
ACTIVE_FIELDS = ("is_active", "active")


def active_field(model: Any) -> str | None:
    """The model's active flag (a BooleanField named ``is_active`` or
    ``active``), or None. A row whose flag is False is not a tenant."""
    for name in ACTIVE_FIELDS:
        field = next((f for f in model._meta.concrete_fields if f.name == name), None)
        if isinstance(field, BooleanField):
            return name
    return None


def make_tenant_loader(
    model_label: str | None,
    id_field: str,
    name_field: str | None,
    settings_field: str | None,
    validator: Callable[[str], Any] | None,
) -> Callable[[str], Details | None]:
    """The function the core calls on a cache miss: ``id -> (name, settings,
    raw)`` or None."""
    if validator is not None:

        def from_validator(tenant_id: str) -> Details | None:
            result = validator(tenant_id)
            if result is None or result is False:
                return None
            if result is True:
                return (None, None, None)
            if isinstance(result, TenantInfo):
                return (result.name, result.settings, result.raw)
            raise TypeError(
                f"TENANT_VALIDATOR returned a {type(result).__name__} for {tenant_id!r}; "
                "expected a TenantInfo, True, False or None"
            )

        return from_validator

    def from_model(tenant_id: str) -> Details | None:
        model = apps.get_model(model_label)
        row = model._base_manager.filter(**{id_field: tenant_id}).first()
        flag = active_field(model)
        if row is None or (flag is not None and not getattr(row, flag)):
            return None
        name = getattr(row, name_field) if name_field else None
        settings = getattr(row, settings_field) if settings_field else None
        return (name, settings if isinstance(settings, dict) else None, row)

    return from_model


def make_domain_loader(
    model_label: str, domain_field: str, tenant_field: str, tenant_id_field: str
) -> Callable[[str], Any]:
    """``domain -> tenant id`` or None. ``tenant_field`` may hold the id or be
    a foreign key to the tenant model (then its ``tenant_id_field`` is read)."""

    def load(domain: str) -> Any:
        model = apps.get_model(model_label)
        field = model._meta.get_field(tenant_field)
        column = f"{field.name}__{tenant_id_field}" if field.is_relation else field.attname
        tenant_id = (
            model._base_manager.filter(**{domain_field: domain})
            .values_list(column, flat=True)
            .first()
        )
        if tenant_id is None:
            return None
        conflict = _core.custom_domain_conflict(domain, str(tenant_id))
        if conflict is not None:
            # Written around validate_custom_domain (a queryset update, raw
            # SQL): the platform's host keeps its own tenant.
            audit.emit(
                "domain.ignored",
                tenant=tenant_id,
                level=logging.WARNING,
                domain=domain,
                reason=conflict,
            )
            return None
        return tenant_id

    return load


def validate_custom_domain(domain: str, tenant_id: Any) -> None:
    """Refuse (``ValidationError``) a custom-domain row that would claim the
    main domain or a ``<label>.<main domain>`` host the subdomain rule does
    not give to ``tenant_id``."""
    conflict = _core.custom_domain_conflict(str(domain), str(tenant_id))
    if conflict is not None:
        raise ValidationError(
            "%(domain)s cannot be a custom domain of tenant %(tenant)s: %(reason)s.",
            params={"domain": domain, "tenant": tenant_id, "reason": conflict},
            code="platform_domain",
        )


def _domain_row_values(instance: Any) -> tuple[str, Any] | None:
    """``(domain, tenant id)`` of a row of ``TENANT_DOMAIN_MODEL``, else None."""
    config = conf.current()
    label = config.domain_model
    if not label or instance._meta.label_lower != label.lower():
        return None
    domain = getattr(instance, config.domain_field)
    field = instance._meta.get_field(config.domain_tenant_field)
    value = getattr(instance, field.attname)
    if field.is_relation and value is not None:
        target = getattr(instance, field.name)
        value = getattr(target, config.tenant_id_field, value)
    return _core.normalize_domain(str(domain)), value


def _on_domain_save(sender: Any, instance: Any, **kwargs: Any) -> None:
    try:
        values = _domain_row_values(instance)
    except Exception:  # a broken config is reported by the system checks
        return
    if values is not None:
        validate_custom_domain(*values)


def _on_row_change(sender: Any, **kwargs: Any) -> None:
    meta = getattr(sender, "_meta", None)
    if meta is None:
        return
    try:
        watched = conf.current().registry_models
    except Exception:  # a broken config is reported elsewhere
        return
    if meta.label_lower in watched:
        # A save may change a tenant's id: drop every cached lookup (a lookup
        # loading meanwhile does not cache its result: the core's generation
        # check). Again on commit: until then other connections still read
        # the old row, and may have cached it after the first invalidation.
        invalidate_tenant(None)
        transaction.on_commit(invalidate_tenant, using=kwargs.get("using"))


post_save.connect(_on_row_change, dispatch_uid="tenantry.registry.post_save")
post_delete.connect(_on_row_change, dispatch_uid="tenantry.registry.post_delete")
pre_save.connect(_on_domain_save, dispatch_uid="tenantry.registry.domain_pre_save")
