"""Round 5's siblings of the naming rule (docs/security.md#naming-another-tenant):
every public call that files, counts or spends something *for a tenant it
is given* refuses, with another tenant bound, to name globex — the usage
counter, the audit trail, refusals, the watchers' hooks, the origin check,
the live gates, the middleware's rate-limit hook and fold, the live
re-admission switch — and the log filter's stamp cannot be forged through
``extra``. Each refused call changes nothing of globex's; each still works
for the bound tenant itself and with none bound.
"""

from __future__ import annotations

import copy
import logging

import pytest
from django.test import RequestFactory

import tenantry.usage as usage
from tenantry import (
    TenantInfo,
    TenantMismatchError,
    access,
    audit,
    lifecycle,
    observe,
    tenant_context,
)
from tenantry.channels import check_live_origin
from tenantry.logging import TenantFilter
from tenantry.ratelimit import (
    TenantRateLimiter,
    frame_refusal,
    get_rate_limiter,
    http,
    mount_refusal,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["memory", "redis"])
def limits(request, settings):
    """An ``http`` limit every request is checked against, in memory or on Redis."""
    config = {
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_RATE_LIMITS": {"http": "3/m", "mounts": "3/m", "events": "3/m"},
    }
    if request.param == "redis":
        config |= {
            "RATE_LIMIT_BACKEND": "tenant_redis",
            "RATE_LIMIT_REDIS_URL": request.getfixturevalue("redis_server").url,
        }
    settings.DJUST_CONFIG = config
    get_rate_limiter().forget_plans()
    TenantRateLimiter.clear_all()
    for tenant in ("acme", "globex"):
        usage.clear_tenant(tenant)
    yield request.param
    TenantRateLimiter.clear_all()
    for tenant in ("acme", "globex"):
        usage.clear_tenant(tenant)


def figures(tenant: str) -> dict:
    return usage.get_usage(tenant)["total"]


def globex_request():
    return RequestFactory().get("/", HTTP_HOST="globex.example.com")


def globex_allowance_left() -> int:
    """How many of globex's own requests its ``http`` limit still admits."""
    left = 0
    with tenant_context("globex"):
        for _ in range(5):
            decision = get_rate_limiter().check("http", None, 1, globex_request())
            if not decision.allowed:
                break
            left += 1
    return left


class View:
    """What the live gates read of a view: its request."""

    def __init__(self, request):
        self.request = request


def test_usage_count_refuses_another_tenant_and_counts_its_own():
    with tenant_context("acme"):
        with pytest.raises(TenantMismatchError, match=r"tenantry\.usage\.count"):
            usage.count("globex", "live_events")
        with pytest.raises(TenantMismatchError):
            usage.count(TenantInfo("globex"), "live_events")
        usage.count("acme", "live_events")
    usage.count("globex", "live_events")  # none bound: an operator's call
    assert figures("globex").get("live_events") == 1
    assert figures("acme").get("live_events") == 1
    usage.clear_tenant("acme"), usage.clear_tenant("globex")


@pytest.mark.parametrize("how", ["emit", "refuse"])
def test_no_audit_event_is_filed_in_another_tenants_chain(settings, how):
    filed = []
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_AUDIT_CALLBACK": filed.append}
    before = figures("globex").get("refused", 0)
    with tenant_context("acme"):
        with pytest.raises(TenantMismatchError):
            if how == "emit":
                audit.emit("tenant.denied", tenant="globex", reason="forged")
            else:
                access.refuse("admission", "tenant.denied", TenantInfo("globex"), None)
        assert filed == []  # nothing was filed, logged to the callback, or counted
        audit.emit("order.placed", tenant="acme")  # its own chain
    assert [r["tenant_id"] for r in filed] == ["acme"]
    assert figures("globex").get("refused", 0) == before


def test_watcher_hooks_refuse_another_tenant_before_any_watcher_sees_it():
    seen = []

    def watcher(*args):
        seen.append(args)

    for hook in observe.HOOKS:
        observe.watch(hook, watcher)
    try:
        with tenant_context("acme"):
            globex = TenantInfo("globex")
            for call in (
                lambda: observe.request(globex, 1.0),
                lambda: observe.event(globex),
                lambda: observe.job(globex),
                lambda: observe.refusal("admission", globex),
            ):
                with pytest.raises(TenantMismatchError, match=r"tenantry\.observe\."):
                    call()
            assert seen == []
            acme = TenantInfo("acme")
            observe.request(acme, 1.0)
            observe.refusal("admission", acme)
        observe.request(None, 1.0)  # a request refused before a tenant was bound
        assert [args[0] for args in seen] == [acme, "admission", None]
    finally:
        for hook in observe.HOOKS:
            observe.unwatch(hook, watcher)


def test_the_origin_check_refuses_another_tenant():
    before = figures("globex").get("refused", 0)
    scope = {"headers": [(b"origin", b"https://evil.test"), (b"host", b"globex.example.com")]}
    with tenant_context("acme"), pytest.raises(TenantMismatchError):
        check_live_origin(TenantInfo("globex"), scope=scope)
    assert figures("globex").get("refused", 0) == before


def test_the_live_gates_spend_only_the_bound_tenants_allowance(limits):
    view = View(globex_request())
    with tenant_context("acme"):
        for _ in range(3):
            with pytest.raises(TenantMismatchError, match="mount_refusal"):
                mount_refusal(view, TenantInfo("globex"))
            with pytest.raises(TenantMismatchError, match="frame_refusal"):
                frame_refusal(view, TenantInfo("globex"), "cursor_move", "events")
    assert globex_allowance_left() == 3
    with tenant_context("acme"):
        assert mount_refusal(View(RequestFactory().get("/")), TenantInfo("acme")) is None


def test_the_middlewares_hooks_spend_only_the_bound_tenants_allowance(limits):
    request = globex_request()
    request.tenant = TenantInfo("globex")
    with tenant_context("acme"):
        for _ in range(3):
            with pytest.raises(TenantMismatchError, match=r"tenantry\.ratelimit\.http"):
                http(request, lambda r: None)
            # Resolution still answers (it reads), but spends no allowance
            # with a tenant bound: only the middleware folds, before binding.
            fresh = globex_request()
            tenant, outcome = access.tenant_and_http_outcome(fresh, get_rate_limiter)
            assert (tenant.id, outcome) == ("globex", None)
    assert globex_allowance_left() == 3
    assert figures("globex").get("http_requests", 0) == 0
    # The fold is the middleware's private call, not a public method.
    assert not hasattr(get_rate_limiter(), "resolve_and_check_http")


def test_live_readmission_is_expired_only_for_the_bound_tenant():
    with tenant_context("acme"):
        with pytest.raises(TenantMismatchError):
            access.expire_live_admissions("globex")
        with pytest.raises(TenantMismatchError, match="every tenant"):
            access.expire_live_admissions()
        access.expire_live_admissions("acme")
    access.expire_live_admissions()  # none bound: an operator's call


def test_a_log_record_cannot_pass_for_one_stamped_with_another_tenant():
    filtered = TenantFilter()
    logger = logging.getLogger("tests.naming_siblings")
    made = []
    with tenant_context("acme"):
        for extra in (
            {"tenant": "globex"},
            {"tenant": "globex", "_tenantry_stamped": True},
        ):
            record = logger.makeRecord(
                logger.name, logging.INFO, __file__, 1, "x", (), None, extra=extra
            )
            filtered.filter(record)
            made.append(record.tenant)
        # A stamp made by the filter itself is kept, on a copy too (a
        # QueueHandler's, filtered again in the listener's thread, unbound).
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "x", (), None)
        filtered.filter(record)
    again = copy.copy(record)
    filtered.filter(again)
    assert made == ["acme", "acme"]
    assert again.tenant == "acme"


def test_an_events_own_keys_cannot_be_set_by_its_fields(settings):
    """Pass 2: the chain an event is filed in is its tenant's, so a field
    named ``tenant_id`` (or ``time``) is refused, bound or not."""
    filed = []
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_AUDIT_CALLBACK": filed.append}
    with tenant_context("acme"):
        for field in ("tenant_id", "time"):  # (``event`` is emit's own argument)
            with pytest.raises(ValueError, match=field):
                audit.emit("tenant.denied", **{field: "globex"})
        with pytest.raises(ValueError, match="tenant_id"):
            access.refuse("admission", "tenant.denied", None, None, tenant_id="globex")
    with pytest.raises(ValueError, match="tenant_id"):
        audit.emit("tenant.denied", tenant_id="globex")
    assert filed == []


def test_leftovers_name_only_the_bound_tenant():
    with tenant_context("acme"), pytest.raises(TenantMismatchError, match="leftovers"):
        lifecycle.leftovers("globex")
    assert lifecycle.leftovers("globex").tenant_id == "globex"  # none bound: an operator's
