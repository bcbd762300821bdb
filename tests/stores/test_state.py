"""Tenant-scoped state (docs/state.md): the same tests on the in-memory backend, on
the Redis backend against a single redis-server, and against a real 3-master
Redis Cluster (see tests/redis_servers.py).

TTLs are small floats; tests wait for expiry by polling with a generous
deadline and never assert how long anything took.
"""

from __future__ import annotations

import math
import threading
import time
import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured

from tenantry import (
    BackendError,
    BackendUnavailable,
    InvalidKey,
    InvalidTenantId,
    QuotaExceeded,
    TenantInfo,
    TenantStateManager,
    TenantStateMemoryBackend,
    TenantStateRedisBackend,
    conf,
    get_tenant_state_backend,
)
from tenantry import checks as tenantry_checks
from tenantry import state as state_module
from tests.redis_servers import free_port

SHORT = 0.15  # seconds: the TTL of the expiry tests
MISSING = object()


@pytest.fixture(params=["memory", "redis", "cluster"])
def make_state(request):
    """``make(tenant_id) -> backend`` of one kind. Redis backends of one test
    share a fresh key prefix (tests do not see each other's keys); the memory
    store is emptied first."""
    if request.param == "memory":
        TenantStateMemoryBackend.clear_all()

        def make(tenant_id):
            return TenantStateMemoryBackend(tenant_id)

    else:
        fixture = "redis_server" if request.param == "redis" else "redis_cluster"
        server = request.getfixturevalue(fixture)
        prefix = f"test-{uuid.uuid4().hex[:10]}"

        def make(tenant_id):
            return TenantStateRedisBackend(tenant_id, redis_url=server.url, key_prefix=prefix)

        make.server = server
        make.prefix = prefix
    make.kind = request.param
    yield make
    if request.param == "memory":
        TenantStateMemoryBackend.set_memory_limit(conf.current().state_memory_max_bytes)
        TenantStateMemoryBackend.clear_all()


def wait_until(predicate, *, limit=10.0, step=0.01):
    """Polls ``predicate`` until true; fails after ``limit`` seconds (a bound
    against hanging, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached")
        time.sleep(step)


def test_tenants_sharing_key_names_see_only_their_own(make_state):
    acme, globex = make_state("acme"), make_state("globex")
    acme.set("settings", {"theme": "dark"})
    globex.set("settings", {"theme": "light"})
    acme.set("only-acme", b"x")
    assert acme.get("settings") == {"theme": "dark"}
    assert globex.get("settings") == {"theme": "light"}
    assert globex.get("only-acme") is None and not globex.exists("only-acme")
    assert globex.delete("only-acme") is False
    assert acme.exists("only-acme")
    assert acme.delete("settings") is True
    assert acme.get("settings") is None
    assert globex.get("settings") == {"theme": "light"}
    assert acme.incr("n") == 1 and globex.incr("n") == 1 and acme.incr("n") == 2
    assert globex.get("n") == 1


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x00\xff\xfe binary \x80",
        "text",
        "Zoë 🚀 \u2028",
        "",
        0,
        -17,
        2**63 - 1,
        -(2**63),
        2**64,  # past 64 bits: kept exactly, as JSON
        1.5,
        -0.0,
        True,
        False,
        None,
        [1, "two", None, [3.5]],
        {"nested": {"a": [], "b": {}}, "n": 1},
    ],
    ids=repr,
)
def test_values_round_trip(make_state, value):
    backend = make_state("acme")
    backend.set("k", value)
    got = backend.get("k", MISSING)
    assert got == value and type(got) is type(value)


def test_bytes_like_values_come_back_as_bytes(make_state):
    backend = make_state("acme")
    backend.set("a", bytearray(b"ba"))
    backend.set("m", memoryview(b"mv"))
    assert backend.get("a") == b"ba" and backend.get("m") == b"mv"
    assert type(backend.get("a")) is bytes


def test_json_and_int_values_are_tagged_apart_from_bytes(make_state):
    backend = make_state("acme")
    backend.set("int", 5)
    backend.set("text", "5")
    backend.set("bytes", b"5")
    assert (backend.get("int"), backend.get("text"), backend.get("bytes")) == (5, "5", b"5")
    assert backend.incr("int") == 6
    with pytest.raises(ValueError, match="not an integer"):
        backend.incr("text")
    with pytest.raises(ValueError, match="not an integer"):
        backend.incr("bytes")
    assert backend.get("text") == "5"


def test_values_that_are_not_json_able_are_refused(make_state):
    backend = make_state("acme")
    for bad in (object(), {1, 2}, {"k": object()}, {("tuple", "key"): 1}):
        with pytest.raises(TypeError, match="bytes or JSON-able"):
            backend.set("k", bad)
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(TypeError):
        backend.set("k", cyclic)
    assert not backend.exists("k")


def test_get_default(make_state):
    backend = make_state("acme")
    assert backend.get("missing") is None
    assert backend.get("missing", "fallback") == "fallback"
    backend.set("none", None)
    assert backend.get("none", "fallback") is None


def test_keys_expire(make_state):
    backend = make_state("acme")
    backend.set("short", {"v": 1}, ttl=SHORT)
    backend.set("tiny", 1, ttl=0.01)
    backend.set("forever", 1)
    remaining = backend.ttl("short")
    assert remaining is not None and 0 < remaining <= SHORT
    assert backend.ttl("forever") is None
    assert backend.ttl("missing") == 0
    wait_until(lambda: not backend.exists("short"))
    assert backend.get("short") is None
    assert backend.ttl("short") == 0
    assert backend.delete("short") is False
    wait_until(lambda: backend.get("tiny") is None)
    assert backend.get("forever") == 1


def test_set_replaces_the_ttl(make_state):
    backend = make_state("acme")
    backend.set("k", 1, ttl=SHORT)
    backend.set("k", 2)  # no TTL any more
    assert backend.ttl("k") is None
    backend.set("k", 3, ttl=60)
    assert 0 < backend.ttl("k") <= 60
    time.sleep(SHORT * 2)
    assert backend.get("k") == 3


@pytest.mark.parametrize("bad", [0, -1, -0.5, math.nan, math.inf, 1e12])
def test_bad_ttls_are_refused(make_state, bad):
    backend = make_state("acme")
    with pytest.raises(ValueError, match="ttl"):
        backend.set("k", 1, ttl=bad)
    assert not backend.exists("k")


def test_incr(make_state):
    backend = make_state("acme")
    assert backend.incr("hits") == 1
    assert backend.incr("hits", 10) == 11
    assert backend.incr("hits", -20) == -9
    assert backend.get("hits") == -9
    assert backend.ttl("hits") is None, "created by incr: no expiry"
    backend.set("window", 5, ttl=60)
    assert backend.incr("window") == 6
    assert 0 < backend.ttl("window") <= 60, "incr keeps the TTL"
    backend.set("max", 2**63 - 1)
    with pytest.raises(OverflowError):
        backend.incr("max")
    assert backend.get("max") == 2**63 - 1
    backend.set("short", 1, ttl=SHORT)
    wait_until(lambda: not backend.exists("short"))
    assert backend.incr("short") == 1, "an expired counter starts over"


def test_concurrent_incr_loses_nothing(make_state):
    backend = make_state("acme")

    def worker():
        for _ in range(200):
            backend.incr("counter")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert backend.get("counter") == 800


def test_delete_tenant_removes_one_tenant_in_batches(make_state):
    acme, globex = make_state("acme"), make_state("globex")
    names = [f"key:{i}" for i in range(3000)]
    for i, name in enumerate(names):
        acme.set(name, i)
        globex.set(name, -i)
    acme.set("short", 1, ttl=60)
    node = None
    if make_state.kind != "memory":
        node = make_state.server.node_client(acme.index_key)
        node.config_resetstat()
    assert acme.delete_tenant() == 3001
    if node is not None:
        stats = node.info("commandstats")
        # 3,001 keys: four deletion scripts of at most 1,000 keys, five reads
        # of the index, and never KEYS or SCAN.
        assert stats["cmdstat_evalsha"]["calls"] == 4
        assert stats["cmdstat_zrange"]["calls"] == 5
        assert "cmdstat_keys" not in stats and "cmdstat_scan" not in stats
        assert make_state.server.keys(f"{make_state.prefix}:{{tenant:acme}}:*") == []
    assert not any(acme.exists(n) for n in names[::97])
    assert acme.get("short") is None
    assert [globex.get(n) for n in names] == [-i for i in range(3000)]
    assert acme.delete_tenant() == 0
    acme.set("again", 1)
    assert acme.get("again") == 1


def test_two_objects_for_one_tenant_share_keys(make_state):
    make_state("acme").set("k", "v")
    assert make_state("acme").get("k") == "v"
    assert make_state(TenantInfo("acme")).get("k") == "v"
    assert make_state(42).tenant_id == "42"


@pytest.mark.parametrize(
    "bad",
    ["", "a:b", "a b", "{acme}", "acme}", "a*", "acme\n", ".acme", "-acme", "x" * 129, None, 1.5],
)
def test_invalid_tenant_ids_are_refused(make_state, bad):
    with pytest.raises(InvalidTenantId):
        make_state(bad)


def test_invalid_key_names_are_refused(make_state):
    backend = make_state("acme")
    for call in (
        lambda name: backend.get(name),
        lambda name: backend.set(name, 1),
        lambda name: backend.delete(name),
        lambda name: backend.exists(name),
        lambda name: backend.ttl(name),
        lambda name: backend.incr(name),
    ):
        with pytest.raises(InvalidKey, match="empty"):
            call("")
        with pytest.raises(InvalidKey, match="1025 bytes"):
            call("k" * 1025)
        with pytest.raises(TypeError):
            call(b"bytes-key")
        with pytest.raises(TypeError):
            call(7)
    backend.set("k" * 1024, 1)
    # Names are opaque: separators and braces cannot reach another tenant.
    backend.set("}:state:x", "odd")
    assert make_state("acme").get("}:state:x") == "odd"
    assert make_state("globex").get("}:state:x") is None


def test_health_check(make_state):
    health = make_state("acme").health_check()
    assert health["status"] == "healthy"
    assert health["tenant_id"] == "acme"
    assert health["backend"] == ("tenant_memory" if make_state.kind == "memory" else "tenant_redis")


def test_threads_interleaving_tenants_never_see_each_other(make_state):
    tenants = [f"t{i}" for i in range(10)]
    backends = {t: make_state(t) for t in tenants}
    errors: list[str] = []

    def worker(n: int) -> None:
        try:
            for step in range(80):
                tenant = tenants[(n * 3 + step) % len(tenants)]
                backend = backends[tenant]
                backend.set("shared-name", {"tenant": tenant})
                got = backend.get("shared-name")
                if got is not None and got["tenant"] != tenant:
                    errors.append(f"{tenant} read {got}")
                backend.incr(f"count-{n}")
                if step % 25 == 0:
                    backend.delete_tenant()
        except Exception as exc:  # report, don't hang the join below
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]


# --- Redis only (single server and cluster) ---------------------------------


@pytest.fixture
def redis_state(redis_target):
    prefix = f"test-{uuid.uuid4().hex[:10]}"

    def make(tenant_id, **kwargs):
        return TenantStateRedisBackend(
            tenant_id, redis_url=redis_target.url, key_prefix=prefix, **kwargs
        )

    make.server = redis_target
    make.prefix = prefix
    return make


def test_redis_key_layout_and_index(redis_state):
    acme = redis_state("acme")
    acme.set("cart:1", [1, 2], ttl=30)
    acme.set("profile", b"p")
    prefix = redis_state.prefix
    assert acme.key_for("cart:1") == f"{prefix}:{{tenant:acme}}:state:cart:1"
    assert acme.index_key == f"{prefix}:{{tenant:acme}}:state-index:"
    sizes = acme.index_key + "bytes"
    assert sorted(redis_state.server.keys(f"{prefix}:*")) == sorted(
        [acme.key_for("cart:1"), acme.key_for("profile"), acme.index_key, sizes]
    )
    client = redis_state.server.client()
    assert client.get(acme.key_for("cart:1")) == "j[1,2]"
    assert client.get(acme.key_for("profile")) == "bp"
    assert client.type(acme.index_key) == "zset"
    members = dict(client.zrange(acme.index_key, 0, -1, withscores=True))
    assert set(members) == {"state:cart:1", "state:profile"}
    assert members["state:profile"] == math.inf
    assert client.ttl(acme.index_key) == -1, "a key without expiry keeps the index"
    # The tenant's bytes: each member's value and name, summed under "*".
    cart, profile = len("j[1,2]") + len("state:cart:1"), len("bp") + len("state:profile")
    assert client.hgetall(sizes) == {
        "state:cart:1": str(cart),
        "state:profile": str(profile),
        "*": str(cart + profile),
    }
    assert client.ttl(sizes) == -1
    acme.delete("profile")
    assert client.hgetall(sizes) == {"state:cart:1": str(cart), "*": str(cart)}
    # Now the index (and the sizes) live as long as the longest-lived key.
    acme.set("other", 1, ttl=20)
    assert 0 < client.pttl(acme.index_key) <= 30_000
    assert 0 < client.pttl(sizes) <= 30_000


def test_redis_an_abandoned_tenant_leaves_nothing(redis_state):
    backend = redis_state("acme")
    for i in range(5):
        backend.set(f"k{i}", i, ttl=SHORT)
    wait_until(lambda: not redis_state.server.keys(f"{redis_state.prefix}:*"))


def test_redis_each_operation_is_one_round_trip(redis_state):
    backend = redis_state("acme")
    backend.set("warm", 1)  # loads the scripts
    backend.incr("warm")
    backend.delete("warm")
    node = redis_state.server.node_client(backend.key_for("k"))
    # Redis counts commands run inside a script too: the script's own GET
    # (incr) is the only overlap with what a client could send.
    for call, sent in (
        (lambda: backend.set("k", {"a": 1}, ttl=60), {"evalsha": 1}),
        (lambda: backend.get("k"), {"get": 1}),
        (lambda: backend.exists("k"), {"exists": 1}),
        (lambda: backend.ttl("k"), {"pttl": 1}),
        (lambda: backend.incr("n"), {"evalsha": 1, "get": 1}),
        (lambda: backend.delete("k"), {"evalsha": 1}),
    ):
        node.config_resetstat()
        call()
        stats = node.info("commandstats")
        counted = {
            name: stats[f"cmdstat_{name}"]["calls"]
            for name in ("evalsha", "eval", "script|load", "get", "exists", "pttl", "ping")
            if f"cmdstat_{name}" in stats
        }
        assert counted == sent, stats


def test_redis_values_written_by_someone_else_are_an_error(redis_state):
    backend = redis_state("acme")
    client = redis_state.server.client()
    client.set(backend.key_for("foreign"), "x-not-ours")
    with pytest.raises(BackendError, match="not tenantry state"):
        backend.get("foreign")
    client.set(backend.key_for("badjson"), "j{oops")
    with pytest.raises(BackendError, match="invalid JSON"):
        backend.get("badjson")


def test_redis_all_tenants_share_one_pool(redis_state):
    clients = redis_state.server.node_clients()

    def connected():
        return sum(c.info("clients")["connected_clients"] for c in clients)

    redis_state("warm").get("k")
    baseline = connected()
    for i in range(50):
        redis_state(f"tenant{i}").get("k")
    # Sequential calls reuse one pooled connection (per node on a cluster).
    assert connected() <= baseline + len(clients)


def test_redis_backend_is_made_without_redis_and_fails_fast():
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    backend = TenantStateRedisBackend("acme", redis_url=url, connect_timeout=0.5)
    assert backend.redis_url == url.replace("hunter2", "***")
    for call in (lambda: backend.get("k"), lambda: backend.set("k", 1), lambda: backend.incr("k")):
        with pytest.raises(BackendUnavailable) as info:
            call()
        assert "127.0.0.1" in str(info.value) and "hunter2" not in str(info.value)
    health = backend.health_check()
    assert health["status"] == "unhealthy" and "hunter2" not in str(health)
    cluster = TenantStateRedisBackend(
        "acme",
        redis_url=f"redis+cluster://:hunter2@127.0.0.1:{free_port()},127.0.0.1:{free_port()}",
        connect_timeout=0.5,
    )
    with pytest.raises(BackendUnavailable) as info:
        cluster.get("k")
    assert "redis+cluster://:***@" in str(info.value) and "hunter2" not in str(info.value)


def test_redis_stopped_mid_run_then_restarted(redis_server_factory):
    """Calls fail fast with BackendUnavailable while Redis is down (URL in the
    message, password hidden) and work again once it is back on the same
    port, with the same backend objects (no app restart)."""
    server = redis_server_factory(password="s3cret-pw")
    acme = TenantStateRedisBackend("acme", redis_url=server.url, connect_timeout=0.5)
    acme.set("k", {"n": 1})
    acme.incr("hits")
    server.stop()
    for call in (
        lambda: acme.get("k"),
        lambda: acme.set("k", 2),
        lambda: acme.exists("k"),
        lambda: acme.ttl("k"),
        lambda: acme.incr("hits"),
        lambda: acme.delete("k"),
        lambda: acme.delete_tenant(),
    ):
        start = time.monotonic()
        with pytest.raises(BackendUnavailable) as info:
            call()
        assert time.monotonic() - start < 10, "a hang, not a fast failure"
        message = str(info.value)
        assert f"127.0.0.1:{server.port}" in message and "s3cret-pw" not in message
    assert acme.health_check()["status"] == "unhealthy"

    server.start()  # same port, empty data, no scripts loaded
    assert acme.get("k") is None
    acme.set("k", {"n": 2})
    assert acme.get("k") == {"n": 2}
    assert acme.incr("hits") == 1
    assert acme.health_check()["status"] == "healthy"


# --- memory only ---------------------------------------------------------------


def test_memory_store_is_bounded():
    TenantStateMemoryBackend.clear_all()
    # One tenant may take the whole store here (fair share: test_fair_share.py).
    TenantStateMemoryBackend.set_memory_limit(100_000, 100_000)
    try:
        backend = TenantStateMemoryBackend("acme")
        with pytest.raises(QuotaExceeded, match="STATE_MEMORY_MAX_BYTES"):
            for i in range(1000):
                backend.set(f"k{i}", b"x" * 1000)
        stats = TenantStateMemoryBackend.store_stats()
        assert stats["bytes"] <= stats["max_bytes"] == 100_000
        assert 50 < stats["keys"] < 100
        # Existing keys still work; deleting makes room.
        assert backend.get("k0") == b"x" * 1000
        backend.delete_tenant()
        backend.set("again", b"x" * 1000)
        # Expired keys make room on their own.
        TenantStateMemoryBackend.clear_all()
        for i in range(80):
            backend.set(f"t{i}", b"x" * 1000, ttl=0.05)
        time.sleep(0.1)
        for i in range(80):
            backend.set(f"u{i}", b"x" * 1000)
    finally:
        TenantStateMemoryBackend.set_memory_limit(conf.current().state_memory_max_bytes)
        TenantStateMemoryBackend.clear_all()


def test_memory_expired_keys_are_dropped_without_reads():
    TenantStateMemoryBackend.clear_all()
    backend = TenantStateMemoryBackend("acme")
    for i in range(500):
        backend.set(f"k{i}", i, ttl=0.02)
    time.sleep(0.05)
    other = TenantStateMemoryBackend("other")
    for i in range(20_000):  # unrelated traffic sweeps every shard in turn
        other.exists(f"x{i}")
    assert TenantStateMemoryBackend.store_stats()["keys"] == 0
    TenantStateMemoryBackend.clear_all()


# --- the manager and the config --------------------------------------------------


def test_one_backend_per_tenant():
    a = TenantStateManager.for_tenant("acme")
    assert a is get_tenant_state_backend("acme")
    assert a is TenantStateManager.for_tenant(TenantInfo("acme"))
    assert a is not TenantStateManager.for_tenant("globex")
    assert isinstance(a, TenantStateMemoryBackend)
    for bad in ("a:b", "", None, "{x}"):
        with pytest.raises(InvalidTenantId):
            TenantStateManager.for_tenant(bad)


@pytest.mark.parametrize("kind", ["single", "cluster"])
def test_backends_are_configured_from_djust_config(settings, request, kind):
    target = request.getfixturevalue("redis_server" if kind == "single" else "redis_cluster")
    prefix = f"cfg-{uuid.uuid4().hex[:8]}"
    settings.DJUST_CONFIG = {
        **settings.DJUST_CONFIG,
        "STATE_BACKEND": "tenant_redis",
        "STATE_REDIS_URL": target.url,
        "TENANT_KEY_PREFIX": prefix,
        "REDIS_SOCKET_TIMEOUT": 0.5,
    }
    backend = get_tenant_state_backend("acme")
    assert isinstance(backend, TenantStateRedisBackend)
    assert (backend.redis_url, backend.key_prefix) == (target.url, prefix)
    backend.set("k", 1)
    assert target.client().get(f"{prefix}:{{tenant:acme}}:state:k") == "1"
    assert backend.health_check()["cluster"] is (kind == "cluster")
    backend.delete_tenant()


def test_the_cache_is_dropped_when_the_config_changes(settings, redis_server):
    before = get_tenant_state_backend("acme")
    settings.DJUST_CONFIG = {
        **settings.DJUST_CONFIG,
        "STATE_BACKEND": "tenant_redis",
        "STATE_REDIS_URL": redis_server.url,
    }
    after = get_tenant_state_backend("acme")
    assert after is not before and isinstance(after, TenantStateRedisBackend)


def test_the_cache_is_bounded():
    TenantStateManager.clear_cache()
    for i in range(state_module.CACHE_SIZE + 20):
        TenantStateManager.for_tenant(f"tenant{i}")
    assert state_module._backend_for.cache_info().currsize == state_module.CACHE_SIZE


def test_memory_limit_comes_from_the_config(settings):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "STATE_MEMORY_MAX_BYTES": 1 << 20}
    get_tenant_state_backend("acme")
    assert TenantStateMemoryBackend.store_stats()["max_bytes"] == 1 << 20
    settings.DJUST_CONFIG = {
        k: v for k, v in settings.DJUST_CONFIG.items() if k != "STATE_MEMORY_MAX_BYTES"
    }
    get_tenant_state_backend("acme")
    assert TenantStateMemoryBackend.store_stats()["max_bytes"] == 512 * 1024 * 1024


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("STATE_REDIS_URL", "rediss://:pw@cache:6380/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("PRESENCE_REDIS_URL", "rediss://cache:6380/0?ssl_keyfile=/k", "ssl_keyfile"),
        ("REDIS_URL", "redis://cache:6380/0?ssl_ca_certs=/ca.pem", "rediss://"),
        ("STATE_REDIS_URL", "redis+cluster://a:7000/3", "database"),
        ("STATE_REDIS_URL", "redis://a:7000,b:7001", "redis+cluster://"),
        ("STATE_MEMORY_MAX_BYTES", 10, "STATE_MEMORY_MAX_BYTES"),
        ("STATE_BACKEND", "tenant_mongo", "tenant_mongo"),
    ],
)
def test_bad_state_config_is_refused_naming_the_key(settings, key, value, needle):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, key: value}
    with pytest.raises(ImproperlyConfigured, match=key) as info:
        conf.current()
    assert needle in str(info.value)
    assert "pw@" not in str(info.value)
    errors = tenantry_checks.check_config()
    assert errors and errors[0].id == tenantry_checks.check_id(key)
    assert needle in errors[0].msg
