"""Many-to-many link tables behind the second wall
(docs/postgresql.md#many-to-many-link-tables): a raw read of a link table
and an ORM prefetch of a many-to-many field, with the link policies
(``tenantry_isolation`` for SELECT, ``tenantry_link_insert``/``_update``/``_delete``
on ``benchapp_record_tags``,
what ``EnableTenantRLS`` now makes) against the same table without them
(the ends' tables walled in both cases), in the same run.

20 tenants × 50 records, 10 tags each, every record linked to 3 tags
(3000 links, 150 the measured tenant's). No goal: a link row's policy
costs one index lookup per walled end (an ``EXISTS`` on the end's table,
itself under its policy); the numbers say what that is.

Runs in its own process (``python -m benchmarks.bench_links``), on a
throwaway PostgreSQL cluster, like ``benchmarks.bench_rls``.
"""

from __future__ import annotations

import os

from benchmarks.bench_rls import TENANTS, configure, seed
from benchmarks.bench_state import table
from benchmarks.timing import in_child, ns_per_op

MEASURED = "t03"
LINKS = "benchapp_record_tags"


def seed_links() -> None:
    from benchmarks.benchapp.models import Record, Tag

    tags = Tag.objects.unscoped(reason="benchmark set-up").bulk_create(
        [Tag(tenant_id=tenant, name=f"{tenant}-tag-{n}") for tenant in TENANTS for n in range(10)]
    )
    by_tenant: dict[str, list] = {}
    for tag in tags:
        by_tenant.setdefault(tag.tenant_id, []).append(tag.pk)
    through = Record.tags.through
    records = Record.objects.unscoped(reason="benchmark set-up").values_list("pk", "tenant_id")
    through.objects.bulk_create(
        [
            through(record_id=pk, tag_id=by_tenant[tenant][(pk + k) % 10])
            for pk, tenant in records
            for k in range(3)
        ]
    )


def set_case(case: str) -> None:
    """TENANT_RLS on, both ends walled; the link table walled or not."""
    from django.apps import apps
    from django.conf import settings
    from django.db import connection
    from django.db.migrations.state import ProjectState

    from tenantry import conf
    from tenantry.db import POLICY, EnableTenantRLS
    from tenantry.db.operations import LINK_WRITE_POLICIES

    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    conf.reset()
    state = ProjectState.from_apps(apps)
    with connection.schema_editor() as editor:
        for label in ("benchapp.Tag", "benchapp.Record"):
            EnableTenantRLS(label).database_forwards("benchapp", editor, state, state)
        if case == "open":
            for sql in (
                *(
                    f"DROP POLICY {name} ON {LINKS}"
                    for name in (POLICY, *LINK_WRITE_POLICIES.values())
                ),
                f"ALTER TABLE {LINKS} NO FORCE ROW LEVEL SECURITY",
                f"ALTER TABLE {LINKS} DISABLE ROW LEVEL SECURITY",
            ):
                editor.execute(sql)


def timings(rounds: int = 20, number: int = 50) -> str:
    from django.db import connection

    from benchmarks.benchapp.models import Record
    from tenantry import tenant_context

    def raw_read() -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT record_id, tag_id FROM {LINKS}")
            cursor.fetchall()

    def joined_read() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT l.record_id, l.tag_id FROM {LINKS} l "
                "JOIN benchapp_record r ON r.id = l.record_id"
            )
            cursor.fetchall()

    def prefetch() -> None:
        for record in Record.objects.prefetch_related("tags"):
            list(record.tags.all())

    best: dict[tuple[str, str], float] = {}
    cases = ("walled", "open")
    for n in range(rounds):
        for case in cases if n % 2 == 0 else tuple(reversed(cases)):
            set_case(case)
            with tenant_context(MEASURED):
                raw_read()
                for name, op in (
                    ("raw", raw_read),
                    ("joined", joined_read),
                    ("prefetch", prefetch),
                ):
                    value = ns_per_op(op, number=number, repeat=1)
                    best[(name, case)] = min(best.get((name, case), value), value)
    rows = [
        (
            "raw SELECT of the link table (walled: 150 of 3000 rows; open: all 3000)",
            best[("raw", "walled")],
            best[("raw", "open")],
        ),
        (
            "raw SELECT of the link table joined to the records (150 rows in both)",
            best[("joined", "walled")],
            best[("joined", "open")],
        ),
        (
            "Record.objects.prefetch_related('tags') (50 records, 150 links)",
            best[("prefetch", "walled")],
            best[("prefetch", "open")],
        ),
    ]
    return table(
        "Link tables: with the link policies against none",
        f"PostgreSQL on loopback, one persistent connection, {len(TENANTS)} tenants, "
        f"TENANT_RLS on, tenant {MEASURED} bound, both ends' tables walled. Best of "
        f"{rounds} rounds of {number}, both cases back to back in each round.",
        ("link policies", "no link policy"),
        rows,
        None,
    )


def run() -> str:
    """In a child process: Django is configured for PostgreSQL there."""
    return in_child("benchmarks.bench_links")


def main() -> str:
    from tests.postgres_server import PostgresServer

    os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    with PostgresServer() as server:
        configure(server)
        seed()
        seed_links()
        return timings()


if __name__ == "__main__":
    print(main())
