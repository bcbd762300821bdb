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

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import BooleanField
from django.db.models.functions import Lower
from django.db.models.signals import post_delete, post_save, pre_save

from . import _core, audit, conf
from ._core import TenantInfo
from .addressing import unreachable
from .exceptions import TenantDatabaseMissing

__all__ = [
    "active_field",
    "case_twins",
    "check_domain_row",
    "domain_tenant_id_problem",
    "invalid_tenant_id_message",
    "invalidate_tenant",
    "make_domain_loader",
    "make_tenant_loader",
    "new_tenant_id_problem",
    "new_tenant_id_problems",
    "suspension_reason",
    "tenant_database",
    "validate_custom_domain",
]

#: (name, settings, raw, suspension's reason or None, database alias or None)
Details = tuple[Any, Any, Any, Any, Any]

#: ``tenantry.TenantSuspension``, by label: tenantry.models imports this module.
SUSPENSION_MODEL = "tenantry.TenantSuspension"


#: ``(expires at, {suspended id: reason})``: this process's copy of the
#: suspension table, read at most once per ``min(TENANT_CACHE_TTL,
#: TENANT_READMIT_INTERVAL)`` seconds, and only on a registry cache miss.
_suspensions: tuple[float, dict[str, str]] | None = None


def suspension_reason(tenant_id: str) -> str | None:
    """The reason ``tenant_id`` is suspended (a str, maybe empty), or None
    when it is not. Read with the registry's own lookup on a cache miss (so
    it is cached with the tenant), from a per-process copy of the (small)
    suspension table: one query per refresh, never one per tenant."""
    snapshot = _suspensions
    now = time.monotonic()
    if snapshot is None or now >= snapshot[0]:
        if _on_event_loop():
            # Never a query on the event loop (tenant_context() in async code
            # with a validator that needs no database; every admission runs
            # in a thread): answer from the last copy, and keep this answer
            # out of the registry's cache (its generation check), so the next
            # lookup in a thread decides again.
            _core.invalidate_tenant(tenant_id)
            return None if snapshot is None else snapshot[1].get(tenant_id)
        snapshot = _load_suspensions(now)
    return snapshot[1].get(tenant_id)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _load_suspensions(now: float) -> tuple[float, dict[str, str]]:
    global _suspensions
    model = apps.get_model(SUSPENSION_MODEL)
    rows = dict(model._base_manager.values_list("suspended_tenant", "reason"))
    config = conf.current()
    _suspensions = (now + min(config.cache_ttl, config.readmit_interval), rows)
    return _suspensions


def forget_suspensions() -> None:
    """Read the suspension table again at the next registry cache miss."""
    global _suspensions
    _suspensions = None


conf._reset_hooks.append(forget_suspensions)


def tenant_database(tenant: TenantInfo | None) -> str:
    """The database alias of ``tenant`` as the registry gave it
    (``TenantInfo.database``; ``default`` for None or no tenant). An alias
    that is not in ``settings.DATABASES`` raises ``TenantDatabaseMissing``:
    the tenant is refused, never served from ``default``
    (docs/postgresql.md#a-database-per-tenant)."""
    alias = None if tenant is None else tenant.database
    if alias is None:
        return DEFAULT_DB_ALIAS
    if alias not in django_settings.DATABASES:
        raise TenantDatabaseMissing(
            f"tenant {tenant.id!r} is on database {alias!r}, which is not in "
            "settings.DATABASES: it is refused (add the alias, or move the tenant "
            "with `manage.py tenantry move`)",
            tenant_id=tenant.id,
            alias=alias,
        )
    return alias


def invalidate_tenant(tenant_id: str | None = None) -> None:
    """Forget the cached lookup of ``tenant_id`` (or of every tenant and
    custom domain when None) in this process, and this process's copy of
    the suspension table."""
    forget_suspensions()
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
    database_field: str | None,
    validator: Callable[[str], Any] | None,
) -> Callable[[str], Details | None]:
    """The function the core calls on a cache miss: ``id -> (name, settings,
    raw, suspended, database)`` or None (``suspended``:
    :func:`suspension_reason`; ``database``: the tenant's database alias,
    ``TENANT_DATABASE_FIELD`` or ``TenantInfo.database``, None for the
    default database)."""
    if validator is not None:

        def from_validator(tenant_id: str) -> Details | None:
            result = validator(tenant_id)
            if result is None or result is False:
                return None
            if result is True:
                return (None, None, None, suspension_reason(tenant_id), None)
            if isinstance(result, TenantInfo):
                return (
                    result.name,
                    result.settings,
                    result.raw,
                    suspension_reason(tenant_id),
                    result.database,
                )
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
        settings = settings if isinstance(settings, dict) else None
        database = getattr(row, database_field) if database_field else None
        return (name, settings, row, suspension_reason(tenant_id), database or None)

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


def case_twins(
    tenant_ids: list[str], *, using: str | None = None, exclude_pk: Any = None
) -> dict[str, str]:
    """``{id: the registry's id differing from it only in case}`` for each
    of ``tenant_ids`` that has such a twin in ``TENANT_MODEL`` (one query; a
    row with exactly the id is no twin). Empty without ``TENANT_MODEL``."""
    found = conf.current().tenant_model
    if found is None or not tenant_ids:
        return {}
    label, id_field = found
    rows = apps.get_model(label)._base_manager.using(using)
    if exclude_pk is not None:
        rows = rows.exclude(pk=exclude_pk)
    lowered = {str(t).lower() for t in tenant_ids}
    stored = {
        str(value)
        for value in rows.annotate(_tenantry_lower_id=Lower(id_field))
        .filter(_tenantry_lower_id__in=sorted(lowered))
        .values_list(id_field, flat=True)
    }
    twins = {}
    for tenant_id in tenant_ids:
        if tenant_id in stored:
            continue
        twin = next((s for s in sorted(stored) if s.lower() == tenant_id.lower()), None)
        if twin is not None:
            twins[tenant_id] = twin
    return twins


def invalid_tenant_id_message(tenant_id: Any) -> str:
    """What is said of a value that is not a tenant id at all."""
    return (
        f"{str(tenant_id)!r} is not a valid tenant id: use 1-128 of A-Z a-z 0-9 . _ - "
        "(not starting with . or -)."
    )


def new_tenant_id_problems(
    tenant_ids: list[Any], *, using: str | None = None, exclude_pk: Any = None
) -> dict[str, str]:
    """``{id: why it cannot be a new tenant's id}`` for each of ``tenant_ids``
    that cannot: the one rule of ``manage.py tenantry create``,
    ``full_clean()`` and every INSERT into ``TENANT_MODEL``
    (docs/registry.md#tenant-ids). Refused: a value that is not a tenant id
    at all; one differing only in case from an existing tenant's id, or from
    another of ``tenant_ids`` (hosts are case-insensitive); one no configured
    resolver can ever produce (``tenantry.addressing.unreachable``)."""
    ids = [str(t) for t in tenant_ids]
    problems = {t: invalid_tenant_id_message(t) for t in ids if not _core.is_valid_tenant_id(t)}
    valid = [t for t in dict.fromkeys(ids) if t not in problems]
    twins = case_twins(valid, using=using, exclude_pk=exclude_pk)
    first_of: dict[str, str] = {}
    for tenant_id in valid:
        twin = twins.get(tenant_id)
        if twin is not None:
            problems[tenant_id] = (
                f"tenant {twin!r} already exists; {tenant_id!r} differs only in case, and "
                "hosts are case-insensitive: pick another id."
            )
            continue
        earlier = first_of.setdefault(tenant_id.lower(), tenant_id)
        if earlier != tenant_id:
            problems[tenant_id] = (
                f"{tenant_id!r} and {earlier!r} differ only in case, and hosts are "
                "case-insensitive: they cannot both be tenants; pick another id."
            )
            continue
        why = unreachable(tenant_id)
        if why:
            problems[tenant_id] = (
                f"no configured resolver can ever produce the tenant id {tenant_id!r}: {why}. "
                "Pick an id the resolvers can produce (e.g. lowercase letters, digits and '-')."
            )
    return problems


def new_tenant_id_problem(
    tenant_id: Any, *, using: str | None = None, exclude_pk: Any = None
) -> str | None:
    """Why ``tenant_id`` cannot be a new tenant's id (:func:`new_tenant_id_problems`),
    or None when it can."""
    return new_tenant_id_problems([tenant_id], using=using, exclude_pk=exclude_pk).get(
        str(tenant_id)
    )


def domain_tenant_id_problem(tenant_id: Any, *, using: str | None = None) -> str | None:
    """Why a custom domain cannot point at ``tenant_id``, or None: not a
    tenant id, or a case twin of an existing tenant's id (a domain would
    resolve to a tenant that does not exist while the intended one does)."""
    tenant_id = str(tenant_id)
    if not _core.is_valid_tenant_id(tenant_id):
        return invalid_tenant_id_message(tenant_id)
    twin = case_twins([tenant_id], using=using).get(tenant_id)
    if twin is not None:
        return (
            f"there is no tenant {tenant_id!r} but there is {twin!r}: tenant ids are "
            f"case-sensitive and differ only in case here; did you mean {twin!r}?"
        )
    return None


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


def check_domain_row(instance: Any, using: str | None = None) -> None:
    """Refuse (``ValidationError``) a row of ``TENANT_DOMAIN_MODEL`` that
    claims a platform host (:func:`validate_custom_domain`) or points at a
    case twin of a tenant's id (:func:`domain_tenant_id_problem`). Every
    save (``pre_save``) and every INSERT (``bulk_create`` included:
    ``tenantry.lifecycle.on_insert``) comes here; rows of other models pass."""
    try:
        values = _domain_row_values(instance)
    except Exception:  # a broken config is reported by the system checks
        return
    if values is None:
        return
    domain, tenant_id = values
    validate_custom_domain(domain, tenant_id)
    # Empty: a scoped manager fills it at the INSERT (tenantry.isolation),
    # whose hook comes here again with the value.
    if tenant_id not in (None, ""):
        problem = domain_tenant_id_problem(tenant_id, using=using)
        if problem:
            raise ValidationError(
                f"{domain} cannot point at tenant {str(tenant_id)!r}: {problem}",
                code="tenant_id_case_twin",
            )


def _on_domain_save(sender: Any, instance: Any, using: Any = None, **kwargs: Any) -> None:
    check_domain_row(instance, using)


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
