"""Suspending a tenant (docs/operations.md#suspending-a-tenant).

A suspended tenant keeps its data untouched, but admission refuses it
everywhere a tenant is admitted (``tenantry.access.admit``): its pages
answer 503 saying it is suspended, its live mounts and the next turn of its
open sockets get an error frame (the socket closes), its jobs do not run.
Deactivating a tenant (``manage.py tenantry deactivate``) is different: the
tenant no longer exists for the outside (404).

The suspension is a row of ``tenantry.TenantSuspension`` keyed by the
tenant id, so it works with a ``TENANT_MODEL`` and with a
``TENANT_VALIDATOR``; the registry's lookup reads it with the tenant and
caches it with it (``tenantry.registry.suspension_reason``). This process
sees a change at once (its caches are dropped, its open sockets admitted
again at their next turn); other processes within ``TENANT_CACHE_TTL +
TENANT_READMIT_INTERVAL``, and their open sockets one interval later.
"""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from . import _core, audit, conf, signals
from .access import expire_live_admissions
from .exceptions import TenantSuspended
from .registry import SUSPENSION_MODEL, invalidate_tenant, suspension_reason

__all__ = ["clear", "hold_for_move", "is_suspended", "release_move", "resume", "suspend"]


def _model() -> Any:
    return apps.get_model(SUSPENSION_MODEL)


def _registry_required() -> None:
    if not conf.current().has_registry:
        raise ImproperlyConfigured(
            "suspending a tenant needs a registry: set DJUST_CONFIG['TENANT_MODEL'] or "
            "['TENANT_VALIDATOR'] (without one every valid id is a tenant, and nothing "
            "looks a tenant up where a suspension could be seen)"
        )


def _seen(tenant_id: str) -> None:
    """This process forgets what it knew of ``tenant_id`` (now, and again on
    commit: until then other connections read the old state)."""
    invalidate_tenant(tenant_id)
    expire_live_admissions(tenant_id)

    def again() -> None:
        invalidate_tenant(tenant_id)
        expire_live_admissions(tenant_id)

    transaction.on_commit(again)


def suspend(tenant_id: Any, *, reason: str = "") -> bool:
    """Suspend ``tenant_id`` (a tenant the registry knows: ``TenantNotFound``
    otherwise); True when it was not suspended already (then audited as
    ``tenant.suspended`` and the signal ``tenant_suspended`` sent). A
    second call keeps the first reason."""
    _registry_required()
    tenant_id = _core.validate_tenant_id(tenant_id)
    if not isinstance(reason, str):
        raise TypeError(f"reason must be a str, got {type(reason).__name__}")
    invalidate_tenant(tenant_id)  # the registry's answer now, not a cached one
    if _core.lookup_tenant(tenant_id) is None:
        raise _core.TenantNotFound(
            f"no tenant {tenant_id!r}: the registry (TENANT_MODEL / TENANT_VALIDATOR) "
            "does not know it"
        )
    with transaction.atomic():
        _, created = _model()._base_manager.get_or_create(
            suspended_tenant=tenant_id, defaults={"reason": reason}
        )
        _seen(tenant_id)
        if created:
            audit.emit("tenant.suspended", tenant=tenant_id, level=logging.WARNING, reason=reason)
            signals.tenant_suspended.send(sender=suspend, tenant_id=tenant_id, reason=reason)
    return created


def resume(tenant_id: Any) -> bool:
    """Lift ``tenant_id``'s suspension; True when it was suspended (then
    audited as ``tenant.resumed`` and the signal ``tenant_resumed`` sent)."""
    _registry_required()
    tenant_id = _core.validate_tenant_id(tenant_id)
    with transaction.atomic():
        deleted, _ = _model()._base_manager.filter(suspended_tenant=tenant_id).delete()
        _seen(tenant_id)
        if deleted:
            audit.emit("tenant.resumed", tenant=tenant_id, level=logging.WARNING)
            signals.tenant_resumed.send(sender=resume, tenant_id=tenant_id)
    return bool(deleted)


def is_suspended(tenant_id: Any) -> bool:
    """Whether ``tenant_id`` is suspended, from the database (not the
    registry's cache)."""
    return suspension_reason(_core.validate_tenant_id(tenant_id)) is not None


def clear(tenant_id: str, using: str | None = None) -> int:
    """Remove ``tenant_id``'s suspension without a signal: the tenant was
    deleted, or a new tenant takes its id (a new incarnation starts
    unsuspended). The number of rows removed."""
    deleted, _ = _model()._base_manager.using(using).filter(suspended_tenant=tenant_id).delete()
    return deleted


def hold_for_move(tenant_id: str, alias: str) -> bool:
    """Refuse ``tenant_id`` while ``tenantry.moving`` switches its database
    (a suspension whose reason is ``TenantSuspended.MOVING_REASON``: its
    pages answer 503 saying it is moving, its live views and jobs are
    refused). False when it was suspended already: that suspension stays,
    and :func:`release_move` leaves it."""
    with transaction.atomic():
        _, created = _model()._base_manager.get_or_create(
            suspended_tenant=tenant_id,
            defaults={"reason": f"{TenantSuspended.MOVING_REASON} to {alias}"},
        )
        _seen(tenant_id)
    return created


def release_move(tenant_id: str) -> None:
    """End the refusal :func:`hold_for_move` started (only that one)."""
    with transaction.atomic():
        _model()._base_manager.filter(
            suspended_tenant=tenant_id, reason__startswith=TenantSuspended.MOVING_REASON
        ).delete()
        _seen(tenant_id)
