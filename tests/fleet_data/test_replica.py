"""Row-level security on a streaming read replica
(docs/postgresql.md#read-replicas): a Django router sends reads to a hot
standby made with ``pg_basebackup`` from the suite's PostgreSQL; tenantry
binds the tenant on replica connections too, so every read there (ORM,
``raw()``, ``iterator()``, a raw cursor, async, threads) sees only the bound
tenant's rows, and a read with no tenant bound sees none. In both
``TENANT_RLS`` modes.
"""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.db import connections

from tenantry import tenant_context
from tenantry.db import rls_bypass
from tests.app.models import RlsNote
from tests.fleet_data.clients import run_threads
from tests.fleet_data.conftest import NOTES_PER_TENANT, TENANTS, database_alias
from tests.fleet_data.routers import REPLICA

pytestmark = pytest.mark.postgres

MODES = {"session": True, "transaction": "transaction"}


@pytest.fixture(params=sorted(MODES))
def routed(request, replica, notes, settings):
    """Reads routed to the replica, in one ``TENANT_RLS`` mode; the notes
    replayed there."""
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": MODES[request.param]}
    settings.DATABASE_ROUTERS = ["tests.fleet_data.routers.ReadReplicaRouter"]
    replica.caught_up(dbname=_test_database())
    with database_alias(REPLICA, {**_default_entry(), "PORT": str(replica.port)}) as alias:
        yield alias


def _default_entry() -> dict:
    return dict(connections["default"].settings_dict)


def _test_database() -> str:
    return connections["default"].settings_dict["NAME"]


def _raw(sql: str) -> list[tuple]:
    with connections[REPLICA].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def _reads() -> dict[str, list[str]]:
    """Each way of reading, as the tenant ids of what it returned."""

    async def async_orm() -> list[str]:
        return [note.tenant_id async for note in RlsNote.all_tenants.all()]

    return {
        "scoped": list(RlsNote.objects.values_list("tenant_id", flat=True)),
        "plain manager": list(RlsNote.all_tenants.values_list("tenant_id", flat=True)),
        "raw()": [n.tenant_id for n in RlsNote.all_tenants.raw("SELECT * FROM app_rlsnote")],
        "iterator()": [n.tenant_id for n in RlsNote.all_tenants.iterator()],
        "raw cursor": [tenant for (tenant,) in _raw("SELECT tenant_id FROM app_rlsnote")],
        "async": async_to_sync(async_orm)(),
    }


@pytest.mark.django_db(transaction=True)
def test_reads_on_the_replica_see_only_the_bound_tenants_rows(routed):
    assert _raw("SELECT pg_is_in_recovery()") == [(True,)]  # it is the replica
    assert RlsNote.all_tenants.db == REPLICA
    for tenant in TENANTS[:2]:
        with tenant_context(tenant):
            reads = _reads()
        assert reads == dict.fromkeys(reads, [tenant] * NOTES_PER_TENANT), tenant


@pytest.mark.django_db(transaction=True)
def test_no_tenant_bound_reads_nothing_on_the_replica(routed):
    with tenant_context(TENANTS[0]):
        _reads()  # the connection carried a tenant just before
    reads = {
        "plain manager": list(RlsNote.all_tenants.values_list("tenant_id", flat=True)),
        "raw cursor": _raw("SELECT tenant_id FROM app_rlsnote"),
    }
    assert reads == {"plain manager": [], "raw cursor": []}
    # Not because the replica is empty: every tenant's rows are there.
    with rls_bypass("test: what the replica holds"):
        stored = _raw("SELECT count(*) FROM app_rlsnote")
    assert stored == [(len(TENANTS) * NOTES_PER_TENANT,)]


@pytest.mark.django_db(transaction=True)
def test_eight_threads_on_the_replica_read_only_their_tenants_rows(routed):
    result = run_threads(REPLICA, TENANTS, clients=8, rounds=5)
    assert result["counts"] == {"own": 8 * 5 * 4 * NOTES_PER_TENANT, "foreign": 0, "unbound": 0}
