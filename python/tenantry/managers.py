"""Querysets scoped to the current tenant, failing closed.

    class Item(models.Model):
        tenant_id = models.CharField(max_length=128, db_index=True)
        objects = TenantManager(tenant_field="tenant_id")

Every query through the manager (``all``, ``filter``, ``get``, ``count``,
``update``, ``delete``, related managers) is filtered to the tenant bound by
the middleware, a ``TenantMixin`` view, djust's WebSocket events or
``tenant_context()``. With no tenant bound it raises ``TenantNotSetError``
(``TENANT_STRICT = "raise"``, the default) or returns ``.none()``
(``"empty"``); it never queries ``tenant IS NULL``. Writes fill the tenant
field and follow the isolation rules of :mod:`tenantry.isolation` (another
tenant's value, row or related row raises ``TenantMismatchError``); ``raw()``
is refused. ``unscoped(reason=...)`` is the audited escape hatch.

A queryset is bound when it runs, whenever it was made (a view's
``queryset`` attribute, a form field's, a module-level queryset, made while
no tenant or another tenant was bound): it reads the tenant bound then, and
raises (or, with ``"empty"``, returns nothing without a query) if there is
none. Its joins reach only that tenant's rows (:mod:`tenantry.joins`). Rows it
fetched for one tenant are fetched again for another (its result cache
belongs to the tenant it was filled for); an ``iterator()`` started for one
tenant refuses to go on while another is bound. ``for_tenant(t)`` is the
explicit exception: ``t``'s rows whatever is bound.

``tenant_field`` may be a plain column holding the id (``tenant_id``) or a
``ForeignKey`` to your tenant model: the row is matched by ``TenantInfo.raw``
when it is an instance of that model, else by the key column (the FK's
``to_field``, e.g. ``to_field="slug"``).

:func:`tenant_base_manager` makes the base manager of every scoped model
(Django's ``_base_manager``) keep to the tenant enforced when its query runs.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, NamedTuple

from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.constants import LOOKUP_SEP
from django.db.models.lookups import Exact
from django.db.models.sql.where import AND
from django.db.models.utils import resolve_callables

from . import audit, conf, isolation, joins
from ._core import TenantInfo, TenantMismatchError, TenantNotSetError
from .context import get_current_tenant
from .db.querysets import RLSScopeMixin
from .db.scope import BYPASS, bypassing
from .graph import scope_of
from .isolation import BoundTenant, SharedWith, tenant_field_value

__all__ = [
    "TenantManager",
    "TenantQuerySet",
    "scoped_queryset",
    "tenant_base_manager",
    "tenant_field_value",
]


class _Marker:
    """A queryset's kind of tenant; pickled by name, so an unpickled queryset
    keeps its kind."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<{self.name}>"


#: Marks a queryset of no tenant (``for_tenant(None)``): no rows, no writes.
_NO_TENANT = _Marker("_NO_TENANT")
#: Marks a ``TenantManager`` queryset: it reads (and writes for) the tenant
#: bound when it runs.
_LATE = _Marker("_LATE")


class _Rows(NamedTuple):
    """A late queryset's result cache, with the tenant it was fetched for."""

    tenant: str | None
    rows: list[Any]


def _bound_id() -> str | None:
    tenant = get_current_tenant()
    return None if tenant is None else tenant.id


class _SameTenant:
    """An ``iterator()`` of a late queryset: it reads the rows of the tenant
    bound when it starts, and refuses to go on while another is bound (with
    none bound it goes on: a streaming response's body, trusted code)."""

    __slots__ = ("inner", "model", "started")

    def __init__(self, inner: Any, model: Any) -> None:
        self.inner, self.model, self.started = inner, model, _UNSTARTED

    def _check(self) -> None:
        bound = get_current_tenant()
        if self.started is _UNSTARTED:
            self.started = bound
        elif bound is not None and bound != self.started:
            isolation.refuse(
                self.model,
                "iterator",
                None if self.started is None else self.started.id,
                bound,
                "iterator()",
                f"an iterator started for tenant "
                f"{None if self.started is None else self.started.id!r} cannot go on while "
                f"{bound.id!r} is bound; start a new one",
            )

    def __iter__(self) -> _SameTenant:
        return self

    def __next__(self) -> Any:
        self._check()
        return next(self.inner)

    def __aiter__(self) -> _SameTenant:
        return self

    async def __anext__(self) -> Any:
        self._check()
        return await self.inner.__anext__()

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


_UNSTARTED = _Marker("_UNSTARTED")


def _fields_only(lookups: dict[str, Any]) -> dict[str, Any]:
    """The lookups ``get_or_create`` would also use to create a row."""
    return {k: v for k, v in lookups.items() if LOOKUP_SEP not in k}


def _resolved(defaults: Any) -> dict[str, Any] | None:
    """``defaults`` with callables called, as Django does before using them."""
    return None if defaults is None else dict(resolve_callables(defaults))


def _shared_for_writing(where: Any) -> None:
    """Make ``where``'s ``with_shared()`` condition admit only the rows the
    bound tenant may write (its own, and write grants)."""
    where.children = [
        SharedWith(child.lhs, child.rhs[0], own=child.rhs[1], write=True)
        if isinstance(child, SharedWith)
        else child
        for child in where.children
    ]


class TenantQuerySet(RLSScopeMixin, models.QuerySet):
    _tenant_field = "tenant"
    _tenant: Any = None  # None: unscoped; a TenantInfo; _NO_TENANT; or _LATE
    _values_checked = False  # bulk_update's inner update(): its values were checked
    _shared = False  # with_shared(): rows granted to the bound tenant too

    # A late queryset's result cache belongs to the tenant it was filled for:
    # read while another tenant is bound, it is empty (Django then runs the
    # query again, or clones for a slice, count() or exists()).
    @property
    def _result_cache(self) -> Any:
        held = self.__dict__.get("_result_cache")
        if type(held) is _Rows:
            return held.rows if held.tenant == _bound_id() else None
        return held

    @_result_cache.setter
    def _result_cache(self, rows: Any) -> None:
        if rows is not None and self.__dict__.get("_tenant") is _LATE:
            rows = _Rows(_bound_id(), rows)
        self.__dict__["_result_cache"] = rows

    def _fetch_all(self) -> None:
        held = self.__dict__.get("_result_cache")
        if type(held) is _Rows and held.tenant != _bound_id():
            self.__dict__["_result_cache"] = None
            self._prefetch_done = False  # the new rows need their prefetches
        super()._fetch_all()

    def iterator(self, chunk_size: int | None = None) -> Any:
        rows = super().iterator(chunk_size)
        return _SameTenant(rows, self.model) if self._tenant is _LATE else rows

    def aiterator(self, chunk_size: int = 2000) -> Any:
        rows = super().aiterator(chunk_size)
        return _SameTenant(rows, self.model) if self._tenant is _LATE else rows

    def _clone(self) -> TenantQuerySet:
        clone = super()._clone()
        clone._tenant_field = self._tenant_field
        clone._tenant = self._tenant
        clone._values_checked = self._values_checked
        clone._shared = self._shared
        return clone

    def select_for_update(self, *args: Any, **kwargs: Any) -> TenantQuerySet:
        """Django's, for the rows the bound tenant may write: a lock is a
        write's (it makes the rows' owner wait). A read escape
        (``unscoped()``, ``for_tenant()`` of another tenant) reads, so with a
        tenant bound it refuses (``TenantMismatchError``); ``with_shared()``
        locks the tenant's own rows and those granted to it with a write
        grant, never a read grant's."""
        self._refuse_lock("select_for_update()")
        locked = super().select_for_update(*args, **kwargs)
        if locked._shared:
            _shared_for_writing(locked.query.where)
        return locked

    def _refuse_lock(self, what: str) -> None:
        bound = get_current_tenant()
        if bound is None or bypassing():
            return  # trusted code (no tenant bound, or rls_bypass())
        scope = self._rls_scope
        if scope == BYPASS:
            escape = "unscoped()"
        elif scope is not None and scope[0] != bound.id:
            escape = f"for_tenant({scope[0]!r})"
        else:
            return
        raise TenantMismatchError(
            f"{self.model._meta.label}: {what} of {escape} with tenant {bound.id!r} bound: a "
            "read escape reads, and a lock makes the rows' owner wait; lock the tenant's own "
            f"rows ({self.model.__name__}.objects.select_for_update()), or run it with no "
            "tenant bound"
        )

    def with_shared(self) -> TenantQuerySet:
        """The bound tenant's rows and the rows other tenants granted to it,
        live when the query runs (not revoked, not expired: checked by the
        query itself). Granted rows are read-only unless the grant is a
        write grant; none can be deleted (docs/collaboration.md)."""
        if self._tenant is not _LATE:
            raise ValueError(
                f"{self.model.__name__}: with_shared() is for the bound tenant's queryset "
                f"({self.model.__name__}.objects.with_shared()), not for unscoped() or "
                "for_tenant()"
            )
        if self._shared:
            return self._chain()
        shared = self._chain()
        where = shared.query.where
        children, replaced = [], False
        for child in where.children:
            if (
                isinstance(child, BoundTenant)
                and child.rhs == "bound"
                and child.lhs.target.model._meta.concrete_model is self.model._meta.concrete_model
            ):
                # A locking read locks only what the tenant may write.
                write = bool(shared.query.select_for_update)
                children.append(SharedWith(child.lhs, "bound", write=write))
                replaced = True
            else:
                children.append(child)
        if not replaced:
            raise ValueError(
                f"{self.model._meta.label} keeps its tenant column on a parent table: its "
                "rows cannot be granted, so with_shared() has nothing to add"
            )
        where.children = children
        shared._shared = True
        return shared

    def _scope(self, tenant: TenantInfo) -> TenantQuerySet:
        name, value = tenant_field_value(self.model, self._tenant_field, tenant)
        field = self.model._meta.get_field(name)
        query = self.query
        if not field.is_relation and field.model._meta.concrete_model is (
            query.get_meta().concrete_model
        ):
            # A column of the model's own table: the condition without
            # filter()'s resolution (every scoped queryset starts here).
            scoped = self._chain()
            alias = scoped.query.get_initial_alias()
            scoped.query.where.add(Exact(field.get_col(alias), value), AND)
        else:
            scoped = self.filter(**{name: value})
        scoped._tenant = tenant
        joins.mark(scoped.query, tenant)
        return scoped

    def _late(self) -> TenantQuerySet:
        """This queryset held to the tenant bound when it runs."""
        field = self.model._meta.get_field(self._tenant_field)
        query = self.query
        if field.model._meta.concrete_model is query.get_meta().concrete_model:
            # A column of the model's own table: the condition made once per
            # model and alias, without filter()'s resolution (every
            # TenantManager queryset starts here).
            late = self._chain()
            alias = late.query.get_initial_alias()
            key = (self.model, field, alias)
            condition = _late_conditions.get(key)
            if condition is None:
                condition = _late_conditions[key] = BoundTenant(field.get_col(alias), "bound")
            late.query.where.add(condition, AND)
        else:
            late = self.filter(BoundTenant(field.name, "bound"))  # a parent's column: a join
        late._tenant = _LATE
        joins.mark(late.query, joins.BOUND)
        return late

    def _writing_tenant(self, action: str) -> TenantInfo | None:
        """The tenant this write is checked against (see ``isolation``)."""
        if self._tenant is _LATE:
            tenant = get_current_tenant()
            if tenant is None:
                raise TenantNotSetError(
                    f"{self.model.__name__}.objects.{action}() needs a tenant: none is bound"
                )
            return tenant
        if self._tenant is _NO_TENANT:
            raise TenantNotSetError(
                f"{self.model.__name__}.objects.{action}() needs a tenant: none is bound"
            )
        return isolation.write_tenant(self.model, self._tenant, f"objects.{action}()")

    def _writer(self, tenant: TenantInfo | None) -> TenantQuerySet:
        """The queryset that runs a write for ``tenant``: an ``unscoped()``
        queryset's writes are not exempt from row-level security while a
        tenant is bound ("unscoped" lifts the read filter, never the write
        rules); inside ``rls_bypass()`` they are."""
        if tenant is None or self._rls_scope != BYPASS or bypassing():
            return self
        clone = self._clone()
        clone._rls_scope = None
        return clone

    def _tenant_kwargs(
        self, tenant: TenantInfo, values: dict[str, Any] | None, action: str, fill: bool = False
    ) -> dict[str, Any] | None:
        if values is None:
            return None
        return isolation.tenant_kwargs(
            self.model, self._tenant_field, tenant, values, f"objects.{action}()", fill=fill
        )

    def create(self, **kwargs: Any) -> Any:
        tenant = self._writing_tenant("create")
        if tenant is None:
            return super().create(**kwargs)
        kwargs = self._tenant_kwargs(tenant, kwargs, "create", fill=True)
        with isolation.checked_write(tenant, "objects.create()"):
            return super(TenantQuerySet, self._writer(tenant)).create(**kwargs)

    def get_or_create(self, defaults: Any = None, **kwargs: Any) -> Any:
        tenant = self._writing_tenant("get_or_create")
        if tenant is None:
            return super().get_or_create(defaults, **kwargs)
        self._tenant_kwargs(tenant, _fields_only(kwargs), "get_or_create")
        defaults = self._tenant_kwargs(tenant, _resolved(defaults), "get_or_create")
        with isolation.checked_write(tenant, "objects.get_or_create()"):
            return super(TenantQuerySet, self._writer(tenant)).get_or_create(defaults, **kwargs)

    def update_or_create(
        self, defaults: Any = None, create_defaults: Any = None, **kwargs: Any
    ) -> Any:
        tenant = self._writing_tenant("update_or_create")
        if tenant is None:
            return super().update_or_create(defaults, create_defaults, **kwargs)
        self._tenant_kwargs(tenant, _fields_only(kwargs), "update_or_create")
        if self._shared:  # before Django's SELECT ... FOR UPDATE, which RLS would filter
            isolation.refuse_read_only(
                self.filter(**kwargs), tenant, "objects.with_shared().update_or_create()"
            )
        defaults = self._tenant_kwargs(tenant, _resolved(defaults), "update_or_create")
        create_defaults = self._tenant_kwargs(
            tenant, _resolved(create_defaults), "update_or_create"
        )
        with isolation.checked_write(tenant, "objects.update_or_create()"):
            return super(TenantQuerySet, self._writer(tenant)).update_or_create(
                defaults, create_defaults, **kwargs
            )

    def bulk_create(
        self,
        objs: Any,
        batch_size: int | None = None,
        ignore_conflicts: bool = False,
        update_conflicts: bool = False,
        update_fields: Any = None,
        unique_fields: Any = None,
    ) -> Any:
        tenant = self._writing_tenant("bulk_create")
        objs = list(objs)
        approved = None
        if tenant is not None:
            action = "objects.bulk_create()"
            if update_conflicts:
                isolation.check_conflict_target(self.model, tenant, unique_fields, action)
            approved = isolation.check_instances(self.model, tenant, objs, action, new=True)
        with isolation.checked_write(tenant, "objects.bulk_create()", approved):
            made = super(TenantQuerySet, self._writer(tenant)).bulk_create(
                objs,
                batch_size=batch_size,
                ignore_conflicts=ignore_conflicts,
                update_conflicts=update_conflicts,
                update_fields=update_fields,
                unique_fields=unique_fields,
            )
        if not (ignore_conflicts or update_conflicts):  # else a row may hold other values
            isolation.remember(self.model, made, None)
        return made

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        tenant = self._writing_tenant("bulk_update")
        objs = tuple(objs)
        approved = None
        if tenant is not None:
            approved = isolation.check_instances(
                self.model, tenant, list(objs), "objects.bulk_update()", fields=fields, new=False
            )
        writer = self._writer(tenant)._clone()
        writer._values_checked = True  # its update() gets Case() expressions of checked values
        with isolation.checked_write(tenant, "objects.bulk_update()", approved):
            updated = super(TenantQuerySet, writer).bulk_update(objs, fields, batch_size=batch_size)
        isolation.remember(self.model, objs, fields)
        return updated

    def update(self, **kwargs: Any) -> int:
        if self._tenant is _LATE and get_current_tenant() is None:
            if conf.current().strict == "empty":
                return super().update(**kwargs)  # no rows: nothing is sent
        tenant = self._writing_tenant("update")
        if self._shared and tenant is not None:
            with isolation.writing_shared(self, tenant, kwargs, "objects.with_shared().update()"):
                kwargs, approved = isolation.check_update(
                    self.model, tenant, kwargs, "objects.with_shared().update()"
                )
                with isolation.checked_write(tenant, "objects.update()", approved):
                    return super(TenantQuerySet, self._writer(tenant)).update(**kwargs)
        approved = None
        if tenant is not None and not self._values_checked:
            kwargs, approved = isolation.check_update(
                self.model, tenant, kwargs, "objects.update()"
            )
        with isolation.checked_write(tenant, "objects.update()", approved):
            return super(TenantQuerySet, self._writer(tenant)).update(**kwargs)

    update.alters_data = True

    def delete(self) -> Any:
        if self._tenant in (_NO_TENANT, _LATE) and get_current_tenant() is None:
            return super().delete()  # no rows, or TenantNotSetError when it runs
        tenant = self._writing_tenant("delete")
        if self._shared and tenant is not None:
            isolation.check_shared_delete(self, tenant, "objects.with_shared().delete()")
        with isolation.checked_write(tenant, "objects.delete()"):
            return super(TenantQuerySet, self._writer(tenant)).delete()

    delete.alters_data = True
    delete.queryset_only = True

    def raw(self, raw_query: str, params: Any = (), translations: Any = None, using: Any = None):
        """Refused through a scoped manager: SQL cannot be scoped. Use
        ``unscoped(reason=...).raw(...)``, which is audited."""
        if self._tenant is not None:
            isolation.refuse_raw(self.model, self._tenant)
        return super().raw(raw_query, params, translations, using)

    @classmethod
    def as_manager(cls, tenant_field: str = "tenant") -> TenantManager:  # type: ignore[override]
        manager = TenantManager.from_queryset(cls)(tenant_field=tenant_field)
        manager._built_with_as_manager = True
        return manager

    as_manager.queryset_only = True  # type: ignore[attr-defined]


class TenantManager(models.Manager.from_queryset(TenantQuerySet)):  # type: ignore[misc]
    """Scopes every query to the current tenant (see the module docs)."""

    #: How the model graph (``tenantry.graph``) recognises a scoping manager.
    scopes_by_tenant = True

    def __init__(self, *args: Any, tenant_field: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tenant_field = tenant_field

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Django builds the reverse foreign-key manager (``folder.document_set``)
        # as a subclass named RelatedManager; its add() moves rows with an
        # UPDATE that sends no signal, so both ends are checked first.
        super().__init_subclass__(**kwargs)
        add = cls.__dict__.get("add")
        if cls.__name__ == "RelatedManager" and add is not None:

            def checked_add(self: Any, *objs: Any, **options: Any) -> Any:
                isolation.check_reverse_add(self, objs)
                return add(self, *objs, **options)

            checked_add.alters_data = True  # type: ignore[attr-defined]
            cls.add = checked_add  # type: ignore[method-assign]

    @property
    def tenant_field(self) -> str:
        if self._tenant_field is not None:
            return self._tenant_field
        # Related managers are built from the manager's class, not the
        # instance: take the field from the model's own tenant manager.
        default = getattr(self.model, "_default_manager", None)
        if default is not None and default is not self and isinstance(default, TenantManager):
            return default.tenant_field
        return "tenant"

    def _base(self) -> TenantQuerySet:
        qs = super().get_queryset()
        qs._tenant_field = self.tenant_field
        return qs

    def get_queryset(self) -> TenantQuerySet:
        # Bound when it runs, whatever is bound now: a queryset made while
        # one tenant's request imported the URLconf (a view's queryset
        # attribute, a form field's) must not keep that tenant for good.
        return self._base()._late()

    def _no_tenant(self, what: str) -> TenantQuerySet:
        if conf.current().strict == "empty":
            empty = self._base().none()
            empty._tenant = _NO_TENANT
            return empty
        raise TenantNotSetError(
            f"{what} is tenant-scoped and no tenant is bound: use TenantMiddleware, "
            "a TenantMixin view, tenant_context(...), or .unscoped(reason=...)"
        )

    def for_tenant(self, tenant: TenantInfo | str | None) -> TenantQuerySet:
        """Rows of ``tenant`` (given explicitly, whatever is bound)."""
        if tenant is None:
            return self._no_tenant(f"{self.model.__name__}.objects.for_tenant(None)")
        if not isinstance(tenant, TenantInfo):
            tenant = TenantInfo(tenant)
        scoped = self._base()._scope(tenant)
        scoped._rls_scope = (tenant.id, "")  # row-level security sees this tenant too
        return scoped

    def unscoped(self, reason: str = "") -> TenantQuerySet:
        """Every tenant's rows. Audited (``queryset.unscoped``) with ``reason``."""
        audit.emit(
            "queryset.unscoped",
            tenant=get_current_tenant(),
            level=logging.WARNING,
            model=self.model._meta.label,
            reason=reason or "(no reason given)",
        )
        everything = self._base()
        everything._rls_scope = BYPASS  # its queries pass row-level security too
        joins.mark(everything.query, joins.UNSCOPED)  # and what they join is not held
        return everything

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        try:
            self.model._meta.get_field(self.tenant_field)
        except FieldDoesNotExist:
            errors.append(
                checks.Error(
                    f"{self.model._meta.label}.{self.name} scopes by tenant_field="
                    f"{self.tenant_field!r}, which is not a field of the model.",
                    obj=self.model,
                    id="tenantry.E200",
                )
            )
        return errors


def scoped_queryset(
    model: type[models.Model], tenant_field: str, tenant: TenantInfo | None, manager: Any = None
) -> Any:
    """``model``'s rows of ``tenant`` (``.none()`` for no tenant) through
    ``manager`` (default: the model's default manager), whatever kind it is,
    without touching the bound tenant."""
    if manager is None:
        manager = model._default_manager
    opts = model._meta
    if isinstance(manager, TenantManager) and opts.get_field(
        manager.tenant_field
    ) == opts.get_field(tenant_field):
        if tenant is None:
            empty = manager._base().none()
            empty._tenant = _NO_TENANT
            return empty
        return manager._base()._scope(tenant)
    base = manager.all()
    if tenant is None:
        return base.none()
    name, value = tenant_field_value(model, tenant_field, tenant)
    return base.filter(**{name: value})


class TenantRowsMixin:
    """A base manager that keeps to the tenant enforced when its queries
    run, and to nothing with none (see :func:`tenant_base_manager`)."""

    def get_queryset(self) -> Any:
        queryset = super().get_queryset()  # type: ignore[misc]
        scope = scope_of(self.model)  # type: ignore[attr-defined]
        if scope is None:
            return queryset
        query = queryset.query
        if scope.field.model._meta.concrete_model is not query.get_meta().concrete_model:
            held = queryset.filter(BoundTenant(scope.field.name))  # a parent's column: a join
            joins.mark(held.query, joins.ENFORCED)
            return held
        # The column is on the model's own table: add the condition without
        # filter()'s clone and resolution (this runs for every save() and
        # every related-object load), made once per model and table alias.
        alias = query.get_initial_alias()
        key = (self.model, alias)  # type: ignore[attr-defined]
        condition = _row_conditions.get(key)
        if condition is None:
            condition = _row_conditions[key] = BoundTenant(scope.field.get_col(alias))
        query.where.add(condition, AND)
        joins.mark(query, joins.ENFORCED)
        return queryset


#: (model, alias) → the base manager's condition (lookups are not mutated
#: once built: Django shares them between query clones too).
_row_conditions: dict[tuple[type, str], BoundTenant] = {}
#: (model, tenant field, alias) → a TenantManager queryset's condition.
_late_conditions: dict[tuple[type, Any, str], BoundTenant] = {}


_rows_classes: dict[type, type] = {}


def tenant_base_manager(manager: Any) -> Any:
    """``manager`` (a model's ``_base_manager``, as Django picks it) held to
    the enforced tenant's rows when its model is scoped: Django reads
    through it for ``refresh_from_db()``, related descriptors, generic
    foreign keys, prefetches, ``save()``'s UPDATE and the delete collector.
    A TenantManager is kept as it is."""
    model = getattr(manager, "model", None)
    if model is None or isinstance(manager, TenantManager) or scope_of(model) is None:
        return manager
    cls = type(manager)
    rows_class = _rows_classes.get(cls)
    if rows_class is None:
        rows_class = type(f"TenantRows{cls.__name__}", (TenantRowsMixin, cls), {})
        _rows_classes[cls] = rows_class
    rows = copy.copy(manager)
    rows.__class__ = rows_class
    return rows
