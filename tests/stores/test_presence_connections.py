"""Presence with connections and diffs (docs/presence.md): one user, many
connections (tabs), each named by a ``ref``; ``track``/``untrack`` return the
diff they caused. The same tests run on the memory backend, a real
redis-server and a real 3-master Redis Cluster (``make_backend``).

Timeouts are small floats; tests wait past them by polling with a generous
deadline and never assert how long anything took.
"""

from __future__ import annotations

import threading
import time

import pytest

from tenantry import (
    BackendUnavailable,
    InvalidKey,
    QuotaExceeded,
    TenantAwareMemoryBackend,
    TenantAwareRedisBackend,
    tenant_context,
)
from tenantry.presence import (
    PRESENCE_DEFAULT_REF,
    PRESENCE_MAX_CONNECTIONS_PER_USER,
    PRESENCE_MAX_REF_LEN,
    apply_diff,
    by_user,
    get_presence_router,
)
from tests.stores.test_presence import SHORT, ids, make_backend, wait_until

__all__ = ["make_backend"]  # the fixture, imported for pytest

EMPTY = {"joins": {}, "leaves": {}}


def refs(record):
    return [m["ref"] for m in record["metas"]]


def listing(backend, room):
    """``{user: [refs]}`` of a room."""
    return {r["id"]: sorted(refs(r)) for r in backend.list(room)}


def one(side):
    """The only ``(user, record)`` of one side of a diff."""
    [(user, record)] = side.items()
    return user, record


# --- every transition -----------------------------------------------------


def test_first_connection_joins_the_user(make_backend):
    backend = make_backend("acme")
    before = time.time()
    diff = backend.track("room", "u1", "tab-1", {"name": "Alice"})
    assert diff["leaves"] == {}
    user, record = one(diff["joins"])
    assert user == "u1"
    assert set(record) == {"id", "tenant_id", "joined_at", "meta", "metas"}
    assert (record["id"], record["tenant_id"], record["meta"]) == ("u1", "acme", {"name": "Alice"})
    assert before - 5 <= record["joined_at"] <= time.time() + 5
    [meta] = record["metas"]
    assert meta == {"name": "Alice", "ref": "tab-1", "online_at": record["joined_at"]}
    assert backend.count("room") == 1
    assert backend.list("room") == [record]


def test_another_tab_is_a_join_of_that_connection_only(make_backend):
    backend = make_backend("acme")
    first = backend.track("room", "u1", "tab-1", {"tab": 1})["joins"]["u1"]
    diff = backend.track("room", "u1", "tab-2", {"tab": 2})
    assert diff["leaves"] == {}
    _, record = one(diff["joins"])
    assert record["joined_at"] == first["joined_at"], "still the same presence"
    assert record["meta"] == {"tab": 2}, "the user-level meta is the latest track's"
    assert [(m["ref"], m["tab"]) for m in record["metas"]] == [("tab-2", 2)]
    assert backend.count("room") == 1, "one user, two connections"
    [listed] = backend.list("room")
    assert [(m["ref"], m["tab"]) for m in listed["metas"]] == [("tab-1", 1), ("tab-2", 2)]


def test_closing_one_tab_keeps_the_user(make_backend):
    backend = make_backend("acme")
    backend.track("room", "u1", "tab-1", {"tab": 1})
    backend.track("room", "u1", "tab-2", {"tab": 2})
    diff = backend.untrack("room", "u1", "tab-1")
    assert diff["joins"] == {}
    user, record = one(diff["leaves"])
    assert user == "u1"
    assert [(m["ref"], m["tab"]) for m in record["metas"]] == [("tab-1", 1)]
    assert record["meta"] == {"tab": 2}, "the user's meta after the change"
    assert backend.count("room") == 1
    assert listing(backend, "room") == {"u1": ["tab-2"]}


def test_closing_the_last_tab_removes_the_user(make_backend):
    backend = make_backend("acme")
    joined = backend.track("room", "u1", "tab-1", {"tab": 1})["joins"]["u1"]
    backend.track("room", "u2", "tab-9", {})
    diff = backend.untrack("room", "u1", "tab-1")
    assert diff["joins"] == {}
    assert diff["leaves"] == {"u1": joined}
    assert backend.count("room") == 1
    assert ids(backend.list("room")) == ["u2"]
    # Tracking again is a new presence.
    again = backend.track("room", "u1", "tab-1", {})["joins"]["u1"]
    assert again["joined_at"] >= joined["joined_at"]


def test_untrack_of_an_unknown_ref_is_an_empty_diff(make_backend):
    backend = make_backend("acme")
    backend.track("room", "u1", "tab-1", {})
    assert backend.untrack("room", "u1", "tab-2") == EMPTY
    assert backend.untrack("room", "nobody", "tab-1") == EMPTY
    assert backend.untrack("no-such-room", "u1", "tab-1") == EMPTY
    backend.untrack("room", "u1", "tab-1")
    assert backend.untrack("room", "u1", "tab-1") == EMPTY, "twice"
    assert backend.count("room") == 0


def test_retrack_of_a_ref_is_a_leave_of_the_old_meta_and_a_join_of_the_new(make_backend):
    backend = make_backend("acme")
    first = backend.track("room", "u1", "tab-1", {"v": 1})["joins"]["u1"]
    backend.track("room", "u1", "tab-2", {"v": 2})
    diff = backend.track("room", "u1", "tab-1", {"v": 3})
    _, left = one(diff["leaves"])
    _, joined = one(diff["joins"])
    old_meta, new_meta = left["metas"][0], joined["metas"][0]
    assert (old_meta["ref"], old_meta["v"]) == ("tab-1", 1)
    assert (new_meta["ref"], new_meta["v"]) == ("tab-1", 3)
    assert new_meta["online_at"] == old_meta["online_at"] == first["metas"][0]["online_at"], (
        "online_at is the connection's first track"
    )
    assert left["joined_at"] == joined["joined_at"] == first["joined_at"]
    assert backend.count("room") == 1
    [listed] = backend.list("room")
    assert sorted((m["ref"], m["v"]) for m in listed["metas"]) == [("tab-1", 3), ("tab-2", 2)]


def test_a_meta_that_is_not_a_dict_is_kept_under_value(make_backend):
    backend = make_backend("acme")
    diff = backend.track("room", "u1", 7, ["a", 1])
    record = diff["joins"]["u1"]
    assert record["meta"] == ["a", 1]
    assert record["metas"] == [{"value": ["a", 1], "ref": "7", "online_at": record["joined_at"]}]
    assert backend.track("room", "u2", "r")["joins"]["u2"]["meta"] == {}
    # ref and online_at are tenantry's: they override the meta's own.
    mine = backend.track("room", "u3", "real", {"ref": "fake", "online_at": 0})
    [entry] = mine["joins"]["u3"]["metas"]
    assert entry["ref"] == "real" and entry["online_at"] > 0


def test_applying_the_diffs_gives_the_list(make_backend):
    backend = make_backend("acme")
    state = by_user(backend.list("room"))
    steps = [
        lambda: backend.track("room", "a", "1", {"n": 1}),
        lambda: backend.track("room", "a", "2", {"n": 2}),
        lambda: backend.track("room", "b", "1", {"n": 3}),
        lambda: backend.track("room", "a", "1", {"n": 4}),
        lambda: backend.untrack("room", "a", "2"),
        lambda: backend.untrack("room", "b", "1"),
        lambda: backend.untrack("room", "b", "1"),
        lambda: backend.track("room", "b", "x", {"n": 5}),
        lambda: backend.untrack("room", "a", "1"),
        lambda: backend.track("room", "c", "1", {"n": 6}),
    ]
    for step in steps:
        apply_diff(state, step())
        expected = by_user(backend.list("room"))
        assert {u: sorted(refs(r)) for u, r in state.items()} == {
            u: sorted(refs(r)) for u, r in expected.items()
        }
        for user, record in expected.items():
            assert state[user]["meta"] == record["meta"]
            assert state[user]["joined_at"] == record["joined_at"]
            assert sorted(state[user]["metas"], key=lambda m: m["ref"]) == sorted(
                record["metas"], key=lambda m: m["ref"]
            )


# --- djust's user-keyed calls on top of connections ------------------------


def test_join_and_leave_map_onto_connections(make_backend):
    backend = make_backend("acme")
    record = backend.join("room", "u1", {"n": 1})
    assert refs(record) == [PRESENCE_DEFAULT_REF]
    backend.track("room", "u1", "tab-1", {"n": 2})
    assert listing(backend, "room") == {"u1": sorted([PRESENCE_DEFAULT_REF, "tab-1"])}
    assert backend.count("room") == 1
    # join again: the default connection's meta is replaced, no duplicate.
    assert backend.join("room", "u1", {"n": 3})["joined_at"] == record["joined_at"]
    assert len(backend.list("room")[0]["metas"]) == 2
    # leave removes the user with every connection.
    left = backend.leave("room", "u1")
    assert left["meta"] == {"n": 3}
    assert sorted(refs(left)) == sorted([PRESENCE_DEFAULT_REF, "tab-1"])
    assert backend.list("room") == []
    assert backend.count("room") == 0
    assert backend.leave("room", "u1") is None
    assert backend.untrack("room", "u1", "tab-1") == EMPTY


def test_limits_are_checked_with_clear_errors(make_backend):
    backend = make_backend("acme")
    backend.track("room", "u", "r" * PRESENCE_MAX_REF_LEN, {})
    with pytest.raises(InvalidKey, match=rf"ref is {PRESENCE_MAX_REF_LEN + 1} bytes"):
        backend.track("room", "u", "r" * (PRESENCE_MAX_REF_LEN + 1), {})
    with pytest.raises(InvalidKey, match="ref"):
        backend.untrack("room", "u", "é" * PRESENCE_MAX_REF_LEN)
    with pytest.raises(InvalidKey, match="ref"):
        backend.heartbeat("room", "u", "r" * 300)
    with pytest.raises(InvalidKey, match="user id is 1025 bytes"):
        backend.track("room", "u" * 1025, "tab", {})
    with pytest.raises(InvalidKey):
        backend.track("r" * 1025, "u", "tab", {})
    with pytest.raises(TypeError, match="ref must be a str or an int"):
        backend.track("room", "u", 1.5, {})
    with pytest.raises(TypeError, match="user_id must be a str or an int"):
        backend.untrack("room", None, "tab")


def test_one_user_cannot_hold_more_connections_than_the_cap(make_backend):
    backend = make_backend("acme")
    for i in range(PRESENCE_MAX_CONNECTIONS_PER_USER):
        backend.track("room", "greedy", f"tab-{i}", {})
    with pytest.raises(QuotaExceeded, match=r"greedy.*64 connections.*room"):
        backend.track("room", "greedy", "one-more", {})
    # Re-tracking a held ref, another user, and a freed slot all work.
    assert backend.track("room", "greedy", "tab-0", {"v": 2})["leaves"]
    backend.track("room", "other", "tab-0", {})
    backend.untrack("room", "greedy", "tab-5")
    backend.track("room", "greedy", "one-more", {})
    assert len(listing(backend, "room")["greedy"]) == PRESENCE_MAX_CONNECTIONS_PER_USER


# --- expiry per connection ------------------------------------------------


def test_each_connection_expires_on_its_own(make_backend):
    backend = make_backend("acme", timeout=SHORT)
    backend.track("room", "u1", "quiet", {})
    backend.track("room", "u1", "busy", {})
    backend.track("room", "u2", "quiet", {})

    def only_busy_left():
        assert backend.heartbeat("room", "u1", "busy") in (0, 1)
        return listing(backend, "room") == {"u1": ["busy"]}

    wait_until(only_busy_left)
    assert backend.count("room") == 1
    # What expired is gone: no revival by heartbeat, no leave in untrack.
    assert backend.heartbeat("room", "u1", "quiet") == 0
    assert backend.heartbeat("room", "u2") == 0
    assert backend.untrack("room", "u2", "quiet") == EMPTY


def test_heartbeat_without_ref_refreshes_every_connection(make_backend):
    backend = make_backend("acme", timeout=SHORT)
    backend.track("room", "u1", "a", {})
    backend.track("room", "u1", "b", {})
    backend.track("room", "u2", "a", {})
    assert backend.heartbeat("room", "u1") == 2
    assert backend.heartbeat("room", "u1", "a") == 1
    assert backend.heartbeat("room", "u1", "zzz") == 0

    def u2_gone():
        backend.heartbeat("room", "u1")
        return ids(backend.list("room")) == ["u1"]

    wait_until(u2_gone)
    assert listing(backend, "room") == {"u1": ["a", "b"]}
    wait_until(lambda: backend.count("room") == 0)
    assert backend.list("room") == []


def test_cleanup_stale_counts_expired_connections(make_backend):
    backend = make_backend("acme", timeout=SHORT)
    backend.track("room", "u1", "a", {})
    backend.track("room", "u1", "b", {})
    backend.track("room", "u2", "a", {})
    wait_until(lambda: backend.count("room") == 0)
    assert backend.cleanup_stale("room") in (0, 3)  # count may have cleaned (memory)
    assert backend.cleanup_stale("room") == 0
    assert backend.list("room") == []


# --- isolation --------------------------------------------------------------


def test_tenants_never_see_each_others_connections(make_backend):
    acme, globex = make_backend("acme"), make_backend("globex")
    acme.track("lobby", "u1", "tab", {"t": "acme"})
    diff = globex.track("lobby", "u1", "tab", {"t": "globex"})
    assert diff["leaves"] == {}, "not a re-track of acme's connection"
    assert diff["joins"]["u1"]["tenant_id"] == "globex"
    acme.track("lobby", "u1", "tab-2", {"t": "acme"})
    assert [m["t"] for m in globex.list("lobby")[0]["metas"]] == ["globex"]
    assert globex.untrack("lobby", "u1", "tab-2") == EMPTY
    assert acme.untrack("lobby", "u1", "tab")["leaves"]["u1"]["tenant_id"] == "acme"
    assert globex.count("lobby") == 1
    assert globex.leave("lobby", "u1")["meta"] == {"t": "globex"}
    assert listing(acme, "lobby") == {"u1": ["tab-2"]}


def test_200_connections_of_40_tenants_from_threads_end_exact(make_backend):
    """200 connections (40 tenants × 5, users with 1-3 tabs) tracked from 8
    threads, some untracked again concurrently: each tenant's list is
    exactly what that tenant kept."""
    tenants = [f"t{i:02d}" for i in range(40)]
    backends = {t: make_backend(t) for t in tenants}
    conns = [
        (tenant, f"user{c % 3}", f"tab{c}") for tenant in tenants for c in range(5)
    ]  # users 0, 1, 2 hold tabs {0,3}, {1,4}, {2}
    dropped = {conn for i, conn in enumerate(conns) if i % 4 == 1}
    errors: list[str] = []
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            start.wait(10)
            for tenant, user, ref in conns[n::8]:
                backend = backends[tenant]
                diff = backend.track("room", user, ref, {"tenant": tenant, "ref": ref})
                if diff["joins"][user]["tenant_id"] != tenant:
                    errors.append(f"{tenant}: {diff}")
                for record in backend.list("room"):
                    if any(m["tenant"] != tenant for m in record["metas"]):
                        errors.append(f"{tenant} saw {record}")
                if (tenant, user, ref) in dropped:
                    left = backend.untrack("room", user, ref)
                    if [m["ref"] for m in left["leaves"][user]["metas"]] != [ref]:
                        errors.append(f"{tenant} untrack {ref}: {left}")
        except Exception as exc:  # report, don't hang the join below
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    for tenant in tenants:
        expected: dict[str, list[str]] = {}
        for t, user, ref in conns:
            if t == tenant and (t, user, ref) not in dropped:
                expected.setdefault(user, []).append(ref)
        assert listing(backends[tenant], "room") == {u: sorted(r) for u, r in expected.items()}
        assert backends[tenant].count("room") == len(expected)


def test_router_tracks_in_the_keys_tenant(settings):
    router = get_presence_router()
    TenantAwareMemoryBackend.clear_all()
    with tenant_context("acme"):
        diff = router.track("tenant:acme:doc:1", "u1", "tab", {"n": 1})
        assert diff["joins"]["u1"]["tenant_id"] == "acme"
        assert router.heartbeat("tenant:acme:doc:1", "u1", "tab") == 1
    assert TenantAwareMemoryBackend("acme").count("doc:1") == 1
    assert TenantAwareMemoryBackend("globex").count("doc:1") == 0
    with tenant_context("acme"):
        untracked = router.untrack("tenant:acme:doc:1", "u1", "tab")
    assert untracked["leaves"]["u1"]["metas"][0]["n"] == 1
    TenantAwareMemoryBackend.clear_all()


# --- Redis only -----------------------------------------------------------


def test_redis_keys_are_hash_tagged_and_expire(redis_target):
    import uuid

    prefix = f"test-{uuid.uuid4().hex[:10]}"
    backend = TenantAwareRedisBackend(
        "acme", redis_url=redis_target.url, key_prefix=prefix, timeout=30
    )
    backend.track("room", "u1", "a", {})
    backend.track("room", "u1", "b", {})
    keys = backend.keys_for("room")
    assert sorted(redis_target.keys(f"{prefix}:*")) == sorted(keys)
    assert [k.split(":")[3] for k in keys] == [
        "presence-users",
        "presence-conns",
        "presence-refs",
        "presence-data",
    ]
    client = redis_target.node_client(keys[0])
    for key in keys:
        assert key.startswith(f"{prefix}:{{tenant:acme}}:")
        assert 0 < client.pttl(key) <= 60_000, key
    backend.untrack("room", "u1", "a")
    backend.untrack("room", "u1", "b")
    assert redis_target.keys(f"{prefix}:*") == [], "the last connection takes the room"


def top_level_commands(client, call) -> list[str]:
    """The commands clients sent the server while ``call()`` ran, from the
    slow log with a threshold of 0 (it logs every command a client sends,
    and none of the ones a Lua script runs inside: those carry the address
    ``?:0``)."""
    saved = client.config_get("slowlog-*")
    client.config_set("slowlog-max-len", 1024)
    client.config_set("slowlog-log-slower-than", 0)
    try:
        client.slowlog_reset()
        call()
        entries = client.slowlog_get(1024)
    finally:
        for name, value in saved.items():
            client.config_set(name, value)
    sent = []
    for entry in entries:
        command = entry["command"]
        command = command.decode() if isinstance(command, bytes) else command
        name = command.split()[0].lower()
        address = entry.get("client_address", b"")
        address = address.decode() if isinstance(address, bytes) else address
        if address != "?:0" and name not in ("slowlog", "config"):
            sent.append(name)
    return sent


def test_redis_every_operation_is_one_round_trip(redis_target):
    import uuid

    backend = TenantAwareRedisBackend(
        "acme", redis_url=redis_target.url, key_prefix=f"test-{uuid.uuid4().hex[:10]}"
    )
    client = redis_target.node_client(backend.keys_for("room")[0])
    calls = {
        "track (new user)": lambda: backend.track("room", "u1", "a", {"n": 1}),
        "track (another tab)": lambda: backend.track("room", "u1", "b", {"n": 2}),
        "track (same ref)": lambda: backend.track("room", "u1", "a", {"n": 3}),
        "heartbeat (all)": lambda: backend.heartbeat("room", "u1"),
        "heartbeat (ref)": lambda: backend.heartbeat("room", "u1", "a"),
        "list": lambda: backend.list("room"),
        "count": lambda: backend.count("room"),
        "untrack": lambda: backend.untrack("room", "u1", "a"),
        "join": lambda: backend.join("room", "u2", {}),
        "leave": lambda: backend.leave("room", "u1"),
        "cleanup_stale": lambda: backend.cleanup_stale("room"),
    }
    for call in calls.values():  # scripts loaded, connections open
        call()
    for name, call in calls.items():
        # `list` reads the room with an HGETALL pipelined behind its script
        # (docs/presence.md#redis-key-layout): two commands, one request.
        expected = ["evalsha", "hgetall"] if name == "list" else ["evalsha"]
        assert sorted(top_level_commands(client, call)) == expected, name
        assert requests_read(client, call) == 1, name


def requests_read(client, call) -> int:
    """How many times the server read a request from a client while
    ``call()`` ran (``total_reads_processed``, less the read of the second
    ``INFO``): one per round trip, a pipeline arriving whole in one."""
    before = client.info("stats")["total_reads_processed"]
    call()
    return client.info("stats")["total_reads_processed"] - before - 1


def test_redis_restart_then_connections_work_again(redis_server_factory):
    server = redis_server_factory()
    acme = TenantAwareRedisBackend("acme", redis_url=server.url, connect_timeout=0.5)
    globex = TenantAwareRedisBackend("globex", redis_url=server.url, connect_timeout=0.5)
    acme.track("room", "u1", "tab-1", {"n": 1})
    globex.track("room", "u1", "tab-1", {"n": 1})
    server.stop()
    for call in (
        lambda: acme.track("room", "u1", "tab-2", {}),
        lambda: acme.untrack("room", "u1", "tab-1"),
        lambda: acme.heartbeat("room", "u1", "tab-1"),
        lambda: globex.list("room"),
        lambda: globex.count("room"),
    ):
        with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{server.port}"):
            call()
    server.start()  # same port, empty data, no scripts loaded
    assert acme.heartbeat("room", "u1", "tab-1") == 0, "lost with the data: re-track"
    diff = acme.track("room", "u1", "tab-1", {"n": 2})
    assert diff["leaves"] == {} and diff["joins"]["u1"]["metas"][0]["n"] == 2
    acme.track("room", "u1", "tab-2", {"n": 3})
    assert listing(acme, "room") == {"u1": ["tab-1", "tab-2"]}
    assert globex.list("room") == []
