"""Per-tenant usage (docs/ratelimits.md): requests, events and refusals counted by
hour and day, in memory and in Redis (batched), read back by get_usage()
and `manage.py tenantry usage`."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from tenantry import TenantInfo, _core, conf, tenant_context, usage
from tenantry.ratelimit import TenantRateLimiter, check, get_rate_limiter
from tenantry.usage import METRICS, flush, get_usage, record, tenants_with_usage
from tests.live_client import LiveClient

pytestmark = pytest.mark.django_db(transaction=True)

BASE = {"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"}


@pytest.fixture(autouse=True)
def fresh():
    _core.usage_clear()
    TenantRateLimiter.clear_all()
    yield
    _core.usage_clear()


def test_requests_and_refusals_are_counted_per_tenant(settings, client):
    settings.DJUST_CONFIG = {**BASE, "TENANT_RATE_LIMITS": {"http": "3/m"}}
    for _ in range(5):
        client.get("/public/", HTTP_HOST="acme.example.com")
    client.get("/public/", HTTP_HOST="globex.example.com")
    client.get("/public/", HTTP_HOST="example.com")  # no tenant: nobody's usage
    acme = get_usage("acme")
    assert acme["total"]["http_requests"] == 5 and acme["total"]["limited"] == 2
    assert [d["day"] for d in acme["days"]] == [datetime.now(UTC).date()]
    (hour,) = acme["hours"]
    assert hour["http_requests"] == 5 and hour["hour"] <= datetime.now(UTC)
    globex = get_usage("globex")
    assert globex["total"]["http_requests"] == 1 and globex["total"]["limited"] == 0
    assert get_usage("initech")["total"]["http_requests"] == 0


@pytest.fixture
def held(monkeypatch):
    """Counts stay held (no hand-over by time) for the test's length."""
    monkeypatch.setattr(usage, "FLUSH_AFTER", 3600.0)
    monkeypatch.setattr(usage, "_next_hand_over", float("inf"))


def test_requests_no_limit_applies_to_are_counted_and_read_back_at_once(settings, client, held):
    """No limits: the middleware holds its counts instead of calling the
    store; every read (and clear) hands them over first."""
    settings.DJUST_CONFIG = BASE
    for _ in range(5):
        client.get("/public/", HTTP_HOST="acme.example.com")
    client.get("/public/", HTTP_HOST="globex.example.com")
    assert len(usage._held) == 6  # held, not yet in the store
    assert get_usage("acme")["total"]["http_requests"] == 5
    assert not usage._held
    assert get_usage("globex")["total"]["http_requests"] == 1
    client.get("/public/", HTTP_HOST="globex.example.com")
    assert set(tenants_with_usage()) == {"acme", "globex"}
    assert get_usage("globex")["total"]["http_requests"] == 2
    # Clearing the store drops held counts too: nothing comes back later.
    for _ in range(3):
        client.get("/public/", HTTP_HOST="acme.example.com")
    _core.usage_clear()
    client.get("/public/", HTTP_HOST="acme.example.com")
    assert get_usage("acme")["total"]["http_requests"] == 1
    # Deleting a tenant forgets its held counts with the rest.
    client.get("/public/", HTTP_HOST="acme.example.com")
    usage.clear_tenant("acme")
    assert get_usage("acme")["total"]["http_requests"] == 0


def test_held_counts_reach_the_store_within_flush_after(settings, client, monkeypatch):
    settings.DJUST_CONFIG = BASE
    monkeypatch.setattr(usage, "FLUSH_AFTER", 0.0)  # every count hands over
    monkeypatch.setattr(usage, "_next_hand_over", 0.0)
    for _ in range(3):
        client.get("/public/", HTTP_HOST="acme.example.com")
    assert not usage._held
    assert _core.usage_get("acme")["total"]["http_requests"] == 3


def test_held_counts_from_many_threads_are_exact_per_tenant(held, monkeypatch):
    """Threads counting for interleaved tenants while others hand over:
    no count lost, none given to another tenant."""
    import threading

    tenants = [TenantInfo(f"t{i}") for i in range(4)]
    start = threading.Barrier(8)

    def work(n):
        start.wait()
        for i in range(500):
            usage.count(tenants[(n + i) % 4], "http_requests")
            if i % 50 == 0:
                usage._hand_over()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [get_usage(t)["total"]["http_requests"] for t in tenants] == [1000] * 4


def test_a_held_count_of_an_invalid_tenant_is_dropped_not_raised(held, caplog):
    class Foreign:  # djust's own TenantInfo, bound by djust.tenants code
        id = "no spaces allowed"

    usage.count(Foreign(), "http_requests")
    usage.count(TenantInfo("acme"), "http_requests")
    usage._hand_over()
    assert get_usage("acme")["total"]["http_requests"] == 1
    assert "invalid tenant dropped" in caplog.text


@pytest.mark.asyncio
async def test_live_events_no_limit_applies_to_are_counted(settings, held):
    settings.DJUST_CONFIG = BASE
    tab = LiveClient("acme.example.com")
    await tab.mount()
    for _ in range(3):
        assert (await tab.event("peek"))["type"] != "error"
    await tab.close()
    total = get_usage("acme")["total"]
    assert total["live_events"] == 3 and total["limited"] == 0


@pytest.mark.asyncio
async def test_live_events_are_counted(settings):
    settings.DJUST_CONFIG = {**BASE, "TENANT_RATE_LIMITS": {"events": "2/m"}}
    tab = LiveClient("acme.example.com")
    await tab.mount()
    for _ in range(3):
        await tab.event("peek")
    await tab.close()
    total = get_usage("acme")["total"]
    assert total["live_events"] == 3 and total["limited"] == 1


def test_peaks_keep_the_largest_and_since_filters(settings):
    settings.DJUST_CONFIG = BASE
    record("acme", "peak_presences", 4)
    record("acme", "peak_presences", 9)
    record("acme", "peak_presences", 2)
    record("acme", "state_bytes", 1000)
    total = get_usage("acme")["total"]
    assert total["peak_presences"] == 9 and total["state_bytes"] == 1000
    future = datetime.now(UTC) + timedelta(days=2)
    assert get_usage("acme", since=future)["days"] == []
    with pytest.raises(ValueError, match="unknown usage metric"):
        record("acme", "bogus")
    with pytest.raises(ValueError, match="aware"):
        get_usage("acme", since=datetime.now())


def test_usage_in_redis_is_batched_and_read_back(settings, client, redis_target):
    prefix = f"use-{uuid.uuid4().hex[:8]}"
    settings.DJUST_CONFIG = {
        **BASE,
        "STATE_BACKEND": "tenant_redis",
        "STATE_REDIS_URL": redis_target.url,
        "TENANT_KEY_PREFIX": prefix,
    }
    for _ in range(4):
        client.get("/public/", HTTP_HOST="acme.example.com")
    client.get("/public/", HTTP_HOST="globex.example.com")
    # Batched: nothing or part of it may still be in the process; reading
    # flushes the tenant first.
    assert get_usage("acme")["total"]["http_requests"] == 4
    flush()
    keys = redis_target.keys(f"{prefix}:*")
    # Under the test's own key space (docs/testing.md#between-tests).
    counts = conf.current().counts_key_prefix
    assert counts.startswith(f"{prefix}:t")
    assert keys and all(k.startswith(f"{counts}:{{tenant:") for k in keys)
    assert {k.split("}:")[1].split(":")[0] for k in keys} == {"usage"}
    acme_keys = [k for k in keys if "{tenant:acme}" in k]
    assert len(acme_keys) == 2  # this hour's hash and today's
    for key in acme_keys:
        assert 0 < redis_target.node_client(key).ttl(key) <= 90 * 86400
    assert get_usage("globex")["total"]["http_requests"] == 1


def test_usage_command_prints_a_table_and_json(settings, client):
    settings.DJUST_CONFIG = {**BASE, "TENANT_RATE_LIMITS": {"http": "1/m"}}
    for host in ("acme", "acme", "globex"):
        client.get("/public/", HTTP_HOST=f"{host}.example.com")
    out = StringIO()
    call_command("tenantry", "usage", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "tenant", "day", "http_requests", "live_events", "limited", "peak_presences",
        "state_bytes", "refused",
    ]  # fmt: skip
    today = datetime.now(UTC).date().isoformat()
    # acme's second request was refused on its rate limit: limited and refused.
    assert lines[1].split() == ["acme", today, "2", "0", "1", "0", "0", "1"]
    assert lines[2].split() == ["globex", today, "1", "0", "0", "0", "0", "0"]
    out = StringIO()
    call_command("tenantry", "usage", "--tenant", "globex", "--json", stdout=out)
    (report,) = json.loads(out.getvalue())
    assert report["tenant"] == "globex" and report["total"]["http_requests"] == 1
    assert report["days"][0]["day"] == today


# --- peaks recorded by tenantry itself: presences and state bytes -----------

ROOM = "tests.app.views.RoomView"


@pytest.fixture(params=["memory", "redis", "cluster"])
def stores(request, settings):
    """Presence, state and usage in memory, on Redis, or on a Redis Cluster
    (usage lives where state does)."""
    config = {**BASE}
    target = None
    if request.param != "memory":
        target = request.getfixturevalue(
            "redis_server" if request.param == "redis" else "redis_cluster"
        )
        config.update(
            PRESENCE_BACKEND="tenant_redis",
            PRESENCE_REDIS_URL=target.url,
            STATE_BACKEND="tenant_redis",
            STATE_REDIS_URL=target.url,
            TENANT_KEY_PREFIX=f"peak-{uuid.uuid4().hex[:8]}",
        )
    settings.DJUST_CONFIG = config
    yield request.param, target, config
    from tenantry import TenantAwareMemoryBackend, TenantStateMemoryBackend

    TenantAwareMemoryBackend.clear_all()
    TenantStateMemoryBackend.clear_all()


def peak(tenant: str, metric: str) -> int:
    return get_usage(tenant)["total"][metric]


@pytest.mark.asyncio
async def test_live_joins_record_the_peak_of_presences(stores):
    """djust's PresenceMixin joins through tenantry's router: each join
    raises the tenant's peak to the room's count, and leaving lowers no
    peak. Another tenant's joins never move it."""
    acme = [LiveClient("acme.example.com") for _ in range(3)]
    for tab in acme:
        assert (await tab.mount(ROOM, "/items/"))["type"] == "mount"
    globex = LiveClient("globex.example.com")
    assert (await globex.mount(ROOM, "/items/"))["type"] == "mount"
    assert peak("acme", "peak_presences") == 3
    assert peak("globex", "peak_presences") == 1
    assert peak("initech", "peak_presences") == 0
    for tab in acme:
        await tab.close()
    again = LiveClient("acme.example.com")
    assert (await again.mount(ROOM, "/items/"))["type"] == "mount"
    await again.close()
    await globex.close()
    # A peak, not a count: a later, smaller room leaves it where it was.
    acme_usage = get_usage("acme")
    assert acme_usage["total"]["peak_presences"] == 3
    assert acme_usage["hours"][-1]["peak_presences"] == 3
    assert peak("globex", "peak_presences") == 1


def test_manager_joins_record_the_peak_of_presences(stores):
    from tenantry import get_tenant_presence_backend

    acme = get_tenant_presence_backend("acme")
    for user in ("u1", "u2", "u1"):  # u1 twice: one presence
        acme.join("doc:1", user, {})
    acme.join("doc:2", "u3", {})
    assert acme.count("doc:1") == 2
    assert peak("acme", "peak_presences") == 2
    assert peak("globex", "peak_presences") == 0
    assert repr(acme).startswith("TenantAwareMemoryBackend(") or repr(acme).startswith(
        "TenantAwareRedisBackend("
    )


def test_backends_made_directly_record_the_peak_too(stores):
    """Metering is in the Rust backends themselves: a backend the app
    constructs records its joins and tracks like the manager's, per tenant;
    leaving records nothing."""
    from tenantry import TenantAwareMemoryBackend, TenantAwareRedisBackend

    kind, target, config = stores
    if kind == "memory":
        initech = TenantAwareMemoryBackend("initech")
    else:
        initech = TenantAwareRedisBackend(
            "initech", redis_url=target.url, key_prefix=config["TENANT_KEY_PREFIX"]
        )
    initech.track("room", "u1", "tab-a", {})
    initech.track("room", "u1", "tab-b", {})  # a second tab: still one presence
    assert peak("initech", "peak_presences") == 1
    initech.join("room", "u2", {})
    initech.track("room", "u3", "tab-a", {})
    assert peak("initech", "peak_presences") == 3
    initech.leave("room", "u3")
    initech.untrack("room", "u2", "")
    assert peak("initech", "peak_presences") == 3
    assert peak("acme", "peak_presences") == 0


def test_memory_peaks_are_recorded_again_whenever_the_figures_changed(settings, redis_target):
    """docs/performance-design.md#presence-join-metered-when-the-peak-rises:
    the memory store records a room's count only when it rises above what
    it recorded in the hour, so every way recorded figures can go must make
    the next join record again, even one that does not raise the count: a
    clear, a tenant's clear, and a switch of the usage store (here to
    Redis, where every join is recorded)."""
    from tenantry import TenantAwareMemoryBackend

    settings.DJUST_CONFIG = BASE
    acme = TenantAwareMemoryBackend("acme")
    acme.join("doc", "u1", {})
    acme.join("doc", "u2", {})
    assert peak("acme", "peak_presences") == 2
    acme.join("doc", "u2", {"again": True})  # no rise: nothing new to record
    acme.leave("doc", "u2")
    acme.join("doc", "u2", {})  # back to 2, recorded before: still 2
    assert peak("acme", "peak_presences") == 2

    _core.usage_clear()
    assert peak("acme", "peak_presences") == 0
    acme.join("doc", "u1", {})  # the same count, recorded again
    assert peak("acme", "peak_presences") == 2

    usage.clear_tenant("acme")
    assert peak("acme", "peak_presences") == 0
    acme.track("doc", "u1", "tab-2", {})
    assert peak("acme", "peak_presences") == 2

    settings.DJUST_CONFIG = {
        **BASE,
        "STATE_BACKEND": "tenant_redis",
        "STATE_REDIS_URL": redis_target.url,
        "TENANT_KEY_PREFIX": f"gen-{uuid.uuid4().hex[:8]}",
    }
    assert peak("acme", "peak_presences") == 0
    acme.join("doc", "u1", {})  # memory presence, usage now in Redis
    assert peak("acme", "peak_presences") == 2
    settings.DJUST_CONFIG = BASE  # back to the memory figures: a new store
    _core.usage_clear()
    acme.join("doc", "u2", {})
    assert peak("acme", "peak_presences") == 2
    # Another tenant's room never answers for acme's.
    globex = TenantAwareMemoryBackend("globex")
    globex.join("doc", "u1", {})
    assert peak("globex", "peak_presences") == 1
    TenantAwareMemoryBackend.clear_all()


def test_redis_joins_stay_one_round_trip_while_recording_the_peak(settings, redis_target):
    """docs/performance.md: the track script returns the room's count itself, so a
    join or track through the manager's backend or djust's router is exactly
    one command to Redis, and the peak still follows the room."""
    from tenantry import get_tenant_presence_backend
    from tenantry.presence import get_presence_router
    from tests.stores.test_presence_connections import top_level_commands

    settings.DJUST_CONFIG = {
        **BASE,
        "PRESENCE_BACKEND": "tenant_redis",
        "PRESENCE_REDIS_URL": redis_target.url,
        "TENANT_KEY_PREFIX": f"one-{uuid.uuid4().hex[:8]}",
    }
    acme = get_tenant_presence_backend("acme")
    router = get_presence_router()
    client = redis_target.node_client(acme.keys_for("doc")[0])
    acme.join("warm", "w", {})  # scripts loaded, connections open
    with tenant_context("acme"):
        router.join("tenant:acme:warm", "w", {})
        calls = [
            ("manager join", lambda: acme.join("doc", "u1", {})),
            ("manager track", lambda: acme.track("doc", "u2", "tab", {})),
            ("router join", lambda: router.join("tenant:acme:doc", "u3", {})),
            ("router track", lambda: router.track("tenant:acme:doc", "u4", "tab", {})),
        ]
        for users, (name, call) in enumerate(calls, start=1):
            assert top_level_commands(client, call) == ["evalsha"], name
            assert peak("acme", "peak_presences") == users, name
    assert acme.count("doc") == 4
    assert peak("globex", "peak_presences") == 0


def stored_bytes(kind: str, target, config: dict, tenant: str) -> int:
    """The tenant's state bytes as the store itself counts them."""
    from tenantry import TenantStateMemoryBackend

    if kind == "memory":
        return TenantStateMemoryBackend(tenant).used_bytes
    # On Redis: every value's length plus its member name (the key after
    # the tenant's tag), summed over the tenant's state keys.
    tag = f"{config['TENANT_KEY_PREFIX']}:{{tenant:{tenant}}}:"
    keys = [k for k in target.keys(f"{tag}*") if k[len(tag) :].startswith(("state:", "view-"))]
    return sum(target.node_client(k).strlen(k) + len(k) - len(tag) for k in keys)


def test_saved_views_and_state_writes_record_state_bytes(stores, client):
    """djust saves a tenant view's state through tenantry's state backend:
    the tenant's bytes, as its store counts them for its share, become its
    state_bytes peak; explicit writes count too; B's figure is B's."""
    from tenantry import get_tenant_state_backend

    kind, target, config = stores
    response = client.get("/saved/", HTTP_HOST="acme.example.com")
    assert "saved state of acme" in response.content.decode()
    saved = stored_bytes(kind, target, config, "acme")
    assert saved > 0
    assert peak("acme", "state_bytes") == saved
    assert peak("globex", "state_bytes") == 0

    acme = get_tenant_state_backend("acme")
    acme.set("report", b"x" * 5000)
    grown = stored_bytes(kind, target, config, "acme")
    assert grown >= saved + 5000
    assert peak("acme", "state_bytes") == grown
    # Deleting lowers the store's figure, not the peak.
    acme.delete("report")
    assert stored_bytes(kind, target, config, "acme") == saved
    assert peak("acme", "state_bytes") == grown

    get_tenant_state_backend("globex").set("note", b"y" * 10)
    assert peak("globex", "state_bytes") == stored_bytes(kind, target, config, "globex")
    assert peak("globex", "state_bytes") < saved
    assert peak("acme", "state_bytes") == grown


def test_usage_command_shows_the_peaks(stores, client):
    from tenantry import get_tenant_presence_backend

    client.get("/saved/", HTTP_HOST="acme.example.com")
    for user in ("u1", "u2"):
        get_tenant_presence_backend("acme").join("doc:1", user, {})
    flush()
    out = StringIO()
    call_command("tenantry", "usage", "--tenant", "acme", stdout=out)
    header, row = out.getvalue().splitlines()[:2]
    figures = dict(zip(header.split(), row.split(), strict=True))
    assert figures["peak_presences"] == "2"
    assert int(figures["state_bytes"]) == peak("acme", "state_bytes") > 0


def test_deleting_a_tenant_forgets_its_usage_and_spent_allowance(stores):
    """``manage.py tenantry delete``: a tenant created later under the same
    id sees no usage of the deleted one and starts with a full allowance;
    another tenant keeps its figures."""
    _kind, _target, config = stores
    from django.conf import settings

    settings.DJUST_CONFIG = {**config, "TENANT_RATE_LIMITS": {"api": "2/h"}}
    get_rate_limiter().forget_plans()
    for tenant in ("acme", "globex"):
        record(tenant, "live_events", 5)
        with tenant_context(tenant, must_exist=False):
            assert [check("api").allowed for _ in range(3)] == [True, True, False]
    out = StringIO()
    call_command("tenantry", "delete", "acme", stdout=out)
    # The certificate names usage: its own line (memory) or the Redis keys' line.
    assert re.search(r"\tusage \(memory|, usage\)\)", out.getvalue()), out.getvalue()
    assert get_usage("acme")["total"] == dict.fromkeys(METRICS, 0)
    assert get_usage("globex")["total"]["live_events"] == 5
    with tenant_context("acme", must_exist=False):
        assert check("api").allowed  # the memory limiter's counts went too
    with tenant_context("globex", must_exist=False):
        assert not check("api").allowed
