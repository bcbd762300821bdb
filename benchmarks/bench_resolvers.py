"""resolve_tenant(request) per strategy: tenantry against djust.tenants, on the
same prebuilt requests and the same DJUST_CONFIG, in one process."""

from __future__ import annotations

import djust.tenants as djust_tenants
from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.test import RequestFactory, override_settings

import tenantry
from benchmarks.timing import ns_per_op, ratio_table


def resolve_from_header(request):
    return request.META.get("HTTP_X_TENANT_ID")


def cases():
    rf = RequestFactory()
    sub = rf.get("/", HTTP_HOST="acme.example.com")
    path = rf.get("/acme/dashboard/", HTTP_HOST="example.com")
    header = rf.get("/", HTTP_HOST="example.com", HTTP_X_TENANT_ID="acme")
    session = rf.get("/", HTTP_HOST="example.com")
    session.session = SessionStore()
    session.session["tenant_id"] = "acme"
    # The chain matches on its third resolver (the worst case).
    chained = rf.get("/", HTTP_HOST="acme.example.com")
    base = {"TENANT_MAIN_DOMAIN": "example.com"}
    return [
        ("subdomain", {**base, "TENANT_RESOLVER": "subdomain"}, sub),
        ("path", {**base, "TENANT_RESOLVER": "path"}, path),
        ("header", {**base, "TENANT_RESOLVER": "header"}, header),
        ("session", {**base, "TENANT_RESOLVER": "session"}, session),
        (
            "custom",
            {
                **base,
                "TENANT_RESOLVER": "custom",
                "TENANT_CUSTOM_RESOLVER": "benchmarks.bench_resolvers.resolve_from_header",
            },
            header,
        ),
        (
            "chain header → path → subdomain",
            {**base, "TENANT_RESOLVER": ["header", "path", "subdomain"]},
            chained,
        ),
    ]


def run() -> str:
    rows = []
    for label, config, request in cases():
        with override_settings(DJUST_CONFIG=config):
            theirs = djust_tenants.resolve_tenant(request)
            ours = tenantry.resolve_tenant(request)
            assert theirs is not None and ours is not None, label
            assert theirs.id == ours.id == "acme", (label, theirs.id, ours.id)
            rows.append(
                (
                    label,
                    ns_per_op(lambda r=request: djust_tenants.resolve_tenant(r), number=5_000),
                    ns_per_op(lambda r=request: tenantry.resolve_tenant(r), number=50_000),
                )
            )
    return ratio_table("resolve_tenant(request), per strategy", rows, goal=10)


if __name__ == "__main__":
    from benchmarks import setup

    setup()
    print(run())
