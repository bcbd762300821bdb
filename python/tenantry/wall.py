"""Where the ORM's first wall hooks into Django (docs/querysets.md#how-the-wall-is-built).

Installed once by ``TenantryConfig.ready``:

* **the SQL compilers** of INSERT, UPDATE and DELETE: every ORM write of
  every manager and queryset, sync or async, ``save()``, bulk writes,
  related managers, many-to-many links, the delete collector, runs through
  one of them. Before the SQL is built, :mod:`tenantry.isolation` holds an
  UPDATE or DELETE to the enforced tenant's rows and checks what an INSERT
  or UPDATE writes (:func:`~tenantry.isolation.on_insert` and siblings), and
  :func:`tenantry.lifecycle.on_insert` sees every new registry row (an id
  that still holds data cleared first, a new incarnation, then a fresh start)
  and :func:`tenantry.lifecycle.on_update` every changed one (with a tenant
  bound, its own row only), and :func:`tenantry.sharing.on_write` refuses
  every write of the grant table but ``tenantry.sharing``'s own;
* every SQL compiler (reads too): a routed model's query runs on the bound
  tenant's database (:func:`tenantry.db.router.check_compiler`, a database
  per tenant);
* ``Model._save_table``, to tell those hooks which instance a ``save()`` is
  writing (so a reference unchanged since the row was read is not looked up),
  and when it is a trusted ``loaddata``'s (``raw`` with no tenant bound:
  :func:`tenantry.isolation.raw_save_trusted`);
* ``Options.base_manager``: the base manager of a scoped model keeps to the
  tenant enforced when its query runs (``refresh_from_db()``, related
  descriptors, generic foreign keys, prefetches, the delete collector,
  ``save()``'s own UPDATE);
* **the SQL compiler's FROM clause** and ``Join.as_sql``: every join of a
  read that reaches a tenant-held table carries the tenant's condition in
  its ``ON`` clause, and ``Query.split_exclude`` (the subquery of an
  ``exclude()`` across a multi-valued relation) keeps its own table to the
  tenant (:mod:`tenantry.joins`);
* the forms (``ModelChoiceField`` querysets, model formsets) and, when
  ``django.contrib.admin`` is installed, the admin's raw-id labels, related
  list filters and autocomplete (:func:`tenantry.admin.install_guards`).
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db.models import Model
from django.db.models.options import Options
from django.db.models.sql.compiler import (
    SQLCompiler,
    SQLDeleteCompiler,
    SQLInsertCompiler,
    SQLUpdateCompiler,
)
from django.db.models.sql.datastructures import Join
from django.db.models.sql.query import Query
from django.forms.models import BaseModelFormSet, ModelChoiceField
from django.utils.functional import cached_property

from . import impersonation, isolation, joins, lifecycle, sharing
from .db.querysets import run_in_query_scope
from .db.router import check_compiler
from .managers import tenant_base_manager
from .models import refuse_trail_write

__all__ = ["install"]

_INSTALLED: list[bool] = []


#: Compilers whose ``execute_sql`` reaches ``SQLCompiler``'s but writes.
_WRITES = (SQLInsertCompiler, SQLUpdateCompiler, SQLDeleteCompiler)


def _install_compilers() -> None:
    insert = SQLInsertCompiler.execute_sql
    update = SQLUpdateCompiler.execute_sql
    select = SQLCompiler.execute_sql

    def select_execute_sql(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Reads, and (through it) every UPDATE and DELETE: on the tenant's database.
        check_compiler(self)
        if isinstance(self, _WRITES):  # a write is never a read escape's
            return select(self, *args, **kwargs)
        return run_in_query_scope(self.query, lambda: select(self, *args, **kwargs))

    def insert_execute_sql(self: Any, *args: Any, **kwargs: Any) -> Any:
        refuse_trail_write(self.query, "insert")
        check_compiler(self)
        isolation.on_insert(self.query, self)
        sharing.on_write(self.query, "insert")
        impersonation.on_write(self.query, "insert")
        started = lifecycle.on_insert(self.query, self)
        result = insert(self, *args, **kwargs)
        if started is not None:
            started()
        return result

    def update_execute_sql(self: Any, *args: Any, **kwargs: Any) -> Any:
        refuse_trail_write(self.query, "update")
        isolation.on_update(self.query, self)
        sharing.on_write(self.query, "update")
        lifecycle.on_update(self.query, self)
        impersonation.on_write(self.query, "update")
        return update(self, *args, **kwargs)

    def delete_execute_sql(self: Any, *args: Any, **kwargs: Any) -> Any:
        refuse_trail_write(self.query, "delete")
        isolation.on_delete(self.query, self)
        sharing.on_write(self.query, "delete")
        impersonation.on_write(self.query, "delete")
        return SQLCompiler.execute_sql(self, *args, **kwargs)

    SQLCompiler.execute_sql = select_execute_sql
    SQLInsertCompiler.execute_sql = insert_execute_sql
    SQLUpdateCompiler.execute_sql = update_execute_sql
    SQLDeleteCompiler.execute_sql = delete_execute_sql


def _install_joins() -> None:
    get_from_clause = SQLCompiler.get_from_clause
    join_as_sql = Join.as_sql
    split_exclude = Query.split_exclude

    def compiler_get_from_clause(self: Any) -> Any:
        joins.compiling(self)
        return get_from_clause(self)

    def as_sql(self: Any, compiler: Any, connection: Any) -> Any:
        sql, params = join_as_sql(self, compiler, connection)
        return joins.on_join(self, compiler, sql, params)

    def query_split_exclude(self: Any, *args: Any, **kwargs: Any) -> Any:
        condition, needed_inner = split_exclude(self, *args, **kwargs)
        joins.on_split_exclude(self, condition)
        return condition, needed_inner

    SQLCompiler.get_from_clause = compiler_get_from_clause
    Join.as_sql = as_sql
    Query.split_exclude = query_split_exclude


def _install_save_table() -> None:
    save_table = Model._save_table

    def _save_table(self: Any, *args: Any, **kwargs: Any) -> Any:
        raw = args[0] if args else kwargs.get("raw", False)
        with isolation.saving(self):
            if isolation.raw_save_trusted(raw):
                with lifecycle.loading_fixture():
                    return save_table(self, *args, **kwargs)
            return save_table(self, *args, **kwargs)

    Model._save_table = _save_table


def _install_base_manager() -> None:
    django_base_manager = Options.base_manager.func

    def base_manager(self: Options) -> Any:
        return tenant_base_manager(django_base_manager(self))

    prop = cached_property(base_manager)
    prop.__set_name__(Options, "base_manager")
    Options.base_manager = prop


def _install_forms() -> None:
    field_queryset = ModelChoiceField.queryset

    def set_queryset(self: Any, queryset: Any) -> None:
        if queryset is not None:
            queryset = isolation.tenant_rows(queryset)
        field_queryset.fset(self, queryset)

    ModelChoiceField.queryset = property(field_queryset.fget, set_queryset)

    formset_queryset = BaseModelFormSet.get_queryset

    def get_queryset(self: Any) -> Any:
        if not hasattr(self, "_queryset"):
            self._queryset = isolation.tenant_rows(formset_queryset(self))
        return self._queryset

    BaseModelFormSet.get_queryset = get_queryset


def install() -> None:
    """Hook the first wall into Django, once, and derive the guards from
    the model graph (``AppConfig.ready``)."""
    if not _INSTALLED:
        _install_compilers()
        _install_joins()
        _install_save_table()
        _install_base_manager()
        _install_forms()
        if apps.is_installed("django.contrib.admin"):
            from .admin import install_guards

            install_guards()
        _INSTALLED.append(True)
    isolation.install()
    for model in apps.get_models(include_auto_created=True):
        model._meta.__dict__.pop("base_manager", None)  # computed before the graph was
