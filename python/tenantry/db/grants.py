"""Cross-tenant grants as SQL: the one condition that admits a granted row
(docs/collaboration.md#reading-granted-rows).

The ORM (``with_shared()``, writes through a write grant) and the
row-level security policies (``EnableTenantRLS``) test a row against the
same condition, written here once::

    EXISTS (SELECT 1 FROM tenantry_grant g
            WHERE g.grantee_tenant = <the tenant>
              AND g.target_table = '<the row's table>'
              AND g.object_pk = CAST(<the row's pk> AS text)
              AND g.owner_key = CAST(<the row's tenant column> AS text)
              [AND g.can_write]
              AND (g.expires_at IS NULL OR g.expires_at > <now>))

``owner_key`` pins a grant to the tenant that owned the row when it was
given: a row that later belongs to someone else is not admitted by it.
A revoked grant is a deleted row, and expiry is compared in the query
itself, so nothing outlives a revoke or an expiry (no cache).
"""

from __future__ import annotations

from .scope import TENANT_SETTING

TABLE = "tenantry_grant"
#: The policies ``EnableTenantRLS`` adds beside ``tenantry_isolation``.
READ_POLICY = "tenantry_shared_read"
WRITE_POLICY = "tenantry_shared_write"
#: The trigger (and its function) that keeps a row's tenant column.
KEEP_TENANT = "tenantry_keep_tenant"
#: The policies of the grant table itself (tenantry.migrations.0004_grant):
#: each party reads its grants; only tenantry's own code (the bypass) writes.
GRANT_TABLE_POLICY = "tenantry_grant_parties"
GRANT_TABLE_WRITE_POLICY = "tenantry_grant_writes"

#: The PostgreSQL function the grant policies call (``granted_function``).
FUNCTION = "tenantry_granted"

__all__ = [
    "FUNCTION",
    "GRANT_TABLE_POLICY",
    "GRANT_TABLE_WRITE_POLICY",
    "KEEP_TENANT",
    "READ_POLICY",
    "TABLE",
    "WRITE_POLICY",
    "candidates",
    "granted",
    "granted_function",
]


def granted(
    *,
    grantee: str,
    table: str,
    pk: str,
    owner: str,
    now: str,
    write: bool | str,
    alias: str = "tenantry_grant_row",
    source: str = TABLE,
    catalog: bool = False,
) -> str:
    """The EXISTS condition above. Every argument but ``alias`` is an SQL
    expression (a placeholder, a quoted column, a literal) the caller made
    safe; ``write`` may also be True or False; ``source`` names the grant
    table (schema-qualified in the policies' function); ``catalog``
    (PostgreSQL) names the operators and type by their ``pg_catalog`` names,
    so no ``search_path`` of the caller's chooses them."""
    g = alias
    eq, gt, text = ("=", ">", "text")
    if catalog:
        eq, gt, text = ("OPERATOR(pg_catalog.=)", "OPERATOR(pg_catalog.>)", "pg_catalog.text")
    if write is True:
        writable = f" AND {g}.can_write"
    elif write is False:
        writable = ""
    else:
        writable = f" AND ({g}.can_write OR NOT {write})"
    return (
        f"EXISTS (SELECT 1 FROM {source} {g} WHERE {g}.grantee_tenant {eq} {grantee}"
        f" AND {g}.target_table {eq} {table} AND {g}.object_pk {eq} CAST({pk} AS {text})"
        f" AND {g}.owner_key {eq} CAST({owner} AS {text}){writable}"
        f" AND ({g}.expires_at IS NULL OR {g}.expires_at {gt} {now}))"
    )


def candidates(*, grantee: str, table: str, pk: str, pk_type: str, write: bool) -> str:
    """PostgreSQL: ``<pk> = ANY(ARRAY(<the keys granted to the tenant in
    the table>))``, an uncorrelated sub-select the planner runs once and can
    use with the primary key's index (a correlated EXISTS alone makes it
    scan every tenant's rows). Only a pre-filter: ``granted`` still decides."""
    g = "tenantry_grant_key"
    writable = f" AND {g}.can_write" if write else ""
    return (
        f"{pk} = ANY(ARRAY(SELECT CAST({g}.object_pk AS {pk_type}) FROM {TABLE} {g}"
        f" WHERE {g}.grantee_tenant = {grantee} AND {g}.target_table = {table}{writable}))"
    )


def granted_function() -> str:
    """``CREATE FUNCTION tenantry_granted(table, pk, owner, write)``: the
    condition above for the bound tenant (``tenantry.tenant_id``), as the
    grant policies call it. A PL/pgSQL function, not inlined, so a policy
    costs the planner one function call instead of a sub-plan, and its
    query plan is prepared once per connection; it runs (as the calling
    role, so the grant table's own policies hold) only for a row the
    isolation policy did not already admit (policies are OR-ed in name
    order, ``tenantry_isolation`` first)."""
    body = granted(
        grantee=f"pg_catalog.current_setting('{TENANT_SETTING}', true)",
        table="p_table",
        pk="p_pk",
        owner="p_owner",
        # The statement's start, not the transaction's (now()): a grant that
        # expires inside a long transaction stops at its next statement, as
        # the ORM's condition (the time the query was compiled) does.
        now="pg_catalog.statement_timestamp()",
        write="p_write",
        source=_SCHEMA + "." + TABLE,
        catalog=True,
    )
    # The grant table is named with its schema (the migrating connection's,
    # where Django made it), and every operator, function and type by its
    # pg_catalog name: a session's temporary table named tenantry_grant
    # (pg_temp is searched first for relations) or a schema put first in its
    # search_path forges no grant (docs/collaboration.md#postgresql). Not a
    # SET search_path clause: that costs a configuration save and restore
    # per call, once per granted row (measured: with_shared() 3.4x -> 4.8x).
    # The DO block fills in the schema.
    create = (
        f"CREATE OR REPLACE FUNCTION {FUNCTION}(p_table text, p_pk text, p_owner text, "
        "p_write boolean) RETURNS boolean LANGUAGE plpgsql STABLE "
        "AS $tenantry$\n"
        f"BEGIN\n    RETURN {body};\nEND\n$tenantry$"
    )
    before, after = create.split(_SCHEMA)
    return (
        f"DO $tenantry_do$\nBEGIN\n    EXECUTE {_literal(before)} || "
        f"quote_ident(current_schema()) || {_literal(after)};\nEND\n$tenantry_do$"
    )


#: Where ``granted_function`` puts the grant table's schema (no ``%``: the
#: statement goes through ``schema_editor.execute``, which formats ``%``).
_SCHEMA = "\x00schema\x00"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
