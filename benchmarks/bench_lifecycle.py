"""What the lifecycle guards cost every write (tenantry.lifecycle): the
registry's pre_save/pre_delete receivers, the INSERT hook, the
Collector.delete wrapper and the QuerySet.update / bulk_create wrappers run
for every model, so a save(), create(), update() and delete() of an ordinary
row is timed with them and without them in the same run; what creating a
tenant costs (the look for what its id still holds); and what deleting a
tenant of 1,000 rows costs (SQLite, memory stores)."""

from __future__ import annotations

import time

from django.core.management import call_command
from django.db.models import QuerySet
from django.db.models.deletion import Collector
from django.db.models.signals import pre_delete, pre_save
from django.db.models.sql import InsertQuery
from django.test import override_settings

from benchmarks.timing import fmt_ns, ns_per_op

CONFIG = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "benchapp.Tenant",
}


_on_insert = None


def _guards(on: bool) -> None:
    global _on_insert
    from tenantry import lifecycle

    if _on_insert is None:
        _on_insert = lifecycle.on_insert
    if on:
        lifecycle.install()
        lifecycle.on_insert = _on_insert  # what tenantry.wall's INSERT hook calls
        return
    pre_save.disconnect(dispatch_uid="tenantry.lifecycle.pre_save")
    pre_delete.disconnect(dispatch_uid="tenantry.lifecycle.pre_delete")
    QuerySet.update = lifecycle._plain_update  # type: ignore[method-assign]
    QuerySet.bulk_create = lifecycle._plain_bulk_create  # type: ignore[method-assign]
    Collector.delete = lifecycle._plain_collector_delete  # type: ignore[method-assign]
    lifecycle.on_insert = lambda query, compiler: None


def run() -> str:
    from benchmarks.benchapp.models import PlainDoc, PlainFolder, Tenant
    from tenantry import lifecycle

    call_command("migrate", run_syncdb=True, verbosity=0)
    with override_settings(DJUST_CONFIG=CONFIG):
        folder = PlainFolder.objects.create(tenant_id="acme", name="f")
        doc = PlainDoc.objects.create(tenant_id="acme", title="t", folder=folder)
        rows = PlainDoc.objects.filter(pk=doc.pk)
        # What the insert compiler hands the hook: an InsertQuery with its rows.
        insert = InsertQuery(PlainDoc)
        insert.insert_values(
            [f for f in PlainDoc._meta.concrete_fields if not f.primary_key],
            [PlainDoc(tenant_id="acme", title="i", folder=folder)],
        )
        nobody = PlainDoc.objects.filter(pk=-1)
        cases = {
            "`save()` of a loaded row": lambda: doc.save(),
            "`create()` of a row": lambda: PlainDoc.objects.create(
                tenant_id="acme", title="n", folder=folder
            ),
            "`update(title=...)` of one row": lambda: rows.update(title="x"),
            "`delete()` of a queryset (no row)": lambda: nobody.delete(),
        }
        timed = {}
        for on in (False, True, False, True):  # interleaved: drift hits both
            _guards(on)
            for label, fn in cases.items():
                ns = ns_per_op(fn, number=2_000)
                timed[label, on] = min(timed.get((label, on), ns), ns)
        _guards(True)
        # The guards alone, per call, on an ordinary model (what each write adds).
        receivers = {
            "`pre_save` receiver": lambda: lifecycle._on_registry_save(PlainDoc, doc),
            "INSERT hook (`lifecycle.on_insert`)": lambda: lifecycle.on_insert(insert, None),
            "`pre_delete` receiver": lambda: lifecycle._on_registry_delete(PlainDoc, doc),
            "`update()`/`bulk_create()` check": lambda: lifecycle._registry_of(PlainDoc),
        }
        alone = {label: ns_per_op(fn, number=100_000) for label, fn in receivers.items()}

        # Creating a tenant: one dry run of the deletion for what its id
        # still holds (rows of every owned model, files, Redis), then the
        # INSERT and a fresh start (cache generation, memory stores).
        names = iter(range(10**6))

        def new_tenant() -> None:
            Tenant.objects.create(slug=f"bench-new-{next(names)}", name="x")

        created = ns_per_op(new_tenant, number=50)
        _guards(False)
        created_plain = ns_per_op(new_tenant, number=50)
        _guards(True)
        Tenant.objects.filter(slug__startswith="bench-new-").delete()

        Tenant.objects.filter(slug="bench-delete").delete()
        Tenant.objects.create(slug="bench-delete", name="x")
        other = PlainFolder.objects.create(tenant_id="bench-delete", name="f")
        PlainDoc.objects.bulk_create(
            PlainDoc(tenant_id="bench-delete", title=str(n), folder=other) for n in range(1000)
        )
        start = time.perf_counter_ns()
        certificate = lifecycle.delete_tenant("bench-delete")
        took = time.perf_counter_ns() - start
        assert certificate.count("database", "benchapp.PlainDoc") == 1000

    lines = [
        "### Lifecycle guards on every write (SQLite)",
        "",
        "| case | without | with the guards | ratio |",
        "|---|---:|---:|---:|",
    ]
    for label in cases:
        off, on = timed[label, False], timed[label, True]
        lines.append(f"| {label} | {fmt_ns(off)} | {fmt_ns(on)} | {on / off:.3f}× |")
    lines += [
        "",
        "| guard alone, per call, on an ordinary model | time |",
        "|---|---:|",
        *(f"| {label} | {fmt_ns(ns)} |" for label, ns in alone.items()),
    ]
    lines += [
        "",
        f"Creating a tenant (`Tenant.objects.create`): {fmt_ns(created)} with the look for "
        f"what its id still holds, {fmt_ns(created_plain)} without "
        f"({created / created_plain:.1f}×; memory stores, no Redis `SCAN`).",
        "",
        f"Deleting a tenant of 1,002 rows (1,000 docs, a folder, its registry row), "
        f"files, cache and memory stores, with its certificate: {fmt_ns(took)}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from benchmarks import setup

    setup()
    print(run())
