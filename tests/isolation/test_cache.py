"""tenantry.cache on Django's local-memory cache and on Django's Redis cache
against the real Redis the suite starts: keys per tenant, fail closed without
a tenant, shared() entries, O(1) clear_tenant (also seen by another process),
cache_page and template fragments per tenant."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.core.cache import cache, caches
from django.template import Context, Template
from django.test import Client

import tenantry.cache
from tenantry import InvalidTenantId, TenantMismatchError, TenantNotSetError, tenant_context
from tenantry.cache import clear_tenant, make_key, shared
from tests.doc_blocks import block_defining
from tests.live.test_djust_integration import LiveClient

ROOT = Path(__file__).resolve().parents[2]


def use_cache(request, settings, kind):
    """``CACHES`` with tenantry's key function on ``kind`` ("locmem" or
    "redis"); returns the Redis server (or None for local memory)."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        options = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": server.url,
        }
    else:
        server = None
        options = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": prefix}
    settings.CACHES = {
        "default": {**options, "KEY_PREFIX": prefix, "KEY_FUNCTION": "tenantry.cache.make_key"}
    }
    request.addfinalizer(lambda: caches["default"].close())
    return server


@pytest.fixture(params=["locmem", "redis"])
def backend(request, settings):
    return use_cache(request, settings, request.param)


@pytest.fixture
def redis_backend(request, settings):
    return use_cache(request, settings, "redis")


def test_each_tenant_has_its_own_entries(backend):
    with tenant_context("acme"):
        cache.set("greeting", "hello from acme")
    with tenant_context("globex"):
        assert cache.get("greeting") is None
        cache.set("greeting", "hello from globex")
    with tenant_context("acme"):
        assert cache.get("greeting") == "hello from acme"
        assert cache.get_many(["greeting"]) == {"greeting": "hello from acme"}
        cache.delete("greeting")
    with tenant_context("globex"):
        assert cache.get("greeting") == "hello from globex"


def test_keys_carry_the_tenant_as_a_hash_tag(backend):
    with tenant_context("acme"):
        cache.set("k", 1)
        key = cache.make_key("k")
    assert "{tenant:acme}:" in key and key.endswith(":k")
    if backend is not None:
        assert backend.client().exists(key) == 1


def test_no_tenant_is_an_error_naming_the_key(backend):
    with pytest.raises(TenantNotSetError, match=r"'report:7'.*shared"):
        cache.get("report:7")
    with pytest.raises(TenantNotSetError):
        cache.set("report:7", "x")


def test_shared_entries_are_the_same_for_every_tenant_and_apart_from_theirs(backend):
    with shared():
        cache.set("rates", "shared-rates")
    with tenant_context("acme"):
        assert cache.get("rates") is None  # the tenant's own namespace
        cache.set("rates", "acme-rates")
        with shared():
            assert cache.get("rates") == "shared-rates"
    with tenant_context("globex"), shared():
        assert cache.get("rates") == "shared-rates"
    with shared():
        assert cache.get("rates") == "shared-rates"


def test_a_key_that_looks_like_another_tenants_key_stays_in_its_namespace(backend):
    with tenant_context("globex"):
        cache.set("secret", "globex-secret")
        forged = cache.make_key("secret").split(":", 2)[2]  # "{tenant:globex}:<gen>:secret"
    with tenant_context("acme"):
        assert cache.get(forged) is None
    with shared():
        assert cache.get(forged) is None


def test_keys_that_are_not_str_work_as_with_djangos_default(backend):
    with tenant_context("acme"):
        cache.set(42, "int key")
        assert cache.get(42) == "int key"
        assert make_key(42, "p", 1).endswith(":42")


def test_clear_tenant_forgets_that_tenants_entries_only(backend):
    for tenant in ("acme", "globex"):
        with tenant_context(tenant):
            cache.set_many({f"k{i}": f"{tenant}{i}" for i in range(20)})
    with shared():
        cache.set("rates", "shared-rates")
    clear_tenant("acme")
    with tenant_context("acme"):
        assert cache.get_many([f"k{i}" for i in range(20)]) == {}
        cache.set("k0", "after")
        assert cache.get("k0") == "after"
    with tenant_context("globex"):
        assert cache.get("k19") == "globex19"
    with shared():
        assert cache.get("rates") == "shared-rates"


def test_clear_tenant_is_one_write_whatever_the_tenant_holds(redis_backend):
    client = redis_backend.client()
    with tenant_context("acme"):
        cache.set_many({f"k{i}": i for i in range(500)})
    client.config_resetstat()
    clear_tenant("acme")
    stats = {k: v["calls"] for k, v in client.info("commandstats").items()}
    ignored = ("cmdstat_config", "cmdstat_info")  # the test's own commands
    writes = {k: v for k, v in stats.items() if not k.startswith(ignored)}
    assert writes == {"cmdstat_set": 1}, writes


def test_clear_tenant_refuses_another_tenant_while_one_is_bound_and_bad_ids(backend):
    with tenant_context("acme"), pytest.raises(TenantMismatchError, match="globex"):
        clear_tenant("globex")
    with pytest.raises(InvalidTenantId):
        clear_tenant("acme}:x")
    with tenant_context("acme"):
        clear_tenant("acme")  # its own: allowed


def test_a_generation_that_is_not_ours_is_replaced(backend):
    with tenant_context("acme"):
        cache.set("k", "v")
        tenantry.cache._forget()
        with tenantry.cache._generation_key("acme") as key:
            cache.set(key, "garbage", timeout=None)
        assert cache.get("k") is None
        cache.set("k", "again")
        assert cache.get("k") == "again"


def test_another_process_sees_a_clear_within_the_staleness_bound(redis_backend, settings):
    with tenant_context("acme"):
        cache.set("k", "before")
        assert cache.get("k") == "before"
    options = settings.CACHES["default"]
    code = (
        "import django; from django.conf import settings;"
        f"settings.configure(CACHES={{'default': {options!r}}}, INSTALLED_APPS=[]);"
        "django.setup(); import tenantry.cache; tenantry.cache.clear_tenant('acme')"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT, timeout=120)
    # This process still holds the old generation for at most STALENESS_BOUND
    # seconds; poll well past it (a liveness check, not a timing assertion).
    deadline = time.monotonic() + 30 * tenantry.cache.STALENESS_BOUND
    with tenant_context("acme"):
        while cache.get("k") == "before" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache.get("k") is None


@pytest.fixture
def header_tenants(tenant_config):
    """Tenants from a header: the same URL for both, so only the key function
    keeps their cached pages apart."""
    tenant_config(TENANT_RESOLVER="header")


def test_cache_page_is_per_tenant(backend, header_tenants):
    client = Client()

    def get(tenant):
        return client.get("/pieces/cached/", HTTP_X_TENANT_ID=tenant).content.decode()

    first = get("acme")
    assert first.startswith("tenant=acme")
    assert get("acme") == first  # served from the cache
    other = get("globex")
    assert other.startswith("tenant=globex") and other != first
    clear_tenant("acme")
    again = get("acme")
    assert again.startswith("tenant=acme") and again != first
    assert get("globex") == other


def test_template_fragments_are_per_tenant(backend):
    template = Template("{% load cache %}{% cache 60 sidebar %}{{ value }}{% endcache %}")
    with tenant_context("acme"):
        assert template.render(Context({"value": "acme-1"})) == "acme-1"
        assert template.render(Context({"value": "acme-2"})) == "acme-1"
    with tenant_context("globex"):
        assert template.render(Context({"value": "globex-1"})) == "globex-1"
    with pytest.raises(TenantNotSetError):
        template.render(Context({"value": "nobody"}))


def test_the_generations_cache_is_found_or_named_in_the_error(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with pytest.raises(LookupError, match=r"KEY_FUNCTION 'tenantry\.cache\.make_key'"):
        clear_tenant("acme")


def test_the_caches_setting_of_the_docs(settings, redis_server):
    namespace: dict = {}
    exec(block_defining("cache.md", "CACHES"), namespace)
    config = namespace["CACHES"]
    for options in config.values():
        options["LOCATION"] = redis_server.url
    settings.CACHES = config
    settings.SESSION_CACHE_ALIAS = namespace["SESSION_CACHE_ALIAS"]
    with tenant_context("acme"):
        cache.set("dashboard", "acme-html")
    with tenant_context("globex"):
        assert cache.get("dashboard") is None
    # The sessions alias needs no tenant.
    caches[settings.SESSION_CACHE_ALIAS].set("session-key", "data")
    assert caches[settings.SESSION_CACHE_ALIAS].get("session-key") == "data"
    clear_tenant("acme")
    with tenant_context("acme"):
        assert cache.get("dashboard") is None


def test_async_code_uses_its_tasks_tenant(backend):
    async def work(tenant: str) -> str:
        with tenant_context(tenant):
            await cache.aset("k", tenant)
            await asyncio.sleep(0)
            return await cache.aget("k")

    async def main() -> list[str]:
        return await asyncio.gather(*(work(t) for t in ("acme", "globex", "initech") * 3))

    assert asyncio.run(main()) == ["acme", "globex", "initech"] * 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_websocket_events_use_the_connections_tenant(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
            "KEY_FUNCTION": "tenantry.cache.make_key",
        }
    }
    view = "tests.pieces.views.RememberView"
    acme, globex = LiveClient("acme.example.com"), LiveClient("globex.example.com")
    await asyncio.gather(
        acme.mount(view=view, url="/pieces/remember/"),
        globex.mount(view=view, url="/pieces/remember/"),
    )
    await asyncio.gather(acme.event("remember", value="a"), globex.event("remember", value="g"))
    frames = await asyncio.gather(acme.event("recall"), globex.event("recall"))
    await asyncio.gather(acme.close(), globex.close())
    assert "recalled=a" in str(frames[0]) and "recalled=g" in str(frames[1]), frames
    with tenant_context("acme"):
        assert cache.get("remembered") == "a"


# -- cache.clear() inside a tenant clears that tenant (docs/cache.md#clear) ------


def two_aliases(request, settings, kind):
    """``default`` and ``second``, both keyed by tenantry, on ``kind``."""
    use_cache(request, settings, kind)
    second = {**settings.CACHES["default"], "KEY_PREFIX": f"s{uuid.uuid4().hex[:8]}"}
    if kind == "locmem":
        second["LOCATION"] = f"second-{uuid.uuid4().hex[:8]}"
    else:  # another database: a whole-cache clear of one is FLUSHDB
        second["LOCATION"] = second["LOCATION"].rsplit("/", 1)[0] + "/3"
    settings.CACHES = {**settings.CACHES, "second": second}
    request.addfinalizer(lambda: caches["second"].close())


def fill(*aliases):
    for tenant in ("acme", "globex"):
        with tenant_context(tenant, must_exist=False):
            for alias in aliases:
                caches[alias].set("page", f"{tenant}'s page on {alias}")
    with shared():
        for alias in aliases:
            caches[alias].set("rates", f"shared on {alias}")


def page(tenant, alias="default"):
    with tenant_context(tenant, must_exist=False):
        return caches[alias].get("page")


@pytest.mark.parametrize("kind", ["locmem", "redis"])
def test_clear_inside_a_tenant_clears_only_that_tenant_on_every_alias(request, settings, kind):
    two_aliases(request, settings, kind)
    fill("default", "second")
    with tenant_context("acme", must_exist=False):
        cache.clear()  # django.core.cache.cache: the proxy of "default"
    assert page("acme") is None and page("acme", "second") is None  # one generation
    assert page("globex") == "globex's page on default"
    assert page("globex", "second") == "globex's page on second"
    with shared():
        assert cache.get("rates") == "shared on default"
    with tenant_context("globex", must_exist=False):
        caches["second"].clear()  # another alias, another tenant
    assert page("globex", "second") is None and page("globex") is None
    with shared():
        assert caches["second"].get("rates") == "shared on second"


@pytest.mark.parametrize("kind", ["locmem", "redis"])
def test_clear_without_a_tenant_or_inside_shared_clears_the_whole_cache(request, settings, kind):
    two_aliases(request, settings, kind)
    fill("default", "second")
    with tenant_context("acme", must_exist=False), shared():
        caches["second"].clear()  # shared(): the whole cache, on purpose
    assert page("globex", "second") is None
    with shared():
        assert caches["second"].get("rates") is None
    assert page("globex") == "globex's page on default"
    cache.clear()  # no tenant bound: the whole cache
    assert page("globex") is None
    with shared():
        assert cache.get("rates") is None


@pytest.mark.parametrize("kind", ["locmem", "redis"])
def test_aclear_inside_a_tenant_clears_only_that_tenant(request, settings, kind):
    two_aliases(request, settings, kind)
    fill("default", "second")

    async def clear_in(tenant, alias):
        with tenant_context(tenant, must_exist=False):
            await caches[alias].aclear()

    asyncio.run(clear_in("acme", "second"))
    assert page("acme") is None and page("globex") == "globex's page on default"
    assert page("globex", "second") == "globex's page on second"

    async def clear_all():
        await cache.aclear()

    asyncio.run(clear_all())
    assert page("globex") is None


def test_a_cache_not_keyed_by_tenantry_keeps_djangos_clear(request, settings):
    use_cache(request, settings, "locmem")
    settings.CACHES = {
        **settings.CACHES,
        "plain": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "p"},
    }
    caches["plain"].set("k", 1)
    with tenant_context("acme", must_exist=False):
        caches["plain"].clear()  # not per tenant: the app's own business
    assert caches["plain"].get("k") is None
    assert "clear" not in caches["plain"].__dict__


@pytest.mark.parametrize("kind", ["locmem", "redis"])
def test_purge_tenant_removes_a_deleted_tenants_entries_from_the_store(request, settings, kind):
    """docs/cache.md#clearing-one-tenant-o1: after a tenant's deletion its
    entries leave local memory and Redis, not only become unreadable; another
    tenant's entries stay, even one whose own key spells the first tenant's tag."""
    two_aliases(request, settings, kind)
    fill("default", "second")
    with tenant_context("globex", must_exist=False):
        cache.set("x:{tenant:acme}:y", "globex's, whatever its name says")
    before = tenantry.cache.purge_tenant("acme", dry_run=True)
    assert before == 3  # a page on each alias, and the generation (in "default")
    assert page("acme") == "acme's page on default"  # a dry run removes nothing
    assert tenantry.cache.purge_tenant("acme") == before
    assert tenantry.cache.purge_tenant("acme", dry_run=True) == 0
    assert page("acme") is None and page("acme", "second") is None
    assert page("globex") == "globex's page on default"
    with tenant_context("globex", must_exist=False):
        assert cache.get("x:{tenant:acme}:y") == "globex's, whatever its name says"
    with shared():
        assert cache.get("rates") == "shared on default"
