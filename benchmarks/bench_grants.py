"""Cross-tenant grants on the second wall (docs/collaboration.md#cost): the
scoped list query and a whole request with the grant policies
(``tenantry_shared_read``/``_write`` and the tenant-keeping trigger, what
``EnableTenantRLS`` now makes), with and without grants in the grant table,
against the policy made before grants existed, in the same run.

- "old policy": ``tenantry_isolation`` alone (``UpgradeTenantRLS`` backwards);
- "grant policies, no grants": the table's policies as made now, the grant
  table empty;
- "grant policies, grants": the same, with grants present: every other
  tenant grants 5 rows to the measured tenant, and one tenant grants 5 rows
  to every other (about 190 grants).

Goal: ≤ 1.10× the old policy (the row-level security bar). Also, without a
goal, ``with_shared()`` beside the plain scoped query (it returns the
granted rows too, so it reads more rows).

Runs in its own process (``python -m benchmarks.bench_grants``), on a
throwaway PostgreSQL cluster, like ``benchmarks.bench_rls``.
"""

from __future__ import annotations

import os

from benchmarks.bench_rls import GOAL, TENANTS, configure, seed, server_ms
from benchmarks.bench_state import table
from benchmarks.timing import in_child, ns_per_op

MEASURED = "t03"
CASES = ("old", "empty", "grants")


def set_case(case: str) -> None:
    """TENANT_RLS on; the table's policies as ``case`` says; grants or none."""
    from django.apps import apps
    from django.conf import settings
    from django.db import connection
    from django.db.migrations.state import ProjectState
    from django.db.models import QuerySet
    from django.utils import timezone

    from benchmarks.benchapp.models import Record
    from tenantry import conf
    from tenantry.db import EnableTenantRLS, UpgradeTenantRLS
    from tenantry.db.scope import BYPASS, scoped_as
    from tenantry.models import Grant, _granting

    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    conf.reset()
    state = ProjectState.from_apps(apps)
    with connection.schema_editor() as editor:
        EnableTenantRLS("benchapp.Record").database_forwards("benchapp", editor, state, state)
        if case == "old":
            UpgradeTenantRLS("benchapp.Record").database_backwards(
                "benchapp", editor, state, state
            )
    token = _granting.set(True)
    try:
        with scoped_as(BYPASS):
            Grant.objects.all().delete()
            if case != "grants":
                return
            everything = QuerySet(model=Record)  # quiet: the set-up is not the measured work
            rows = list(everything.values_list("pk", "tenant_id"))
            by_tenant: dict[str, list] = {}
            for pk, tenant in rows:
                by_tenant.setdefault(tenant, []).append(pk)
            now = timezone.now()
            grants = []
            for owner, pks in by_tenant.items():
                grantees = [MEASURED] if owner != MEASURED else []
                if owner == "t05":
                    grantees = [t for t in TENANTS if t != owner]
                for grantee in grantees:
                    for pk in pks[:5]:
                        grants.append(
                            Grant(
                                owner_tenant=owner,
                                grantee_tenant=grantee,
                                target_model="benchapp.Record",
                                target_table="benchapp_record",
                                object_pk=str(pk),
                                owner_key=owner,
                                can_write=pk % 2 == 0,
                                created_at=now,
                            )
                        )
            Grant.objects.bulk_create(grants, ignore_conflicts=True)
    finally:
        _granting.reset(token)


def timings(server, rounds: int = 30, number: int = 50) -> str:
    from django.db import connection
    from django.test import Client

    from benchmarks.benchapp.models import Record
    from tenantry import tenant_context

    client = Client()
    dbname = connection.settings_dict["NAME"]

    def query() -> None:
        list(Record.objects.all())

    def shared() -> None:
        list(Record.objects.with_shared())

    def request() -> None:
        response = client.get("/records/", HTTP_HOST=f"{MEASURED}.example.com")
        assert response.status_code == 200 and f"{MEASURED}-0".encode() in response.content

    best: dict[tuple[str, str], float] = {}

    def keep(key: tuple[str, str], value: float) -> None:
        best[key] = min(best.get(key, value), value)

    for n in range(rounds):
        order = CASES if n % 2 == 0 else tuple(reversed(CASES))
        for case in order:
            set_case(case)
            with tenant_context(MEASURED):
                query()
                server_ms(server, dbname)  # reset
                keep(("query", case), ns_per_op(query, number=number, repeat=1))
                keep(("server", case), server_ms(server, dbname) * 1e6)
                if case != "old":
                    keep(("shared", case), ns_per_op(shared, number=number, repeat=1))
            keep(("request", case), ns_per_op(request, number=number, repeat=1))
    rows = []
    for label, key in (
        ("scoped list query (50 rows)", "query"),
        ("whole request (middleware + view + query)", "request"),
        ("the list query in the server (planning + execution)", "server"),
    ):
        for case, name in (("empty", "no grants"), ("grants", "~190 grants")):
            rows.append((f"{label}, {name}", best[(key, case)], best[(key, "old")]))
    shared_rows = [
        (
            "Record.objects.with_shared() (50 own + 95 granted rows) vs .all() (50)",
            best[("shared", "grants")],
            best[("query", "grants")],
        )
    ]
    return (
        table(
            "Grants: the grant policies against the policy before grants",
            f"PostgreSQL on loopback, one persistent connection, {len(TENANTS)} tenants × 50 "
            f"rows, TENANT_RLS on, tenant {MEASURED} bound. Best of {rounds} rounds of "
            f"{number}, the three cases back to back in each round.",
            ("grant policies", "old policy"),
            rows,
            f"goal ≤ {GOAL:.2f}×",
            ok=lambda ratio: ratio <= GOAL,
        )
        + "\n"
        + table(
            "Grants: with_shared()",
            "The same connection and grants: the shared query returns the granted rows "
            "too (it reads about three times as many). No goal.",
            ("with_shared()", "all()"),
            shared_rows,
            None,
        )
    )


def run() -> str:
    """In a child process: Django is configured for PostgreSQL there."""
    return in_child("benchmarks.bench_grants")


def main() -> str:
    from tests.postgres_server import PostgresServer

    os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    with PostgresServer() as server:
        configure(server)
        seed()
        return timings(server)


if __name__ == "__main__":
    print(main())
