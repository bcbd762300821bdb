"""The registry's cost on resolve_tenant(): a cache hit, a cached miss
(negative hit) and a real miss (one query), against the same resolver with no
registry configured. Goal: a hit within 2× of no registry."""

from __future__ import annotations

from django.core.management import call_command
from django.test import RequestFactory, override_settings

import tenantry
from benchmarks.timing import fmt_ns, ns_per_op

BASE = {"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"}
REGISTRY = {**BASE, "TENANT_MODEL": "benchapp.Tenant", "TENANT_CACHE_SIZE": 200_000}


def run() -> str:
    from benchmarks.benchapp.models import Tenant

    call_command("migrate", run_syncdb=True, verbosity=0)
    Tenant.objects.get_or_create(
        slug="acme", defaults={"name": "Acme", "settings": {"theme": "dark"}}
    )
    rf = RequestFactory()
    known = rf.get("/", HTTP_HOST="acme.example.com")
    unknown = rf.get("/", HTTP_HOST="nobody.example.com")

    with override_settings(DJUST_CONFIG=BASE):
        plain = ns_per_op(lambda: tenantry.resolve_tenant(known), number=50_000)
    with override_settings(DJUST_CONFIG=REGISTRY):
        assert tenantry.resolve_tenant(known).name == "Acme"
        assert tenantry.resolve_tenant(unknown) is None
        hit = ns_per_op(lambda: tenantry.resolve_tenant(known), number=50_000)
        negative = ns_per_op(lambda: tenantry.resolve_tenant(unknown), number=50_000)
        number = 2_000
        fresh = iter([rf.get("/", HTTP_HOST=f"n{i}.example.com") for i in range(5 * number + 1)])
        miss = ns_per_op(lambda: tenantry.resolve_tenant(next(fresh)), number=number)

    rows = [
        ("no registry (subdomain)", plain, "—"),
        ("registry, cache hit", hit, f"{hit / plain:.2f}× no registry (goal ≤ 2×)"),
        ("registry, cached unknown id (negative hit)", negative, f"{negative / plain:.2f}×"),
        ("registry, miss (one SQLite query)", miss, f"{miss / plain:.1f}×"),
    ]
    lines = [
        "### Tenant registry on resolve_tenant(request)",
        "",
        "| case | tenantry | vs. no registry |",
        "|---|---:|---:|",
        *(f"| {label} | {fmt_ns(ns)} | {note} |" for label, ns, note in rows),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from benchmarks import setup

    setup()
    print(run())
