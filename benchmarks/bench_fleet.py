"""The fleet, data plane: what each topology of docs/postgresql.md costs, in
one run, on real servers (tests/postgres_server.py, tests/pgbouncer_server.py,
tests/postgres_replica.py).

- a scoped list query (one tenant's 50 rows of 1,000) on one persistent
  connection, ``TENANT_RLS = "transaction"`` against ``True`` (session), both
  direct, the tenant unchanged; and with the tenant changing every query;
- the same query through pgbouncer in transaction pooling with
  ``"transaction"`` against direct with ``"transaction"`` (the pooler's hop);
- the same query on a streaming replica against the primary (session mode);
- a new connection and its first query with ``TENANT_RLS = True`` (which
  probes every new connection for transaction pooling) against
  ``"transaction"`` (which does not), direct: the probe's cost, paid once per
  connection; and the per-query cost of session mode with the probe against
  the same without it (none expected: the probe is not on the query path).

Each round measures both sides of a ratio back to back (order alternating);
the table gives the medians over the rounds, of the times and of the
per-round ratios. It runs in its own process
(``python -m benchmarks.bench_fleet``).
"""

from __future__ import annotations

import os
import statistics

from benchmarks.timing import fmt_ns, in_child, ns_per_op

TENANTS = [f"t{n:02d}" for n in range(20)]
ROWS_PER_TENANT = 50
ALIASES = ("default", "bouncer", "replica")


def configure(server, bouncer, replica) -> None:
    import django
    from django.conf import settings

    from benchmarks import settings as base

    values = {name: getattr(base, name) for name in dir(base) if name.isupper()}
    direct = {**server.django_settings(), "CONN_MAX_AGE": None}
    values["DATABASES"] = {
        "default": direct,
        "bouncer": {**bouncer.django_settings("pooled"), "CONN_MAX_AGE": None},
        "replica": {**direct, "PORT": str(replica.port)},
    }
    settings.configure(**values)
    django.setup()


def set_mode(value) -> None:
    from django.conf import settings
    from django.db import connections

    from tenantry import conf

    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": value}
    conf.reset()
    for alias in ALIASES:
        connections[alias].close()  # each mode on a connection of its own


def seed(server, replica) -> None:
    from django.apps import apps
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.state import ProjectState

    from benchmarks.benchapp.models import Record
    from tenantry.db import EnableTenantRLS

    call_command("migrate", run_syncdb=True, verbosity=0)
    set_mode(True)
    state = ProjectState.from_apps(apps)
    with connection.schema_editor() as editor:
        EnableTenantRLS("benchapp.Record").database_forwards("benchapp", editor, state, state)
    Record.objects.unscoped(reason="benchmark set-up").bulk_create(
        [
            Record(tenant_id=tenant, title=f"{tenant}-{n}")
            for n in range(ROWS_PER_TENANT)
            for tenant in TENANTS
        ]
    )
    replica.caught_up(dbname=connection.settings_dict["NAME"])


def timings(rounds: int = 60, number: int = 20) -> str:
    from django.db import connections

    from benchmarks.benchapp.models import Record
    from tenantry import tenant_context
    from tenantry.db import rls

    def query(alias: str):
        def run() -> None:
            rows = list(Record.objects.using(alias).all())
            assert len(rows) == ROWS_PER_TENANT

        return run

    def switching(alias: str):
        tenants = iter(range(10**9))

        def run() -> None:
            with tenant_context(TENANTS[next(tenants) % 2]):
                assert len(list(Record.objects.using(alias).all())) == ROWS_PER_TENANT

        return run

    def fresh(alias: str):
        def run() -> None:
            connections[alias].close()
            assert len(list(Record.objects.using(alias).all())) == ROWS_PER_TENANT

        return run

    probe = rls.refuse_transaction_pooling

    cases = {
        # name: ((mode, alias, make, probe on), (mode, alias, make, probe on))
        "scoped list query, tenant unchanged: transaction / session (direct)": (
            ("transaction", "default", query, True),
            (True, "default", query, True),
        ),
        "scoped list query, tenant changes every query: transaction / session (direct)": (
            ("transaction", "default", switching, True),
            (True, "default", switching, True),
        ),
        "scoped list query: through pgbouncer / direct (both transaction mode)": (
            ("transaction", "bouncer", query, True),
            ("transaction", "default", query, True),
        ),
        "scoped list query: replica / primary (session mode)": (
            (True, "replica", query, True),
            (True, "default", query, True),
        ),
        "new connection + first query: session (probed) / transaction (direct)": (
            (True, "default", fresh, True),
            ("transaction", "default", fresh, True),
        ),
        "scoped list query, session mode: probe on / probe off (per query)": (
            (True, "default", query, True),
            (True, "default", query, False),
        ),
    }
    times: dict[tuple[str, int], list[float]] = {}
    ratios: dict[str, list[float]] = {name: [] for name in cases}
    for n in range(rounds):
        for name, sides in cases.items():
            measured = {}
            for side in (0, 1) if n % 2 == 0 else (1, 0):
                mode, alias, make, probed = sides[side]
                set_mode(mode)
                rls.refuse_transaction_pooling = probe if probed else (lambda connection: None)
                try:
                    with tenant_context("t03"):
                        fn = make(alias)
                        fn()
                        measured[side] = ns_per_op(fn, number=number, repeat=1)
                finally:
                    rls.refuse_transaction_pooling = probe
                times.setdefault((name, side), []).append(measured[side])
            ratios[name].append(measured[0] / measured[1])
    lines = [
        "### The fleet, data plane: each topology against its alternative",
        "",
        "PostgreSQL, pgbouncer (`pool_mode = transaction`, 2 server sessions) and a "
        f"streaming replica on loopback; {len(TENANTS)} tenants × {ROWS_PER_TENANT} rows "
        f"behind `EnableTenantRLS`. {rounds} rounds; in each, {number} operations of one "
        "side then of the other (order alternating), and their ratio. Medians over the "
        "rounds: a ratio of two batches measured back to back cancels most of the "
        "machine's load, which the times themselves still carry.",
        "",
        "| first / second | first | second | ratio (median of rounds) |",
        "|---|---:|---:|---:|",
    ]
    for name in cases:
        first, second = (statistics.median(times[(name, side)]) for side in (0, 1))
        ratio = statistics.median(ratios[name])
        lines.append(f"| {name} | {fmt_ns(first)} | {fmt_ns(second)} | {ratio:.2f}× |")
    return "\n".join(lines) + "\n"


def run() -> str:
    """In a child process: Django is configured for PostgreSQL there."""
    return in_child("benchmarks.bench_fleet")


def main() -> str:
    from tests.pgbouncer_server import PgBouncer
    from tests.postgres_replica import StreamingReplica
    from tests.postgres_server import DATABASE, PostgresServer

    os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    with PostgresServer() as server, StreamingReplica(server) as replica:
        with PgBouncer(server, {"pooled": f"dbname={DATABASE} pool_size=2"}) as bouncer:
            configure(server, bouncer, replica)
            seed(server, replica)
            return timings()


if __name__ == "__main__":
    print(main())
