"""Cross-tenant grants as SQL: the one condition that admits a granted row
(docs/collaboration.md#how-a-granted-row-is-found).

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

TABLE = "tenantry_grant"
#: The policies ``EnableTenantRLS`` adds beside ``tenantry_isolation``.
READ_POLICY = "tenantry_shared_read"
WRITE_POLICY = "tenantry_shared_write"
#: The trigger (and its function) that keeps a row's tenant column.
KEEP_TENANT = "tenantry_keep_tenant"
#: The policies of the grant table itself (tenantry.migrations.0003_grant):
#: each party reads its grants; only tenantry's own code (the bypass) writes.
GRANT_TABLE_POLICY = "tenantry_grant_parties"
GRANT_TABLE_WRITE_POLICY = "tenantry_grant_writes"

__all__ = [
    "GRANT_TABLE_POLICY",
    "GRANT_TABLE_WRITE_POLICY",
    "KEEP_TENANT",
    "READ_POLICY",
    "TABLE",
    "WRITE_POLICY",
    "granted",
]


def granted(
    *,
    grantee: str,
    table: str,
    pk: str,
    owner: str,
    now: str,
    write: bool,
    alias: str = "tenantry_grant_row",
) -> str:
    """The EXISTS condition above. Every argument but ``write`` and
    ``alias`` is an SQL expression (a placeholder, a quoted column, a
    literal) the caller made safe."""
    g = alias
    writable = f" AND {g}.can_write" if write else ""
    return (
        f"EXISTS (SELECT 1 FROM {TABLE} {g} WHERE {g}.grantee_tenant = {grantee}"
        f" AND {g}.target_table = {table} AND {g}.object_pk = CAST({pk} AS text)"
        f" AND {g}.owner_key = CAST({owner} AS text){writable}"
        f" AND ({g}.expires_at IS NULL OR {g}.expires_at > {now}))"
    )
