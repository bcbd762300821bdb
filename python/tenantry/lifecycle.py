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
``tenant.deleted`` with the certificate; a store that failed is raised as
``DeletionIncomplete`` once Django's ``Collector.delete()`` is over (the
admin shows it). A tenant bound to a request may delete only itself.

**A registry row created by any route** (``save()``, ``create()``,
``get_or_create()``, ``update_or_create()``, ``bulk_create()`` with or
without conflicts, ``_insert()``, async forms, forms, the admin, the
command) is seen at Django's SQL insert compiler (:func:`on_insert`, called
by ``tenantry.wall``): what its id still holds is removed first
(:func:`remove_leftovers`), the row gets a new incarnation, and the id
starts afresh (cache generation, memory stores, registry cache).

**Changing a saved row's id** (or its incarnation) is refused with
:class:`RegistryRowProtected`, by ``save()`` and by
``QuerySet.update()``/``bulk_update()``/``bulk_create(update_conflicts=True)``:
a renamed tenant would free its old id with data still attached to it.

**Incarnations.** Each registry row gets an incarnation when it is created
(``AbstractTenant.incarnation``, a time-ordered random string): a tenant that
is deleted and created again under the same id is a new incarnation. Data
that must outlive a deletion (an audit trail) is keyed by ``(tenant id,
incarnation)`` and so never shown to, or continued by, the next tenant with
that id. :func:`incarnation` reads it from a bound ``TenantInfo``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models, router, transaction
from django.db.models import Q
from django.db.models.deletion import Collector, ProtectedError, RestrictedError
from django.db.models.signals import pre_delete, pre_save
from django.db.models.sql.query import Query

from . import _core, access, audit, cache, conf, isolation, sharing, signals, suspension
from ._core import TenantInfo, TenantMismatchError, TenantNotFound, validate_tenant_id
from .context import get_current_tenant, tenant_context
from .db.scope import rls_bypass
from .exceptions import DeletionIncomplete, RegistryRowProtected
from .models import new_incarnation
from .ownership import OwnedModel, owned_models
from .registry import check_domain_row, invalidate_tenant, new_tenant_id_problems
from .storage import tenant_storages

__all__ = [
    "INCARNATION_FIELD",
    "Certificate",
    "RegistryRowProtected",
    "delete_tenant",
    "incarnation",
    "is_current",
    "leftovers",
    "new_incarnation",
    "owned_rows",
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
    dry run of a deletion with ``leftovers=True``, of the stores that last):
    rows, files, Redis keys (a Redis ``SCAN``: an operator's check, not for
    request paths). A new registry row removes them first
    (:func:`on_insert`). A store that cannot be read raises its own error
    (``BackendUnavailable``). With a tenant bound, only its own
    (``TenantMismatchError``: another tenant's figures are an operator's)."""
    return _leftovers(_core.refuse_other_tenant(tenant_id, "lifecycle.leftovers"), dry_run=True)


def _leftovers(tenant_id: str, *, dry_run: bool, row: Any = None) -> Certificate:
    """``row``: the new registry row, when its primary key is known."""
    certificate = Certificate(tenant_id, None, dry_run, "create")
    tenant = TenantInfo(tenant_id, raw=row)
    # The cache gets a new generation and this process's memory stores are
    # emptied when the id is created again (they are transient: they expire,
    # and every process has its own): only what lasts is here. The store
    # most likely to fail goes first; a failure is raised, not noted.
    with tenant_context(None, must_exist=False):  # whatever the creating code had bound
        _clear_stores(certificate, tenant, (_clear_redis, _clear_files), strict=True)
        _delete_rows(
            certificate,
            tenant,
            include_registry=False,
            purpose="counting" if dry_run else "removing the leftovers of",
        )
    certificate.lines = [line for line in certificate.lines if line.count]
    return certificate


def _refuse_another_tenant(
    tenant_id: str, action: str = "delete", what: str = "tenantry.lifecycle.delete_tenant"
) -> None:
    try:
        _core.refuse_other_tenant(tenant_id, what)
    except TenantMismatchError:
        access.refuse(
            "isolation",
            "isolation.refused",
            get_current_tenant(),
            level=logging.WARNING,
            model="tenant",
            field="id",
            value=tenant_id,
            action=action,
        )
        raise


def on_update(query: Any, compiler: Any) -> None:
    """Before any UPDATE of the registry table (``tenantry.wall`` hooks
    Django's SQL update compiler: ``save()``, ``update()``,
    ``bulk_update()``, ``update_or_create()``, upserts, the admin, their
    async forms): with a tenant bound, only that tenant's own row may change,
    as only it may be deleted. The rows the UPDATE would reach are read
    first (one query; registry writes are rare), and one of another tenant
    refuses the whole statement, loudly (``TenantMismatchError``)."""
    found = _registry_of(query.model)
    if found is None or get_current_tenant() is None:
        return
    model, id_field = found
    if model._meta.apps is not apps:
        return  # a migration's historical model
    reached = models.QuerySet(model, query=query.chain(klass=Query)).using(compiler.using)
    for tenant_id in reached.values_list(id_field, flat=True).distinct()[:2]:
        _refuse_another_tenant(
            str(tenant_id), action="update", what=f"an update of {model._meta.label}"
        )


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
                # The row's key (an explicit primary key of a new registry row:
                # rows a straggler left pointing at it, db_constraint=False).
                condition = Q(**{owned.attname: getattr(row, owned.target_field.attname)})
            elif target is registry and owned.target_field.name != id_field:
                # No registry row (leftovers): the rows can only point at a row
                # that carries the id (or at none, with db_constraint=False).
                condition = Q(**{f"{owned.name}__{id_field}": tenant.id})
            else:  # the column holds tenant ids (to_field=<the id field>, or another table's)
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


def owned_rows(entry: OwnedModel, tenant: TenantInfo) -> Any:
    """The rows of ``entry`` that are ``tenant``'s (any of its tenant fields
    naming it) through the plain base manager, or None when no field can
    hold the id: what a deletion removes and an export writes
    (``tenantry.transfer``). Read them with the tenant bound."""
    return _owned_rows(entry, tenant)


def _owned_rows(entry: OwnedModel, tenant: TenantInfo) -> Any:
    condition = _conditions(entry, tenant)
    if condition is None:
        return None
    alias = router.db_for_write(entry.model)
    return entry.model._base_manager.db_manager(alias).filter(condition)


def _delete_rows(
    certificate: Certificate,
    tenant: TenantInfo,
    *,
    include_registry: bool,
    purpose: str = "deleting",
) -> None:
    """Every owned row of ``tenant``: deleted (or counted) with the tenant
    bound and an audited bypass; one transaction per database."""
    entries = [e for e in owned_models() if include_registry or not e.is_registry]
    aliases = sorted({router.db_for_write(e.model) for e in entries})
    owned = {e.model: e for e in owned_models()}
    counts: dict[str, int] = {}
    seen: dict[str, set[Any]] = {}
    with ExitStack() as stack:
        stack.enter_context(tenant_context(tenant, must_exist=False))
        stack.enter_context(
            rls_bypass(reason=f"tenantry.lifecycle: {purpose} every row of tenant {tenant.id!r}")
        )
        for alias in aliases:
            stack.enter_context(transaction.atomic(using=alias))
        if not certificate.dry_run:
            _clear_grants(certificate)  # counted here: the rows' deletion would not count them
            # Other tenants' references made through write grants: cleared
            # first, so they neither block the deletion nor are deleted by it.
            for entry in entries:
                rows = _owned_rows(entry, tenant)
                if rows is not None:
                    pks = list(rows.values_list("pk", flat=True))
                    sharing.detach_references(entry.model, pks, tenant, rows.db)
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
    access.refuse(
        "isolation",
        "isolation.refused",
        tenant,
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


def _clear_stores(
    certificate: Certificate, tenant: TenantInfo, steps: Any = None, *, strict: bool = False
) -> None:
    """Files, cache and the per-tenant stores (after the rows). A
    store that fails does not stop the others: it is named in
    ``certificate.failures`` (``strict``: its error is raised)."""
    for step in steps or (_clear_files, _clear_cache, _clear_memory, _clear_redis):
        if strict:
            step(certificate, tenant)
            continue
        try:
            step(certificate, tenant)
        except Exception as exc:
            logger.exception("deleting tenant %r: %s failed", tenant.id, step.__name__)
            certificate.failures.append(f"{step.__name__[7:]}: {type(exc).__name__}: {exc}")


def _clear_files(certificate: Certificate, tenant: TenantInfo) -> None:
    with tenant_context(tenant, must_exist=False):
        storages = tenant_storages()
        for storage in storages:
            where = getattr(storage, "location", None) or type(storage).__name__
            count = storage.delete_tenant_files(dry_run=certificate.dry_run)
            if count:
                certificate.add("files", f"tenants/{tenant.id}/ in {where}", count)
        if not certificate.count("files"):
            certificate.add("files", f"tenants/{tenant.id}/ in {len(storages)} tenant storages", 0)


def _clear_cache(certificate: Certificate, tenant: TenantInfo) -> None:
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


def _clear_grants(certificate: Certificate) -> None:
    """Remove every grant the tenant gave or received, counted on the
    certificate; as trusted code (no tenant bound: ``sharing.clear`` refuses
    a bound tenant)."""
    with tenant_context(None, must_exist=False):
        removed = sharing.clear(certificate.tenant_id)
    if removed:
        certificate.add("database", "tenantry.Grant", removed)


def _finished(certificate: Certificate) -> None:
    # A suspension is the operator's note on this incarnation: it goes with it.
    suspension.clear(certificate.tenant_id)
    # Grants it gave or received go too (docs/collaboration.md#deleting-a-tenant).
    if not certificate.dry_run:
        _clear_grants(certificate)
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
    signals.tenant_deleted.send(
        sender=delete_tenant, tenant_id=certificate.tenant_id, incarnation=certificate.incarnation
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

#: ``[TENANT_DOMAIN_MODEL's label, lowercased, or None]`` once read.
_domain_key: list[str | None] = []


def _domain_model_label() -> str | None:
    if not _domain_key:
        try:
            label = conf.current().domain_model
        except Exception:  # a broken config is reported by the system checks
            return None
        _domain_key.append(label.lower() if label else None)
    return _domain_key[0]


conf._reset_hooks.append(_domain_key.clear)


def _on_registry_delete(sender: Any, instance: Any, using: Any = None, **kwargs: Any) -> None:
    """The registry row deleted by the admin, the ORM or a cascade: delete
    the tenant's rows (same transaction), then its files, cache and keys. A
    store that failed is reported by the ``Collector.delete()`` that sent
    this signal, once the rows are deleted (:func:`_collector_delete`)."""
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
    if certificate.failures:
        unfinished = _unfinished.get()
        if unfinished is None:  # the signal sent by other code than a Collector
            raise _incomplete([certificate])
        unfinished.append(certificate)


#: Certificates with failures of the registry rows the running
#: ``Collector.delete()`` deleted (``None`` outside one).
_unfinished: ContextVar[list[Certificate] | None] = ContextVar("tenantry_unfinished", default=None)


def _incomplete(certificates: list[Certificate]) -> DeletionIncomplete:
    failed = "; ".join(f"tenant {c.tenant_id!r}: " + "; ".join(c.failures) for c in certificates)
    ids = " ".join(c.tenant_id for c in certificates)
    return DeletionIncomplete(
        f"{failed} (the rows were deleted; once the store is back run manage.py tenantry "
        f"delete --leftovers {ids}, one id at a time)"
        if len(certificates) > 1
        else f"{failed} (the rows were deleted; once the store is back run manage.py "
        f"tenantry delete {ids} --leftovers)",
        certificates[0],
        certificates,
    )


_plain_collector_delete = Collector.delete


def _collector_delete(self: Collector) -> Any:
    """``Collector.delete()`` — every ORM deletion: ``Model.delete()``,
    ``QuerySet.delete()``, their async forms, cascades, the admin — removes
    the grants of the rows it deletes (``sharing.forget_deleted_rows``) and raises
    ``DeletionIncomplete`` once its transaction is over when a store failed
    while a registry row was deleted: never a silent success."""
    token = _unfinished.set([])
    try:
        # One transaction: a deletion refused (a guard's pre_delete) or rolled
        # back keeps the grants of its rows.
        with transaction.atomic(using=self.using, savepoint=False):
            sharing.forget_deleted_rows(self)
            result = _plain_collector_delete(self)
        unfinished = _unfinished.get()
    finally:
        _unfinished.reset(token)
    if unfinished:
        raise _incomplete(unfinished)
    return result


# -- a registry row created by any route -------------------------------------------------


#: Inside ``Model.save_base(raw=True)`` (``loaddata``): fixtures are trusted.
_loading_fixture: ContextVar[bool] = ContextVar("tenantry_loading_fixture", default=False)


@contextmanager
def loading_fixture() -> Iterator[None]:
    """A ``save_base(raw=True)`` (``loaddata``) is running (``tenantry.wall``):
    a registry row it inserts keeps the fixture's incarnation, and its id is
    not checked for leftovers (a restore loads the tenant's rows too)."""
    token = _loading_fixture.set(True)
    try:
        yield
    finally:
        _loading_fixture.reset(token)


def _new_tenant_id(obj: Any, field: Any) -> str | None:
    """The id a new registry row is inserted with (``None`` when it is not a
    valid tenant id: nothing can hold data under it). An expression (the
    database would compute the id) is refused: the id must be known."""
    value = obj.__dict__.get(field.attname)
    if hasattr(value, "resolve_expression"):
        raise RegistryRowProtected(
            f"{type(obj)._meta.label}.{field.name} of a new tenant is an expression "
            f"({value!r}): give the id as a plain value, so it can be checked for data "
            "a deleted tenant left under it"
        )
    if value is None:
        return None
    value = str(value)
    return value if _core.is_valid_tenant_id(value) else None


def remove_leftovers(tenant_id: str, row: Any = None) -> Certificate | None:
    """Before a new registry row under ``tenant_id``: remove what the id
    still holds — rows, files, Redis keys a request of a deleted tenant
    wrote after the deletion, or a deletion that failed half-way left, and
    rows pointing at the new ``row``'s primary key when the code chose it — so
    the new tenant inherits none of it. Returns the certificate (also
    audited as ``tenant.leftovers_removed``), or None when the id held
    nothing (the usual case: one dry run). A store that cannot be checked or
    cleared raises its error (``BackendUnavailable``: 503 in a view) and the
    row is not created."""
    if not _leftovers(tenant_id, dry_run=True, row=row).lines:
        return None
    removed = _leftovers(tenant_id, dry_run=False, row=row)
    audit.emit(
        "tenant.leftovers_removed",
        tenant=tenant_id,
        level=logging.WARNING,
        route="create",
        certificate=removed.as_dict()["removed"],
    )
    return removed


def on_insert(query: Any, compiler: Any) -> Callable[[], None] | None:
    """Before any INSERT into the registry table (``tenantry.wall`` hooks
    Django's SQL insert compiler, so ``save()``, ``create()``,
    ``get_or_create()``, ``update_or_create()``, ``bulk_create()`` with or
    without conflicts, their async forms, the admin and a bare ``_insert()``
    all come here): what each new id still holds is removed and the id starts
    afresh (:func:`remove_leftovers`, :func:`_fresh_start`), and each new row
    gets a new incarnation, whatever the code passed. Returns what runs once
    the INSERT went through (the registry forgets its answer for the ids)."""
    found = _registry_of(query.model)
    if not query.objs or _loading_fixture.get() or query.model._meta.apps is not apps:
        return None  # (a migration's historical model: the operator's own data step)
    if found is None:
        if _domain_model_label() == query.model._meta.label_lower:
            for obj in query.objs:  # bulk_create does not send pre_save
                check_domain_row(obj, compiler.using)
        return None
    model, id_field = found
    field = model._meta.get_field(id_field)
    if field not in query.fields:
        raise RegistryRowProtected(
            f"an INSERT into {model._meta.label} without {field.name}: the database would "
            "choose the id of a new tenant; give it, so it can be checked for data a deleted "
            "tenant left under it"
        )
    wanted = [(obj, _new_tenant_id(obj, field)) for obj in query.objs]
    # An id that has a row is not created by this INSERT: it fails on the
    # unique id, or is the conflict an upsert updates or ignores.
    named = {tenant_id for _, tenant_id in wanted if tenant_id is not None}
    taken = set()
    if named:
        taken = {
            str(value)
            for value in model._base_manager.using(compiler.using)
            .filter(**{f"{field.name}__in": sorted(named)})
            .values_list(field.name, flat=True)
        }
    _refuse_unusable_ids(model, field, query.objs, compiler.using, taken)
    new = sorted(named - taken)
    for tenant_id in new:
        remove_leftovers(tenant_id, _explicit_key(model, wanted, tenant_id, compiler.using))
        _fresh_start(tenant_id)
    try:
        stamp = model._meta.get_field(INCARNATION_FIELD)
    except FieldDoesNotExist:
        stamp = None
    if stamp is not None:
        if stamp not in query.fields:  # ``_insert(fields=[...])`` without it
            query.fields = [*query.fields, stamp]
        for obj, tenant_id in wanted:
            if tenant_id not in taken:
                setattr(obj, stamp.attname, new_incarnation())
    if not new:
        return None

    def created() -> None:
        for tenant_id in new:
            invalidate_tenant(tenant_id)
        for tenant_id in new:
            signals.tenant_created.send(sender=model, tenant_id=tenant_id)

    return created


def _refuse_unusable_ids(
    model: Any, field: Any, objs: Any, using: str | None, taken: set[str] | None = None
) -> None:
    """Every new id written to the registry is held to the rule of
    ``manage.py tenantry create`` (``registry.new_tenant_id_problems``): a
    valid tenant id, no case twin, one a configured resolver can produce.
    ``InvalidTenantId`` names each refused id and why; nothing is written.
    ``taken``: the ids of ``objs`` that have a row (not new), when known.
    Called before ``save()``'s and ``bulk_create()``'s own transaction (so a
    refusal leaves the caller's transaction usable), and again by the
    INSERT hook, which every other route reaches."""
    values = [
        str(value)
        for obj in objs
        if (value := obj.__dict__.get(field.attname)) is not None
        and not hasattr(value, "resolve_expression")
    ]
    if taken is None:
        taken = {
            str(v)
            for v in model._base_manager.using(using)
            .filter(**{f"{field.name}__in": sorted(set(values))})
            .values_list(field.name, flat=True)
        }
    problems = new_tenant_id_problems([v for v in values if v not in taken], using=using)
    if problems:
        raise _core.InvalidTenantId(
            f"{model._meta.label}: " + " ".join(problems[t] for t in sorted(problems))
        )


def _explicit_key(
    model: Any, wanted: list[tuple[Any, str | None]], tenant_id: str, using: str
) -> Any:
    """The new row of ``tenant_id`` when the code gave its primary key and no
    row has it: rows that point at that key (left by a straggler,
    ``db_constraint=False``) are leftovers too. None when the database
    chooses the key (a fresh one), or when a live tenant's row has it (the
    INSERT fails on it, or an upsert updates that row: its rows are its own)."""
    pk_name = model._meta.pk.attname
    for obj, wanted_id in wanted:
        key = obj.__dict__.get(pk_name)
        if wanted_id == tenant_id and key is not None:
            if model._base_manager.using(using).filter(pk=key).exists():
                return None
            return obj
    return None


def _fresh_start(tenant_id: str) -> None:
    """A new registry row starts with nothing written under its id while it
    had none (a request of a deleted tenant still running): a new cache
    generation, this process's memory stores emptied (other processes' empty
    on their own: see docs/registry.md). Before the INSERT: a cache that
    cannot take the new generation refuses the creation."""
    with tenant_context(None, must_exist=False):  # whatever the creating code had bound
        try:
            cache.generation_cache()
        except LookupError:
            pass  # no cache keeps entries per tenant
        else:
            cache.clear_tenant(tenant_id)
        # Unbound too: the core refuses a bound tenant naming another.
        _core.purge_tenant_memory(tenant_id, False)
        # A suspension of a deleted tenant with this id is not the new one's,
        # nor a grant it gave or received.
        suspension.clear(tenant_id)
        sharing.clear(tenant_id)


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
    access.refuse(
        "isolation",
        "isolation.refused",
        get_current_tenant(),
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
    """A saved registry row keeps its id and incarnation. (A new one gets a
    new incarnation from :func:`on_insert`, whatever the code passed.)"""
    if isolation.raw_save_trusted(raw):  # loaddata with no tenant bound
        return
    found = _registry_of(sender)
    if found is None:
        return
    model, id_field = found
    guarded = _guarded_fields(model, id_field)
    if update_fields is not None and not guarded & set(update_fields):
        return
    if instance._state.adding and model._meta.apps is apps:
        _refuse_unusable_ids(model, model._meta.get_field(id_field), [instance], using)
    if instance.pk is None:
        return  # this save creates the row
    names = [n for n in (id_field, INCARNATION_FIELD) if n in {f.name for f in model._meta.fields}]
    stored = model._base_manager.using(using).filter(pk=instance.pk).values_list(*names).first()
    if stored is None:  # this save creates the row
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


def _write_db(queryset: models.QuerySet) -> str:
    return queryset._db or router.db_for_write(queryset.model)


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
    found = _registry_of(self.model)
    if found is not None:
        if update_conflicts and update_fields:
            changed = _guarded_fields(*found) & set(update_fields)
            if changed:
                _refuse_rename(self.model, "bulk_create(update_conflicts=True)", changed)
        if found[0]._meta.apps is apps:
            objs = list(objs)
            _refuse_unusable_ids(
                found[0], found[0]._meta.get_field(found[1]), objs, _write_db(self)
            )
    elif _domain_model_label() == self.model._meta.label_lower:
        objs = list(objs)
        for obj in objs:  # before bulk_create's transaction, as save()'s pre_save
            check_domain_row(obj, _write_db(self))
    return _plain_bulk_create(
        self, objs, batch_size, ignore_conflicts, update_conflicts, update_fields, unique_fields
    )


_bulk_create.alters_data = True  # type: ignore[attr-defined]


def install() -> None:
    """Connect the registry guards (``AppConfig.ready``; the insert hook is
    called by ``tenantry.wall``'s SQL insert compiler)."""
    pre_delete.connect(_on_registry_delete, dispatch_uid="tenantry.lifecycle.pre_delete")
    pre_save.connect(_on_registry_save, dispatch_uid="tenantry.lifecycle.pre_save")
    # Wrap what is there now (another guard may have wrapped Django's first):
    # the chain stays whole whatever the order of installation.
    global _plain_update, _plain_bulk_create, _plain_collector_delete
    if models.QuerySet.update is not _update:
        _plain_update = models.QuerySet.update
        models.QuerySet.update = _update  # type: ignore[method-assign]
    if models.QuerySet.bulk_create is not _bulk_create:
        _plain_bulk_create = models.QuerySet.bulk_create
        models.QuerySet.bulk_create = _bulk_create  # type: ignore[method-assign]
    if Collector.delete is not _collector_delete:
        _plain_collector_delete = Collector.delete
        Collector.delete = _collector_delete  # type: ignore[method-assign]
