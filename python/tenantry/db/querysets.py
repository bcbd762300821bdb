"""Querysets that tell row-level security which tenant their queries are for.

``TenantQuerySet`` mixes this in. A queryset with ``_rls_scope`` set
(``unscoped(reason=...)``: the bypass; ``for_tenant(t)``: tenant ``t``) runs
each of its own queries with that scope, and only those: the scope is a
context variable set around the SQL a read sends (its query marks the scope,
and the compiler's ``execute_sql`` applies it: :func:`run_in_query_scope`),
around each other method that sends SQL, and around each step of an
iterator, never across a ``yield`` to the caller. The code Django runs to
build the instances (``from_db`` overrides, ``__init__``, ``post_init``
receivers) runs under the bound tenant: a read's SQL is scoped without it,
and a scoped model's ``from_db`` (``tenantry.isolation``) leaves an
iterator step's scope around it. Other querysets (``_rls_scope`` None) use
the bound tenant.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import models
from django.db.models.query import RawQuerySet

from .rls import sync
from .scope import Scope, scoped_as

__all__ = ["RLSScopeMixin", "run_in_query_scope"]

#: Where a read escape's query carries its scope for the compiler (a
#: ``Query.clone()`` copies it).
QUERY_SCOPE = "tenantry_rls_scope"

#: QuerySet methods that send SQL themselves and build no instance (reads
#: that do go through ``_fetch_all``, whose SQL the compiler scopes;
#: ``iterator``/``aiterator``/``raw`` below).
_SENDS_SQL = (
    "count",
    "exists",
    "contains",
    "explain",
    "create",
    "get_or_create",
    "update_or_create",
    "bulk_create",
    "bulk_update",
    "update",
    "_update",
    "delete",
    "_raw_delete",
)


def _in_scope(name: str, owner: type) -> Any:
    original = getattr(models.QuerySet, name)

    @functools.wraps(original)  # keeps alters_data / queryset_only
    def method(self, *args: Any, **kwargs: Any) -> Any:
        parent = getattr(super(owner, self), name)
        if self._rls_scope is None:
            return parent(*args, **kwargs)
        with scoped_as(self._rls_scope):
            return parent(*args, **kwargs)

    return method


def run_in_query_scope(query: Any, run: Any) -> Any:
    """``run()`` (a read compiler's ``execute_sql``) in the scope ``query``'s
    queryset marked for the read it is running, if any. The mark lives only
    while that read runs (never copied to a clone), and a write's compiler
    never reads it."""
    scope = query.__dict__.get(QUERY_SCOPE)
    inner = query.__dict__.get("inner_query")  # an aggregate over a subquery
    if scope is None and inner is not None:
        scope = inner.__dict__.get(QUERY_SCOPE)
    if scope is None:
        return run()
    with scoped_as(scope):
        return run()


class _Steps:
    """An iterator whose every step runs in ``scope`` (None: the bound
    tenant), and nothing between two steps. With ``alias``, each step first
    brings that connection to the scope: a server-side cursor computes each
    chunk when it is fetched, under the connection's settings of the moment
    (its fetches sync to the scope of the code fetching). The instance a step
    builds is built under the bound tenant all the same: tenantry's
    ``from_db`` of a scoped model leaves the scope for the app's code."""

    __slots__ = ("alias", "inner", "scope")

    def __init__(self, inner: Any, scope: Scope | None, alias: str | None = None) -> None:
        self.inner, self.scope, self.alias = inner, scope, alias

    def __iter__(self) -> _Steps:
        return self

    def __next__(self) -> Any:
        if self.scope is None:  # the bound tenant (or an enclosing rls_bypass())
            if self.alias is not None:
                sync(self.alias)
            return next(self.inner)
        with scoped_as(self.scope):
            if self.alias is not None:
                sync(self.alias)
            return next(self.inner)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


class _AsyncSteps(_Steps):
    """Each step runs in ``scope``; the fetching happens in a worker thread,
    on that thread's connection (see docs/postgresql.md on cursors)."""

    __slots__ = ()

    def __aiter__(self) -> _AsyncSteps:
        return self

    async def __anext__(self) -> Any:
        if self.scope is None:
            return await self.inner.__anext__()
        with scoped_as(self.scope):
            return await self.inner.__anext__()


class _ScopedRawQuerySet(RawQuerySet):
    _rls_scope: Scope | None = None

    def _clone(self) -> RawQuerySet:
        clone = super()._clone()
        clone._rls_scope = self._rls_scope
        return clone

    def _fetch_all(self) -> None:
        with scoped_as(self._rls_scope):
            super()._fetch_all()

    def iterator(self) -> Any:
        return _Steps(super().iterator(), self._rls_scope)


class RLSScopeMixin:
    """See the module docs. Mixed into ``TenantQuerySet`` before ``QuerySet``."""

    _rls_scope: Scope | None = None

    def _clone(self) -> Any:
        clone = super()._clone()
        clone._rls_scope = self._rls_scope
        clone.query.__dict__.pop(QUERY_SCOPE, None)  # a mark is one read's
        return clone

    @contextmanager
    def _marked(self) -> Iterator[None]:
        """The query marked with the scope for the read running in the block
        (its compiler applies it: :func:`run_in_query_scope`)."""
        self.query.__dict__[QUERY_SCOPE] = self._rls_scope
        try:
            yield
        finally:
            self.query.__dict__.pop(QUERY_SCOPE, None)

    def _fetch_all(self) -> None:
        if self._rls_scope is None or self._result_cache is not None:
            return super()._fetch_all()
        with self._marked():
            super()._fetch_all()

    def aggregate(self, *args: Any, **kwargs: Any) -> Any:
        # Its SQL in the scope (the chained query keeps the mark); the
        # fields' converters (``from_db_value``, the app's) outside it.
        if self._rls_scope is None:
            return super().aggregate(*args, **kwargs)
        with self._marked():
            return super().aggregate(*args, **kwargs)

    def iterator(self, chunk_size: int | None = None) -> Any:
        return _Steps(super().iterator(chunk_size), self._rls_scope, self.db)

    def aiterator(self, chunk_size: int = 2000) -> Any:
        inner = super().aiterator(chunk_size)
        return inner if self._rls_scope is None else _AsyncSteps(inner, self._rls_scope)

    def raw(self, *args: Any, **kwargs: Any) -> Any:
        found = super().raw(*args, **kwargs)
        if self._rls_scope is not None and type(found) is RawQuerySet:
            found.__class__ = _ScopedRawQuerySet
            found._rls_scope = self._rls_scope
        return found


for _name in _SENDS_SQL:
    setattr(RLSScopeMixin, _name, _in_scope(_name, RLSScopeMixin))
