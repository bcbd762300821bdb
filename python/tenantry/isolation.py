"""The ORM isolation rules (SPEC §9), in one place.

A *scoped model* is a model with a :class:`~tenantry.managers.TenantManager`
(any of its managers; the default one wins when several scope). For those:

* **Tenant-field arguments** (``create``, ``get_or_create``,
  ``update_or_create`` lookups, ``defaults`` and ``create_defaults``,
  ``update``, ``TenantScopedMixin.create_for_tenant``) go through
  :func:`tenant_kwargs`: the field may arrive by name (``org``), attname
  (``org_id``) or as an instance (``org=<row>``); every form is compared to
  the writing tenant, and one canonical entry replaces them all.
* **Instances** (``save()``, ``delete()``, ``bulk_create``, ``bulk_update``,
  m2m ``add()``/``set()``/``remove()``/``clear()`` on either side, reverse
  foreign-key ``add()``) must belong to the writing tenant: their tenant field
  in memory *and* the row their primary key points at. What each instance
  was loaded with is remembered (``from_db``), so this costs no query for
  rows read from the database; an instance whose primary key or tenant
  column was changed in memory, or that was made in code with a primary key,
  is checked with one query per write call.
* **Relations**: a ForeignKey, OneToOne or ManyToMany from a scoped model to
  another scoped model must point at a row of the same tenant: at most one
  query per relation field per write call (batched for bulk writes), none
  when the related instance was loaded and is cached on the row. Reads get
  no query and no check.
* ``bulk_create(update_conflicts=True)`` needs the tenant field among
  ``unique_fields``, else the conflict could rewrite another tenant's row.
* ``raw()`` cannot be scoped: refused through a scoped manager.

The *writing tenant* is the tenant a scoped queryset was made for (the bound
one, or ``for_tenant(...)``), and for everything else (``save()`` and
``delete()`` of instances, plain managers, ``unscoped()``) the bound tenant.
With no tenant bound and an unscoped queryset there is nothing to compare
to: code that runs without a tenant (migrations, fixtures, management
commands) is trusted. Every refusal raises :class:`TenantMismatchError` and is
audited as ``isolation.refused``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.signals import class_prepared, m2m_changed, pre_delete, pre_save

from . import audit
from ._core import TenantInfo, TenantMismatchError
from .context import get_current_tenant

__all__ = [
    "check_conflict_target",
    "check_instances",
    "check_reverse_add",
    "check_update",
    "install",
    "refuse",
    "refuse_raw",
    "remember",
    "scope_of",
    "tenant_field_value",
    "tenant_kwargs",
    "write_tenant",
    "writing",
]

#: Where an instance remembers ``(pk, tenant column, relation columns)`` as
#: loaded or last saved.
ORIGIN = "_tenantry_origin"
_MISSING = object()
_EMPTY = (None, "")

#: The tenant a scoped queryset is writing for, while its write runs (the
#: instance signals fired by that write compare against it).
_writing: ContextVar[TenantInfo | None] = ContextVar("tenantry_writing", default=None)


# -- scoped models --------------------------------------------------------------


class Scope:
    """What the rules need to know about one scoped model (built once)."""

    __slots__ = ("_attnames", "_relations", "attname", "field", "model", "pk_attname")

    def __init__(self, model: type[models.Model], field: Any) -> None:
        self.model = model
        self.field = field
        self.attname = field.attname
        self.pk_attname = model._meta.pk.attname
        self._relations: tuple[tuple[Any, Scope], ...] | None = None
        self._attnames: tuple[str, ...] | None = None

    @property
    def relation_attnames(self) -> tuple[str, ...]:
        if self._attnames is None:
            self._attnames = tuple(field.attname for field, _ in self.relations)
        return self._attnames

    @property
    def label(self) -> str:
        return self.model._meta.label

    @property
    def relations(self) -> tuple[tuple[Any, Scope], ...]:
        """Concrete FK/OneToOne fields to another scoped model, with its scope."""
        if self._relations is None:
            found = []
            for field in self.model._meta.concrete_fields:
                if field.many_to_one or field.one_to_one:
                    if field is self.field or not field.is_relation:
                        continue
                    target = scope_of(field.related_model)
                    if target is not None:
                        found.append((field, target))
            self._relations = tuple(found)
        return self._relations


_scopes: dict[type, Scope | None] = {}


def _tenant_field_name(model: type[models.Model]) -> str | None:
    from .managers import TenantManager

    scoping = [m for m in model._meta.managers if isinstance(m, TenantManager)]
    if not scoping:
        return None
    default = model._meta.default_manager
    manager = default if default in scoping else scoping[0]
    return manager.tenant_field


def scope_of(model: Any) -> Scope | None:
    """The model's :class:`Scope`, or None when no manager of it is a
    ``TenantManager`` (cached per model class)."""
    try:
        return _scopes[model]
    except KeyError:
        pass
    scope = None
    if isinstance(model, type) and issubclass(model, models.Model):
        name = _tenant_field_name(model)
        if name is not None:
            try:
                scope = Scope(model, model._meta.get_field(name))
            except FieldDoesNotExist:  # reported by the manager's check (tenantry.E200)
                scope = None
    _scopes[model] = scope
    return scope


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


# -- refusing -------------------------------------------------------------------


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
    label = model._meta.label
    if isinstance(value, models.Model):
        shown = f"<{value._meta.label} pk={value.pk!r}>"
    else:
        shown = repr(value)
    where = "" if row is _MISSING else f" (row pk={row!r})"
    bound = None if tenant is None else tenant.id
    audit.emit(
        "isolation.refused",
        tenant=tenant,
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
    """Mark ``tenant`` as the writing tenant while a queryset's write runs,
    so the instance signals it fires compare against it."""
    if tenant is None:
        yield
        return
    token = _writing.set(tenant)
    try:
        yield
    finally:
        _writing.reset(token)


def _signal_tenant(model: Any, action: str) -> TenantInfo | None:
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


# -- rows and relations -----------------------------------------------------------


def _loaded_key(scope: Scope, obj: models.Model) -> str | None:
    """The tenant column of ``obj``'s row as read from the database, when
    ``obj`` was loaded (or saved) and its pk and tenant column are unchanged
    since; else None (a query must tell)."""
    origin = obj.__dict__.get(ORIGIN)
    if origin is None or obj._state.adding:
        return None
    pk, loaded, _ = origin
    attname = scope.field.attname
    if loaded is _MISSING or pk != obj.pk or obj.__dict__.get(attname, _MISSING) != loaded:
        return None
    return _key(scope.field, loaded)


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
    found = scope.model._base_manager.filter(pk__in=pending).values_list("pk", scope.field.attname)
    for pk, value in found:
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


def _check_targets(
    scope: Scope,
    field: Any,
    target: Scope,
    tenant: TenantInfo,
    values: set[Any],
    action: str,
) -> None:
    """``values`` of relation ``field`` name rows of ``target`` that belong to
    ``tenant`` (one query)."""
    if not values:
        return
    expected = _expected(target.field, tenant)
    to = field.target_field.attname
    rows = target.model._base_manager.filter(**{f"{to}__in": list(values)}).values_list(
        to, target.field.attname
    )
    for value, owner in rows:
        if _key(target.field, owner) != expected:
            refuse(
                scope.model,
                field.name,
                _Row(target.label, value),
                tenant,
                action,
                f"that {target.label} row belongs to another tenant; point "
                f"{field.name} at a {target.label} of the same tenant",
            )


def _relation_value(field: Any, index: int, obj: models.Model, target: Scope) -> tuple[Any, bool]:
    """``(column value, known)``: None when there is nothing to check (no
    value, or the value the row was loaded with: no new reference); known when
    the related instance cached on ``obj`` was loaded and tells its tenant
    without a query."""
    value = obj.__dict__.get(field.attname)
    if value is None:
        return None, True
    origin = obj.__dict__.get(ORIGIN)
    if origin is not None and not obj._state.adding and origin[0] == obj.pk:
        if origin[2][index] == value:
            return None, True
    cached = field.get_cached_value(obj, None) if field.is_cached(obj) else None
    if cached is not None and getattr(cached, field.target_field.attname, _MISSING) == value:
        key = _loaded_key(target, cached)
        if key is not None:
            return key, True
    return value, False


def _check_relations(
    scope: Scope,
    tenant: TenantInfo,
    objs: list[models.Model],
    fields: set[Any] | None,
    action: str,
) -> None:
    for index, (field, target) in enumerate(scope.relations):
        if fields is not None and field not in fields:
            continue
        expected = _expected(target.field, tenant)
        pending: set[Any] = set()
        for obj in objs:
            value, known = _relation_value(field, index, obj, target)
            if value is None:
                continue
            if hasattr(value, "resolve_expression"):
                _refuse_expression(scope, field, value, tenant, action)
            if not known:
                pending.add(value)
            elif value != expected:
                refuse(
                    scope.model,
                    field.name,
                    field.get_cached_value(obj),
                    tenant,
                    action,
                    f"that {target.label} row belongs to another tenant; point "
                    f"{field.name} at a {target.label} of the same tenant",
                )
        _check_targets(scope, field, target, tenant, pending, action)


def _refuse_expression(scope: Scope, field: Any, value: Any, tenant: Any, action: str) -> None:
    refuse(
        scope.model,
        field.name,
        value,
        tenant,
        action,
        "an expression cannot be checked against the tenant before it runs; pass a value",
    )


def check_instances(
    model: Any,
    tenant: TenantInfo,
    objs: list[models.Model],
    action: str,
    *,
    fields: Iterable[str] | None = None,
    new: bool,
) -> None:
    """``bulk_create`` (``new``: empty tenant fields are filled) and
    ``bulk_update`` (``fields``; the rows must be the tenant's): each
    object's tenant field, and its relations to scoped models (one query
    per relation field for the whole batch)."""
    scope = scope_of(model)
    if scope is None or not objs:
        return
    opts = model._meta
    chosen = None if fields is None else {opts.get_field(name) for name in fields}
    field = scope.field
    if chosen is None or field in chosen:
        expected = _expected(field, tenant)
        name, canonical = tenant_field_value(model, field.name, tenant)
        for obj in objs:
            value = obj.__dict__.get(field.attname)
            if new and value in _EMPTY:
                setattr(obj, name, canonical)
            elif not _same(field, value, expected):
                refuse(model, field.attname, value, tenant, action, _TODO_FIELD)
    if not new:
        _check_rows(scope, tenant, objs, action)
    _check_relations(scope, tenant, objs, chosen, action)


_TODO_FIELD = "leave the tenant field empty (tenantry fills it) or bind that tenant"


def check_conflict_target(
    model: Any, tenant: TenantInfo, unique_fields: Iterable[str] | None, action: str
) -> None:
    """``bulk_create(update_conflicts=True)``: the conflict target must
    include the tenant field (by name, attname or ``pk``)."""
    scope = scope_of(model)
    if scope is None:
        return
    opts = model._meta
    given = list(unique_fields or ())
    names = [opts.pk.name if name == "pk" else name for name in given]
    if scope.field not in {opts.get_field(name) for name in names}:
        refuse(
            model,
            "unique_fields",
            given,
            tenant,
            action,
            f"update_conflicts=True could rewrite another tenant's row: include "
            f"{scope.field.name!r} in unique_fields (with a unique constraint on it), "
            "or use ignore_conflicts=True",
        )


def check_update(
    model: Any, tenant: TenantInfo, values: dict[str, Any], action: str, *, checked: bool
) -> dict[str, Any]:
    """``QuerySet.update(**values)``: the tenant field (any form) must stay
    the tenant's, and relations to scoped models must point at its rows.
    ``checked``: the values come from ``bulk_update``, which checked them."""
    scope = scope_of(model)
    if scope is None or checked:
        return values
    values = tenant_kwargs(model, scope.field.name, tenant, values, action, fill=False)
    for field, target in scope.relations:
        for form in dict.fromkeys((field.name, field.attname)):
            if form not in values or values[form] is None:
                continue
            value = values[form]
            if hasattr(value, "resolve_expression"):
                _refuse_expression(scope, field, value, tenant, action)
            if isinstance(value, models.Model):
                key = _loaded_key(target, value)
                if key is not None:
                    if key != _expected(target.field, tenant):
                        refuse(model, form, value, tenant, action, "point it at your tenant's row")
                    continue
                value = getattr(value, field.target_field.attname)
            _check_targets(scope, field, target, tenant, {value}, action)
    return values


# -- the instance guard (signals) ------------------------------------------------


def _remember(scope: Scope, instance: models.Model, fields: set[Any] | None = None) -> None:
    """Record what the row now holds: everything after a load or a full save;
    only ``fields`` after a partial one (the rest of the row is unchanged)."""
    values = instance.__dict__
    old = values.get(ORIGIN)
    if fields is None or old is None:
        relations = tuple([values.get(name, _MISSING) for name in scope.relation_attnames])
    else:
        relations = tuple(
            values.get(field.attname, _MISSING) if field in fields else old[2][index]
            for index, (field, _) in enumerate(scope.relations)
        )
    values[ORIGIN] = (values.get(scope.pk_attname), values.get(scope.attname, _MISSING), relations)


def remember(model: Any, objs: Iterable[models.Model], fields: Iterable[str] | None) -> None:
    """After ``bulk_create``/``bulk_update``: the rows now hold these values."""
    scope = scope_of(model)
    if scope is None:
        return
    chosen = None if fields is None else {model._meta.get_field(name) for name in fields}
    for obj in objs:
        _remember(scope, obj, chosen)


def _remember_loads(model: Any) -> None:
    """Wrap ``model.from_db`` so each row read from the database remembers
    what it was loaded with (no query; a dict write per row). Instances made
    in code have no such record until they are saved."""
    if getattr(model.from_db, "_tenantry", False):  # inherited from a scoped parent
        return
    own = model.__dict__.get("from_db")

    def from_db(cls: Any, db: Any, field_names: Any, values: Any) -> Any:
        if own is not None:
            instance = own.__func__(cls, db, field_names, values)
        else:
            instance = super(model, cls).from_db(db, field_names, values)
        scope = scope_of(cls)
        if scope is not None:
            _remember(scope, instance)
        return instance

    from_db._tenantry = True  # type: ignore[attr-defined]
    model.from_db = classmethod(from_db)


def _on_save(
    sender: Any, instance: models.Model, raw: bool = False, update_fields: Any = None, **kw: Any
) -> None:
    if raw:  # loaddata: fixtures are trusted like any tenant-less code
        return
    scope = scope_of(sender)
    if scope is None:
        return
    action = "save()"
    tenant = _signal_tenant(sender, action)
    if tenant is None:
        return
    field = scope.field
    opts = sender._meta
    fields = None if update_fields is None else {opts.get_field(n) for n in update_fields}
    value = instance.__dict__.get(field.attname, _MISSING)
    if value is not _MISSING:
        if value in _EMPTY and instance._state.adding:
            name, canonical = tenant_field_value(sender, field.name, tenant)
            setattr(instance, name, canonical)
        elif not _same(field, value, _expected(field, tenant)):
            refuse(sender, field.attname, value, tenant, action, _TODO_FIELD)
    if _may_update_a_row(instance, opts):
        _check_rows(scope, tenant, [instance], action)
    _check_relations(scope, tenant, [instance], fields, action)
    _remember(scope, instance, fields)


def _may_update_a_row(instance: models.Model, opts: Any) -> bool:
    """Whether ``save()`` may write over an existing row: a loaded instance,
    or a new one with a primary key Django tries to UPDATE first."""
    if not instance._state.adding:
        return True
    if instance.pk is None:
        return False
    pk = opts.pk
    return not (pk.has_default() or pk.has_db_default())


def _on_delete(sender: Any, instance: models.Model, **kwargs: Any) -> None:
    scope = scope_of(sender)
    if scope is None:
        return
    action = "delete()"
    tenant = _signal_tenant(sender, action)
    if tenant is None:
        return
    field = scope.field
    value = instance.__dict__.get(field.attname, _MISSING)
    if value is not _MISSING and not _same(field, value, _expected(field, tenant)):
        refuse(sender, field.attname, value, tenant, action, "delete only your tenant's rows")
    _check_rows(scope, tenant, [instance], action)


def _on_m2m(
    sender: Any, instance: Any, action: str, model: Any, pk_set: Any, **kwargs: Any
) -> None:
    if not action.startswith("pre_"):
        return
    source = scope_of(type(instance))
    target = scope_of(model)
    if source is None or target is None:
        return
    name = _m2m_name(type(instance), sender)
    what = f"{name}.{action[4:]}()"
    tenant = _signal_tenant(type(instance), what)
    if tenant is None:
        return
    _check_rows(source, tenant, [instance], what)
    if action == "pre_add" and pk_set:
        expected = _expected(target.field, tenant)
        rows = target.model._base_manager.filter(pk__in=list(pk_set)).values_list(
            "pk", target.field.attname
        )
        for pk, owner in rows:
            if _key(target.field, owner) != expected:
                refuse(
                    source.model,
                    name,
                    _Row(target.label, pk),
                    tenant,
                    what,
                    f"that {target.label} row belongs to another tenant; link rows of "
                    "the same tenant only",
                )


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
    ``UPDATE`` that sends no signal, so both ends are checked here."""
    scope = scope_of(manager.model)
    owner = scope_of(type(manager.instance))
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


def _connect(model: Any) -> None:
    if _tenant_field_name(model) is None:
        return
    uid = f"tenantry.isolation:{model._meta.label}:{id(model)}"
    _remember_loads(model)
    pre_save.connect(_on_save, sender=model, dispatch_uid=uid)
    pre_delete.connect(_on_delete, sender=model, dispatch_uid=uid)


def _connect_m2m(model: Any) -> None:
    if scope_of(model) is None:
        return
    for field in model._meta.local_many_to_many:
        through = field.remote_field.through
        if isinstance(through, type) and scope_of(field.related_model) is not None:
            m2m_changed.connect(
                _on_m2m, sender=through, dispatch_uid=f"tenantry.isolation:m2m:{id(through)}"
            )


def _on_class_prepared(sender: Any, **kwargs: Any) -> None:
    _connect(sender)


def install() -> None:
    """Connect the guards to every scoped model (``AppConfig.ready``); models
    defined later are connected as they are prepared."""
    from django.apps import apps

    for model in apps.get_models(include_auto_created=False):
        _connect(model)
        _connect_m2m(model)


class_prepared.connect(_on_class_prepared, dispatch_uid="tenantry.isolation")
