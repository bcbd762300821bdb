"""The cost of a database per tenant (docs/postgresql.md#a-database-per-tenant):
``TenantDatabaseRouter`` in ``DATABASE_ROUTERS``, two SQLite databases in
memory, a ``TENANT_VALIDATOR`` giving each tenant's alias. A scoped list
query (one tenant's 50 rows) and a ``create()``:

* routed to the tenant's own database against the same on ``default``
  (both with the router: the routing's cost is the same, the database
  differs);
* on ``default`` with the router against without it (what the router and
  the wall's database checks add to every query of a project that turns
  the feature on).

Both sides run back to back in every round; ratios are medians of the
per-round ratios, from this one run.
"""

from __future__ import annotations

import statistics
import time

from django.conf import settings
from django.core.management import call_command
from django.db import connections, router
from django.test.utils import override_settings

from benchmarks.timing import fmt_ns
from tenantry import TenantInfo, tenant_context
from tenantry.db import TenantDatabaseRouter
from tenantry.db.router import _enabled as routing_enabled_cache

ALIAS = "tenant_big"
ROUTER = ["tenantry.db.TenantDatabaseRouter"]


ROUNDS = 30
CALLS = 50


def _paired(first, second) -> tuple[float, float, float]:
    """Median ns per call of each side and median of per-round ratios."""
    firsts, seconds, ratios = [], [], []
    first(), second()  # warm
    for index in range(ROUNDS):
        pair = (first, second) if index % 2 == 0 else (second, first)
        took = {}
        for op in pair:
            start = time.perf_counter_ns()
            for _ in range(CALLS):
                op()
            took[op] = (time.perf_counter_ns() - start) / CALLS
        firsts.append(took[first])
        seconds.append(took[second])
        ratios.append(took[first] / took[second])
    return statistics.median(firsts), statistics.median(seconds), statistics.median(ratios)


def _routers(op, on: bool):
    """``op`` with the router in Django's router list or not (swapped in
    place: an ``override_settings`` per call would dominate the timing)."""
    routers = [TenantDatabaseRouter()] if on else []

    def run() -> None:
        router.__dict__["routers"] = routers
        routing_enabled_cache[:] = [on]
        op()

    return run


def tenant_validator(tenant_id: str) -> TenantInfo | None:
    """``big`` has its own database; every other id is on ``default``."""
    return TenantInfo(tenant_id, database=ALIAS if tenant_id == "big" else None)


def _add_alias() -> None:
    entry = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    settings.DATABASES[ALIAS] = entry
    configured = connections.configure_settings(
        {"default": settings.DATABASES["default"], ALIAS: dict(entry)}
    )
    connections.settings[ALIAS] = configured[ALIAS]


def run() -> str:
    from benchmarks.benchapp.models import Record

    _add_alias()
    config = {
        **settings.DJUST_CONFIG,
        "TENANT_VALIDATOR": "benchmarks.bench_dedicated.tenant_validator",
    }
    with override_settings(DJUST_CONFIG=config, DATABASE_ROUTERS=ROUTER):
        call_command("migrate", run_syncdb=True, verbosity=0)
        call_command("migrate", run_syncdb=True, database=ALIAS, verbosity=0)
        for tenant in ("big", "small"):
            with tenant_context(tenant):
                Record.objects.bulk_create(
                    Record(tenant_id=tenant, title=f"r{i}") for i in range(50)
                )

        def listing(tenant: str):
            def op() -> None:
                with tenant_context(tenant):
                    list(Record.objects.all()[:50])

            return op

        def creating(tenant: str):
            def op() -> None:
                with tenant_context(tenant):
                    Record.objects.create(tenant_id=tenant, title="x")

            return op

        pairs = [
            ("list 50 rows: own database / default (router on)", listing("big"), listing("small")),
            ("create(): own database / default (router on)", creating("big"), creating("small")),
            (
                "list 50 rows on default: router on / off",
                _routers(listing("small"), True),
                _routers(listing("small"), False),
            ),
            (
                "create() on default: router on / off",
                _routers(creating("small"), True),
                _routers(creating("small"), False),
            ),
        ]
        rows = [(label, *_paired(first, second)) for label, first, second in pairs]
    lines = [
        f"Rounds: {ROUNDS} of {CALLS} calls each side, back to back (order alternating); "
        "times are medians per call, the ratio the median of the per-round ratios.\n",
        "## A database per tenant (TenantDatabaseRouter, SQLite in memory)\n",
        "| first / second | first | second | ratio |",
        "|---|---:|---:|---:|",
    ]
    for label, first, second, ratio in rows:
        lines.append(f"| {label} | {fmt_ns(first)} | {fmt_ns(second)} | {ratio:.2f}× |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from benchmarks import setup

    setup()
    print(run())
