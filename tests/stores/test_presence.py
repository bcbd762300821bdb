"""Presence semantics (docs/presence.md): the same tests on the in-memory backend, on
the Redis backend against a real redis-server, and against a real 3-master
Redis Cluster (see tests/redis_servers.py).

Timeouts are small floats; tests wait for expiry by polling with a generous
deadline and never assert how long anything took.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import pytest

from tenantry import (
    BackendError,
    BackendUnavailable,
    InvalidKey,
    InvalidTenantId,
    TenantAwareMemoryBackend,
    TenantAwareRedisBackend,
    TenantInfo,
)
from tests.redis_servers import free_port

SHORT = 0.2  # seconds: the presence timeout of the expiry tests


@pytest.fixture(params=["memory", "redis", "cluster"])
def make_backend(request):
    """``make(tenant_id, timeout=60) -> backend`` for one backend kind. Redis
    backends of one test share a fresh key prefix (tests do not see each
    other's keys); the memory store is emptied first."""
    if request.param == "memory":
        TenantAwareMemoryBackend.clear_all()

        def make(tenant_id, timeout=60):
            return TenantAwareMemoryBackend(tenant_id, timeout=timeout)

    else:
        fixture = "redis_server" if request.param == "redis" else "redis_cluster"
        server = request.getfixturevalue(fixture)
        prefix = f"test-{uuid.uuid4().hex[:10]}"

        def make(tenant_id, timeout=60):
            return TenantAwareRedisBackend(
                tenant_id, redis_url=server.url, key_prefix=prefix, timeout=timeout
            )

        make.server = server
        make.prefix = prefix
    make.kind = request.param
    yield make
    if request.param == "memory":
        TenantAwareMemoryBackend.clear_all()


def ids(records):
    return sorted(r["id"] for r in records)


def wait_until(predicate, *, limit=10.0, step=0.02):
    """Polls ``predicate`` until true; fails after ``limit`` seconds (a bound
    against hanging, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached")
        time.sleep(step)


def test_join_returns_the_record(make_backend):
    backend = make_backend("acme")
    before = time.time()
    record = backend.join("room:1", "u1", {"name": "Alice"})
    # djust's record, plus the connection join tracked (docs/presence.md).
    assert set(record) == {"id", "tenant_id", "joined_at", "meta", "metas"}
    assert record["id"] == "u1"
    assert record["tenant_id"] == "acme"
    assert record["meta"] == {"name": "Alice"}
    assert isinstance(record["joined_at"], float)
    assert before - 5 <= record["joined_at"] <= time.time() + 5
    assert backend.list("room:1") == [record]
    assert backend.count("room:1") == 1


def test_rejoin_updates_meta_without_duplicating(make_backend):
    backend = make_backend("acme")
    first = backend.join("room", "u1", {"v": 1})
    again = backend.join("room", "u1", {"v": 2})
    assert again["meta"] == {"v": 2}
    assert again["joined_at"] == first["joined_at"], "still the same presence"
    assert backend.count("room") == 1
    [only] = backend.list("room")
    assert only["meta"] == {"v": 2}
    assert only["joined_at"] == first["joined_at"]


def test_leave_of_one_user_never_disturbs_another(make_backend):
    backend = make_backend("acme")
    backend.join("room", "u1", {"n": 1})
    backend.join("room", "u2", {"n": 2})
    left = backend.leave("room", "u1")
    assert left is not None
    assert (left["id"], left["tenant_id"], left["meta"]) == ("u1", "acme", {"n": 1})
    assert ids(backend.list("room")) == ["u2"]
    assert backend.count("room") == 1
    assert backend.leave("room", "u1") is None
    assert backend.leave("room", "nobody") is None
    assert backend.leave("no-such-room", "u2") is None
    assert ids(backend.list("room")) == ["u2"]
    assert backend.list("room")[0]["meta"] == {"n": 2}


def test_silent_users_disappear_after_the_timeout(make_backend):
    backend = make_backend("acme", timeout=SHORT)
    backend.join("room", "quiet", {})
    backend.join("room", "busy", {})

    def busy_only():
        backend.heartbeat("room", "busy")
        return ids(backend.list("room")) == ["busy"] and backend.count("room") == 1

    wait_until(busy_only)
    # The quiet user stays gone: a late heartbeat does not revive it, and a
    # late leave has nothing to return.
    backend.heartbeat("room", "quiet")
    assert backend.leave("room", "quiet") is None
    assert ids(backend.list("room")) == ["busy"]


def test_count_never_includes_ghosts(make_backend):
    backend = make_backend("acme", timeout=SHORT)
    for i in range(5):
        backend.join("room", f"u{i}", {})
    # No list() or cleanup_stale() in between: count alone must drop them.
    wait_until(lambda: backend.count("room") == 0)
    assert backend.list("room") == []
    backend.join("room", "fresh", {})
    assert backend.count("room") == 1


def test_rejoin_after_expiry_is_a_new_presence(make_backend):
    backend = make_backend("acme", timeout=SHORT)
    first = backend.join("room", "u1", {})
    wait_until(lambda: backend.count("room") == 0)
    again = backend.join("room", "u1", {})
    assert again["joined_at"] > first["joined_at"]


def test_cleanup_stale_returns_what_it_removed(make_backend):
    # Joined through a backend with a long timeout (so the room itself stays,
    # TTL included), cleaned through one of the same tenant with a short one.
    patient, strict = make_backend("acme", timeout=60), make_backend("acme", timeout=SHORT)
    patient.join("room", "a", {})
    patient.join("room", "b", {})
    time.sleep(SHORT * 2)
    assert strict.cleanup_stale("room") == 2
    assert strict.cleanup_stale("room") == 0
    strict.join("room", "c", {})
    assert strict.cleanup_stale("room") == 0
    assert ids(strict.list("room")) == ["c"]


def test_tenants_sharing_room_names_and_user_ids_see_only_their_own(make_backend):
    acme, globex = make_backend("acme"), make_backend("globex")
    acme.join("lobby", "u1", {"who": "acme"})
    globex.join("lobby", "u1", {"who": "globex"})
    globex.join("lobby", "u2", {"who": "globex"})
    assert [r["meta"]["who"] for r in acme.list("lobby")] == ["acme"]
    assert {r["tenant_id"] for r in globex.list("lobby")} == {"globex"}
    assert (acme.count("lobby"), globex.count("lobby")) == (1, 2)
    assert acme.leave("lobby", "u2") is None
    assert acme.leave("lobby", "u1")["meta"] == {"who": "acme"}
    assert globex.count("lobby") == 2
    assert ids(globex.list("lobby")) == ["u1", "u2"]


def test_two_objects_for_one_tenant_share_presences(make_backend):
    make_backend("acme").join("room", "u1", {})
    assert make_backend("acme").count("room") == 1


@pytest.mark.parametrize(
    "bad",
    ["", "a:b", "a b", "{acme}", "acme}", "a*", "acme\n", ".acme", "-acme", "x" * 129, None, 1.5],
)
def test_invalid_tenant_ids_are_refused_at_construction(make_backend, bad):
    with pytest.raises(InvalidTenantId):
        make_backend(bad)


def test_tenant_ids_may_be_ints_and_tenant_infos(make_backend):
    assert make_backend(42).tenant_id == "42"
    assert make_backend(TenantInfo("acme", name="Acme")).tenant_id == "acme"


def test_user_ids_and_names_are_checked(make_backend):
    backend = make_backend("acme")
    assert backend.join("room", 7, {})["id"] == "7"
    with pytest.raises(TypeError):
        backend.join("room", 1.5, {})
    with pytest.raises(InvalidKey):
        backend.join("r" * 1025, "u", {})
    with pytest.raises(InvalidKey):
        backend.join("room", "u" * 1025, {})
    with pytest.raises(ValueError):
        make_backend("acme", timeout=0)


def test_memory_list_is_ordered_by_last_heartbeat():
    TenantAwareMemoryBackend.clear_all()
    backend = TenantAwareMemoryBackend("acme")
    for user in ("a", "b", "c"):
        backend.join("room", user, {})
    backend.heartbeat("room", "a")
    assert [r["id"] for r in backend.list("room")] == ["b", "c", "a"]
    TenantAwareMemoryBackend.clear_all()


def test_meta_round_trips(make_backend):
    backend = make_backend("acme")
    meta = {"name": "Zoë 🚀", "n": 1, "f": 1.5, "tags": ["x", None, True], "nested": {"a": {}}}
    backend.join("room", "u", meta)
    assert backend.list("room")[0]["meta"] == meta
    assert backend.join("room", "v")["meta"] == {}
    assert backend.leave("room", "u")["meta"] == meta


def test_health_check(make_backend):
    health = make_backend("acme").health_check()
    assert health["status"] == "healthy"
    assert health["tenant_id"] == "acme"
    kind = "memory" if make_backend.kind == "memory" else "redis"
    assert health["backend"] == f"tenant_{kind}"


def test_threads_interleaving_tenants_never_see_each_other(make_backend):
    tenants = [f"t{i}" for i in range(12)]
    backends = {t: make_backend(t) for t in tenants}
    errors: list[str] = []

    def worker(n: int) -> None:
        try:
            for step in range(60):
                tenant = tenants[(n * 7 + step) % len(tenants)]
                backend = backends[tenant]
                user = f"w{n}"
                backend.join("lobby", user, {"tenant": tenant, "worker": n})
                for record in backend.list("lobby"):
                    if record["tenant_id"] != tenant or record["meta"]["tenant"] != tenant:
                        errors.append(f"{tenant} saw {record}")
                if step % 2:
                    left = backend.leave("lobby", user)
                    if left is None or left["meta"]["tenant"] != tenant:
                        errors.append(f"{tenant} left {left}")
        except Exception as exc:  # report, don't hang the join below
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]


# --- Redis only ----------------------------------------------------------


@pytest.fixture
def redis_backend(redis_target):
    """Like ``make_backend``, Redis only (a single server, then a cluster)."""
    prefix = f"test-{uuid.uuid4().hex[:10]}"

    def make(tenant_id, timeout=60):
        return TenantAwareRedisBackend(
            tenant_id, redis_url=redis_target.url, key_prefix=prefix, timeout=timeout
        )

    make.server = redis_target
    make.prefix = prefix
    return make


def test_redis_keys_follow_the_layout_and_carry_ttls(redis_backend):
    acme, globex = redis_backend("acme", timeout=30), redis_backend("globex", timeout=30)
    acme.join("room:1", "u1", {})
    acme.join("room:1", "u2", {})
    globex.join("room:1", "u1", {})
    client = redis_backend.server.client()
    prefix = redis_backend.prefix
    keys = sorted(redis_backend.server.keys(f"{prefix}:*"))
    kinds = ["presence-conns", "presence-data", "presence-refs", "presence-users"]
    assert keys == [
        f"{prefix}:{{tenant:{tenant}}}:{kind}:room:1"
        for tenant in ("acme", "globex")
        for kind in kinds
    ]
    users, conns, refs, data = acme.keys_for("room:1")
    assert sorted([users, conns, refs, data]) == keys[:4]
    layout = re.compile(
        rf"^{re.escape(prefix)}:\{{tenant:(?P<t>[^}}]+)\}}:presence-[a-z]+:room:1$"
    )
    for key in keys:
        tenant = layout.match(key)["t"]
        other = "globex" if tenant == "acme" else "acme"
        assert other not in key
        assert 0 < client.pttl(key) <= 60_000, key
    assert [client.type(k) for k in (users, conns, refs, data)] == ["zset"] * 3 + ["hash"]
    assert sorted(client.zrange(users, 0, -1)) == ["2:u1", "2:u2"]
    assert sorted(client.zrange(conns, 0, -1)) == ["2:u1:", "2:u2:"]


def test_redis_abandoned_rooms_vanish(redis_backend):
    backend = redis_backend("acme", timeout=SHORT)
    backend.join("room", "u1", {})
    wait_until(lambda: not redis_backend.server.keys(f"{redis_backend.prefix}:*"))


def test_redis_leaving_last_user_removes_the_keys(redis_backend):
    backend = redis_backend("acme")
    backend.join("room", "u1", {})
    backend.leave("room", "u1")
    assert redis_backend.server.keys(f"{redis_backend.prefix}:*") == []


def test_redis_list_of_a_large_room_is_one_call(redis_backend):
    backend = redis_backend("acme")
    users, conns, refs, data = backend.keys_for("big")
    client = redis_backend.server.node_client(users)  # the node of the room
    pipe = client.pipeline(transaction=False)
    now = float(client.time()[0])
    for i in range(12_000):  # past Lua's unpack limit
        user = f"{len(str(i)) + 1}:u{i}"
        conn = f"{user}:tab"
        pipe.zadd(users, {user: now})
        pipe.zadd(conns, {conn: now})
        pipe.zadd(refs, {conn: 0})
        pipe.hset(data, user, f"{now:.6f} {json.dumps({'i': i})}")
        pipe.hset(data, conn, f"{now:.6f} {json.dumps({'c': i})}")
    pipe.execute()
    client.config_resetstat()
    records = backend.list("big")
    assert len(records) == 12_000
    assert records[5]["meta"]["i"] == int(records[5]["id"][1:])
    assert records[5]["metas"][0]["c"] == int(records[5]["id"][1:])
    stats = client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1
    assert backend.count("big") == 12_000


def test_redis_records_written_by_someone_else_are_an_error(redis_backend):
    backend = redis_backend("acme")
    backend.join("room", "u1", {})
    *_, data = backend.keys_for("room")
    redis_backend.server.client().hset(data, "2:u1", "not json")
    with pytest.raises(BackendError, match="not a tenantry presence record"):
        backend.list("room")
    redis_backend.server.client().hset(data, "2:u1", "1700000000.5 {not json")
    with pytest.raises(BackendError, match="not JSON"):
        backend.list("room")
    redis_backend.server.client().hset(data, "garbage", "1700000000.5 {}")
    with pytest.raises(BackendError, match="not a tenantry presence record"):
        backend.list("room")


def test_redis_all_tenants_share_one_connection_pool(redis_backend):
    clients = redis_backend.server.node_clients()

    def connected():
        return sum(c.info("clients")["connected_clients"] for c in clients)

    baseline = connected()
    for i in range(50):
        redis_backend(f"tenant{i}").count("room")
    # Sequential calls reuse one pooled connection whatever the tenant (on a
    # cluster: one connection per node).
    assert connected() <= baseline + len(clients)


def test_redis_releases_the_gil_during_io(redis_backend):
    backend = redis_backend("acme")
    backend.count("warm-up")
    client = redis_backend.server.node_client(backend.keys_for("room")[0])
    inside, done = threading.Event(), threading.Event()

    def slow_call():
        inside.set()
        backend.join("room", "u1", {})  # held up by CLIENT PAUSE below
        done.set()

    client.execute_command("CLIENT", "PAUSE", "600", "WRITE")
    thread = threading.Thread(target=slow_call)
    thread.start()
    inside.wait(5)
    spins = 0
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        spins += 1
    still_waiting = not done.is_set()
    thread.join(10)
    assert done.is_set()
    if still_waiting:  # the call was in Redis I/O while this thread ran
        assert spins > 1000


def test_redis_backend_is_made_without_redis_and_fails_fast(redis_backend):
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    backend = TenantAwareRedisBackend("acme", redis_url=url)  # no connection yet
    assert backend.redis_url == url.replace("hunter2", "***")
    with pytest.raises(BackendUnavailable) as info:
        backend.count("room")
    message = str(info.value)
    assert "127.0.0.1" in message and "hunter2" not in message
    assert isinstance(info.value, ConnectionError)
    health = backend.health_check()
    assert health["status"] == "unhealthy" and "hunter2" not in str(health)


def test_redis_stopped_mid_run_then_restarted(redis_server_factory):
    """Calls fail fast with BackendUnavailable while Redis is down (URL in the
    message, password hidden) and work again once it is back on the same
    port, with the same backend objects (no app restart)."""
    from tenantry import BackendUnavailable

    server = redis_server_factory(password="s3cret-pw")
    acme = TenantAwareRedisBackend("acme", redis_url=server.url, connect_timeout=0.5)
    globex = TenantAwareRedisBackend("globex", redis_url=server.url, connect_timeout=0.5)
    acme.join("room", "u1", {"n": 1})
    assert acme.count("room") == 1

    server.stop()
    for call in (
        lambda: acme.count("room"),
        lambda: acme.join("room", "u2", {}),
        lambda: globex.list("room"),
        lambda: acme.heartbeat("room", "u1"),
        lambda: acme.leave("room", "u1"),
        lambda: acme.cleanup_stale("room"),
    ):
        with pytest.raises(BackendUnavailable) as info:
            call()
        message = str(info.value)
        assert f"127.0.0.1:{server.port}" in message, message
        assert "s3cret-pw" not in message, message
    assert acme.health_check()["status"] == "unhealthy"

    server.start()  # same port, empty data, no scripts loaded
    assert acme.count("room") == 0
    assert acme.join("room", "u1", {"n": 2})["meta"] == {"n": 2}
    assert [r["meta"] for r in globex.list("room")] == []
    assert acme.list("room")[0]["meta"] == {"n": 2}
    assert acme.health_check()["status"] == "healthy"
