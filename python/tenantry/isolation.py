"""The ORM isolation rules (docs/querysets.md#isolation-rules-writes-and-relations), in one place.

What a model holds and refers to comes from the model graph
(:mod:`tenantry.graph`): scoped models (a ``TenantManager``, a proxy of one,
a multi-table child of one), and every model's references to them
(ForeignKey, OneToOne, the ends of many-to-many link tables,
GenericForeignKey). While a tenant is *enforced* (bound, or a scoped
queryset's own tenant while its write runs; not inside ``rls_bypass()``):

* **Rows**: a write or delete never reaches another tenant's row. Every
  UPDATE and DELETE of a scoped table (and of a link table) is held to the
  tenant's rows in its own WHERE clause (:func:`on_update`,
  :func:`on_delete`, called by the SQL compilers); ``save()``/``delete()`` of
  an instance whose keys name another tenant's row (its primary key, or any
  parent's key under multi-table inheritance) is refused first, with a
  message (:func:`_on_save`, :func:`_on_delete`).
* **The tenant column**: every INSERT and UPDATE writes the enforced
  tenant's value (filled on INSERT when empty); another value is refused.
  Tenant-field arguments (``create``, ``get_or_create``, ``update_or_create``,
  ``update``, ``create_for_tenant``) go through :func:`tenant_kwargs`, which
  takes the field by name, attname or instance.
* **References**: a value written to a reference to a scoped model must name
  an *existing* row of the tenant (:func:`check_references`; one query per
  relation field and per content type for a whole write, none for a
  reference that is unchanged since the row was read, or whose related
  instance was read and is cached on the row).
* ``bulk_create(update_conflicts=True)`` needs the tenant field among
  ``unique_fields``; ``raw()`` is refused through a scoped manager.

Reads: the base manager of a scoped model keeps to the tenant enforced when
its query runs (:class:`BoundTenant`), so ``refresh_from_db()``, related
descriptors, generic foreign keys and prefetches never read another
tenant's row.

With no tenant bound, or inside ``rls_bypass(reason=...)`` (audited), code
is trusted: nothing is compared. Every refusal raises
:class:`TenantMismatchError` and is audited as ``isolation.refused``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.apps import apps
from django.core.exceptions import EmptyResultSet, FullResultSet, ValidationError
from django.db import models
from django.db.models import Case, F, Q, Value
from django.db.models.constants import OnConflict
from django.db.models.functions import Cast
from django.db.models.lookups import Exact, Lookup
from django.db.models.signals import class_prepared, m2m_changed, post_save, pre_delete, pre_save
from django.db.models.sql.constants import MULTI
from django.db.models.sql.query import Query
from django.db.models.sql.where import AND, NothingNode
from django.utils import timezone

from . import access, conf, graph
from ._core import TenantInfo, TenantMismatchError, TenantNotSetError
from .context import get_current_tenant
from .db import grants
from .db.scope import BYPASS, bypassing, queryset_scope, scoped_as
from .graph import Guard, Scope, guard_of, owner_of, scope_of

__all__ = [
    "BoundTenant",
    "SharedWith",
    "check_conflict_target",
    "check_instances",
    "check_references",
    "check_reverse_add",
    "check_shared_delete",
    "check_update",
    "checked_write",
    "column_value",
    "enforced_tenant",
    "install",
    "on_delete",
    "on_insert",
    "on_update",
    "owner_of",
    "reading_tenant",
    "refuse",
    "refuse_raw",
    "refuse_read_only",
    "remember",
    "saving",
    "scope_of",
    "tenant_field_value",
    "tenant_kwargs",
    "write_tenant",
    "writing",
    "writing_shared",
]

#: Where an instance remembers its guarded columns (keys, tenant,
#: references) as loaded or last saved.
ORIGIN = "_tenantry_origin"
_MISSING = object()
_EMPTY = (None, "")

#: The tenant a scoped queryset is writing for, while its write runs.
_writing: ContextVar[TenantInfo | None] = ContextVar("tenantry_writing", default=None)
#: What the running write call is called in refusals ("objects.update()").
_action: ContextVar[str | None] = ContextVar("tenantry_action", default=None)
#: References a write call checked before its SQL runs: (tenant id,
#: {field: keys}); its statements do not look them up again.
_approved: ContextVar[tuple[str, dict[Any, set[Any]]] | None] = ContextVar(
    "tenantry_approved", default=None
)
#: A ``with_shared()`` queryset's update() is running: its UPDATE is held
#: to the tenant's rows and the rows granted to it for writing.
_shared_write: ContextVar[bool] = ContextVar("tenantry_shared_write", default=False)
#: Where ``save()`` of another tenant's row marks that a write grant admits
#: it (the tenant's id), for its UPDATE (docs/collaboration.md#writing-through-a-grant).
GRANTED = "_tenantry_granted"
#: The instance whose ``save()`` is writing its table now (Model._save_table).
_saving: ContextVar[models.Model | None] = ContextVar("tenantry_saving", default=None)


# -- the tenant the rules hold writes to ----------------------------------------------


def enforced_tenant() -> TenantInfo | None:
    """The tenant writes and base-manager reads are held to now: a scoped
    queryset's own tenant while its write runs, else the bound one; None
    with no tenant bound or inside ``rls_bypass()`` (trusted code)."""
    if bypassing():
        return None
    return _writing.get() or get_current_tenant()


# -- values and keys ------------------------------------------------------------


def tenant_field_value(
    model: type[models.Model], field_name: str, tenant: TenantInfo
) -> tuple[str, Any]:
    """The ``(name, value)`` that pins ``model.field_name`` to ``tenant``: the
    tenant's row (``tenant.raw``) for a foreign key to its model, else the id
    on the column (``attname``)."""
    field = model._meta.get_field(field_name)
    if field.many_to_one or field.one_to_one:
        raw = tenant.raw
        if raw is not None and isinstance(raw, field.related_model):
            return field.name, raw
    return field.attname, tenant.id


def _expected(field: Any, tenant: TenantInfo) -> str:
    """What ``field``'s column holds for rows of ``tenant``, as a string."""
    if field.many_to_one or field.one_to_one:
        raw = tenant.raw
        if raw is not None and isinstance(raw, field.related_model):
            return str(getattr(raw, field.target_field.attname))
    return tenant.id


def column_value(field: Any, tenant: TenantInfo) -> Any:
    """The value to compare ``field``'s column with for ``tenant``'s rows."""
    if field.many_to_one or field.one_to_one:
        raw = tenant.raw
        if raw is not None and isinstance(raw, field.related_model):
            return getattr(raw, field.target_field.attname)
    return tenant.id


def _key(field: Any, value: Any) -> str | None:
    """A column value (or a related instance) as a comparable string; None
    for no value. Expressions cannot be checked before the database runs them."""
    if value is None:
        return None
    if isinstance(value, models.Model):
        target = field.target_field.attname if field.is_relation else "pk"
        value = getattr(value, target, None)
        return None if value is None else str(value)
    if hasattr(value, "resolve_expression"):
        raise _Unverifiable(value)
    return str(value)


class _Row:
    """How a refusal shows a row it only knows by key: ``<app.Folder pk=2>``."""

    def __init__(self, label: str, key: Any) -> None:
        self.label, self.key = label, key

    def __repr__(self) -> str:
        return f"<{self.label} pk={self.key!r}>"


class _Unverifiable(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


def _same(field: Any, value: Any, expected: str) -> bool:
    try:
        return _key(field, value) == expected
    except _Unverifiable:
        return False


# -- the deferred tenant condition ------------------------------------------------------


#: What a query's reads keep to (``tenantry.joins``): where a query keeps
#: it, and its values (a ``TenantInfo`` is a fourth: that tenant).
READS = "tenantry_reads"
BOUND = "bound"
ENFORCED = "enforced"
UNSCOPED = "unscoped"


def mark_reads(query: Any, mode: Any) -> None:
    """Mark whose rows ``query``'s joins may reach (see ``tenantry.joins``);
    ``Query.clone()`` copies it."""
    query.__dict__[READS] = mode


class BoundTenant(Lookup):
    """``WHERE <tenant column> = <tenant>``, the tenant being read when the
    query runs, not when it is built.

    ``BoundTenant("tenant_id", "enforced")``: the enforced tenant (base
    managers, forms); no condition at all with none (trusted code).
    ``BoundTenant("tenant_id", "bound")``: the bound tenant (every
    TenantManager queryset, whenever it was made); with none,
    ``TenantNotSetError`` or, with ``TENANT_STRICT = "empty"``, no rows and
    no query. (See :func:`reading_tenant`.)
    """

    lookup_name = "tenantry_bound"
    prepare_rhs = False

    def __init__(self, field_name: Any, mode: str = "enforced") -> None:
        lhs = F(field_name) if isinstance(field_name, str) else field_name
        super().__init__(lhs, mode)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        tenant = reading_tenant(self.rhs, self.lhs.target.model._meta.label)
        lhs_sql, lhs_params = compiler.compile(self.lhs)
        field = self.lhs.target
        try:
            value = field.get_db_prep_value(
                field.get_prep_value(column_value(field, tenant)), connection, prepared=True
            )
        except (TypeError, ValueError, ValidationError):
            raise EmptyResultSet from None  # the tenant's value cannot be in this column
        return f"{lhs_sql} = %s", [*lhs_params, value]


class SharedWith(Lookup):
    """``<tenant column> = <tenant> OR <a live grant of the row to it>``
    (``own=False``: the grant alone; ``write=True``: a write grant), the
    tenant read as :class:`BoundTenant` reads it (``"bound"``,
    ``"enforced"``, or a ``TenantInfo``). The grant condition is
    ``tenantry.db.grants.granted``, the one the row-level security policies
    use; it is evaluated by the database when the query runs, so a revoked
    or expired grant admits nothing from the next query on
    (docs/collaboration.md#reading-granted-rows)."""

    lookup_name = "tenantry_shared"
    prepare_rhs = False

    def __init__(
        self, field_name: Any, mode: Any = "bound", *, own: bool = True, write: bool = False
    ) -> None:
        lhs = F(field_name) if isinstance(field_name, str) else field_name
        super().__init__(lhs, (mode, own, write))

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        mode, own, write = self.rhs
        field = self.lhs.target
        model = field.model._meta.concrete_model
        tenant = reading_tenant(mode, model._meta.label)
        lhs_sql, lhs_params = compiler.compile(self.lhs)
        if not access.served(tenant.id):
            # Deactivated or suspended: its grants admit nothing while it is
            # (docs/collaboration.md#a-grantee-deactivated-or-suspended).
            if not own:
                return "1 = 0", []
            return _own_rows(field, tenant, lhs_sql, lhs_params, connection)
        pk_sql, pk_params = compiler.compile(model._meta.pk.get_col(self.lhs.alias))
        now = models.DateTimeField().get_db_prep_value(timezone.now(), connection)
        exists = grants.granted(
            grantee="%s", table="%s", pk=pk_sql, owner=lhs_sql, now="%s", write=write
        )
        params = [tenant.id, model._meta.db_table, *pk_params, *lhs_params, now]
        if connection.vendor == "postgresql":
            pick = grants.candidates(
                grantee="%s",
                table="%s",
                pk=pk_sql,
                pk_type=model._meta.pk.db_type(connection),
                write=write,
            )
            exists = f"({pick} AND {exists})"
            params = [*pk_params, tenant.id, model._meta.db_table, *params]
        if not own:
            return exists, params
        mine, mine_params = _own_rows(field, tenant, lhs_sql, lhs_params, connection)
        return f"({mine} OR {exists})", [*mine_params, *params]


def _own_rows(
    field: Any, tenant: TenantInfo, lhs_sql: str, lhs_params: list[Any], connection: Any
) -> tuple[str, list[Any]]:
    """``<tenant column> = <tenant>`` as SQL (``1 = 0`` when the tenant's
    value cannot be in this column)."""
    try:
        value = field.get_db_prep_value(
            field.get_prep_value(column_value(field, tenant)), connection, prepared=True
        )
    except (TypeError, ValueError, ValidationError):
        return "1 = 0", []
    return f"{lhs_sql} = %s", [*lhs_params, value]


def reading_tenant(mode: Any, label: str) -> TenantInfo:
    """The tenant a read of ``mode`` keeps to, when its SQL is written:
    ``"bound"``: the bound tenant (none: ``TenantNotSetError``, or with
    ``TENANT_STRICT = "empty"`` no rows: ``EmptyResultSet``); ``"enforced"``:
    the enforced tenant (none: no condition, ``FullResultSet``); a
    ``TenantInfo``: that tenant."""
    if mode == "bound":
        tenant = get_current_tenant()
        if tenant is None:
            if conf.current().strict == "empty":
                raise EmptyResultSet
            raise TenantNotSetError(
                f"{label} rows are tenant-scoped and no tenant is bound: use "
                "TenantMiddleware, a TenantMixin view, tenant_context(...), or "
                ".unscoped(reason=...)"
            )
        return tenant
    if mode == "enforced":
        tenant = enforced_tenant()
        if tenant is None:
            raise FullResultSet
        return tenant
    return mode


def tenant_condition(col: Any, tenant: TenantInfo) -> Any:
    """``<col> = <tenant's value>`` for the tenant column ``col``; a
    condition no row meets when the tenant's value cannot be a value of the
    column (a foreign key to the registry without the registry's row)."""
    try:
        return Exact(col, column_value(col.target, tenant))
    except (TypeError, ValueError, ValidationError):
        return NothingNode()


def has_bound_tenant(query: Any) -> bool:
    """Whether ``query``'s WHERE already holds a :class:`BoundTenant`."""
    return any(isinstance(child, BoundTenant) for child in query.where.children)


def tenant_rows(queryset: Any) -> Any:
    """``queryset`` held to the tenant enforced when it runs, when its model
    is scoped (forms, the admin's choices and labels)."""
    scope = scope_of(queryset.model)
    if scope is None:
        return queryset
    if getattr(queryset, "_rls_scope", None) is not None:
        # A read escape's own scope (``unscoped()``'s bypass, ``for_tenant()``)
        # would lift the hold when the choices run: a form offers and accepts
        # the enforced tenant's rows whatever queryset it was given.
        queryset = queryset._chain()
        queryset._rls_scope = None
    elif has_bound_tenant(queryset.query):
        return queryset
    held = queryset.filter(BoundTenant(scope.field.name))
    if held.query.__dict__.get(READS) in (None, UNSCOPED):
        mark_reads(held.query, ENFORCED)
    return held


# -- refusing -------------------------------------------------------------------


def _describe(model: Any) -> str:
    """A model's label; an auto-created m2m table as ``app.Document.tags``."""
    opts = model._meta
    if opts.auto_created:
        for field in opts.auto_created._meta.local_many_to_many:
            if field.remote_field.through is model:
                return f"{opts.auto_created._meta.label}.{field.name}"
    return opts.label


def refuse(
    model: Any,
    field: str,
    value: Any,
    tenant: TenantInfo | None,
    action: str,
    todo: str,
    *,
    row: Any = _MISSING,
) -> None:
    """Audit (``isolation.refused``) and raise ``TenantMismatchError`` naming
    the model, the field, the value, the tenant and what to do."""
    label = _describe(model)
    if isinstance(value, models.Model):
        shown = f"<{value._meta.label} pk={value.pk!r}>"
    else:
        shown = repr(value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
    where = "" if row is _MISSING else f" (row pk={row!r})"
    bound = None if tenant is None else tenant.id
    access.refuse(
        "isolation",
        "isolation.refused",
        tenant,
        level=logging.WARNING,
        model=label,
        field=field,
        value=shown,
        action=action,
    )
    raise TenantMismatchError(
        f"{label}.{action} refused {field}={shown}{where} (tenant {bound!r}): {todo}"
    )


def refuse_raw(model: Any, tenant: Any) -> None:
    """``raw()`` through a scoped manager: SQL cannot be scoped."""
    refuse(
        model,
        "raw",
        "<SQL>",
        tenant if isinstance(tenant, TenantInfo) else None,
        "raw()",
        f"raw SQL cannot be scoped to a tenant; use "
        f"{model.__name__}.objects.unscoped(reason=...).raw(...) and filter by the tenant "
        "column in the SQL yourself",
    )


def _refuse_expression(model: Any, field: Any, value: Any, tenant: Any, action: str) -> None:
    refuse(
        model,
        field.name,
        value,
        tenant,
        action,
        "an expression cannot be checked against the tenant before it runs; pass a value",
    )


_TODO_FIELD = "leave the tenant field empty (tenantry fills it) or bind that tenant"
_TODO_GRANTED = (
    "leave the tenant field empty (tenantry fills it) or bind that tenant; another tenant's "
    "row is written only through a live write grant (tenantry.sharing), never moved"
)


def _refuse_reference(
    model: Any, field: Any, value: Any, target: Any, tenant: TenantInfo, action: str
) -> None:
    label = target.label if isinstance(target, Scope) else target
    refuse(
        model,
        field.name,
        value,
        tenant,
        action,
        f"it names no {label} row of tenant {tenant.id!r} (the row is another tenant's, "
        f"or does not exist); point {field.name} at an existing {label} of the same tenant",
    )


# -- the writing tenant ---------------------------------------------------------


def write_tenant(model: Any, scoped: TenantInfo | None, action: str) -> TenantInfo | None:
    """The tenant a write is checked against: the queryset's own tenant
    (``scoped``), else the bound one. A queryset made for one tenant may not
    write while another is bound."""
    bound = get_current_tenant()
    if scoped is None:
        return _writing.get() or bound
    if bound is not None and bound != scoped:
        refuse(
            model,
            "tenant",
            scoped.id,
            bound,
            action,
            f"a queryset of tenant {scoped.id!r} cannot write while {bound.id!r} is bound; "
            f"bind it instead (tenant_context({scoped.id!r}))",
        )
    return scoped


@contextmanager
def writing(tenant: TenantInfo | None) -> Iterator[None]:
    """Mark ``tenant`` as the writing tenant while a queryset's write runs."""
    if tenant is None:
        yield
        return
    token = _writing.set(tenant)
    try:
        yield
    finally:
        _writing.reset(token)


@contextmanager
def checked_write(
    tenant: TenantInfo | None, action: str, approved: dict[Any, set[Any]] | None = None
) -> Iterator[None]:
    """Run a write call of ``tenant``: its statements are checked against
    it, refusals name ``action``, and ``approved`` references (checked by
    the call already) are not looked up again."""
    if tenant is None:
        yield
        return
    outer = _approvals_for(tenant)
    if outer and approved is not None:  # a write call inside another (bulk_update's update)
        approved = {key: set(outer.get(key, ())) | keys for key, keys in approved.items()}
        approved.update({key: keys for key, keys in outer.items() if key not in approved})
    elif outer:
        approved = outer
    tokens = (
        _writing.set(tenant),
        _action.set(_action.get() or action),
        _approved.set(None if approved is None else (tenant.id, approved)),
    )
    try:
        yield
    finally:
        _approved.reset(tokens[2])
        _action.reset(tokens[1])
        _writing.reset(tokens[0])


@contextmanager
def saving(instance: models.Model) -> Iterator[None]:
    """``instance.save()`` is writing one of its tables (``Model._save_table``)."""
    token = _saving.set(instance)
    try:
        yield
    finally:
        _saving.reset(token)


def _signal_tenant(model: Any, action: str) -> TenantInfo | None:
    if bypassing():
        return None
    writing_for = _writing.get()
    bound = get_current_tenant()
    if writing_for is not None and bound is not None and writing_for != bound:
        return write_tenant(model, writing_for, action)
    return writing_for or bound


# -- the normaliser of tenant-field arguments -----------------------------------


def tenant_kwargs(
    model: Any,
    field_name: str,
    tenant: TenantInfo,
    values: dict[str, Any],
    action: str,
    *,
    fill: bool,
) -> dict[str, Any]:
    """``values`` with every form of the tenant field (name, attname, an
    instance) checked against ``tenant`` and replaced by one canonical entry
    (added when ``fill`` and absent). ``TenantMismatchError`` for any other
    value, including ``None`` and expressions."""
    field = model._meta.get_field(field_name)
    forms = [k for k in dict.fromkeys((field.name, field.attname)) if k in values]
    if not forms and not fill:
        return values
    expected = _expected(field, tenant)
    out = dict(values)
    for form in forms:
        value = out.pop(form)
        if not _same(field, value, expected):
            refuse(
                model,
                form,
                value,
                tenant,
                action,
                f"leave {field.name} out (tenantry fills it) or bind that tenant",
            )
    name, value = tenant_field_value(model, field_name, tenant)
    out[name] = value
    return out


# -- rows -------------------------------------------------------------------------


def _origin(obj: models.Model) -> dict[str, Any] | None:
    """What ``obj`` was loaded (or last saved) with, when none of its keys
    changed since; else None."""
    origin = obj.__dict__.get(ORIGIN)
    if origin is None or obj._state.adding:
        return None
    guard = guard_of(type(obj))
    if guard is None:
        return None
    values = obj.__dict__
    for key in guard.keys:
        if values.get(key, _MISSING) != origin.get(key, _MISSING):
            return None
    return origin


def _loaded_key(scope: Scope, obj: models.Model) -> str | None:
    """The tenant column of ``obj``'s row as read from the database, when
    ``obj`` was loaded (or saved) and its keys and tenant column are
    unchanged since; else None (a query must tell)."""
    origin = _origin(obj)
    if origin is None:
        return None
    loaded = origin.get(scope.attname, _MISSING)
    if loaded is _MISSING or obj.__dict__.get(scope.attname, _MISSING) != loaded:
        return None
    return _key(scope.field, loaded)


def _rows(model: Any) -> models.QuerySet:
    """Every row of ``model``, whatever its managers (the rules' own look-ups)."""
    return models.QuerySet(model=model)


def _fetch(queryset: Any) -> list[Any]:
    """Run one of the rules' own look-ups. It sees every row, whatever
    row-level security would show the tenant, so another tenant's row is
    told from no row; what it reads is compared, never returned."""
    with scoped_as(BYPASS):
        return list(queryset)


def _check_rows(
    scope: Scope, tenant: TenantInfo, objs: Iterable[models.Model], action: str
) -> None:
    """The rows behind ``objs`` (by primary key) belong to ``tenant``: one
    query at most, for those not known from their load."""
    expected = _expected(scope.field, tenant)
    pending = []
    for obj in objs:
        key = _loaded_key(scope, obj)
        if key is None:
            pending.append(obj.pk)
        elif key != expected:
            _refuse_row(scope, obj.pk, key, tenant, action)
    if not pending:
        return
    found = _rows(scope.model).filter(pk__in=pending).values_list("pk", scope.attname)
    for pk, value in _fetch(found):
        if _key(scope.field, value) != expected:
            _refuse_row(scope, pk, value, tenant, action)


def _refuse_row(scope: Scope, pk: Any, value: Any, tenant: TenantInfo, action: str) -> None:
    refuse(
        scope.model,
        scope.field.attname,
        value,
        tenant,
        action,
        "that row belongs to another tenant; write only rows read through the scoped manager",
        row=pk,
    )


def _check_keys(guard: Guard, tenant: TenantInfo, obj: models.Model, action: str) -> None:
    """Every row a key of ``obj`` names (its primary key and, under
    multi-table inheritance, each parent's key, in any table sharing them)
    is ``tenant``'s or does not exist: one query per table holding a tenant
    column, none for a row loaded and unchanged since."""
    values = obj.__dict__
    keys = {values.get(k) for k in guard.keys} - {None}
    if not keys:
        return
    scope = guard.owner
    if scope is not None:
        known = _loaded_key(scope, obj)
        if known is not None:
            if known != _expected(scope.field, tenant):
                _refuse_row(scope, obj.pk, known, tenant, action)
            return
    for member in guard.family:
        expected = _expected(member.field, tenant)
        found = _rows(member.model).filter(pk__in=list(keys)).values_list("pk", member.attname)
        for pk, value in _fetch(found):
            if _key(member.field, value) != expected:
                _refuse_row(member, pk, value, tenant, action)


def _may_update_a_row(instance: models.Model, guard: Guard) -> bool:
    """Whether ``save()`` may write over an existing row: a loaded instance,
    or a new one with a key Django tries to UPDATE first."""
    if not instance._state.adding:
        return True
    concrete = guard.model._meta.concrete_model
    parents = concrete._meta.get_parent_list()
    pk = (parents[-1] if parents else concrete)._meta.pk
    return not (pk.has_default() or pk.has_db_default())


# -- references -----------------------------------------------------------------------


def _approvals_for(tenant: TenantInfo) -> dict[Any, set[Any]]:
    approved = _approved.get()
    if approved is None or approved[0] != tenant.id:
        return {}
    return approved[1]


def _reference(field: Any, obj: models.Model, target: Scope) -> tuple[str | None, str | None, bool]:
    """``(column key, tenant key, ask)`` of ``obj``'s reference ``field``:
    no column key for no value; a tenant key when it is known without a
    query (unchanged since the row was read: the row's own value, which is
    not a new reference; or a related instance read and cached on the row);
    ``ask`` when only a query can tell."""
    value = obj.__dict__.get(field.attname)
    if value is None:
        return None, None, False
    if hasattr(value, "resolve_expression"):
        raise _Unverifiable(value)
    key = str(value)
    origin = _origin(obj)
    if origin is not None and origin.get(field.attname, _MISSING) == value:
        return key, "", False  # unchanged: nothing new is referenced
    if field.is_cached(obj):
        cached = field.get_cached_value(obj, None)
        if cached is not None and _vouches(cached, field.target_field.attname, value):
            known = _loaded_key(target, cached)
            if known is not None:
                return key, known, False
    return key, None, True


def _vouches(instance: models.Model, attname: str, value: Any) -> bool:
    """Whether a loaded ``instance`` vouches for ``value`` in its column
    ``attname``: it holds that value and was loaded (or saved) with it. A
    row whose key (``to_field`` included) was changed in memory vouches for
    nothing: the value written is looked up."""
    origin = _origin(instance)
    return (
        origin is not None
        and instance.__dict__.get(attname, _MISSING) == value
        and origin.get(attname, _MISSING) == value
    )


def _check_targets(
    model: Any,
    field: Any,
    target: Scope,
    tenant: TenantInfo,
    keys: set[str],
    action: str,
) -> None:
    """``keys`` of reference ``field`` name existing rows of ``target`` that
    belong to ``tenant`` (one query)."""
    if not keys:
        return
    expected = _expected(target.field, tenant)
    to = field.target_field.attname
    rows = _rows(target.model).filter(**{f"{to}__in": list(keys)}).values_list(to, target.attname)
    good = {str(value) for value, owner in _fetch(rows) if _key(target.field, owner) == expected}
    if keys - good and _may_refer_across(model, field, target):
        good |= _write_granted(target, tenant, keys - good)
    for key in sorted(keys - good):
        _refuse_reference(model, field, _Row(target.label, key), target, tenant, action)


def _may_refer_across(model: Any, field: Any, target: Scope) -> bool:
    """Whether ``field`` may name another tenant's row through a write grant
    (docs/collaboration.md#references): by its primary key, and clearable
    when the owner deletes the row (``sharing.detach_references`` sets it to
    NULL), so a grantee never blocks the owner's deletion: a nullable
    ForeignKey/OneToOne, or a many-to-many link (an auto-created through
    row goes with either end)."""
    return field.target_field.attname == target.model._meta.pk.attname and (
        field.null or model._meta.auto_created
    )


def _check_shared(
    model: Any,
    name: str,
    to: str,
    heirs: tuple[Scope, ...],
    tenant: TenantInfo,
    keys: set[str],
    action: str,
) -> None:
    """``keys`` (values of column ``to``) of a reference to an unowned
    multi-table parent name no row that an owned child of another tenant
    shares (one query per such child model): such a row is that tenant's."""
    if not keys:
        return
    for heir in heirs:
        expected = _expected(heir.field, tenant)
        rows = _rows(heir.model).filter(**{f"{to}__in": list(keys)}).values_list(to, heir.attname)
        for value, owner in _fetch(rows):
            if _key(heir.field, owner) != expected:
                parent = heir.model._meta.get_parent_list()
                label = parent[-1]._meta.label if parent else heir.label
                refuse(
                    model,
                    name,
                    _Row(label, value),
                    tenant,
                    action,
                    f"that {label} row is another tenant's (a {heir.label} of another tenant "
                    f"shares it); point {name} at a {label} row of your own",
                )


def check_references(
    guard: Guard,
    tenant: TenantInfo,
    objs: list[models.Model],
    fields: set[Any] | None,
    action: str,
    *,
    model: Any = None,
) -> dict[Any, set[Any]]:
    """The references of ``objs`` (those among ``fields``, or all) name
    existing rows of ``tenant``: one query per relation field, and per
    content type of a generic foreign key, for all ``objs``. Returns what was
    approved (``{field: keys}``), for the statements of the same write."""
    model = model or guard.model
    approved_before = _approvals_for(tenant)
    approved: dict[Any, set[Any]] = {}
    for field, target in guard.relations:
        if fields is not None and field not in fields:
            continue
        expected = _expected(target.field, tenant)
        before = approved_before.get(field, ())
        pending: set[str] = set()
        verified: set[str] = set()  # rows of the tenant
        unchanged: set[str] = set()  # what one row already held: says nothing for another
        for obj in objs:
            try:
                key, known, ask = _reference(field, obj, target)
            except _Unverifiable as exc:
                _refuse_expression(model, field, exc.value, tenant, action)
            if key is None or key in verified or key in before:
                continue
            if ask:
                pending.add(key)
            elif known == "":
                unchanged.add(key)
            elif known != expected:
                pending.add(key)  # another tenant's row: only a write grant admits it
            else:
                verified.add(key)
        _check_targets(model, field, target, tenant, pending, action)
        approved[field] = verified | pending | unchanged
    for field, heirs in guard.shared_parents:
        if fields is not None and field not in fields:
            continue
        before = approved_before.get(field, ())
        pending = set()
        unchanged = set()
        for obj in objs:
            value = obj.__dict__.get(field.attname)
            if value is None:
                continue
            if hasattr(value, "resolve_expression"):
                _refuse_expression(model, field, value, tenant, action)
            key = str(value)
            if key in before:
                continue
            origin = _origin(obj)
            if origin is not None and origin.get(field.attname, _MISSING) == value:
                unchanged.add(key)
            else:
                pending.add(key)
        _check_shared(model, field.name, field.target_field.attname, heirs, tenant, pending, action)
        approved[field] = pending | unchanged
    for gfk, ct_field, fk_field in guard.generics:
        if fields is not None and ct_field not in fields and fk_field not in fields:
            continue
        before = approved_before.get(gfk, ())
        same_pairs: set[tuple[Any, str]] = set()  # unchanged since read, per row
        pending_pairs: set[tuple[Any, str]] = set()
        for obj in objs:
            values = obj.__dict__
            ct_id, oid = values.get(ct_field.attname), values.get(fk_field.attname)
            if ct_id is None or oid is None:
                continue
            pair = (ct_id, str(oid))
            if pair in before:
                continue
            origin = _origin(obj)
            if (
                origin is not None
                and origin.get(ct_field.attname, _MISSING) == ct_id
                and origin.get(fk_field.attname, _MISSING) == oid
            ):
                same_pairs.add(pair)
                continue
            pending_pairs.add(pair)
        _check_generic(model, gfk, tenant, pending_pairs, action)
        approved[gfk] = pending_pairs | same_pairs
    return approved


def _check_generic(
    model: Any, gfk: Any, tenant: TenantInfo, pairs: set[tuple[Any, str]], action: str
) -> None:
    """``(content type id, object id)`` pairs name existing rows of
    ``tenant`` where the content type is a scoped model (one query per such
    content type)."""
    if not pairs:
        return
    from django.contrib.contenttypes.models import ContentType

    by_type: dict[Any, set[str]] = {}
    for ct_id, oid in pairs:
        by_type.setdefault(ct_id, set()).add(oid)
    for ct_id, oids in by_type.items():
        try:
            target_model = ContentType.objects.get_for_id(ct_id).model_class()
        except ContentType.DoesNotExist:
            target_model = None
        target = owner_of(target_model)
        if target is None:
            heirs = graph.heirs_of(target_model)
            if heirs:  # an unowned multi-table parent: its rows may be a child's
                pk = target_model._meta.pk
                keys = set()
                for oid in oids:
                    try:
                        keys.add(str(pk.to_python(oid)))
                    except Exception:  # a value no row can have
                        continue
                _check_shared(model, gfk.name, pk.attname, heirs, tenant, keys, action)
            continue  # else a row of no tenant (or a stale content type)
        pk = target.model._meta.pk
        expected = _expected(target.field, tenant)
        wanted = {}
        for oid in oids:
            try:
                wanted[str(pk.to_python(oid))] = oid
            except Exception:  # a value no row can have: refused below
                wanted[f"\0{oid}"] = oid
        rows = _rows(target.model).filter(pk__in=[k for k in wanted if k[:1] != "\0"])
        good = {
            str(value)
            for value, owner in _fetch(rows.values_list("pk", target.attname))
            if _key(target.field, owner) == expected
        }
        others = {k for k in wanted if k not in good and k[:1] != "\0"}
        if others:
            good |= _write_granted(target, tenant, others)
        for key, oid in sorted(wanted.items()):
            if key not in good:
                refuse(
                    model,
                    gfk.name,
                    _Row(target.label, oid),
                    tenant,
                    action,
                    f"it names no {target.label} row of tenant {tenant.id!r} (the row is "
                    f"another tenant's, or does not exist); point {gfk.name} at an existing row "
                    "of the same tenant",
                )


# -- the method-level checks (scoped querysets) ---------------------------------------


def check_instances(
    model: Any,
    tenant: TenantInfo,
    objs: list[models.Model],
    action: str,
    *,
    fields: Iterable[str] | None = None,
    new: bool,
) -> dict[Any, set[Any]]:
    """``bulk_create`` (``new``: empty tenant fields are filled) and
    ``bulk_update`` (``fields``; the rows must be the tenant's): each
    object's tenant field, and its references (one query per relation field
    for the whole batch). Returns the approved references."""
    guard = guard_of(model)
    if guard is None or not objs:
        return {}
    opts = model._meta
    chosen = None if fields is None else {opts.get_field(name) for name in fields}
    scope = guard.owner
    if scope is not None and (chosen is None or scope.field in chosen):
        field = scope.field
        expected = _expected(field, tenant)
        name, canonical = tenant_field_value(model, field.name, tenant)
        for obj in objs:
            value = obj.__dict__.get(field.attname)
            if new and value in _EMPTY:
                setattr(obj, name, canonical)
            elif not _same(field, value, expected):
                refuse(model, field.attname, value, tenant, action, _TODO_FIELD)
    if not new and scope is not None:
        _check_rows(scope, tenant, objs, action)
    return check_references(guard, tenant, objs, chosen, action, model=model)


def check_conflict_target(
    model: Any, tenant: TenantInfo, unique_fields: Iterable[str] | None, action: str
) -> None:
    """``bulk_create(update_conflicts=True)``: the conflict target must
    include the tenant field (by name, attname or ``pk``)."""
    scope = owner_of(model)
    if scope is None:
        return
    opts = model._meta
    given = list(unique_fields or ())
    names = [opts.pk.name if name == "pk" else name for name in given]
    _check_conflict_fields(model, tenant, [opts.get_field(name) for name in names], action, given)


def _check_conflict_fields(
    model: Any, tenant: TenantInfo, fields: Iterable[Any], action: str, given: Any = None
) -> None:
    """An upsert's conflict target (fields) must include the tenant field:
    else the conflict could rewrite another tenant's row."""
    scope = owner_of(model)
    fields = list(fields)
    if scope is not None and scope.field not in fields:
        refuse(
            model,
            "unique_fields",
            given if given is not None else [f.name for f in fields],
            tenant,
            action,
            f"update_conflicts=True could rewrite another tenant's row: include "
            f"{scope.field.name!r} in unique_fields (with a unique constraint on it), "
            "or use ignore_conflicts=True",
        )


def check_update(
    model: Any, tenant: TenantInfo, values: dict[str, Any], action: str
) -> tuple[dict[str, Any], dict[Any, set[Any]]]:
    """``QuerySet.update(**values)``: the tenant field (any form) must stay
    the tenant's, and references must name rows of it. Returns the values
    (one canonical tenant entry) and the approved references."""
    scope = owner_of(model)
    if scope is not None:
        values = tenant_kwargs(model, scope.field.name, tenant, values, action, fill=False)
    guard = guard_of(model)
    if guard is None:
        return values, {}
    opts = model._meta
    given = {}
    for name, value in values.items():
        try:
            given[opts.get_field(name)] = value
        except Exception:  # Django reports an unknown field
            continue
    return values, _check_values(guard, tenant, given, action, model=model)


def _plain(value: Any) -> list[Any] | None:
    """The values an UPDATE writes for ``value``: ``Value(x)`` and the
    branches of ``bulk_update``'s ``Case``; None for an expression that is
    only known when it runs."""
    value = _uncast(value)
    if isinstance(value, Value):
        return [value.value]
    if isinstance(value, Case):
        found: list[Any] = []
        branches = [w.result for w in value.cases]
        default = value.default
        if not (isinstance(default, Value) and default.value is None):
            branches.append(default)  # bulk_update's ELSE NULL is for rows it does not touch
        for branch in branches:
            inner = _plain(branch)
            if inner is None:
                return None
            found += inner
        return found
    if hasattr(value, "resolve_expression"):
        return None
    return [value]


def _uncast(value: Any) -> Any:
    """``bulk_update``'s ``Case`` without the ``Cast`` PostgreSQL wraps it in."""
    if isinstance(value, Cast):
        return value.get_source_expressions()[0]
    return value


def _by_pk(value: Any) -> dict[str, Any] | None:
    """``bulk_update``'s ``Case(When(pk=...), ...)`` as ``{pk: value}``."""
    value = _uncast(value)
    if not isinstance(value, Case):
        return None
    out = {}
    for when in value.cases:
        condition = when.condition
        children = getattr(condition, "children", None)
        if isinstance(condition, Q):
            children = [condition.children[0]] if len(condition.children) == 1 else None
            if children and isinstance(children[0], tuple) and children[0][0] == "pk":
                plain = _plain(when.result)
                if plain is None:
                    return None
                out[str(children[0][1])] = plain[0]
                continue
            return None
        if not children or len(children) != 1 or not isinstance(children[0], Exact):
            return None
        lookup = children[0]
        if not getattr(getattr(lookup.lhs, "target", None), "primary_key", False):
            return None
        plain = _plain(when.result)
        if plain is None:
            return None
        out[str(lookup.rhs)] = plain[0]
    return out


def _check_values(
    guard: Guard,
    tenant: TenantInfo,
    values: dict[Any, Any],
    action: str,
    *,
    model: Any,
    query: Any = None,
    using: str = "default",
) -> dict[Any, set[Any]]:
    """An UPDATE's ``{field: value}``: the tenant column keeps the tenant's
    value and references name its rows (one query per field)."""
    scope = guard.owner
    if scope is not None and scope.field in values:
        field = scope.field
        expected = _expected(field, tenant)
        plain = _plain(values[field])
        if plain is None:
            _refuse_expression(model, field, values[field], tenant, action)
        for value in plain:
            if not _same(field, value, expected):
                refuse(model, field.attname, value, tenant, action, _TODO_FIELD)
    approved_before = _approvals_for(tenant)
    approved: dict[Any, set[Any]] = {}
    for field, target in guard.relations:
        if field not in values:
            continue
        plain = _plain(values[field])
        if plain is None:
            _refuse_expression(model, field, values[field], tenant, action)
        before = approved_before.get(field, ())
        expected = _expected(target.field, tenant)
        pending = set()
        keys = approved.setdefault(field, set())
        for value in plain:
            if isinstance(value, models.Model):
                attname = field.target_field.attname
                vouched = _vouches(value, attname, getattr(value, attname, None))
                known = _loaded_key(target, value) if vouched else None
                key = _key(field, value)
                if key is None or key in before:
                    continue
                if known is not None and known == expected:
                    keys.add(key)
                    continue
            else:
                key = _key(field, value)
                if key is None or key in before:
                    continue
            pending.add(key)
        _check_targets(model, field, target, tenant, pending, action)
        keys |= pending
    for field, heirs in guard.shared_parents:
        if field not in values:
            continue
        plain = _plain(values[field])
        if plain is None:
            _refuse_expression(model, field, values[field], tenant, action)
        before = approved_before.get(field, ())
        keys = {k for value in plain if (k := _key(field, value)) is not None} - set(before)
        _check_shared(model, field.name, field.target_field.attname, heirs, tenant, keys, action)
        approved[field] = keys
    for gfk, ct_field, fk_field in guard.generics:
        if ct_field not in values and fk_field not in values:
            continue
        pairs = _update_pairs(
            guard, gfk, ct_field, fk_field, values, tenant, action, model, query, using
        )
        before = approved_before.get(gfk, ())
        _check_generic(model, gfk, tenant, pairs - set(before), action)
        approved[gfk] = pairs
    return approved


def _update_pairs(
    guard: Guard,
    gfk: Any,
    ct_field: Any,
    fk_field: Any,
    values: dict[Any, Any],
    tenant: TenantInfo,
    action: str,
    model: Any,
    query: Any,
    using: str,
) -> set[tuple[Any, str]]:
    """The ``(content type id, object id)`` pairs an UPDATE leaves in the
    rows it touches: from its values when they give both, else from the
    rows (one query)."""

    def column(field: Any) -> tuple[Any, dict[str, Any] | None, bool]:
        if field not in values:
            return None, None, False
        value = values[field]
        if isinstance(value, models.Model):
            value = value.pk
        by_pk = _by_pk(value)
        if by_pk is not None:
            return None, by_pk, True
        plain = _plain(value)
        if plain is None or len(plain) != 1:
            _refuse_expression(model, field, value, tenant, action)
        found = plain[0]
        return (found.pk if isinstance(found, models.Model) else found), None, True

    ct_value, ct_by_pk, ct_set = column(ct_field)
    fk_value, fk_by_pk, fk_set = column(fk_field)
    if ct_set and fk_set and ct_by_pk is None and fk_by_pk is None:
        if ct_value is None or fk_value is None:
            return set()
        return {(ct_value, str(fk_value))}
    if query is None:
        return set()  # checked again, row by row, by the UPDATE itself
    rows = _preselect(query, using, [model._meta.pk.attname, ct_field.attname, fk_field.attname])
    pairs = set()
    for pk, ct_id, oid in rows:
        key = str(pk)
        if ct_set:
            ct_id = ct_by_pk.get(key, ct_id) if ct_by_pk is not None else ct_value
        if fk_set:
            oid = fk_by_pk.get(key, oid) if fk_by_pk is not None else fk_value
        if ct_id is not None and oid is not None:
            pairs.add((ct_id, str(oid)))
    return pairs


def _preselect(query: Any, using: str, attnames: list[str]) -> list[tuple[Any, ...]]:
    """The rows an UPDATE is about to touch (as Django's own pre-select)."""
    select = query.chain(klass=Query)
    select.select_related = False
    select.clear_ordering(force=True)
    select.extra = {}
    select.select = []
    select.add_fields(attnames)
    rows: list[tuple[Any, ...]] = []
    for chunk in select.get_compiler(using).execute_sql(MULTI):
        rows.extend(chunk)
    return rows


# -- the SQL compilers' hooks (every INSERT, UPDATE and DELETE) -----------------------


def _fill_or_refuse(
    guard: Guard, tenant: TenantInfo, objs: Iterable[models.Model], model: Any, action: str
) -> None:
    scope = guard.owner
    field = scope.field
    expected = _expected(field, tenant)
    name, canonical = tenant_field_value(model, field.name, tenant)
    for obj in objs:
        value = obj.__dict__.get(field.attname)
        if value in _EMPTY:
            setattr(obj, name, canonical)
        elif not _same(field, value, expected):
            refuse(model, field.attname, value, tenant, action, _TODO_FIELD)


def on_insert(query: Any, compiler: Any) -> None:
    """Before an INSERT runs: the tenant column is the enforced tenant's
    (filled when empty) and references name its rows."""
    guard = guard_of(query.model)
    if guard is None:
        return
    tenant = enforced_tenant()
    if tenant is None or not query.objs:
        return
    action = _action.get() or "save()"
    if guard.owner is not None and query.on_conflict == OnConflict.UPDATE:
        _check_conflict_fields(query.model, tenant, query.unique_fields, action)
    fields = set(query.fields)
    objs = list(query.objs)
    if guard.owner is not None and guard.owner.field in fields:
        _fill_or_refuse(guard, tenant, objs, query.model, action)
    check_references(guard, tenant, objs, fields, action, model=query.model)


def on_update(query: Any, compiler: Any) -> None:
    """Before an UPDATE runs: it is held to the enforced tenant's rows, and
    the values it writes keep the tenant column and name the tenant's rows."""
    guard = guard_of(query.model)
    if guard is None:
        return
    tenant = enforced_tenant()
    if tenant is None:
        return
    values = {field: value for field, _model, value in query.values}
    instance = _saving.get()
    if (
        instance is not None
        and isinstance(instance, query.model)
        and instance.__dict__.get(GRANTED) == tenant.id
    ):
        _update_granted(query, guard, tenant, instance, values)
        return
    if _shared_write.get() and guard.owner is not None:
        _admit_granted(query, guard, tenant)
    else:
        _restrict(query, guard, tenant)
    if not query.values:
        return
    if instance is not None and isinstance(instance, query.model):
        action = "save()"
        if guard.owner is not None and guard.owner.field in values:
            _fill_or_refuse(guard, tenant, [instance], query.model, action)
        check_references(guard, tenant, [instance], set(values), action, model=query.model)
        return
    action = _action.get() or "update()"
    _check_values(
        guard, tenant, values, action, model=query.model, query=query, using=compiler.using
    )


def on_delete(query: Any, compiler: Any) -> None:
    """Before a DELETE runs: it is held to the enforced tenant's rows."""
    guard = guard_of(query.model)
    if guard is None:
        return
    tenant = enforced_tenant()
    if tenant is not None:
        _restrict(query, guard, tenant)


def _restrict(query: Any, guard: Guard, tenant: TenantInfo) -> None:
    """Add ``tenant``'s condition to an UPDATE's or DELETE's WHERE: the
    tenant column (scoped tables), or each scoped end (link tables)."""
    if guard.owner is not None:
        if has_bound_tenant(query):
            return  # the base manager's condition: the same tenant, when it compiles
        field = guard.owner.field
        if field.model._meta.concrete_model is query.get_meta().concrete_model:
            # The model's own column: no join, no filter() resolution.
            alias = query.get_initial_alias()
            query.where.add(tenant_condition(field.get_col(alias), tenant), AND)
            return
        name, value = tenant_field_value(query.model, field.name, tenant)
        query.add_q(Q(**{name: value}))
        return
    if guard.heirs:
        _restrict_to_heirs(query, guard, tenant)
    for field, target in guard.ends:
        name, value = tenant_field_value(target.model, target.field.name, tenant)
        condition = Q(**{f"{field.name}__{name}": value})
        if field.null:
            condition |= Q(**{f"{field.name}__isnull": True})
        query.add_q(condition)


def _restrict_to_heirs(query: Any, guard: Guard, tenant: TenantInfo) -> None:
    """An UPDATE or DELETE of an unscoped multi-table parent leaves alone
    the rows another tenant's scoped descendant shares. Found by one look-up
    per such descendant that sees every row: row-level security would hide
    another tenant's descendant from a condition in the statement itself."""
    matched = query.chain(klass=Query)
    matched.select_related = False
    matched.clear_ordering(force=True)
    matched.extra = {}
    matched.select = []
    matched.add_fields([guard.model._meta.pk.attname])
    excluded: set[Any] = set()
    for heir in guard.heirs:
        name, value = tenant_field_value(heir.model, heir.field.name, tenant)
        theirs = _rows(heir.model).filter(pk__in=matched).exclude(**{name: value})
        excluded.update(_fetch(theirs.values_list("pk", flat=True)))
    if excluded:
        query.add_q(~Q(pk__in=sorted(excluded)))


# -- writes through a grant (docs/collaboration.md#writing-through-a-grant) -----------


def _write_granted(scope: Scope, tenant: TenantInfo, keys: Iterable[Any]) -> set[str]:
    """Which of ``keys`` (primary keys of ``scope.model``) name rows granted
    to ``tenant`` for writing, live now, by the tenant that owns them now
    (one query). A grant never admits a row whose tenant column lives on a
    parent table."""
    model = scope.model._meta.concrete_model
    if scope.field.model._meta.concrete_model is not model:
        return set()
    rows = _rows(model).filter(pk__in=list(keys))
    rows = rows.filter(SharedWith(scope.field.name, tenant, own=False, write=True))
    return {str(pk) for pk in _fetch(rows.values_list("pk", flat=True))}


def _granted_save(scope: Scope, tenant: TenantInfo, instance: models.Model) -> bool:
    """``save()`` of another tenant's row: admitted when the row was read
    with its keys and tenant column unchanged since, and a live write grant
    gives it to ``tenant`` (one query). Marks the instance for its UPDATE."""
    if instance._state.adding:
        return False
    loaded = _loaded_key(scope, instance)
    if loaded is None or str(instance.pk) not in _write_granted(scope, tenant, [instance.pk]):
        return False
    instance.__dict__[GRANTED] = tenant.id
    return True


def _admit_granted(query: Any, guard: Guard, tenant: TenantInfo) -> None:
    """Hold an UPDATE to ``tenant``'s rows and the rows granted to it for
    writing (instead of the tenant's rows alone): the base manager's
    condition is replaced by the wider one, evaluated by the database."""
    field = guard.owner.field
    if field.model._meta.concrete_model is not query.get_meta().concrete_model:
        _restrict(query, guard, tenant)
        return
    query.where.children = [
        child for child in query.where.children if not isinstance(child, BoundTenant)
    ]
    alias = query.get_initial_alias()
    query.where.add(SharedWith(field.get_col(alias), tenant, write=True), AND)


def _update_granted(
    query: Any, guard: Guard, tenant: TenantInfo, instance: models.Model, values: dict[Any, Any]
) -> None:
    """The UPDATE of ``save()`` of a row a write grant admitted: it keeps
    the row's tenant column (a grant never moves a row) and its references
    name the tenant's rows (or rows granted to it for writing)."""
    _admit_granted(query, guard, tenant)
    scope = guard.owner
    loaded = _loaded_key(scope, instance)
    kept = loaded is not None and _same(scope.field, values.get(scope.field), loaded)
    if scope.field in values and not kept:
        refuse(
            query.model,
            scope.field.attname,
            values[scope.field],
            tenant,
            "save()",
            "a grant never moves a row to another tenant; leave the tenant field as it was",
        )
    fields = set(values) - {scope.field}
    check_references(guard, tenant, [instance], fields, "save()", model=query.model)


@contextmanager
def writing_shared(queryset: Any, tenant: TenantInfo, values: dict[str, Any], action: str):
    """``with_shared().update(**values)``: refused when it would touch a row
    granted read-only, or write the tenant field (a grant never moves a
    row); else its UPDATE is held to the tenant's rows and those granted
    to it for writing. One query (the read-only rows it would touch)."""
    model = queryset.model
    scope = owner_of(model)
    field = scope.field
    pk = model._meta.pk
    for form in (field.name, field.attname, "pk", pk.name, pk.attname):
        if form in values:
            refuse(
                model,
                form,
                values[form],
                tenant,
                action,
                "a grant never moves a row, to another tenant or another key; leave the "
                f"tenant field and the primary key out, or write {model.__name__}.objects "
                "without with_shared()",
            )
    refuse_read_only(queryset, tenant, action)
    token = _shared_write.set(True)
    try:
        yield
    finally:
        _shared_write.reset(token)


def refuse_read_only(queryset: Any, tenant: TenantInfo, action: str) -> None:
    """Refuse a write of ``queryset``'s rows (a ``with_shared()`` one) when
    one is another tenant's row granted read-only (one query)."""
    model = queryset.model
    field = owner_of(model).field
    readonly = _rows(model).filter(pk__in=queryset.values("pk"))
    _refuse_any(
        readonly.exclude(SharedWith(field.name, tenant, write=True)),
        tenant,
        action,
        "that row is another tenant's, shared read-only; only a write grant lets you "
        "update it (ask its owner for sharing.grant(..., write=True))",
    )


def check_shared_delete(queryset: Any, tenant: TenantInfo, action: str) -> None:
    """``with_shared().delete()``: refused when it would touch another
    tenant's row: no grant lets a tenant delete a row (one query)."""
    model = queryset.model
    scope = owner_of(model)
    name, value = tenant_field_value(model, scope.field.name, tenant)
    _refuse_any(
        _rows(model).filter(pk__in=queryset.values("pk")).exclude(**{name: value}),
        tenant,
        action,
        "that row is another tenant's, shared with yours; no grant lets you delete it "
        "(filter with_shared() to your own rows, or use Model.objects without it)",
    )


def _refuse_any(rows: Any, tenant: TenantInfo, action: str, why: str) -> None:
    """Refuse ``action`` naming the first of ``rows`` (the rows of a
    ``with_shared()`` write it may not touch), if there is one."""
    found = list(rows.values_list("pk", flat=True)[:1])
    if found:
        refuse(rows.model, "pk", found[0], tenant, action, why)


# -- the instance guard (signals) ------------------------------------------------


def _remember(guard: Guard, instance: models.Model, fields: Iterable[str] | None = None) -> None:
    """Record what the row now holds: everything after a load or a full
    save; only ``fields`` (and the keys) after a partial one."""
    values = instance.__dict__
    old = values.get(ORIGIN)
    if fields is None or old is None:
        values[ORIGIN] = {name: values.get(name, _MISSING) for name in guard.remembered}
        return
    opts = type(instance)._meta
    changed = {opts.get_field(name).attname for name in fields} | set(guard.keys)
    new = dict(old)
    for name in guard.remembered:
        if name in changed:
            new[name] = values.get(name, _MISSING)
    values[ORIGIN] = new


def remember(model: Any, objs: Iterable[models.Model], fields: Iterable[str] | None) -> None:
    """After ``bulk_create``/``bulk_update``: the rows now hold these values."""
    guard = guard_of(model)
    if guard is None:
        return
    for obj in objs:
        _remember(guard, obj, fields)


#: Django's own builders of instances from the rows a queryset read: a
#: ``from_db`` called from these (a query's rows, ``select_related``'s
#: related rows) vouches for what the row holds. Any other caller (code
#: calling ``from_db`` itself, a ``post_init`` receiver or ``from_db``
#: override running inside a read, ``raw()``, whose columns the SQL computes)
#: vouches for nothing: its instance's keys are looked up when they matter
#: (docs/querysets.md#what-an-instance-vouches-for).
_ROW_READERS = frozenset(
    {
        models.query.ModelIterable.__iter__.__code__,
        models.query.RelatedPopulator.populate.__code__,
    }
)


def _remember_loads(model: Any) -> None:
    """Wrap ``model.from_db`` so each row a query read remembers what the
    database held (no query; a dict write per row): the values Django
    handed to ``from_db``, not what an override or receiver made of them.
    Instances made in code, or by ``from_db`` called from anywhere but
    Django's row readers, have no such record until they are saved."""
    if getattr(model.from_db, "_tenantry", False):  # inherited from a guarded parent
        return
    own = model.__dict__.get("from_db")

    def build(cls: Any, db: Any, field_names: Any, values: Any) -> Any:
        if own is not None:
            return own.__func__(cls, db, field_names, values)
        return super(model, cls).from_db(db, field_names, values)

    def from_db(cls: Any, db: Any, field_names: Any, values: Any) -> Any:
        read = sys._getframe(1).f_code in _ROW_READERS
        if queryset_scope() is None:
            instance = build(cls, db, field_names, values)
        else:
            # What Django runs to build the instance (an override, __init__,
            # post_init receivers) is the app's code, not the queryset's own
            # query: it runs under the bound tenant, not the queryset's
            # bypass or other tenant (docs/postgresql.md#escape-hatches).
            with scoped_as(None):
                instance = build(cls, db, field_names, values)
        guard = guard_of(cls) if read else None
        if guard is not None:
            held = dict(zip(field_names, values, strict=False))
            instance.__dict__[ORIGIN] = {
                name: held.get(name, _MISSING) for name in guard.remembered
            }
        return instance

    from_db._tenantry = True  # type: ignore[attr-defined]
    model.from_db = classmethod(from_db)


def raw_save_trusted(raw: bool) -> bool:
    """The one rule of ``save_base(raw=True)`` (Django's deserializers,
    ``loaddata``; docs/security.md#raw-saves-deserialization-and-loaddata):
    trusted, as fixtures are, only when no tenant is bound or written for
    (tenant-less code such as ``manage.py loaddata`` may write any tenant's
    rows anyway). A raw save while a tenant is bound (a deserializer run in a
    request, a job, a LiveView event) is held to every check of an ordinary
    save: the tenant column, keys, parent links, registry rows."""
    return bool(raw) and get_current_tenant() is None and _writing.get() is None


def _on_save(
    sender: Any, instance: models.Model, raw: bool = False, update_fields: Any = None, **kw: Any
) -> None:
    if raw_save_trusted(raw):
        return
    guard = guard_of(sender)
    if guard is None or not (guard.owner or guard.heirs):
        return
    action = "save()"
    tenant = _signal_tenant(sender, action)
    if tenant is None:
        return
    if guard.owner is not None:
        field = guard.owner.field
        value = instance.__dict__.get(field.attname, _MISSING)
        if value is not _MISSING:
            if value in _EMPTY and instance._state.adding:
                name, canonical = tenant_field_value(sender, field.name, tenant)
                setattr(instance, name, canonical)
            elif not _same(field, value, _expected(field, tenant)):
                if _granted_save(guard.owner, tenant, instance):
                    return  # a write grant: its UPDATE is held to the granted row
                refuse(sender, field.attname, value, tenant, action, _TODO_GRANTED)
    instance.__dict__.pop(GRANTED, None)
    if _may_update_a_row(instance, guard):
        _check_keys(guard, tenant, instance, action)


def _on_saved(sender: Any, instance: models.Model, update_fields: Any = None, **kw: Any) -> None:
    instance.__dict__.pop(GRANTED, None)
    guard = guard_of(sender)
    if guard is not None:
        _remember(guard, instance, update_fields)


def _on_delete(sender: Any, instance: models.Model, **kwargs: Any) -> None:
    guard = guard_of(sender)
    if guard is None or not (guard.owner or guard.heirs):
        return
    action = "delete()"
    tenant = _signal_tenant(sender, action)
    if tenant is None:
        return
    if guard.owner is not None:
        field = guard.owner.field
        value = instance.__dict__.get(field.attname, _MISSING)
        if value is not _MISSING and not _same(field, value, _expected(field, tenant)):
            refuse(sender, field.attname, value, tenant, action, "delete only your tenant's rows")
    if guard.owner is None or _loaded_key(guard.owner, instance) is None:
        for member in guard.family:
            keys = {instance.__dict__.get(k) for k in guard.keys} - {None}
            expected = _expected(member.field, tenant)
            rows = _rows(member.model).filter(pk__in=list(keys)).values_list("pk", member.attname)
            for pk, owner in _fetch(rows):
                if _key(member.field, owner) != expected:
                    _refuse_row(member, pk, owner, tenant, action)


def _on_m2m(
    sender: Any, instance: Any, action: str, model: Any, pk_set: Any, **kwargs: Any
) -> None:
    """``remove()``/``clear()``/``add()`` through an instance: the instance's
    row must be the tenant's (the links written are checked by the INSERT
    and held to the tenant's rows by the DELETE)."""
    if not action.startswith("pre_"):
        return
    source = owner_of(type(instance))
    if source is None:
        return
    name = _m2m_name(type(instance), sender)
    what = f"{name}.{action[4:]}()"
    tenant = _signal_tenant(type(instance), what)
    if tenant is None:
        return
    _check_rows(source, tenant, [instance], what)


def _m2m_name(model: Any, through: Any) -> str:
    """The accessor of ``model`` that writes through ``through``."""
    for field in model._meta.get_fields():
        if field.many_to_many:
            rel = field if field.auto_created else field.remote_field
            if rel.through is through:
                return field.get_accessor_name() if field.auto_created else field.name
    return through._meta.object_name


def check_reverse_add(manager: Any, objs: Iterable[Any]) -> None:
    """``folder.document_set.add(*docs)``: Django updates the rows with one
    ``UPDATE`` that sends no signal, so both ends are checked here (the
    UPDATE itself is held to the tenant's rows either way)."""
    scope = owner_of(manager.model)
    owner = owner_of(type(manager.instance))
    if scope is None:
        return
    action = f"{manager.field.remote_field.get_accessor_name()}.add()"
    tenant = _signal_tenant(manager.model, action)
    if tenant is None:
        return
    objs = [o for o in objs if isinstance(o, models.Model) and not o._state.adding]
    if owner is not None:
        _check_rows(owner, tenant, [manager.instance], action)
    if objs:
        _check_rows(scope, tenant, objs, action)


# -- wiring ----------------------------------------------------------------------


def _guarded(model: Any) -> None:
    """A guard was made for ``model`` (``graph.guard_hooks``, at start-up or,
    for a model owned after a declaration or a config change, on first
    use): its rows remember what they are loaded with, and its delete and
    many-to-many receivers are connected (per model: a receiver turns off
    Django's fast deletes and fast m2m adds). ``pre_save`` and ``post_save``
    are connected once for every model and look the guard up when they run,
    so a model's first save is checked however late its guard is made."""
    guard = guard_of(model)
    if guard is None:
        return
    if not model._meta.auto_created:
        _remember_loads(model)
    uid = f"tenantry.isolation:{model._meta.label}:{id(model)}"
    if guard.owner is not None or guard.heirs:
        pre_delete.connect(_on_delete, sender=model, dispatch_uid=uid)
    if model in graph._through_models() and guard.relations:
        m2m_changed.connect(
            _on_m2m, sender=model, dispatch_uid=f"tenantry.isolation:m2m:{id(model)}"
        )


def _on_class_prepared(sender: Any, **kwargs: Any) -> None:
    if apps.models_ready:  # a model made after start-up (tests): derive again
        graph.clear()


def _on_config_changed() -> None:
    """``DJUST_CONFIG`` changed (``TENANT_MODEL``, ``TENANT_DOMAIN_MODEL``
    decide whose rows some models hold): derive the guards again on next use."""
    graph.clear()


def install() -> None:
    """Derive the guards from the model graph (``AppConfig.ready``); models
    defined later get theirs on first use."""
    graph.build()


graph.guard_hooks.append(_guarded)
conf._reset_hooks.append(_on_config_changed)
class_prepared.connect(_on_class_prepared, dispatch_uid="tenantry.isolation")
pre_save.connect(_on_save, dispatch_uid="tenantry.isolation")
post_save.connect(_on_saved, dispatch_uid="tenantry.isolation")
