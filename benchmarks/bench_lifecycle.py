"""What the lifecycle guards cost every write (tenantry.lifecycle): the
registry's pre_save/post_save/pre_delete receivers and the QuerySet.update /
bulk_create wrappers run for every model, so a save(), update() and delete()
of an ordinary row is timed with them and without them in the same run; and
what deleting a tenant of 1,000 rows costs (SQLite, memory stores)."""

from __future__ import annotations

import time

from django.core.management import call_command
from django.db.models import QuerySet
from django.db.models.signals import post_save, pre_delete, pre_save
from django.test import override_settings

from benchmarks.timing import fmt_ns, ns_per_op

CONFIG = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "benchapp.Tenant",
}


def _guards(on: bool) -> None:
    from tenantry import lifecycle

    if on:
        lifecycle.install()
        return
    pre_save.disconnect(dispatch_uid="tenantry.lifecycle.pre_save")
    post_save.disconnect(dispatch_uid="tenantry.lifecycle.post_save")
    pre_delete.disconnect(dispatch_uid="tenantry.lifecycle.pre_delete")
    QuerySet.update = lifecycle._plain_update  # type: ignore[method-assign]
    QuerySet.bulk_create = lifecycle._plain_bulk_create  # type: ignore[method-assign]


def run() -> str:
    from benchmarks.benchapp.models import PlainDoc, PlainFolder, Tenant
    from tenantry import lifecycle

    call_command("migrate", run_syncdb=True, verbosity=0)
    with override_settings(DJUST_CONFIG=CONFIG):
        folder = PlainFolder.objects.create(tenant_id="acme", name="f")
        doc = PlainDoc.objects.create(tenant_id="acme", title="t", folder=folder)
        rows = PlainDoc.objects.filter(pk=doc.pk)
        nobody = PlainDoc.objects.filter(pk=-1)
        cases = {
            "`save()` of a loaded row": lambda: doc.save(),
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
            "`post_save` receiver": lambda: lifecycle._on_registry_created(
                PlainDoc, doc, created=True
            ),
            "`pre_delete` receiver": lambda: lifecycle._on_registry_delete(PlainDoc, doc),
            "`update()`/`bulk_create()` check": lambda: lifecycle._registry_of(PlainDoc),
        }
        alone = {label: ns_per_op(fn, number=100_000) for label, fn in receivers.items()}

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
        f"Deleting a tenant of 1,002 rows (1,000 docs, a folder, its registry row), "
        f"files, cache and memory stores, with its certificate: {fmt_ns(took)}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from benchmarks import setup

    setup()
    print(run())
