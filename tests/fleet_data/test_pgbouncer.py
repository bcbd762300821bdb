"""Row-level security behind a real pgbouncer in transaction pooling
(docs/postgresql.md#transaction-pooling-pgbouncer-tenant_rls--transaction).

The classic multi-tenant RLS leak: a session setting stays on the server
session, and a transaction pool hands that session to another client's next
transaction. The control shows it with plain psycopg; ``TENANT_RLS =
"transaction"`` reads 0 cross-tenant rows with 8 clients (threads, and two
processes) over at most 2 server sessions; ``TENANT_RLS = True`` behind the
same pool is found when a connection opens and refused (an error, a 503),
never served.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.http import JsonResponse
from django.test import Client
from django.urls import path

from tenantry import (
    BackendUnavailable,
    TenantMismatchError,
    TransactionPoolingError,
    tenant_context,
)
from tenantry.db import rls as rls_module
from tenantry.db.rls import pooling_problem
from tests.app.models import RlsNote
from tests.fleet_data.clients import SQL, run_threads
from tests.fleet_data.conftest import NOTES_PER_TENANT, TENANTS, database_alias

pytestmark = [pytest.mark.postgres, pytest.mark.urls("tests.fleet_data.test_pgbouncer")]

ALIAS = "bouncer"
ROUNDS = 15
#: Reads per round that see the bound tenant's notes (clients.read_as).
READS_PER_ROUND = 4


def bouncer_view(request):
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("SELECT title FROM app_rlsnote ORDER BY title")
        return JsonResponse({"titles": [row[0] for row in cursor.fetchall()]})


urlpatterns = [path("bouncer/", bouncer_view)]


def rls(settings, value) -> None:
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": value}


def expected_own(clients: int, rounds: int = ROUNDS) -> int:
    return clients * rounds * READS_PER_ROUND * NOTES_PER_TENANT


# -- the control: session settings behind transaction pooling leak -------------------------


def test_a_session_setting_leaks_to_another_client_behind_transaction_pooling(bouncer, notes):
    """Plain psycopg, no tenantry: client A sets its tenant for the session,
    client B never sets one and reads A's rows. A transaction-local setting
    (what ``TENANT_RLS = "transaction"`` sends) leaves nothing behind."""
    with bouncer.connect("single") as a, bouncer.connect("single") as b:
        a.execute("SELECT set_config('tenantry.tenant_id', 't1', false)")
        leaked = b.execute("SELECT tenant_id FROM app_rlsnote").fetchall()
        assert sorted({tenant for (tenant,) in leaked}) == ["t1"]
        assert len(leaked) == NOTES_PER_TENANT

        a.execute("SELECT set_config('tenantry.tenant_id', '', false)")  # the pool's session, reset
        a.execute("SELECT set_config('tenantry.tenant_id', 't2', true)")  # transaction-local
        assert b.execute("SELECT tenant_id FROM app_rlsnote").fetchall() == []
    # Directly on PostgreSQL, sessions are not shared: the same steps leak nothing.
    direct = connection.settings_dict["NAME"]
    with bouncer.server.connect(dbname=direct) as a, bouncer.server.connect(dbname=direct) as b:
        a.execute("SELECT set_config('tenantry.tenant_id', 't1', false)")
        assert b.execute("SELECT tenant_id FROM app_rlsnote").fetchall() == []


# -- TENANT_RLS = "transaction": 0 cross-tenant rows ------------------------------------------


def test_eight_threads_over_two_server_sessions_read_only_their_tenants_rows(
    bouncer, notes, settings
):
    rls(settings, "transaction")
    with database_alias(ALIAS, bouncer.django_settings("pooled")):
        result = run_threads(ALIAS, TENANTS, clients=8, rounds=ROUNDS)
    assert result["clients"] == 8
    assert result["counts"] == {"own": expected_own(8), "foreign": 0, "unbound": 0}
    # 8 clients shared at most 2 server sessions: each carried several tenants.
    assert 1 <= len(result["pids"]) <= 2


def _client_process(bouncer, clients: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "tests.fleet_data.clients",
            "--port", str(bouncer.port), "--dbname", "pooled", "--rls", "transaction",
            "--clients", str(clients), "--rounds", str(ROUNDS),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )  # fmt: skip


def test_two_processes_of_four_clients_read_only_their_tenants_rows(bouncer, notes):
    processes = [_client_process(bouncer, clients=4) for _ in range(2)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-3000:]
        results.append(json.loads(out))
    counts = [result["counts"] for result in results]
    assert counts == [{"own": expected_own(4), "foreign": 0, "unbound": 0}] * 2
    pids = {pid for result in results for pid in result["pids"]}
    assert 1 <= len(pids) <= 2  # both processes' 8 clients on the same <= 2 sessions


# -- TENANT_RLS = True behind transaction pooling: found and refused --------------------------


@pytest.mark.parametrize("pool", ["pooled", "single"])
def test_session_settings_behind_transaction_pooling_are_refused(bouncer, notes, settings, pool):
    rls(settings, True)
    with database_alias(ALIAS, bouncer.django_settings(pool)) as bounced:
        for _attempt in range(2):  # each new connection is probed; none is kept
            with pytest.raises(TransactionPoolingError, match="transaction-pooling proxy"):
                with tenant_context("t1"):
                    RlsNote.all_tenants.using(ALIAS).count()
            assert bounced.connection is None
        with pytest.raises(TransactionPoolingError, match=r"TENANT_RLS'\] = 'transaction'"):
            bounced.cursor()
    assert issubclass(TransactionPoolingError, BackendUnavailable)


def test_a_request_behind_transaction_pooling_with_session_settings_answers_503(
    bouncer, notes, settings
):
    rls(settings, True)
    with database_alias(ALIAS, bouncer.django_settings("pooled")):
        response = Client().get("/bouncer/", HTTP_HOST="t1.example.com")

        async def async_read() -> int:
            with tenant_context("t1"):
                return await RlsNote.all_tenants.using(ALIAS).acount()

        with pytest.raises(TransactionPoolingError):  # the async ORM, refused the same way
            async_to_sync(async_read)()
    assert response.status_code == 503
    assert response["Retry-After"]
    assert b"t1-note" not in response.content
    rls(settings, "transaction")  # the right mode serves the tenant's rows
    with database_alias(ALIAS, bouncer.django_settings("pooled")):
        response = Client().get("/bouncer/", HTTP_HOST="t1.example.com")
    assert response.status_code == 200
    assert response.json()["titles"] == [f"t1-note-{n}" for n in range(NOTES_PER_TENANT)]


def test_a_setting_that_does_not_survive_its_transaction_is_refused(
    bouncer, notes, settings, monkeypatch
):
    """The read-back path of the probe: another client takes the server
    session between the probe's two transactions (an open transaction holds
    it), so the read-back runs on the other session and misses the token."""
    rls(settings, True)
    probe_one = rls_module._probe_one
    holders = []

    def probe_one_then_take_the_session(raw, sql, params):
        row = probe_one(raw, sql, params)
        if "set_config" in sql and not holders:
            holder = bouncer.connect("pooled")
            holder.autocommit = False
            holder.execute("SELECT 1")  # a transaction stays open: the session is held
            holders.append(holder)
        return row

    monkeypatch.setattr(rls_module, "_probe_one", probe_one_then_take_the_session)
    try:
        with database_alias(ALIAS, bouncer.django_settings("pooled")) as bounced:
            with pytest.raises(TransactionPoolingError, match="did not survive its transaction"):
                bounced.cursor()
    finally:
        for holder in holders:
            holder.close()
    assert holders, "the probe never set its setting"


def test_writes_through_the_pool_are_held_to_the_bound_tenant(bouncer, notes, settings):
    """``WITH CHECK`` behind transaction pooling: a row of another tenant is
    refused on every write route, the bound tenant's own is written, and an
    update or delete of another tenant's rows touches nothing."""
    rls(settings, "transaction")
    with database_alias(ALIAS, bouncer.django_settings("pooled")) as bounced:
        with tenant_context("t1"):
            # The ORM's routes meet the first wall; raw SQL meets the database's.
            with pytest.raises(TenantMismatchError):
                RlsNote.all_tenants.using(ALIAS).create(tenant_id="t2", title="planted")
            with pytest.raises(TenantMismatchError):
                RlsNote.all_tenants.using(ALIAS).bulk_create(
                    [RlsNote(tenant_id="t1", title="ok"), RlsNote(tenant_id="t3", title="planted")]
                )
            with pytest.raises(TenantMismatchError, match="app_rlsnote"), bounced.cursor() as c:
                c.execute("INSERT INTO app_rlsnote (tenant_id, title) VALUES ('t2', 'planted')")
            with pytest.raises(TenantMismatchError, match="app_rlsnote"), bounced.cursor() as c:
                c.executemany(
                    "INSERT INTO app_rlsnote (tenant_id, title) VALUES (%s, %s)",
                    [("t1", "ok"), ("t2", "planted")],
                )
            with bounced.cursor() as cursor:
                cursor.execute("UPDATE app_rlsnote SET title = 'hijacked' WHERE tenant_id = 't2'")
                updated = cursor.rowcount
                cursor.execute("DELETE FROM app_rlsnote WHERE tenant_id = 't3'")
                deleted = cursor.rowcount
            RlsNote.all_tenants.using(ALIAS).create(tenant_id="t1", title="t1-own")
    assert (updated, deleted) == (0, 0)
    from tenantry.db import rls_bypass

    with rls_bypass("test: what is really stored"):
        stored = sorted(RlsNote.all_tenants.values_list("tenant_id", "title"))
    assert ("t1", "t1-own") in stored
    assert not [row for row in stored if row[1] in ("planted", "hijacked", "ok")]
    assert sum(1 for tenant, _ in stored if tenant == "t3") == NOTES_PER_TENANT


def test_rls_check_names_transaction_pooling(bouncer, notes, settings, capsys):
    rls(settings, True)
    with database_alias(ALIAS, bouncer.django_settings("pooled")):
        with pytest.raises(CommandError, match="problem"):
            call_command("tenantry", "rls", "--check", "--database", ALIAS)
        err = capsys.readouterr().err
        assert "transaction-pooling proxy" in err and "'transaction'" in err
        from django.core import checks

        errors = checks.run_checks(databases=[ALIAS], tags=["tenantry"])
        assert [e.id for e in errors if "transaction-pooling" in e.msg] == ["tenantry.E401"]
    rls(settings, "transaction")  # the right mode: nothing to report about pooling
    with database_alias(ALIAS, bouncer.django_settings("pooled")):
        call_command("tenantry", "rls", "--database", ALIAS)
        captured = capsys.readouterr()
        assert "transaction-pooling" not in captured.err
        assert "ok       app.RlsNote (app_rlsnote.tenant_id)" in captured.out
        errors = checks.run_checks(databases=[ALIAS], tags=["tenantry"])
        assert not [e for e in errors if e.id == "tenantry.E401"]


def test_session_pooling_and_direct_connections_keep_session_settings(bouncer, notes, settings):
    """No false alarm: pgbouncer in session mode pins a server session to
    its client for the client's life, and a direct connection is its own
    session; both serve with ``TENANT_RLS = True``, each client its rows."""
    rls(settings, True)
    assert pooling_problem(connection) is None
    with database_alias(ALIAS, bouncer.django_settings("by_session")):
        result = run_threads(ALIAS, TENANTS, clients=4, rounds=5)
    assert result["counts"] == {"own": expected_own(4, rounds=5), "foreign": 0, "unbound": 0}


def test_the_probe_runs_once_per_new_connection_not_per_query(bouncer, notes, settings):
    """The check costs one statement when a connection opens, none per query
    (counted by the server: pg_stat_statements)."""
    rls(settings, True)
    direct = {**connection.settings_dict, "NAME": connection.settings_dict["NAME"]}

    def probes() -> int:
        with bouncer.server.superuser(dbname=direct["NAME"]) as admin:
            row = admin.execute(
                # Constants are normalized away ($1): the probe's statement is
                # the only one that asks for the server's pid and sets a setting.
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE %s",
                ["SELECT pg_backend_pid(), set_config(%"],
            ).fetchone()
            return int(row[0])

    before = probes()
    with database_alias("direct", direct) as other:
        for n in range(3):
            with tenant_context(TENANTS[n % 2]), other.cursor() as cursor:
                for _ in range(20):
                    cursor.execute(SQL)
                    assert {tenant for tenant, _ in cursor.fetchall()} == {TENANTS[n % 2]}
            other.close()  # the next round opens a new connection
    assert probes() - before == 3
