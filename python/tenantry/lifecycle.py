"""A tenant's lifecycle: incarnations, and a deletion that leaves nothing behind.

**Deleting a tenant** (:func:`delete_tenant`, ``manage.py tenantry delete ID
[--dry-run]``) removes, in this order:

1. the rows of every tenant-owned model (``tenantry.ownership``: scoped
   models, memberships, domains whatever their tenant field, children of
   multi-table inheritance, then the registry row), in one transaction per
   database, with the tenant bound and an audited ``rls_bypass`` limited to
   queries that name the tenant: row-level security never hides a row from
   the deletion, and a cascade that would reach another tenant's row is
   refused (``TenantMismatchError``) and rolls everything back. Afterwards
   every owned model is counted again: a row left behind rolls it back too;
2. its files (the folder ``tenants/<id>/`` of every tenant storage);
3. its Django cache entries (a new generation, ``tenantry.cache``);
4. its presence, saved state, rate-limit counts and usage, in this
   process's memory and in every configured Redis (one ``SCAN`` of
   ``<prefix>:{tenant:<id>}:*``, every primary of a cluster);

and returns a :class:`Certificate`: what went from each store, with counts.
``dry_run=True`` counts the same without removing anything.

**The registry row deleted another way** (the admin, ``instance.delete()``,
``queryset.delete()``, a cascade) runs the same deletion: the rows in the
deleting transaction, then at once the files, cache and stores, audited as
``tenant.deleted`` with the certificate. A tenant bound to a request may
delete only itself. **Changing a saved row's id** (or its incarnation) is
refused with :class:`RegistryRowProtected`, by ``save()`` and by
``QuerySet.update()``/``bulk_update()``/``bulk_create(update_conflicts=True)``:
a renamed tenant would free its old
id with data still attached to it.

**Incarnations.** Each registry row gets an incarnation when it is created
(``AbstractTenant.incarnation``, a time-ordered random string): a tenant that
is deleted and created again under the same id is a new incarnation. Data
that must outlive a deletion (an audit trail) is keyed by ``(tenant id,
incarnation)`` and so never shown to, or continued by, the next tenant with
that id. :func:`incarnation` reads it from a bound ``TenantInfo``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import models, router, transaction
from django.db.models import Q
from django.db.models.deletion import Collector, ProtectedError, RestrictedError
from django.db.models.signals import post_save, pre_delete, pre_save

from . import _core, audit, conf
from ._core import TenantInfo, TenantMismatchError, TenantNotFound, validate_tenant_id
from .context import get_current_tenant, tenant_context
from .exceptions import DeletionIncomplete, RegistryRowProtected
from .models import new_incarnation
from .ownership import OwnedModel, owned_models

__all__ = [
    "INCARNATION_FIELD",
    "Certificate",
    "RegistryRowProtected",
    "delete_tenant",
    "incarnation",
    "is_current",
    "leftovers",
    "new_incarnation",
]

logger = logging.getLogger("tenantry.lifecycle")

#: The registry model's field that holds the incarnation.
INCARNATION_FIELD = "incarnation"

#: Where the per-tenant memory stores are, in a certificate.
_THIS_PROCESS = "memory, this process"

#: Ids whose deletion is running in this context: their registry rows may go.
_erasing: ContextVar[frozenset[str]] = ContextVar("tenantry_erasing", default=frozenset())


# -- incarnations ---------------------------------------------------------------


def incarnation(tenant: Any) -> str | None:
    """The incarnation of ``tenant`` (a ``TenantInfo``, or a registry row):
    the registry row's ``incarnation`` field, else a validator's
    ``metadata["incarnation"]``, else None (no ``TENANT_MODEL``, or a model
    without the field: see docs/registry.md#incarnations)."""
    row = tenant.raw if isinstance(tenant, TenantInfo) else tenant
    if isinstance(row, models.Model):
        value = getattr(row, INCARNATION_FIELD, None)
        if value:
            return str(value)
    if isinstance(tenant, TenantInfo):
        value = tenant.metadata.get(INCARNATION_FIELD)
        if value:
            return str(value)
    return None


def is_current(tenant: TenantInfo) -> bool:
    """Whether ``tenant`` (bound when a request, socket or job started) is
    still the registry's tenant of that id: not deleted, and not deleted and
    created again since (another incarnation). Code that holds a tenant for
    long — a WebSocket, a long job — asks before acting on it. Uses the
    registry's cache (``TENANT_CACHE_TTL`` bounds what other processes
    see); without a registry every tenant is current."""
    found = _core.lookup_tenant(tenant.id)
    return found is not None and incarnation(found) == incarnation(tenant)


# -- the certificate ---------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One store's part of a deletion: ``count`` things of ``what`` in ``store``."""

    store: str
    what: str
    count: int


@dataclass
class Certificate:
    """What a deletion removed (or, ``dry_run``, would remove), per store."""

    tenant_id: str
    incarnation: str | None
    dry_run: bool
    route: str
    lines: list[Line] = field(default_factory=list)
    #: Things worth knowing that are not counts (a refusal the dry run foresaw).
    notes: list[str] = field(default_factory=list)
    #: Stores that failed (Redis down...): run the deletion again with leftovers.
    failures: list[str] = field(default_factory=list)

    def add(self, store: str, what: str, count: int) -> None:
        self.lines.append(Line(store, what, int(count)))

    def count(self, store: str, what: str | None = None) -> int:
        return sum(
            line.count
            for line in self.lines
            if line.store == store and (what is None or line.what == what)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant_id,
            "incarnation": self.incarnation,
            "dry_run": self.dry_run,
            "route": self.route,
            "removed": [
                {"store": line.store, "what": line.what, "count": line.count} for line in self.lines
            ],
            "notes": list(self.notes),
            "failures": list(self.failures),
        }

    def __str__(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        out = [
            f"{verb} {line.count}\t{line.what}"
            if line.store == "database"
            else f"{verb} {line.count}\t{line.store} ({line.what})"
            for line in self.lines
        ]
        out += [f"note: {note}" for note in self.notes]
        out += [f"FAILED: {failure}" for failure in self.failures]
        return "\n".join(out)


# -- deleting ------------------------------------------------------------------------


def _registry() -> tuple[type[models.Model] | None, str | None]:
    found = conf.current().tenant_model
    if found is None:
        return None, None
    label, id_field = found
    return apps.get_model(label), id_field


def delete_tenant(tenant_id: Any, *, dry_run: bool = False, leftovers: bool = False) -> Certificate:
    """Delete every trace of ``tenant_id`` (see the module docs) and return
    the :class:`Certificate`; ``dry_run`` counts without removing.

    With ``TENANT_MODEL`` an id without a registry row raises
    ``TenantNotFound``, unless ``leftovers``: then whatever still holds the
    id (rows a registry row deleted by raw SQL left behind) is removed.

    Call it outside a transaction you might roll back: files, cache and
    stores go as soon as the rows are deleted, and a rollback restores only
    the rows."""
    tenant_id = validate_tenant_id(tenant_id)
    registry, id_field = _registry()
    row = None
    if registry is not None:
        row = registry._base_manager.filter(**{id_field: tenant_id}).first()
        if row is None and not leftovers:
            raise TenantNotFound(
                f"no tenant {tenant_id!r} in {registry._meta.label} (to remove data still "
                "keyed by this id after its row went another way, pass leftovers=True / "
                "--leftovers)"
            )
    _refuse_another_tenant(tenant_id)
    certificate = Certificate(tenant_id, incarnation(row), dry_run, "command")
    tenant = TenantInfo(tenant_id, raw=row)
    with _erasing_ids(tenant_id):
        _delete_rows(certificate, tenant, include_registry=True)
    _clear_stores(certificate, tenant)
    if not dry_run:
        _finished(certificate)
    if certificate.failures:
        raise DeletionIncomplete(
            f"tenant {tenant_id!r}: " + "; ".join(certificate.failures) + " (run the deletion "
            "again with leftovers=True / --leftovers once the store is back)",
            certificate,
        )
    return certificate


def leftovers(tenant_id: Any) -> Certificate:
    """What still holds ``tenant_id`` although it has no registry row (a
    dry run of a deletion with ``leftovers=True``): rows, files, Redis keys
    (a Redis ``SCAN``: an operator's check, not for request paths).
    ``manage.py tenantry create`` refuses an id that has any."""
    certificate = delete_tenant(tenant_id, dry_run=True, leftovers=True)
    # What lasts: rows, files, Redis keys. The cache generation line is always
    # there, and this process's memory stores are transient (they expire, and
    # every process has its own).
    certificate.lines = [
        line
        for line in certificate.lines
        if line.count and line.store != "cache" and line.what != _THIS_PROCESS
    ]
    return certificate


def _refuse_another_tenant(tenant_id: str) -> None:
    try:
        _core.refuse_other_tenant(tenant_id, "tenantry.lifecycle.delete_tenant")
    except TenantMismatchError:
        audit.emit(
            "isolation.refused",
            tenant=get_current_tenant(),
            level=logging.WARNING,
            model="tenant",
            field="id",
            value=tenant_id,
            action="delete",
        )
        raise


@contextmanager
def _erasing_ids(tenant_id: str) -> Iterator[None]:
    token = _erasing.set(_erasing.get() | {tenant_id})
    try:
        yield
    finally:
        _erasing.reset(token)


def _conditions(entry: OwnedModel, tenant: TenantInfo) -> Q | None:
    """``Q`` matching the rows of ``entry`` that belong to ``tenant`` (any of
    its fields naming it), or None when no field can hold this id."""
    registry, id_field = _registry()
    found = Q()
    matched = False
    for owned in entry.fields:
        if owned.is_relation:
            target = owned.related_model
            row = tenant.raw
            if row is not None and isinstance(row, target):
                condition = Q(**{owned.attname: getattr(row, owned.target_field.attname)})
            elif target is registry:
                # No registry row (leftovers): the rows can only point at a row
                # that carries the id (or at none, with db_constraint=False).
                condition = Q(**{f"{owned.name}__{id_field}": tenant.id})
            else:  # a foreign key to another table keyed by tenant ids
                condition = _column(owned.target_field, owned.attname, tenant.id)
        else:
            condition = _column(owned, owned.attname, tenant.id)
        if condition is not None:
            found |= condition
            matched = True
    return found if matched else None


def _column(field: Any, attname: str, tenant_id: str) -> Q | None:
    """``Q(attname=tenant_id)``, or None when the column cannot hold the id
    (an integer column and the id ``acme``)."""
    try:
        field.get_prep_value(field.to_python(tenant_id))
    except (TypeError, ValueError, ValidationError):
        return None
    return Q(**{attname: tenant_id})


def _owned_rows(entry: OwnedModel, tenant: TenantInfo) -> Any:
    condition = _conditions(entry, tenant)
    if condition is None:
        return None
    alias = router.db_for_write(entry.model)
    return entry.model._base_manager.db_manager(alias).filter(condition)


def _delete_rows(certificate: Certificate, tenant: TenantInfo, *, include_registry: bool) -> None:
    """Every owned row of ``tenant``: deleted (or counted) with the tenant
    bound and an audited bypass; one transaction per database."""
    from .db import rls_bypass

    entries = [e for e in owned_models() if include_registry or not e.is_registry]
    aliases = sorted({router.db_for_write(e.model) for e in entries})
    owned = {e.model: e for e in owned_models()}
    counts: dict[str, int] = {}
    seen: dict[str, set[Any]] = {}
    with ExitStack() as stack:
        stack.enter_context(tenant_context(tenant, must_exist=False))
        stack.enter_context(
            rls_bypass(reason=f"tenantry.lifecycle: deleting every row of tenant {tenant.id!r}")
        )
        for alias in aliases:
            stack.enter_context(transaction.atomic(using=alias))
        for entry in entries:
            rows = _owned_rows(entry, tenant)
            if rows is None:
                continue
            collector = Collector(using=rows.db, origin=rows)
            try:
                collector.collect(_for_delete(rows))
            except (ProtectedError, RestrictedError) as exc:
                if not certificate.dry_run:
                    raise
                _dry_run_refusal(certificate, exc, owned, seen, counts, entry, rows)
                continue
            _refuse_other_tenants(collector, owned, tenant)
            if certificate.dry_run:
                _count_collected(collector, counts, seen)
            else:
                for label, number in collector.delete()[1].items():
                    counts[label] = counts.get(label, 0) + number
        if not certificate.dry_run:
            _verify_gone(entries, tenant)
    # The owned models in deletion order, then what cascades reached.
    rank = {e.label: i for i, e in enumerate(entries)}
    for label in sorted(counts, key=lambda label: (rank.get(label, len(rank)), label)):
        if counts[label]:
            certificate.add("database", label, counts[label])


def _for_delete(rows: Any) -> Any:
    """What ``QuerySet.delete()`` collects: no ordering, no select_related."""
    query = rows._chain()
    query._for_write = True
    query.query.select_for_update = False
    query.query.select_related = False
    query.query.clear_ordering(force=True)
    return query


def _refuse_other_tenants(
    collector: Collector, owned: dict[type, OwnedModel], tenant: TenantInfo
) -> None:
    """A cascade must never reach a row that names another tenant (a
    reference planted across tenants): refuse before anything is deleted."""
    for model, instances in collector.data.items():
        entry = owned.get(model)
        if entry is None or entry.is_registry:
            continue
        condition = _conditions(entry, tenant)
        pks = [obj.pk for obj in instances]
        if condition is None or not pks:
            continue
        strangers = list(
            model._base_manager.db_manager(collector.using)
            .filter(pk__in=pks)
            .exclude(condition)
            .values_list("pk", flat=True)[:5]
        )
        if strangers:
            _refuse_cascade(model, strangers, tenant)
    for rows in collector.fast_deletes:
        entry = owned.get(rows.model)
        condition = None if entry is None else _conditions(entry, tenant)
        if condition is None:
            continue
        strangers = list(rows.exclude(condition).values_list("pk", flat=True)[:5])
        if strangers:
            _refuse_cascade(rows.model, strangers, tenant)


def _refuse_cascade(model: Any, pks: list[Any], tenant: TenantInfo) -> None:
    audit.emit(
        "isolation.refused",
        tenant=tenant,
        level=logging.WARNING,
        model=model._meta.label,
        field="pk",
        value=pks,
        action="delete (cascade)",
    )
    raise TenantMismatchError(
        f"deleting tenant {tenant.id!r} would cascade to rows of {model._meta.label} that "
        f"belong to another tenant (pk {', '.join(map(repr, pks))}): a reference crosses "
        "tenants; remove it first. Nothing was deleted."
    )


def _count_collected(collector: Collector, counts: dict[str, int], seen: dict[str, set]) -> None:
    """Dry run: what this collector would delete, each row counted once
    across the steps (a later step collects rows an earlier one took)."""

    def add(label: str, pks: Iterable[Any]) -> None:
        known = seen.setdefault(label, set())
        fresh = set(pks) - known
        known |= fresh
        counts[label] = counts.get(label, 0) + len(fresh)

    for model, instances in collector.data.items():
        add(model._meta.label, (obj.pk for obj in instances))
    for rows in collector.fast_deletes:
        add(rows.model._meta.label, rows.values_list("pk", flat=True))


def _dry_run_refusal(
    certificate: Certificate,
    exc: ProtectedError | RestrictedError,
    owned: dict[type, OwnedModel],
    seen: dict[str, set],
    counts: dict[str, int],
    entry: OwnedModel,
    rows: Any,
) -> None:
    """A PROTECT/RESTRICT found by the dry run. Rows of owned models that an
    earlier step deletes do not block the real run; anything else would."""
    blocking = [
        obj
        for obj in exc.args[1]
        if type(obj) not in owned or obj.pk not in seen.get(obj._meta.label, set())
    ]
    if blocking:
        shown = ", ".join(f"{obj._meta.label} pk={obj.pk!r}" for obj in blocking[:5])
        certificate.notes.append(f"the deletion would be refused: {exc.args[0]} ({shown})")
    label = entry.label
    known = seen.setdefault(label, set())
    pks = set(rows.values_list("pk", flat=True)) - known
    known |= pks
    counts[label] = counts.get(label, 0) + len(pks)


def _verify_gone(entries: list[OwnedModel], tenant: TenantInfo) -> None:
    """Every owned model holds nothing of the tenant any more; else the
    transaction rolls back (a rule that hid rows from the deletion)."""
    for entry in entries:
        rows = _owned_rows(entry, tenant)
        if rows is not None and rows.exists():
            raise RuntimeError(
                f"rows of {entry.label} still name tenant {tenant.id!r} after its deletion "
                "(hidden from it by a database rule?): nothing was deleted"
            )


def _clear_stores(certificate: Certificate, tenant: TenantInfo) -> None:
    """Files, cache and the per-tenant stores (after the rows). A
    store that fails does not stop the others: it is named in
    ``certificate.failures``."""
    for step in (_clear_files, _clear_cache, _clear_memory, _clear_redis):
        try:
            step(certificate, tenant)
        except Exception as exc:
            logger.exception("deleting tenant %r: %s failed", tenant.id, step.__name__)
            certificate.failures.append(f"{step.__name__[7:]}: {type(exc).__name__}: {exc}")


def _clear_files(certificate: Certificate, tenant: TenantInfo) -> None:
    from .storage import tenant_storages

    with tenant_context(tenant, must_exist=False):
        for storage in tenant_storages():
            where = getattr(storage, "location", None) or type(storage).__name__
            count = storage.delete_tenant_files(dry_run=certificate.dry_run)
            certificate.add("files", f"tenants/{tenant.id}/ in {where}", count)


def _clear_cache(certificate: Certificate, tenant: TenantInfo) -> None:
    from . import cache

    try:
        cache.generation_cache()
    except LookupError:
        return  # no cache keys entries per tenant
    if not certificate.dry_run:
        cache.clear_tenant(tenant.id)
    certificate.add("cache", "generation (every entry of the tenant unreadable)", 1)
    # And out of the stores tenantry can list (local memory, Django's Redis cache).
    removed = cache.purge_tenant(tenant.id, dry_run=certificate.dry_run)
    certificate.add("cache", "entries (local-memory and Redis caches)", removed)


def _clear_memory(certificate: Certificate, tenant: TenantInfo) -> None:
    for store, where, count in _core.purge_tenant_memory(tenant.id, certificate.dry_run):
        certificate.add(store, where, count)


def _clear_redis(certificate: Certificate, tenant: TenantInfo) -> None:
    for store, where, count in _core.purge_tenant_redis(tenant.id, certificate.dry_run):
        certificate.add(store, where, count)


def _finished(certificate: Certificate) -> None:
    from .registry import invalidate_tenant

    invalidate_tenant(certificate.tenant_id)
    audit.emit(
        "tenant.deleted",
        tenant=certificate.tenant_id,
        level=logging.WARNING,
        incarnation=certificate.incarnation,
        route=certificate.route,
        certificate=certificate.as_dict()["removed"],
        failures=certificate.failures,
    )


# -- the registry row deleted or renamed another way -----------------------------------


#: ``(label_lower, id field)`` of ``TENANT_MODEL`` (or ``None``), read once
#: per config: every save, update and delete of every model asks.
_registry_key: list[tuple[str, str] | None] = []


def _registry_of(sender: Any) -> tuple[type[models.Model], str] | None:
    """``(registry model, id field)`` when ``sender`` is ``TENANT_MODEL``."""
    if not _registry_key:
        try:
            found = conf.current().tenant_model
        except Exception:  # a broken config is reported by the system checks
            return None
        _registry_key.append(None if found is None else (found[0].lower(), found[1]))
    key = _registry_key[0]
    if key is None:
        return None
    concrete = sender._meta.concrete_model
    if concrete._meta.label_lower != key[0]:
        return None
    return concrete, key[1]


conf._reset_hooks.append(_registry_key.clear)


def _on_registry_delete(sender: Any, instance: Any, using: Any = None, **kwargs: Any) -> None:
    """The registry row deleted by the admin, the ORM or a cascade: delete
    the tenant's rows (same transaction), then its files, cache and keys."""
    found = _registry_of(sender)
    if found is None:
        return
    tenant_id = str(getattr(instance, found[1]))
    if tenant_id in _erasing.get():
        return  # delete_tenant() is deleting it
    _refuse_another_tenant(tenant_id)
    certificate = Certificate(tenant_id, incarnation(instance), False, "orm")
    tenant = TenantInfo(tenant_id, raw=instance)
    with _erasing_ids(tenant_id):
        _delete_rows(certificate, tenant, include_registry=False)
    # At once, not on commit: the registry row goes with this transaction,
    # and a store left for a commit that a test (or a caller) never reaches
    # would be inherited by the next tenant with the id. A rollback restores
    # the rows, not the files and keys (a failed deletion: run it again).
    try:
        _clear_stores(certificate, tenant)
    finally:
        _finished(certificate)


def _on_registry_created(
    sender: Any,
    instance: Any,
    created: bool = False,
    raw: bool = False,
    using: Any = None,
    **kwargs: Any,
) -> None:
    """A new registry row starts with a fresh cache generation: entries
    written under its id while it had no row (a request of a deleted tenant
    still running, a registry row removed by SQL) are never read by the new
    tenant."""
    if not created or raw:
        return
    found = _registry_of(sender)
    if found is None:
        return
    _fresh_cache(str(getattr(instance, found[1])))


def _fresh_cache(tenant_id: str) -> None:
    from . import cache

    try:
        cache.generation_cache()
    except LookupError:
        return
    with tenant_context(None, must_exist=False):  # whatever the creating code had bound
        cache.clear_tenant(tenant_id)


def _guarded_fields(model: type[models.Model], id_field: str) -> set[str]:
    """Names (name, attname, ``pk``) of the fields a saved row may not change."""
    names = set()
    for name in (id_field, INCARNATION_FIELD):
        try:
            found = model._meta.get_field(name)
        except Exception:
            continue
        names |= {found.name, found.attname}
        if found.primary_key:
            names.add("pk")
    return names


def _refuse_rename(model: Any, what: str, changed: Iterable[str]) -> None:
    fields = ", ".join(sorted(set(changed)))
    audit.emit(
        "isolation.refused",
        tenant=get_current_tenant(),
        level=logging.WARNING,
        model=model._meta.label,
        field=fields,
        action=what,
    )
    raise RegistryRowProtected(
        f"{model._meta.label}.{what} would change {fields} of a saved tenant: a tenant's id "
        "and incarnation never change (the old id would be freed with its data still "
        "attached to it). Create a new tenant instead, and delete the old one with "
        "manage.py tenantry delete <id>."
    )


def _on_registry_save(
    sender: Any,
    instance: Any,
    raw: bool = False,
    using: Any = None,
    update_fields: Any = None,
    **kwargs: Any,
) -> None:
    """A saved registry row keeps its id and incarnation; a new one gets a
    new incarnation, whatever the code passed (a copy of an old row, the
    admin's "save as new")."""
    if raw:  # loaddata: fixtures are trusted
        return
    found = _registry_of(sender)
    if found is None:
        return
    model, id_field = found
    guarded = _guarded_fields(model, id_field)
    if update_fields is not None and not guarded & set(update_fields):
        return
    names = [n for n in (id_field, INCARNATION_FIELD) if n in {f.name for f in model._meta.fields}]
    stored = None
    if instance.pk is not None:
        stored = model._base_manager.using(using).filter(pk=instance.pk).values_list(*names).first()
    if stored is None:  # this save creates the row
        if INCARNATION_FIELD in names:
            setattr(instance, INCARNATION_FIELD, new_incarnation())
        return
    changed = [
        name
        for name, old in zip(names, stored, strict=True)
        if str(getattr(instance, name)) != str(old)
    ]
    if changed:
        _refuse_rename(model, "save()", changed)


_plain_update = models.QuerySet.update


def _update(self: models.QuerySet, **kwargs: Any) -> int:
    """``QuerySet.update()`` (and ``bulk_update()``, which calls it) may not
    change the id or incarnation of registry rows."""
    if kwargs:
        found = _registry_of(self.model)
        if found is not None:
            changed = _guarded_fields(*found) & kwargs.keys()
            if changed:
                _refuse_rename(self.model, "update()", changed)
    return _plain_update(self, **kwargs)


_update.alters_data = True  # type: ignore[attr-defined]

_plain_bulk_create = models.QuerySet.bulk_create


def _bulk_create(
    self: models.QuerySet,
    objs: Any,
    batch_size: Any = None,
    ignore_conflicts: bool = False,
    update_conflicts: bool = False,
    update_fields: Any = None,
    unique_fields: Any = None,
) -> Any:
    """``bulk_create(update_conflicts=True, update_fields=[...])`` is an
    update of the conflicting rows: it may not change a registry row's id
    or incarnation either."""
    if update_conflicts and update_fields:
        found = _registry_of(self.model)
        if found is not None:
            changed = _guarded_fields(*found) & set(update_fields)
            if changed:
                _refuse_rename(self.model, "bulk_create(update_conflicts=True)", changed)
    return _plain_bulk_create(
        self, objs, batch_size, ignore_conflicts, update_conflicts, update_fields, unique_fields
    )


_bulk_create.alters_data = True  # type: ignore[attr-defined]


def install() -> None:
    """Connect the registry guards (``AppConfig.ready``)."""
    pre_delete.connect(_on_registry_delete, dispatch_uid="tenantry.lifecycle.pre_delete")
    pre_save.connect(_on_registry_save, dispatch_uid="tenantry.lifecycle.pre_save")
    post_save.connect(_on_registry_created, dispatch_uid="tenantry.lifecycle.post_save")
    # Wrap what is there now (another guard may have wrapped Django's first):
    # the chain stays whole whatever the order of installation.
    global _plain_update, _plain_bulk_create
    if models.QuerySet.update is not _update:
        _plain_update = models.QuerySet.update
        models.QuerySet.update = _update  # type: ignore[method-assign]
    if models.QuerySet.bulk_create is not _bulk_create:
        _plain_bulk_create = models.QuerySet.bulk_create
        models.QuerySet.bulk_create = _bulk_create  # type: ignore[method-assign]
