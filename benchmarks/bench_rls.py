"""Row-level security (the second wall) on a real PostgreSQL: the cost of
``TENANT_RLS`` against the same work without it, in the same run.

- a scoped list query (``list(Record.objects.all())``: one tenant's 50 rows
  of 1,000), and a whole request (Django's test client through
  ``TenantMiddleware`` and a view that lists them), each with RLS on
  (``TENANT_RLS = True`` and the table's policy from ``EnableTenantRLS``)
  and off (no setting, no policy), alternating rounds;
- statements per query, counted by the server (``pg_stat_statements``):
  with the tenant unchanged there is no ``set_config`` at all; one when the
  connection's tenant changes.

It runs in its own process (``python -m benchmarks.bench_rls``, started by
``python -m benchmarks``): Django is configured here for PostgreSQL, on a
throwaway cluster (tests/postgres_server.py) that is removed at the end.
"""

from __future__ import annotations

import os

from benchmarks.bench_state import table
from benchmarks.timing import in_child, ns_per_op

TENANTS = [f"t{n:02d}" for n in range(20)]
ROWS_PER_TENANT = 50
GOAL = 1.10


def list_view(request):
    from django.http import HttpResponse

    from benchmarks.benchapp.models import Record

    return HttpResponse("\n".join(r.title for r in Record.objects.all()))


def _urls():
    from django.urls import path

    return [path("records/", list_view)]


urlpatterns: list = []


def configure(server) -> None:
    import django
    from django.conf import settings

    from benchmarks import settings as base

    values = {name: getattr(base, name) for name in dir(base) if name.isupper()}
    values["DATABASES"] = {"default": {**server.django_settings(), "CONN_MAX_AGE": None}}
    values["ROOT_URLCONF"] = __name__
    values["MIDDLEWARE"] = ["tenantry.middleware.TenantMiddleware"]
    settings.configure(**values)
    django.setup()
    urlpatterns[:] = _urls()


def set_rls(on: bool) -> None:
    """TENANT_RLS and the table's policy together: on, or both off."""
    from django.apps import apps
    from django.conf import settings
    from django.db import connection
    from django.db.migrations.state import ProjectState

    from tenantry import conf
    from tenantry.db import EnableTenantRLS

    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": on}
    conf.reset()
    state = ProjectState.from_apps(apps)
    with connection.schema_editor() as editor:
        op = EnableTenantRLS("benchapp.Record")
        (op.database_forwards if on else op.database_backwards)("benchapp", editor, state, state)


def seed() -> None:
    from django.core.management import call_command

    from benchmarks.benchapp.models import Record

    call_command("migrate", run_syncdb=True, verbosity=0)
    Record.objects.unscoped(reason="benchmark set-up").bulk_create(
        [
            Record(tenant_id=tenant, title=f"{tenant}-{n}")
            for n in range(ROWS_PER_TENANT)
            for tenant in TENANTS
        ]
    )


def statements(server, dbname: str, like: str = "%") -> int:
    with server.superuser(dbname) as admin:
        return admin.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND userid = 'tenantry_app'::regrole AND query ILIKE %s",
            [like],
        ).fetchone()[0]


def round_trips(server) -> str:
    """Statements per scoped query, counted by the server."""
    from django.db import connection

    from benchmarks.benchapp.models import Record
    from tenantry import tenant_context

    set_rls(True)
    dbname = connection.settings_dict["NAME"]
    queries = 200
    with tenant_context("t01"):
        list(Record.objects.all())  # the connection holds t01 from here on
        total, sets = statements(server, dbname), statements(server, dbname, "SELECT set_config(%")
        for _ in range(queries):
            list(Record.objects.all())
        same_total = statements(server, dbname) - total
        same_sets = statements(server, dbname, "SELECT set_config(%") - sets
    sets = statements(server, dbname, "SELECT set_config(%")
    for n in range(queries):
        with tenant_context(TENANTS[n % 2]):
            list(Record.objects.all())
    changing_sets = statements(server, dbname, "SELECT set_config(%") - sets
    extra = (same_total - queries) / queries
    return "\n".join(
        [
            "### Round trips per query (counted by the server, pg_stat_statements)",
            "",
            f"{queries} scoped list queries on one connection with RLS on.",
            "",
            "| case | statements per query | of them `set_config` | goal |",
            "|---|---:|---:|:---:|",
            f"| tenant unchanged | {same_total / queries:.2f} | {same_sets / queries:.2f} "
            f"| 0 extra: {'yes' if extra == 0 and same_sets == 0 else 'NO'} |",
            f"| tenant changes every query | — | {changing_sets / queries:.2f} "
            f"| 1 per change: {'yes' if changing_sets == queries else 'NO'} |",
            "",
        ]
    )


def server_ms(server, dbname: str) -> float:
    """Planning + execution time per statement of the app role since the
    last reset, in ms (pg_stat_statements), then reset."""
    with server.superuser(dbname) as admin:
        calls, total = admin.execute(
            "SELECT sum(calls), sum(total_plan_time + total_exec_time) FROM pg_stat_statements"
            " WHERE userid = 'tenantry_app'::regrole AND query ILIKE 'SELECT %%benchapp_record%%'"
        ).fetchone()
        admin.execute("SELECT pg_stat_statements_reset()")
    return float(total) / int(calls) if calls else float("nan")


def timings(server, rounds: int = 30, number: int = 50) -> str:
    """Best time per operation over ``rounds`` rounds; each round measures
    RLS on and off back to back (their order alternating), so both see the
    same machine load. Beside the wall-clock times: the server's own time
    per query (planning + execution), which the machine's load disturbs less."""
    from django.db import connection
    from django.test import Client

    from benchmarks.benchapp.models import Record
    from tenantry import tenant_context

    client = Client()
    dbname = connection.settings_dict["NAME"]

    def query() -> None:
        list(Record.objects.all())

    def request() -> None:
        response = client.get("/records/", HTTP_HOST="t03.example.com")
        assert response.status_code == 200 and b"t03-0" in response.content

    best: dict[tuple[str, bool], float] = {}

    def keep(key: tuple[str, bool], value: float) -> None:
        best[key] = min(best.get(key, value), value)

    for n in range(rounds):
        for on in (True, False) if n % 2 == 0 else (False, True):
            set_rls(on)
            with tenant_context("t03"):
                query()
                server_ms(server, dbname)  # reset
                keep(("query", on), ns_per_op(query, number=number, repeat=1))
                keep(("server", on), server_ms(server, dbname) * 1e6)
            keep(("request", on), ns_per_op(request, number=number, repeat=1))
    rows = [
        (
            f"scoped list query ({ROWS_PER_TENANT} rows)",
            best[("query", True)],
            best[("query", False)],
        ),
        (
            "whole request (middleware + view + query)",
            best[("request", True)],
            best[("request", False)],
        ),
    ]
    server_row = [
        (
            "the list query in the server (planning + execution)",
            best[("server", True)],
            best[("server", False)],
        )
    ]
    return (
        table(
            "Row-level security: the same work with and without it",
            f"PostgreSQL on loopback, one persistent connection, {len(TENANTS)} tenants × "
            f"{ROWS_PER_TENANT} rows; RLS on = `TENANT_RLS = True` and the table's policy, "
            f"off = neither. Best of {rounds} rounds of {number}, on and off back to back; "
            "the server's time from pg_stat_statements.",
            ("RLS on", "RLS off"),
            rows,
            f"goal ≤ {GOAL:.2f}×",
            ok=lambda ratio: ratio <= GOAL,
        )
        + "\n"
        + table(
            "Row-level security: the server's share",
            "The same list query's time inside PostgreSQL (pg_stat_statements, best round): "
            "what the policy itself costs, mostly in planning (Django does not prepare "
            "statements). No goal: it is part of the times above.",
            ("RLS on", "RLS off"),
            server_row,
            None,
        )
    )


def run() -> str:
    """In a child process: Django is configured for PostgreSQL there."""
    return in_child("benchmarks.bench_rls")


def main() -> str:
    from tests.postgres_server import PostgresServer

    os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    with PostgresServer() as server:
        configure(server)
        seed()
        return timings(server) + "\n" + round_trips(server)


if __name__ == "__main__":
    print(main())
