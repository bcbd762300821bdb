"""Every table a read reaches keeps to one tenant's rows
(docs/querysets.md#joins-and-subqueries).

A scoped queryset's own table is filtered by its manager. The tables its
joins reach are filtered here, when the query is compiled (so the tenant is
the one of that moment, and no list of lookups can miss a path): every
alias of a *held* table (``tenantry.graph.held_table``: a tenant-owned
model's table, a multi-table child of one, a many-to-many link table of
one) gets the tenant's condition in its JOIN's ``ON`` clause. In the ``ON``
clause, so a ``LEFT OUTER JOIN`` keeps the row it joins from and only the
other tenant's rows fall away (an ``INNER JOIN`` drops the row, as the
database's row-level security would).

Which tenant, by the *mark* a query carries (``MARK`` in its ``__dict__``;
``Query.clone()`` copies it, so every chained queryset keeps it):

* ``BOUND``: a ``TenantManager`` queryset (made with or without a tenant
  bound): the tenant bound when the query runs; none bound fails closed as
  the queryset itself does.
* a ``TenantInfo``: a ``for_tenant(t)`` queryset: ``t``.
* ``ENFORCED``, and every query with no mark (plain managers, shared
  models, the base manager): the enforced tenant (``isolation.enforced_tenant``);
  nothing with none bound, or inside ``rls_bypass()``.
* ``UNSCOPED``: ``unscoped(reason=...)``: nothing.

A query with a mark other than ``UNSCOPED`` holds its own table to the
tenant (its manager's condition); a plain manager's query of a held model
(``all_tenants``) does not (unscoped by design), but what it joins does.

A table without a tenant column is held by a key: a child's primary key
must name a row of the tenant in the table that has the column, a link
row's owned ends must name rows of the tenant (``col IN (SELECT ...)``).
That subquery is left out when the join itself already ties the row to a
held row (the child joined to its parent by the key, the link joined from
the end's own row).

``exclude()`` across a multi-valued relation makes Django build a subquery
from a fresh query (``Query.split_exclude``); :func:`on_split_exclude` gives
it the outer query's mark and holds its own table.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet, ValidationError
from django.db.models.expressions import Col
from django.db.models.lookups import Lookup
from django.db.models.sql.where import AND, WhereNode

from .graph import Held, held_table
from .isolation import BOUND, ENFORCED, UNSCOPED, column_value, reading_tenant
from .isolation import READS as MARK
from .isolation import mark_reads as mark

__all__ = [
    "BOUND",
    "ENFORCED",
    "MARK",
    "UNSCOPED",
    "HeldRows",
    "join_conditions",
    "mark",
    "on_join",
    "on_split_exclude",
]

#: Where a compiler keeps the conditions of its query's joins (see ``wall``).
_COMPILING = "_tenantry_joins"


class HeldRows(Lookup):
    """The rows of the held table at ``lhs``'s alias that belong to the
    tenant of ``mode``: ``alias.tenant_col = %s``, or, for a table held by a
    key, ``alias.key IN (SELECT ... )`` (see the module docs)."""

    lookup_name = "tenantry_held"
    prepare_rhs = False

    def __init__(self, alias: str, held: Held, mode: Any) -> None:
        field = held.field if held.field is not None else held.model._meta.pk
        super().__init__(Col(alias, field), (held, mode))

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        held, mode = self.rhs
        tenant = reading_tenant(mode, held.model._meta.label)
        return _held_sql(
            held, compiler.quote_name_unless_alias(self.lhs.alias), tenant, connection, 0
        )


def _held_sql(
    held: Held, alias_sql: str, tenant: Any, connection: Any, depth: int
) -> tuple[str, list[Any]]:
    qn = connection.ops.quote_name
    if held.field is not None:
        field = held.field
        try:
            value = field.get_db_prep_value(
                field.get_prep_value(column_value(field, tenant)), connection, prepared=True
            )
        except (TypeError, ValueError, ValidationError):
            raise EmptyResultSet from None  # the tenant's value cannot be in this column
        return f"{alias_sql}.{qn(field.column)} = %s", [value]
    parts, params = [], []
    inner = qn(f"_tenantry{depth}")
    for column, nullable, target, target_column in held.keys:
        try:
            sql, found = _held_sql(target, inner, tenant, connection, depth + 1)
        except EmptyResultSet:
            sql, found = "1 = 0", []
        part = (
            f"{alias_sql}.{qn(column)} IN (SELECT {inner}.{qn(target_column)} "
            f"FROM {qn(target.table)} {inner} WHERE {sql})"
        )
        if nullable:
            part = f"({alias_sql}.{qn(column)} IS NULL OR {part})"
        parts.append(part)
        params += found
    return " AND ".join(parts), params


def join_conditions(query: Any) -> dict[str, HeldRows] | None:
    """``{alias: condition}`` for the joins of ``query`` that reach a held
    table, or None (see the module docs); called once per compilation."""
    alias_map = query.alias_map
    if len(alias_map) < 2:
        return None
    mode = query.__dict__.get(MARK)
    if mode == UNSCOPED:
        return None
    marked = mode is not None
    if not marked:
        mode = ENFORCED
    refcount = query.alias_refcount
    covered: set[str] = set()
    found: dict[str, HeldRows] = {}
    for alias, entry in alias_map.items():
        if entry.join_type is None:  # the query's own table
            if marked:
                covered.add(alias)
            continue
        if not refcount.get(alias):
            continue
        held = held_table(entry.table_name)
        if held is None:
            continue
        covered.add(alias)
        if held.field is None and entry.parent_alias in covered and _tied(entry, held, query):
            continue
        found[alias] = HeldRows(alias, held, mode)
    return found or None


def _tied(join: Any, held: Held, query: Any) -> bool:
    """Whether ``join`` (to ``held``, a table held by a key) ties its rows to
    its parent alias's held rows: a multi-table child and its parent joined
    by their shared key, or a link table joined from an owned end's row."""
    parent = held_table(query.alias_map[join.parent_alias].table_name)
    pairs = join.join_fields
    if parent is None or not pairs:
        return False
    if held.root is not None:
        return parent.root is held.root and all(
            left.primary_key and right.primary_key for left, right in pairs
        )
    return len(pairs) == 1 and pairs[0][1] in held.ends


def on_join(join: Any, compiler: Any, sql: str, params: list[Any]) -> tuple[str, list[Any]]:
    """``join``'s SQL (``... ON (...)``) with its tenant condition added
    inside the ``ON`` clause, when its table is held."""
    conditions = compiler.__dict__.get(_COMPILING)
    if not conditions:
        return sql, params
    condition = conditions.get(join.table_alias)
    if condition is None:
        return sql, params
    try:
        extra, extra_params = compiler.compile(condition)
    except EmptyResultSet:
        extra, extra_params = "1 = 0", []
    except FullResultSet:
        return sql, params
    # Join.as_sql ends with "ON (<conditions>)": add ours inside.
    return f"{sql[:-1]} AND ({extra}))", [*params, *extra_params]


def compiling(compiler: Any) -> None:
    """Before ``compiler`` writes its FROM clause: find its joins' conditions."""
    compiler.__dict__[_COMPILING] = join_conditions(compiler.query)


def on_split_exclude(outer: Any, condition: WhereNode) -> None:
    """``exclude()`` across a multi-valued relation: the subquery Django
    built from a fresh query gets ``outer``'s mark, and its own table is
    held to the tenant like any join's."""
    mode = outer.__dict__.get(MARK)
    if mode == UNSCOPED:
        return
    for inner in _subqueries(condition):
        if MARK in inner.__dict__:
            continue
        mark(inner, mode if mode is not None else ENFORCED)
        for alias, entry in inner.alias_map.items():
            if entry.join_type is None and inner.alias_refcount.get(alias):
                held = held_table(entry.table_name)
                if held is not None:
                    inner.where.add(HeldRows(alias, held, inner.__dict__[MARK]), AND)
                break


def _subqueries(node: Any) -> list[Any]:
    found = []
    stack = [node]
    while stack:
        item = stack.pop()
        query = getattr(item, "query", None)
        if query is not None and hasattr(query, "alias_map"):
            found.append(query)
            continue
        if isinstance(item, WhereNode):
            stack.extend(item.children)
        elif hasattr(item, "get_source_expressions"):
            stack.extend(e for e in item.get_source_expressions() if e is not None)
    return found
