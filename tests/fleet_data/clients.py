"""Clients that read as their tenants through one database alias, for the
concurrency tests of tests/fleet_data/ (threads in the test's process, or
``python -m tests.fleet_data.clients`` in other processes).

Each client switches between two tenants, round after round, and reads four
ways: the scoped manager (both walls), the plain manager (only the database's
wall), a raw cursor, and a raw cursor inside ``atomic()``; then, with no
tenant bound, a raw cursor that must read nothing. What it read is counted:
``own`` rows of the bound tenant, ``foreign`` rows of any other tenant (must
be 0), ``unbound`` rows read with no tenant (must be 0), and the server
process ids (``pg_backend_pid()``) that answered.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections import Counter
from typing import Any

SQL = "SELECT tenant_id, pg_backend_pid() FROM app_rlsnote"


def read_as(index: int, alias: str, tenants: list[str], rounds: int, start: Any) -> dict[str, Any]:
    """One client's rounds (``start``: a barrier, or None)."""
    from django.db import connections, transaction

    from tenantry import tenant_context
    from tests.app.models import RlsNote

    counts: Counter[str] = Counter()
    pids: set[int] = set()
    mine = [tenants[index % len(tenants)], tenants[(index + 1) % len(tenants)]]
    connection = connections[alias]
    try:
        if start is not None:
            start.wait()
        for round_ in range(rounds):
            tenant = mine[round_ % 2]
            with tenant_context(tenant):
                read = [
                    *RlsNote.objects.using(alias).values_list("tenant_id", flat=True),
                    *RlsNote.all_tenants.using(alias).values_list("tenant_id", flat=True),
                ]
                with connection.cursor() as cursor:
                    cursor.execute(SQL)
                    rows = cursor.fetchall()
                with transaction.atomic(using=alias), connection.cursor() as cursor:
                    cursor.execute(SQL)
                    rows += cursor.fetchall()
            read += [tenant_id for tenant_id, _ in rows]
            pids.update(pid for _, pid in rows)
            counts["own"] += sum(1 for tenant_id in read if tenant_id == tenant)
            counts["foreign"] += sum(1 for tenant_id in read if tenant_id != tenant)
            with connection.cursor() as cursor:
                cursor.execute(SQL)
                counts["unbound"] += len(cursor.fetchall())
    finally:
        connection.close()
    return {"counts": dict(counts), "pids": sorted(pids)}


def run_threads(alias: str, tenants: list[str], clients: int, rounds: int) -> dict[str, Any]:
    """``clients`` threads at once; their results summed."""
    start = threading.Barrier(clients)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            results.append(read_as(index, alias, tenants, rounds, start))
        except BaseException as exc:
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    total: Counter[str] = Counter()
    pids: set[int] = set()
    for result in results:
        total.update(result["counts"])
        pids.update(result["pids"])
    return {"counts": dict(total), "pids": sorted(pids), "clients": len(results)}


def main(argv: list[str]) -> int:
    """A process of clients: Django set up on ``tests.settings`` with its
    ``default`` database reached at ``--port``/``--dbname`` and
    ``TENANT_RLS = --rls``; prints the summed results as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", required=True)
    parser.add_argument("--dbname", required=True)
    parser.add_argument("--rls", default="transaction")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--tenants", default="t0,t1,t2,t3")
    options = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ["TENANTRY_TEST_DB"] = "postgres"
    from django.conf import settings

    settings.DATABASES["default"].update(
        {"HOST": "127.0.0.1", "PORT": options.port, "NAME": options.dbname}
    )
    settings.DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    settings.DJUST_CONFIG["TENANT_RLS"] = {"True": True}.get(options.rls, options.rls)
    import django

    django.setup()
    result = run_threads("default", options.tenants.split(","), options.clients, options.rounds)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
