"""Calls that name a tenant to clear, change or read its live-plane data
from the outside refuse while *another* tenant is bound, like
``tenantry.cache.clear_tenant``: acme's code cannot erase or inflate
globex's usage figures, reset globex's rate limits, spend globex's
allowance, or delete globex's state or presence. With no tenant bound (a
management command, a job) or for the bound tenant itself they work, and
``tenantry.lifecycle.delete_tenant`` keeps working (it runs with no tenant
bound, or the tenant's own). docs/security.md#the-live-plane-caller-named-keys-and-shared-capacity

Memory and Redis where both apply; sync and async; the refused call changes
nothing."""

from __future__ import annotations

import asyncio

import pytest

import tenantry.usage as usage
from tenantry import (
    TenantAwareMemoryBackend,
    TenantMismatchError,
    TenantStateMemoryBackend,
    TenantStateRedisBackend,
    _core,
    get_tenant_state_backend,
    tenant_context,
)
from tenantry.ratelimit import TenantRateLimiter, get_rate_limiter

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["memory", "redis"])
def stores(request, settings):
    """Every live-plane store on memory, or on the shared Redis server."""
    config = {
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_QUOTAS": {"export_per_day": 10**9},  # exact counts: no refill
    }
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
        config |= {
            "STATE_BACKEND": "tenant_redis",
            "STATE_REDIS_URL": url,
            "RATE_LIMIT_BACKEND": "tenant_redis",
            "RATE_LIMIT_REDIS_URL": url,
        }
    settings.DJUST_CONFIG = config
    get_rate_limiter().forget_plans()
    TenantRateLimiter.clear_all()
    TenantStateMemoryBackend.clear_all()
    TenantAwareMemoryBackend.clear_all()
    for tenant in ("acme", "globex"):
        usage.clear_tenant(tenant)
        get_tenant_state_backend(tenant).delete_tenant()
    yield request.param
    for tenant in ("acme", "globex"):
        usage.clear_tenant(tenant)
        get_tenant_state_backend(tenant).delete_tenant()
    TenantRateLimiter.clear_all()
    TenantAwareMemoryBackend.clear_all()


def globex_has_data() -> dict:
    """What globex holds, read with no tenant bound."""
    usage.flush()
    return {
        "usage": usage.get_usage("globex")["total"]["http_requests"],
        "state": get_tenant_state_backend("globex").get("invoice-draft"),
        "presence": TenantAwareMemoryBackend("globex").count("board"),
        "allowance": get_rate_limiter().check("export", tenant="globex").remaining,
    }


def plant_globex() -> dict:
    with tenant_context("globex"):
        usage.record("globex", "http_requests", 5)
        get_tenant_state_backend("globex").set("invoice-draft", "globex-data")
        TenantAwareMemoryBackend("globex").join("board", "gina", {})
        get_rate_limiter().check("export")
    return globex_has_data()


CALLS = {
    "usage.clear_tenant": lambda: usage.clear_tenant("globex"),
    "usage.record": lambda: usage.record("globex", "http_requests", 10**9),
    "usage.get_usage": lambda: usage.get_usage("globex"),
    "_core.usage_record": lambda: _core.usage_record("globex", "http_requests", 10**9),
    "TenantRateLimiter.clear_tenant": lambda: TenantRateLimiter.clear_tenant("globex"),
    "get_rate_limiter().clear_tenant": lambda: get_rate_limiter().clear_tenant("globex"),
    "rate limiter check(tenant=)": lambda: get_rate_limiter().check("export", tenant="globex"),
    "state delete_tenant": lambda: get_tenant_state_backend("globex").delete_tenant(),
    "memory state delete_tenant": lambda: TenantStateMemoryBackend("globex").delete_tenant(),
    "presence clear_tenant": lambda: TenantAwareMemoryBackend.clear_tenant("globex"),
    "presence tenant_stats": lambda: TenantAwareMemoryBackend.tenant_stats("globex"),
    "_core.purge_tenant_memory": lambda: _core.purge_tenant_memory("globex"),
    "_core.purge_tenant_redis": lambda: _core.purge_tenant_redis("globex"),
    "cache.purge_tenant": lambda: __import__("tenantry.cache").cache.purge_tenant("globex"),
}


@pytest.mark.parametrize("what", sorted(CALLS))
def test_naming_another_tenant_while_one_is_bound_is_refused(stores, what):
    before = plant_globex()
    for bound in ("acme", 7):  # a str and an int id
        with tenant_context(bound, must_exist=False):
            with pytest.raises(TenantMismatchError, match="globex") as info:
                CALLS[what]()
    assert str(bound) in str(info.value) and "is bound" in str(info.value)
    # Nothing of globex's changed (its allowance: one more check spent by
    # the reading below, never by the refused calls).
    after = globex_has_data()
    assert after == {**before, "allowance": before["allowance"] - 1}


@pytest.mark.parametrize("what", sorted(CALLS))
def test_naming_another_tenant_works_with_none_bound(stores, what):
    plant_globex()
    CALLS[what]()  # a management command, a job


@pytest.mark.parametrize("what", sorted(CALLS))
def test_a_tenant_may_name_itself(stores, what):
    plant_globex()
    with tenant_context("globex"):
        CALLS[what]()


def test_the_redis_state_backend_refuses_too(stores, redis_server):
    plant_globex()
    backend = TenantStateRedisBackend("globex", redis_url=redis_server.url)
    backend.set("kept", 1)
    with tenant_context("acme"), pytest.raises(TenantMismatchError):
        backend.delete_tenant()
    assert backend.get("kept") == 1
    assert backend.delete_tenant() >= 1


@pytest.mark.asyncio
async def test_the_rule_follows_the_async_context(stores):
    await asyncio.to_thread(plant_globex)

    async def as_acme():
        with tenant_context("acme"):
            with pytest.raises(TenantMismatchError):
                usage.record("globex", "http_requests", 1)
            with pytest.raises(TenantMismatchError):
                TenantRateLimiter.clear_tenant("globex")

    async def unbound():
        # A task started with no tenant bound: allowed.
        TenantRateLimiter.clear_tenant("globex")
        return True

    results = await asyncio.gather(as_acme(), unbound(), as_acme())
    assert results[1] is True


def test_deleting_a_tenant_still_clears_its_live_plane(stores):
    """``tenantry.lifecycle.delete_tenant`` goes through the same rule: with
    no tenant bound it clears globex's stores."""
    from tenantry import lifecycle

    plant_globex()
    certificate = lifecycle.delete_tenant("globex", leftovers=True)
    assert not certificate.failures
    assert get_tenant_state_backend("globex").get("invoice-draft") is None
    assert TenantAwareMemoryBackend("globex").count("board") == 0
    with tenant_context("acme"), pytest.raises(TenantMismatchError):
        lifecycle.delete_tenant("globex", leftovers=True)
