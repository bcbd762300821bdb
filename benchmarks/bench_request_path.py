"""The whole per-request path: middleware → view's tenant resolution →
template context (view context + context processor), tenantry against
djust.tenants, on the same prebuilt request and DJUST_CONFIG."""

from __future__ import annotations

import djust.tenants as djust_tenants
from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from django.views.generic.base import ContextMixin, View
from djust.tenants.middleware import TenantMiddleware as DjustMiddleware

import tenantry
from benchmarks.timing import ns_per_op, ratio_table
from tenantry.context_processors import tenant as tenantry_processor
from tenantry.middleware import TenantMiddleware

RESPONSE: list[HttpResponse] = []  # one prebuilt response, made once settings exist


class DjustView(djust_tenants.TenantMixin, ContextMixin, View):
    pass


class TenantryView(tenantry.TenantMixin, ContextMixin, View):
    pass


def djust_view(request):
    view = DjustView()
    view.request = request
    view._ensure_tenant(request)
    context = view.get_context_data()
    context.update(djust_tenants.context_processor(request))
    assert context["tenant"].id == "acme", context
    return RESPONSE[0]


def tenantry_view(request):
    view = TenantryView()
    view.request = request
    view._ensure_tenant(request)
    context = view.get_context_data()
    context.update(tenantry_processor(request))
    assert context["tenant"].id == "acme", context
    return RESPONSE[0]


CASES = [
    ("subdomain", {"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"}),
    ("header", {"TENANT_RESOLVER": "header"}),
    (
        "chain header → path → subdomain",
        {"TENANT_RESOLVER": ["header", "path", "subdomain"], "TENANT_MAIN_DOMAIN": "example.com"},
    ),
]


def run() -> str:
    rf = RequestFactory()
    RESPONSE[:] = [HttpResponse(b"ok")]
    rows = []
    for label, config in CASES:
        with override_settings(DJUST_CONFIG={**config, "TENANT_REQUIRED": True}):
            theirs_mw = DjustMiddleware(djust_view)
            ours_mw = TenantMiddleware(tenantry_view)
            headers = {"HTTP_HOST": "acme.example.com"}
            if label == "header":
                headers = {"HTTP_HOST": "example.com", "HTTP_X_TENANT_ID": "acme"}

            def timed(middleware, number, headers=headers):
                # Fresh requests, built before timing: nothing is cached on a
                # request from an earlier call, and building them is not timed.
                pending = iter([rf.get("/", **headers) for _ in range(5 * number + 1)])
                return ns_per_op(lambda: middleware(next(pending)), number=number)

            theirs = timed(theirs_mw, 2_000)
            ours = timed(ours_mw, 5_000)
            rows.append((label, theirs, ours))
    return ratio_table(
        "Per request: middleware + view resolution + template context",
        rows,
        goal=5,
    )


if __name__ == "__main__":
    from benchmarks import setup

    setup()
    print(run())
