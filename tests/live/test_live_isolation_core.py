"""The live plane's stores and key rules against hostile callers
(docs/security.md#the-live-plane-caller-named-keys-and-shared-capacity):

* a key a caller names never addresses a tenant: every presence and state
  router entry point, memory, Redis and a Redis Cluster, odd spellings,
  threads, and over djust's WebSocket consumer an apex visitor, a
  ``tenant_required=False`` view and a plain ``PresenceMixin`` view naming
  their room ``tenant:globex:…`` (docs/presence.md#with-djust);
* djust's plain ``PresenceMixin`` keeps working with tenantry installed, in a
  space of its own no tenant sees;
* memory rate limits: small neighbours never reset a busy tenant's limited
  key (docs/ratelimits.md#memory-and-redis);
* per-tenant presence caps and the meta limit (docs/presence.md#per-tenant-caps);
* usage figures survive a flood of new tenants (docs/ratelimits.md#usage).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from djust._rust import RustLiveView
from djust.backends.memory import InMemoryPresenceBackend
from djust.presence import PresenceMixin

from tenantry import (
    BackendUnavailable,
    InvalidKey,
    QuotaExceeded,
    TenantAwareMemoryBackend,
    TenantInfo,
    TenantMismatchError,
    TenantStateMemoryBackend,
    conf,
    get_tenant_presence_backend,
    get_tenant_state_backend,
    tenant_context,
    usage,
)
from tenantry.presence import get_djust_presence_backend, get_presence_router
from tenantry.ratelimit import TenantRateLimiter, get_rate_limiter
from tenantry.state import get_djust_state_backend, get_state_router
from tests.live_client import LiveClient

BASE = {"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"}
GLOBEX_ROOM = "tenant:globex:board"
#: Ways to spell a key that look like globex's scope but are not it.
LOOKALIKES = [
    "TENANT:globex:board",
    " tenant:globex:board",
    "tenant%3Aglobex%3Aboard",
    "Tenant:globex:board",
    "\ttenant:globex:board",
]


@pytest.fixture(autouse=True)
def clean():
    TenantAwareMemoryBackend.clear_all()
    TenantStateMemoryBackend.clear_all()
    yield
    TenantAwareMemoryBackend.clear_all()
    TenantStateMemoryBackend.clear_all()
    TenantAwareMemoryBackend.set_limits(
        max_rooms=10_000, max_users=50_000, max_connections=50_000, max_meta_bytes=8192
    )


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend(request, settings):
    """DJUST_CONFIG with presence and state on each store."""
    config = {**BASE}
    if request.param != "memory":
        target = request.getfixturevalue(
            "redis_server" if request.param == "redis" else "redis_cluster"
        )
        config.update(
            PRESENCE_BACKEND="tenant_redis",
            PRESENCE_REDIS_URL=target.url,
            STATE_BACKEND="tenant_redis",
            STATE_REDIS_URL=target.url,
            TENANT_KEY_PREFIX=f"iso-{uuid.uuid4().hex[:8]}",
        )
    settings.DJUST_CONFIG = config
    return request.param


def globex_visitors() -> list[str]:
    return [r["id"] for r in get_tenant_presence_backend("globex").list("board")]


# --- caller-named keys: the routers ---------------------------------------------


def test_no_presence_entry_point_reaches_a_tenant_by_its_scope(backend):
    router = get_presence_router()
    with tenant_context("globex", must_exist=False):
        router.track(GLOBEX_ROOM, "g1", "tab", {"secret": "globex"})
    assert globex_visitors() == ["g1"]
    calls = {
        "join": lambda: router.join(GLOBEX_ROOM, "intruder", {}),
        "track": lambda: router.track(GLOBEX_ROOM, "intruder", "t", {}),
        "leave": lambda: router.leave(GLOBEX_ROOM, "g1"),
        "untrack": lambda: router.untrack(GLOBEX_ROOM, "g1", "tab"),
        "list": lambda: router.list(GLOBEX_ROOM),
        "count": lambda: router.count(GLOBEX_ROOM),
        "heartbeat": lambda: router.heartbeat(GLOBEX_ROOM, "g1"),
        "cleanup_stale": lambda: router.cleanup_stale(GLOBEX_ROOM),
        "resolve": lambda: router.resolve(GLOBEX_ROOM),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidKey, match="no tenant is bound") as info:
            call()
        assert GLOBEX_ROOM in str(info.value), name
    # Bound to another tenant, the scope is a mismatch; bound to globex, fine.
    with tenant_context("acme", must_exist=False):
        for call in calls.values():
            with pytest.raises(TenantMismatchError):
                call()
    assert globex_visitors() == ["g1"]
    # Spellings that only look like the scope are names of the caller's own
    # space: they never list globex's visitor.
    for key in LOOKALIKES:
        router.join(key, "stranger", {})
        assert [r["id"] for r in router.list(key)] == ["stranger"], key
        assert {r["tenant_id"] for r in router.list(key)} == {"-shared"}
    assert globex_visitors() == ["g1"]
    with tenant_context("globex", must_exist=False):
        assert router.count(GLOBEX_ROOM) == 1


def test_an_int_tenant_id_follows_the_same_rule(backend):
    router = get_presence_router()
    with tenant_context(42, must_exist=False):
        router.join("tenant:42:board", "u", {})
        assert router.count("board") == 1
    with pytest.raises(InvalidKey):
        router.count("tenant:42:board")
    with tenant_context(TenantInfo("7"), must_exist=False), pytest.raises(TenantMismatchError):
        router.count("tenant:42:board")


def test_the_unbound_space_is_isolated_both_ways(backend):
    router = get_presence_router()
    router.join("board", "anonymous", {"who": "apex"})
    with tenant_context("globex", must_exist=False):
        router.join("board", "member", {"who": "globex"})
        assert [r["id"] for r in router.list("board")] == ["member"]
    assert [r["id"] for r in router.list("board")] == ["anonymous"]
    assert router.resolve("board") == ("-shared", "board")
    for tenant in ("acme", "globex", "shared", "-shared"):
        try:
            backend_of = get_tenant_presence_backend(tenant)
        except ValueError:
            continue  # no tenant id can name the space ("-shared")
        assert "anonymous" not in [r["id"] for r in backend_of.list("board")]


def test_no_state_entry_point_reaches_a_tenant_by_its_scope(backend):
    router = get_state_router()
    adapter = get_djust_state_backend()
    view = RustLiveView('<div dj-root dj-id="0">globex</div>', [])
    saved = view.serialize_msgpack()
    with tenant_context("globex", must_exist=False):
        router.set("tenant:globex:S_liveview_/x/", saved)
        adapter.set("tenant:globex:S_liveview_/y/", view)
    router_calls = {
        "get": lambda: router.get("tenant:globex:S_liveview_/x/"),
        "set": lambda: router.set("tenant:globex:S_liveview_/x/", b"forged"),
        "delete": lambda: router.delete("tenant:globex:S_liveview_/x/"),
        "resolve": lambda: router.resolve("tenant:globex:S_liveview_/x/"),
    }
    adapter_calls = {
        "adapter get": lambda: adapter.get("tenant:globex:S_liveview_/y/"),
        "adapter set": lambda: adapter.set("tenant:globex:S_liveview_/y/", forged),
        "adapter delete": lambda: adapter.delete("tenant:globex:S_liveview_/y/"),
    }
    forged = RustLiveView('<div dj-root dj-id="0">forged</div>', [])
    for call in router_calls.values():
        with pytest.raises(InvalidKey, match="no tenant is bound"):
            call()
    # djust's slot, with no tenant bound: the key is kept in a space of its
    # own, djust's own store (where djust.tenants views keep theirs), which
    # holds no tenantry tenant's views (docs/state.md#djusts-saved-view-state).
    assert adapter.get("tenant:globex:S_liveview_/y/") is None
    adapter.set("tenant:globex:S_liveview_/y/", forged)
    assert "forged" in adapter.get("tenant:globex:S_liveview_/y/")[0].render()
    assert adapter.delete("tenant:globex:S_liveview_/y/") is True
    for call in [*router_calls.values(), *adapter_calls.values()]:
        with tenant_context("acme", must_exist=False), pytest.raises(TenantMismatchError):
            call()
    for key in LOOKALIKES:
        assert router.get(key) is None
        router.set(key, b"mine")
        assert router.resolve(key) == ("-shared", key)
    with tenant_context("globex", must_exist=False):
        assert router.get("tenant:globex:S_liveview_/x/") == saved
        restored = adapter.get("tenant:globex:S_liveview_/y/")
        assert restored is not None and "globex" in restored[0].render()


def test_per_tenant_state_reads_no_scope_in_a_name(backend):
    """get/set/delete/exists/ttl/incr of a tenant's backend keep a
    ``tenant:globex:…`` name inside the calling tenant."""
    acme, globex = get_tenant_state_backend("acme"), get_tenant_state_backend("globex")
    globex.set("x", "globex's")
    name = "tenant:globex:x"
    acme.set(name, "acme's", ttl=60)
    assert acme.get(name) == "acme's" and acme.exists(name) and 0 < acme.ttl(name) <= 60
    assert acme.incr("tenant:globex:n") == 1
    assert globex.get("x") == "globex's" and not globex.exists("n")
    assert acme.delete(name) and globex.get("x") == "globex's"


def test_threads_without_a_tenant_never_see_a_tenants_room():
    router = get_presence_router()
    with tenant_context("globex", must_exist=False):
        router.join(GLOBEX_ROOM, "g1", {})
    seen: list[str] = []

    def unbound(n: int) -> None:
        for i in range(200):
            key = [GLOBEX_ROOM, "board", LOOKALIKES[i % len(LOOKALIKES)]][i % 3]
            try:
                seen.extend(r["id"] for r in router.list(key) if r["tenant_id"] != "-shared")
                router.join(key, f"t{n}", {})
            except InvalidKey:
                pass

    def bound(n: int) -> None:
        with tenant_context("acme", must_exist=False):
            for i in range(200):
                router.join("board", f"a{n}-{i % 5}", {})
                seen.extend(r["id"] for r in router.list("board") if r["tenant_id"] != "acme")

    threads = [threading.Thread(target=f, args=(n,)) for n in range(4) for f in (unbound, bound)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == []
    with tenant_context("globex", must_exist=False):
        assert [r["id"] for r in router.list("board")] == ["g1"]


# --- over djust's WebSocket consumer ----------------------------------------------


@pytest.fixture
def live_config(settings):
    settings.DJUST_CONFIG = BASE


async def mount(host: str, view: str, url: str) -> tuple[LiveClient, dict]:
    tab = LiveClient(host)
    frame = await tab.mount(view, url)
    return tab, frame


def globex_room() -> list[str]:
    return sorted(
        str(r["meta"].get("who")) for r in TenantAwareMemoryBackend("globex").list("room:lobby")
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("host", "view"),
    [
        ("example.com", "tests.app.views.UrlRoomView"),  # apex, tenant_required=False
        ("example.com", "tests.app.views.PlainRoomView"),  # no TenantMixin at all
        ("acme.example.com", "tests.app.views.UrlRoomView"),  # another tenant's host
        ("acme.example.com", "tests.app.views.PlainRoomView"),
    ],
)
async def test_a_live_view_cannot_join_or_list_a_tenants_room_by_name(live_config, host, view):
    member, frame = await mount("globex.example.com", "tests.app.views.RoomView", "/items/")
    assert frame["type"] == "mount" and "globex-visitor" in frame["html"]
    assert globex_room() == ["globex-visitor"]
    path = "/url-room/" if view.endswith("UrlRoomView") else "/plain-room/"
    # (Spellings with spaces or '%' make djust's own group names invalid
    # with or without tenantry; the router test above tries those.)
    rooms = ["tenant:globex:room:lobby", "TENANT:globex:room:lobby", "Tenant:globex:room:lobby"]
    for room in rooms:
        url = f"{path}?{urlencode({'room': room, 'who': 'intruder'})}"
        tab, frame = await mount(host, view, url)
        # Refused (an error frame) or mounted in a room of its own: never
        # globex's visitors, and never listed to them.
        assert "globex-visitor" not in str(frame), (room, frame)
        assert globex_room() == ["globex-visitor"], room
        await tab.close()
    await member.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_plain_presence_view_works_with_tenantry_installed(live_config):
    """What djust's own presence tests do on a view without tenancy: track,
    list and mount, with tenantry as djust's presence backend. Its room is
    djust's own in-memory backend's, as without tenantry
    (docs/presence.md#with-djust), and no tenant sees it."""
    view = "tests.app.views.PlainRoomView"
    djusts = get_djust_presence_backend()
    first, frame = await mount("example.com", view, "/plain-room/?who=ann")
    assert frame["type"] == "mount" and "ann" in frame["html"], frame
    second, frame = await mount("example.com", view, "/plain-room/?who=bob")
    assert frame["type"] == "mount" and "ann" in frame["html"] and "bob" in frame["html"]
    listed = InMemoryPresenceBackend.list(djusts, "lobby")
    assert sorted(r["meta"]["who"] for r in listed) == ["ann", "bob"]
    assert get_presence_router().count("lobby") == 0  # not the router's
    for tenant in ("acme", "globex"):
        assert TenantAwareMemoryBackend(tenant).count("lobby") == 0
        with tenant_context(tenant, must_exist=False):
            assert djusts.count("lobby") == 0
    assert djusts.count("lobby") == 2
    await first.close()
    await second.close()
    for _ in range(100):  # djust untracks on disconnect, in its own task
        if djusts.count("lobby") == 0:
            break
        await asyncio.sleep(0.05)
    assert djusts.count("lobby") == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_tenant_views_presence_leaves_on_disconnect(live_config):
    """djust unbinds the tenant before it calls ``untrack_presence()`` on
    disconnect; the view's own tenant is bound for it."""
    tab, frame = await mount("globex.example.com", "tests.app.views.RoomView", "/items/")
    assert frame["type"] == "mount"
    assert globex_room() == ["globex-visitor"]
    await tab.close()
    for _ in range(100):
        if not globex_room():
            break
        await asyncio.sleep(0.05)
    assert globex_room() == []


def test_a_plain_presence_mixin_outside_any_request_uses_djusts_own_backend():
    """djust's tests drive ``PresenceMixin`` directly: track, list, count,
    heartbeat, untrack with no tenant bound."""

    class Plain(PresenceMixin):
        presence_key = "document:{doc_id}"

    view = Plain()
    view.doc_id = 1
    view.request = SimpleNamespace(
        user=SimpleNamespace(is_authenticated=True, id=5, username="ann"),
        session=SimpleNamespace(session_key="s5"),
    )
    view._websocket_session_id = "ws"
    view.track_presence(meta={"color": "red"})
    [record] = view.list_presences()
    assert record["meta"]["color"] == "red"
    assert "tenant_id" not in record  # djust's own in-memory backend's record
    assert view.presence_count() == 1
    view.update_presence_heartbeat()
    assert ("document:1", record["id"]) in get_djust_presence_backend()._heartbeats
    assert get_presence_router().count("document:1") == 0
    assert TenantAwareMemoryBackend("acme").count("document:1") == 0
    with tenant_context("acme", must_exist=False):
        assert view.presence_count() == 0  # a tenant bound: its own room, empty
    view.untrack_presence()
    assert view.list_presences() == []


# --- memory rate limits: neighbours never reset a limited key ---------------------


@pytest.mark.parametrize("failure", ["closed", "open"])
def test_small_neighbours_never_reset_a_busy_tenants_limited_key(settings, failure):
    """One key per shard: a busy tenant's client spends its allowance, then
    thousands of new small tenants check once each (some share its shard).
    Under the old rule they pushed the busy tenant's key out."""
    settings.DJUST_CONFIG = {
        **BASE,
        "TENANT_RATE_LIMITS": {"api": "5/m"},
        "TENANT_RATE_LIMIT_FAILURE": failure,
    }
    limiter = get_rate_limiter()
    limiter.forget_plans()
    TenantRateLimiter.clear_all()
    TenantRateLimiter.set_memory_limit(64)
    try:
        for _ in range(5):
            assert limiter.check("api", key="ip=10.6.6.6", tenant="busy").allowed
        assert not limiter.check("api", key="ip=10.6.6.6", tenant="busy").allowed
        refused = 0
        for i in range(3000):
            try:
                decision = limiter.check("api", tenant=f"small{i}")
            except BackendUnavailable as exc:
                assert failure == "closed" and "is full" in str(exc)
                refused += 1
                continue
            assert decision.allowed
            refused += decision.limit is None  # "open": allowed, not counted
        assert refused > 0, "no small tenant shared the busy tenant's shard"
        decision = limiter.check("api", key="ip=10.6.6.6", tenant="busy")
        assert not decision.allowed and decision.remaining == 0
        assert TenantRateLimiter.store_size() <= 64
    finally:
        TenantRateLimiter.set_memory_limit(1 << 20)
        TenantRateLimiter.clear_all()


# --- presence caps ------------------------------------------------------------------


def test_each_presence_cap_is_refused_naming_it_and_counts_return_to_zero(settings):
    settings.DJUST_CONFIG = {
        **BASE,
        "PRESENCE_TENANT_MAX_ROOMS": 2,
        "PRESENCE_TENANT_MAX_USERS": 3,
        "PRESENCE_TENANT_MAX_CONNECTIONS": 4,
        "PRESENCE_MAX_META_BYTES": 100,
        "PRESENCE_TIMEOUT": 0.3,
    }
    acme = get_tenant_presence_backend("acme")
    assert TenantAwareMemoryBackend.limits() == {
        "max_rooms": 2,
        "max_users": 3,
        "max_connections": 4,
        "max_meta_bytes": 100,
    }
    acme.track("r1", "u1", "a")
    acme.track("r2", "u1", "a")
    with pytest.raises(QuotaExceeded, match="PRESENCE_TENANT_MAX_ROOMS") as info:
        acme.track("r3", "u1", "a")
    assert '"acme"' in str(info.value)
    acme.join("r1", "u2")
    with pytest.raises(QuotaExceeded, match="PRESENCE_TENANT_MAX_USERS"):
        acme.track("r1", "u3", "a")
    acme.track("r1", "u1", "b")
    with pytest.raises(QuotaExceeded, match="PRESENCE_TENANT_MAX_CONNECTIONS"):
        acme.track("r1", "u1", "c")
    acme.track("r1", "u1", "b", {"n": 2})  # a held connection: always allowed
    with pytest.raises(QuotaExceeded, match="PRESENCE_MAX_META_BYTES"):
        acme.track("r1", "u1", "b", {"bio": "x" * 200})
    with tenant_context("acme", must_exist=False), pytest.raises(QuotaExceeded):
        get_presence_router().join("r3", "u9")  # the router counts the same
    assert TenantAwareMemoryBackend.tenant_stats("acme") == {
        "rooms": 2,
        "users": 3,
        "connections": 4,
    }
    # Another tenant is not affected.
    globex = get_tenant_presence_backend("globex")
    globex.track("r1", "u1", "a")
    globex.track("r2", "u1", "a")
    # leave and untrack give back...
    acme.leave("r2", "u1")
    acme.untrack("r1", "u1", "b")
    assert TenantAwareMemoryBackend.tenant_stats("acme") == {
        "rooms": 1,
        "users": 2,
        "connections": 2,
    }
    # ...and so does expiry, with no call on the room.
    import time

    time.sleep(0.5)
    TenantAwareMemoryBackend.reclaim_expired()
    for tenant in ("acme", "globex"):
        assert TenantAwareMemoryBackend.tenant_stats(tenant) == {
            "rooms": 0,
            "users": 0,
            "connections": 0,
        }
    acme.track("r3", "u1", "a")  # room again


def test_the_meta_limit_holds_on_redis_too(settings, redis_server):
    settings.DJUST_CONFIG = {
        **BASE,
        "PRESENCE_BACKEND": "tenant_redis",
        "PRESENCE_REDIS_URL": redis_server.url,
        "TENANT_KEY_PREFIX": f"meta-{uuid.uuid4().hex[:8]}",
        "PRESENCE_MAX_META_BYTES": 100,
    }
    acme = get_tenant_presence_backend("acme")
    acme.track("r", "u", "a", {"name": "x" * 80})
    with pytest.raises(QuotaExceeded, match="PRESENCE_MAX_META_BYTES"):
        acme.track("r", "u", "a", {"name": "x" * 120})
    assert acme.list("r")[0]["meta"] == {"name": "x" * 80}


# --- usage: a flood of new tenants ----------------------------------------------------


def test_a_flood_of_new_tenants_keeps_a_quiet_tenants_figures(settings):
    settings.DJUST_CONFIG = BASE
    usage.flush()
    # The store is per process: start with room (suites before this one,
    # tests/isolation/test_resource_bounds.py among them, counted thousands
    # of tenants, which would make the quiet tenant itself "-other").
    for tenant in usage.tenants_with_usage():
        usage.clear_tenant(tenant)
    quiet = f"quiet-{uuid.uuid4().hex[:8]}"  # other suites count a "quiet" tenant too
    usage.record(quiet, "http_requests", 7)
    for i in range(17_000):
        usage.record(f"flood{i}", "http_requests", 1)
    assert usage.get_usage(quiet)["total"]["http_requests"] == 7
    other = usage.get_usage(usage.OTHER)["total"]["http_requests"]
    assert other >= 17_000 - 16_384
    assert usage.OTHER in usage.tenants_with_usage()
    for i in range(17_000):
        usage.clear_tenant(f"flood{i}")
    usage.clear_tenant(usage.OTHER)
    usage.clear_tenant(quiet)


def test_a_flood_on_redis_sends_the_quiet_tenants_batch_before_it_goes(settings, redis_server):
    prefix = f"use-{uuid.uuid4().hex[:8]}"
    settings.DJUST_CONFIG = {
        **BASE,
        "STATE_BACKEND": "tenant_redis",
        "STATE_REDIS_URL": redis_server.url,
        "TENANT_KEY_PREFIX": prefix,
    }
    usage.flush()
    usage.record("quiet", "live_events", 3)
    # Figures live under the test's own key space (docs/testing.md#between-tests).
    prefix = conf.current().counts_key_prefix
    client = redis_server.client()
    assert not client.keys(f"{prefix}:{{tenant:quiet}}:usage:*")  # pending in the process
    for i in range(16_500):
        usage.record(f"flood{i}", "live_events", 1)
    # The process made room by sending the oldest batch, quiet's, to Redis.
    day = [k for k in client.keys(f"{prefix}:{{tenant:quiet}}:usage:d:*")]
    assert day and client.hget(day[0], "live_events") == "3"
    assert usage.get_usage("quiet")["total"]["live_events"] == 3
    usage.flush()
