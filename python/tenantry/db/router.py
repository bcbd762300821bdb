"""A database per tenant (docs/postgresql.md#a-database-per-tenant).

The registry names each tenant's database alias
(``DJUST_CONFIG["TENANT_DATABASE_FIELD"]``, read as ``TenantInfo.database``;
empty means ``default``). :func:`database_for` is the one rule turning a
tenant into its alias; everything below asks it.

``TenantDatabaseRouter`` (in ``DATABASE_ROUTERS``) sends the queries of the
*routed models* (the tenant-owned models of ``tenantry.ownership``, the
registry left out, and the many-to-many tables between them) to the bound
tenant's database; every other model (the registry, auth, sessions,
contenttypes, tenantry's own audit and suspension tables) stays on
``default``. With no tenant bound, a routed model goes to the database of
the instance it is given (``save()`` of a row read with ``using()``), else
to ``default``, where the scoping fails closed as everywhere.

Routers only choose when the caller does not. So the wall holds the choice
too, for every way of naming a database (``using()``, ``db_manager()``,
``save(using=)``, ``bulk_create``, the async ORM, ``raw()``, a cursor of
``connections[alias]``), while a tenant is bound:

* a query of a routed model (every SQL compiler: reads, inserts, updates,
  deletes; :func:`check_compiler`, hooked by ``tenantry.wall``) must run on
  the tenant's database;
* any statement on a connection other than ``default`` (every alias but
  ``default`` is some tenant's database once the router is installed) must be
  on the tenant's own database (:func:`_guard_connection`, an execute wrapper
  every connection gets when Django opens it).

Both raise :class:`~tenantry.TenantMismatchError` naming the two databases.
A tenant whose alias is not in ``settings.DATABASES`` is refused
(``TenantDatabaseMissing``), never served from ``default``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.apps import apps
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, connections, router
from django.db.backends.signals import connection_created
from django.db.models import Model

from .. import _core, conf
from .._core import TenantMismatchError
from ..context import get_current_tenant
from ..ownership import owned_models
from ..registry import tenant_database

__all__ = [
    "TenantDatabaseRouter",
    "check_compiler",
    "constraint_problems",
    "database_for",
    "movable_models",
    "moving_between",
    "routed_models",
    "routing_enabled",
]

#: The aliases ``tenantry.moving`` may use besides the tenant's own while it
#: copies a tenant's rows (source and target), else empty.
_moving: ContextVar[frozenset[str]] = ContextVar("tenantry_moving_databases", default=frozenset())

#: ``[frozenset of routed models]`` once found (dropped with the config).
_routed_found: list[frozenset[type[Model]]] = []
#: ``[(movable models, constraint problems)]`` once found.
_apart_found: list[Any] = []
#: ``[True/False]``: whether a TenantDatabaseRouter is in DATABASE_ROUTERS.
_enabled: list[bool] = []


def database_for(tenant: Any) -> str:
    """The database alias of ``tenant`` (an id or a ``TenantInfo``): its
    registry row's ``TENANT_DATABASE_FIELD`` (or the ``TenantInfo.database``
    a ``TENANT_VALIDATOR`` gives), ``default`` when empty or when the
    registry does not know it. With a registry, its answer wins over what a
    ``TenantInfo`` passed in claims. An alias not in ``settings.DATABASES``
    raises ``TenantDatabaseMissing``: such a tenant is refused, never served
    from ``default``."""
    return tenant_database(_core.lookup_tenant(tenant))  # InvalidTenantId for a bad id


def routing_enabled() -> bool:
    """Whether a :class:`TenantDatabaseRouter` is in ``DATABASE_ROUTERS``."""
    if not _enabled:
        _enabled.append(any(isinstance(r, TenantDatabaseRouter) for r in router.routers))
    return _enabled[0]


def routed_models() -> frozenset[type[Model]]:
    """The models whose rows live in their tenant's database: the
    tenant-owned models (the registry aside), their proxies, and the
    auto-created many-to-many tables of an owned model."""
    if _routed_found:
        return _routed_found[0]
    owned = {entry.model for entry in owned_models() if not entry.is_registry}
    found = set(owned)
    for model in apps.get_models(include_auto_created=True):
        opts = model._meta
        if opts.proxy and opts.concrete_model in owned:
            found.add(model)
        elif opts.auto_created and getattr(opts.auto_created, "_meta", None):
            if opts.auto_created._meta.concrete_model in owned:
                found.add(model)
    _routed_found[:] = [frozenset(found)]
    return _routed_found[0]


def constraint_problems() -> list[tuple[type[Model], Any]]:
    """``(model, field)`` of every routed model's database constraint that
    points outside the routed models that can live apart (to ``auth.User``,
    the registry, a shared table, or a routed table that itself cannot): a
    database cannot hold a constraint to another database, so such a field
    needs ``db_constraint=False`` (``on_delete`` is then Django's job
    alone). Tables with one are kept off tenant databases
    (``allow_migrate``) and ``tenantry move`` refuses a tenant with rows in
    them."""
    return list(_apart()[1])


def movable_models() -> frozenset[type[Model]]:
    """The routed models whose tables tenant databases get (no constraint
    to a table that stays behind): what ``tenantry move`` copies."""
    return _apart()[0]


def _apart() -> tuple[frozenset[type[Model]], tuple[tuple[type[Model], Any], ...]]:
    if _apart_found:
        return _apart_found[0]
    movable = set(routed_models())
    problems: list[tuple[type[Model], Any]] = []
    changed = True
    while changed:  # a table that stays behind keeps the tables pointing at it too
        changed = False
        for model in sorted(movable, key=lambda m: m._meta.label):
            for field in _held_by(model, movable):
                problems.append((model, field))
                movable.discard(model)
                changed = True
                break
    found = (frozenset(movable), tuple(sorted(problems, key=lambda p: p[0]._meta.label)))
    _apart_found[:] = [found]
    return found


def _held_by(model: type[Model], movable: set[type[Model]]) -> Any:
    """``model``'s fields that tie its table to one outside ``movable``: a
    constraint, or an auto-created many-to-many table (made with
    ``model``'s) that cannot move."""
    for field in model._meta.local_concrete_fields:
        if (
            field.is_relation
            and getattr(field, "db_constraint", False)
            and field.related_model._meta.concrete_model not in movable
        ):
            yield field
    for field in model._meta.local_many_to_many:
        through = field.remote_field.through
        if through._meta.auto_created and through not in movable:
            yield field


def _can_live_apart(model: type[Model]) -> bool:
    return model in movable_models()


def _routed(model: Any) -> bool:
    return model is not None and model._meta.concrete_model in routed_models()


class TenantDatabaseRouter:
    """Sends the routed models to the bound tenant's database, everything
    else to ``default`` (docs/postgresql.md#a-database-per-tenant)."""

    def _route(self, model: Any, hints: dict[str, Any]) -> str:
        if not _routed(model):
            return DEFAULT_DB_ALIAS
        tenant = get_current_tenant()
        if tenant is not None:
            return database_for(tenant)
        instance = hints.get("instance")
        db = getattr(getattr(instance, "_state", None), "db", None)
        return db or DEFAULT_DB_ALIAS

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return self._route(model, hints)

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return self._route(model, hints)

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        """No relation between rows of two databases (it could not hold)."""
        db1, db2 = obj1._state.db, obj2._state.db
        if db1 is None or db2 is None:
            return None
        return db1 == db2

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool:
        """Every table on ``default``; on another database, only the routed
        models' tables that hold no constraint to a shared table (operations
        without a model, such as ``RunSQL`` with no ``hints``, run on
        ``default`` only)."""
        if db == DEFAULT_DB_ALIAS:
            return True
        model = hints.get("model")
        if model is None and model_name is not None:
            try:
                model = apps.get_model(app_label, model_name)
            except LookupError:
                return False
        if model is None:
            return False
        try:
            current = apps.get_model(model._meta.app_label, model._meta.model_name)
        except LookupError:
            return False
        return _can_live_apart(current._meta.concrete_model)


@contextmanager
def moving_between(*aliases: str) -> Iterator[None]:
    """For ``tenantry.moving`` only: the bound tenant may also reach
    ``aliases`` in this block (it copies the tenant's rows across)."""
    token = _moving.set(frozenset(aliases))
    try:
        yield
    finally:
        _moving.reset(token)


def _allowed(tenant: Any, alias: str) -> bool:
    return alias in _moving.get() or alias == database_for(tenant)


def _refuse(tenant: Any, alias: str, what: str) -> None:
    raise TenantMismatchError(
        f"{what} on database {alias!r} while tenant {str(tenant)!r} is bound, whose "
        f"database is {database_for(tenant)!r}: a tenant reaches only its own database "
        "(docs/postgresql.md#a-database-per-tenant)"
    )


def check_compiler(compiler: Any) -> None:
    """A query of a routed model runs on the bound tenant's database (every
    SQL compiler calls this before it executes; cheap when the router is
    not installed)."""
    if not routing_enabled():
        return
    tenant = get_current_tenant()
    if tenant is None:
        return
    model = compiler.query.model
    if not _routed(model):
        return
    if not _allowed(tenant, compiler.using):
        _refuse(tenant, compiler.using, f"a query of {model._meta.label}")


def _guard_connection(execute: Any, sql: str, params: Any, many: bool, context: dict) -> Any:
    tenant = get_current_tenant()
    if tenant is not None:
        alias = context["connection"].alias
        if alias != DEFAULT_DB_ALIAS and not _allowed(tenant, alias):
            _refuse(tenant, alias, "a statement")
    return execute(sql, params, many, context)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.alias == DEFAULT_DB_ALIAS or not routing_enabled():
        return
    if _guard_connection not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _guard_connection)


def _forget(**kwargs: Any) -> None:
    _routed_found.clear()
    _apart_found.clear()
    _enabled.clear()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("DATABASE_ROUTERS", "DATABASES", "INSTALLED_APPS"):
        _forget()


def guard_open_connections() -> None:
    """Give connections opened before the router was installed the guard."""
    for connection in connections.all(initialized_only=True):
        _on_connection_created(None, connection)


connection_created.connect(_on_connection_created, dispatch_uid="tenantry.db.router")
setting_changed.connect(_on_setting_changed, dispatch_uid="tenantry.db.router")
conf._reset_hooks.append(_forget)
