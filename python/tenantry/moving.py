"""Moving a tenant to another database: ``manage.py tenantry move ID ALIAS``
(docs/postgresql.md#moving-a-tenant).

1. **Checks**, before anything changes: ``TENANT_DATABASE_FIELD`` is set,
   the tenant exists, ``ALIAS`` is in ``settings.DATABASES`` and not its
   database already, and the tenant has no row in a table that cannot live
   on another database (a constraint to a shared table:
   ``tenantry.db.router.constraint_problems``).
2. **Hold**: the tenant is refused like a suspended one, saying it is moving
   (503 pages with ``Retry-After``, error frames, refused jobs:
   ``tenantry.suspension.hold_for_move``), then ``grace`` seconds pass so
   that requests already running end and every process sees the hold
   (``TENANT_CACHE_TTL + TENANT_READMIT_INTERVAL`` by default).
3. **Copy** the rows of every tenant-owned model (``tenantry.ownership``),
   targets before the rows pointing at them, primary keys kept, and the
   many-to-many links between them; the target's sequences are reset; the
   **counts** of every model are compared.
4. **Switch**, in one transaction of the old database around one of
   ``default``: the old rows are deleted (as many as were copied, or
   nothing happens) and the registry row names the new alias.
5. **Release** the hold; audited (``tenant.moved``) and the signal
   ``tenant_moved`` sent.

A failure at any step before the switch commits removes what was copied and
releases the hold: the tenant stays on its old database, serving. The whole
copy runs with the tenant bound, so the ORM's wall and row-level security
hold every read and write to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.color import no_style
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction

from . import _core, audit, conf, lifecycle, sharing, signals, suspension
from ._core import TenantInfo
from .context import tenant_context
from .db import rls_bypass
from .db.router import constraint_problems, database_for, movable_models, moving_between
from .exceptions import TenantError, TenantSuspended
from .ownership import OwnedModel, owned_models
from .registry import invalidate_tenant, suspension_reason

__all__ = ["MoveRefused", "Moved", "move_tenant"]
R = TypeVar("R")


logger = logging.getLogger("tenantry.moving")


class MoveRefused(TenantError):
    """A move that cannot start or did not finish; the tenant is on its old
    database and serving."""

    __module__ = "tenantry"


@dataclass
class Moved:
    tenant_id: str
    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)


def _registry() -> tuple[Any, str, str]:
    config = conf.current()
    database_field = config.tenant_database_field
    if config.tenant_model is None or database_field is None:
        raise ImproperlyConfigured(
            "moving a tenant needs DJUST_CONFIG['TENANT_MODEL'] and "
            "['TENANT_DATABASE_FIELD'] (the field the move switches)"
        )
    label, id_field = config.tenant_model
    return apps.get_model(label), id_field, database_field


def _entries() -> list[OwnedModel]:
    """The models to copy, targets first (the reverse of deletion order)."""
    movable = movable_models()
    return [e for e in reversed(owned_models()) if not e.is_registry and e.model in movable]


def _links(entry: OwnedModel) -> list[tuple[Any, str]]:
    """``(through model, its column naming entry's rows)`` of the
    auto-created many-to-many tables between routed models."""
    found = []
    for m2m in entry.model._meta.local_many_to_many:
        through = m2m.remote_field.through
        if through._meta.auto_created and through in movable_models():
            found.append((through, m2m.m2m_field_name()))
    return found


def _rows(entry: OwnedModel, tenant: TenantInfo, alias: str) -> Any:
    rows = lifecycle.owned_rows(entry, tenant)
    return None if rows is None else rows.using(alias).order_by("pk")


def move_tenant(tenant_id: Any, alias: str, *, grace: float | None = None) -> Moved:
    """Move ``tenant_id``'s rows to the database ``alias`` (see the module
    docs); the per-model counts of what moved."""
    tenant_id = _core.validate_tenant_id(tenant_id)
    registry, id_field, database_field = _registry()
    if alias not in settings.DATABASES:
        raise MoveRefused(f"{alias!r} is not an alias of settings.DATABASES")
    row = registry._base_manager.filter(**{id_field: tenant_id}).first()
    if row is None:
        raise _core.TenantNotFound(f"no tenant {tenant_id!r} in {registry._meta.label}")
    invalidate_tenant(tenant_id)
    source = database_for(tenant_id)
    if source == alias:
        raise MoveRefused(f"tenant {tenant_id!r} is on database {alias!r} already")
    grants = sharing.held_by(tenant_id)
    if grants:
        raise MoveRefused(
            f"tenant {tenant_id!r} gave or received {grants} grant(s) (tenantry.sharing); "
            "grants live on the default database only: revoke them before moving it"
        )
    tenant = TenantInfo(tenant_id, raw=row)
    moved = Moved(tenant_id, source, alias)
    entries = _entries()
    with tenant_context(tenant, must_exist=False), moving_between(source, alias):
        _refuse_unmovable(tenant, source)
    held = _retrying(lambda: suspension.hold_for_move(tenant_id, alias))
    reason = suspension_reason(tenant_id) or ""
    if not held and reason.startswith(TenantSuspended.MOVING_REASON):
        raise MoveRefused(f"tenant {tenant_id!r} is being moved already ({reason})")
    switched = False
    try:
        config = conf.current()
        time.sleep(config.cache_ttl + config.readmit_interval if grace is None else grace)
        with tenant_context(tenant, must_exist=False), moving_between(source, alias):
            _copy(entries, tenant, source, alias, moved)
            _verify(entries, tenant, alias, moved)
            with transaction.atomic(using=source):
                _delete(entries, tenant, source, moved)
                with transaction.atomic(using=DEFAULT_DB_ALIAS):
                    value = "" if alias == DEFAULT_DB_ALIAS else alias
                    registry._base_manager.filter(pk=row.pk).update(**{database_field: value})
            switched = True
    except BaseException as exc:
        if not switched:
            _undo(entries, tenant, alias)
            if held:
                _release(tenant_id)
            audit.emit(
                "tenant.move_failed",
                tenant=tenant_id,
                level=logging.ERROR,
                source=source,
                target=alias,
                error=str(exc),
            )
            if isinstance(exc, Exception) and not isinstance(exc, MoveRefused):
                raise MoveRefused(
                    f"moving tenant {tenant_id!r} to {alias!r} failed and was undone "
                    f"(it stays on {source!r}): {exc}"
                ) from exc
        raise
    invalidate_tenant(tenant_id)
    if held:
        _release(tenant_id)
    audit.emit(
        "tenant.moved",
        tenant=tenant_id,
        level=logging.WARNING,
        source=source,
        target=alias,
        rows=moved.rows,
    )
    signals.tenant_moved.send(
        sender=move_tenant, tenant_id=tenant_id, source=source, target=alias, rows=moved.rows
    )
    return moved


def _release(tenant_id: str) -> None:
    """Lift the move's hold (retried: a hold left behind would answer 503
    "being moved" until an operator ran ``tenantry resume``)."""
    _retrying(lambda: suspension.release_move(tenant_id))


def _retrying(write: Callable[[], R], attempts: int = 20) -> R:
    """``write()`` (one short transaction on the hold), retried while the
    database is busy: SQLite locks whole tables while the tenant's requests
    and jobs write, and the hold must go on and come off regardless."""
    for attempt in range(attempts):
        try:
            return write()
        except OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("attempts must be at least 1")


def _refuse_unmovable(tenant: TenantInfo, source: str) -> None:
    if source != DEFAULT_DB_ALIAS:
        return  # those tables are on default only
    for model, field_ in constraint_problems():
        entry = next((e for e in owned_models() if e.model is model), None)
        rows = None if entry is None else _rows(entry, tenant, source)
        if rows is not None and rows.exists():
            raise MoveRefused(
                f"tenant {tenant.id!r} has rows in {model._meta.label}, whose field "
                f"{field_.name!r} is a database constraint to {field_.related_model._meta.label} "
                "(a shared table): set db_constraint=False on it to move this tenant"
            )


def _copy(entries: list[OwnedModel], tenant: TenantInfo, source: str, alias: str, moved: Moved):
    for entry in entries:
        rows = _rows(entry, tenant, source)
        if rows is None:
            continue
        objects = list(rows)
        moved.rows[entry.label] = len(objects)
        if not objects:
            continue
        if entry.model._meta.parents:
            for obj in objects:  # bulk_create refuses multi-table children
                obj.save_base(raw=True, using=alias, force_insert=True)
        else:
            entry.model._base_manager.using(alias).bulk_create(objects, batch_size=500)
        pks = [obj.pk for obj in objects]
        for through, column in _links(entry):
            links = list(through._base_manager.using(source).filter(**{f"{column}__in": pks}))
            through._base_manager.using(alias).bulk_create(links, batch_size=500)
    filled = [e.model for e in entries if moved.rows.get(e.label)]
    filled += [t for e in entries if moved.rows.get(e.label) for t, _ in _links(e)]
    _advance_sequences(alias, filled)


def _advance_sequences(alias: str, models_: list[Any]) -> None:
    """The target's key sequences past every kept key (never back: other
    tenants on it may be inserting). Every row counts, not only this
    tenant's: read past row-level security (audited)."""
    connection = connections[alias]
    with rls_bypass(f"tenantry.moving: key sequences of {alias!r}"):
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                return  # AUTOINCREMENT follows the largest key inserted
            if connection.vendor != "postgresql":
                for sql in connection.ops.sequence_reset_sql(no_style(), models_):
                    cursor.execute(sql)
                return
            quote = connection.ops.quote_name
            for model in models_:
                pk = model._meta.pk
                if not pk.get_internal_type().endswith("AutoField"):
                    continue
                table, column = model._meta.db_table, pk.column
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, %s), GREATEST("
                    f"nextval(pg_get_serial_sequence(%s, %s)), "
                    f"(SELECT coalesce(max({quote(column)}), 1) FROM {quote(table)})))",
                    [quote(table), column, quote(table), column],
                )


def _verify(entries: list[OwnedModel], tenant: TenantInfo, alias: str, moved: Moved) -> None:
    for entry in entries:
        rows = _rows(entry, tenant, alias)
        if rows is None:
            continue
        found = rows.count()
        if found != moved.rows.get(entry.label, 0):
            raise MoveRefused(
                f"{entry.label}: {moved.rows.get(entry.label, 0)} rows copied, "
                f"{found} found on {alias!r}"
            )


def _delete(entries: list[OwnedModel], tenant: TenantInfo, source: str, moved: Moved) -> None:
    """The old rows, children first; exactly as many as were copied (a row
    written meanwhile would be lost: then nothing is deleted)."""
    for entry in reversed(entries):
        rows = _rows(entry, tenant, source)
        if rows is None:
            continue
        pks = list(rows.values_list("pk", flat=True))
        if len(pks) != moved.rows.get(entry.label, 0):
            raise MoveRefused(
                f"{entry.label}: {len(pks)} rows on {source!r} now, "
                f"{moved.rows.get(entry.label, 0)} copied (written meanwhile)"
            )
        for through, column in _links(entry):
            through._base_manager.using(source).filter(**{f"{column}__in": pks}).delete()
        entry.model._base_manager.using(source).filter(pk__in=pks)._raw_delete(source)


def _undo(entries: list[OwnedModel], tenant: TenantInfo, alias: str) -> None:
    """Remove what a failed move copied to ``alias`` (logged, never raised:
    the original error is the one to report)."""
    try:
        with tenant_context(tenant, must_exist=False), moving_between(alias):
            for entry in reversed(entries):
                rows = _rows(entry, tenant, alias)
                if rows is None:
                    continue
                pks = list(rows.values_list("pk", flat=True))
                for through, column in _links(entry):
                    through._base_manager.using(alias).filter(**{f"{column}__in": pks}).delete()
                entry.model._base_manager.using(alias).filter(pk__in=pks)._raw_delete(alias)
    except Exception:
        logger.exception("undoing the copy of tenant %r on %r failed", tenant.id, alias)
