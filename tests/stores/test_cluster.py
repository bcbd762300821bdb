"""Redis Cluster as a deployment of every Redis-backed part: a real 3-master
cluster of redis-server processes (tests/redis_servers.py).

The presence and state suites themselves run against the cluster too (their
Redis fixtures are parametrized over a single server and this cluster);
these tests are about the cluster itself: one slot per tenant, tenants spread
over the nodes, seed-node URLs, and a node stopped and restarted mid-run.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from tenantry import BackendUnavailable, TenantAwareRedisBackend, TenantStateRedisBackend


def test_all_keys_of_one_tenant_share_one_slot(redis_cluster):
    prefix = f"slot-{uuid.uuid4().hex[:8]}"
    for tenant in ("acme", "globex", "t-1", "42"):
        state = TenantStateRedisBackend(tenant, redis_url=redis_cluster.url, key_prefix=prefix)
        presence = TenantAwareRedisBackend(tenant, redis_url=redis_cluster.url, key_prefix=prefix)
        state.set("profile", {"a": 1})
        state.set("cart:{7}", b"braces in the name do not move the tag")
        presence.join("room:1", "u1", {})
        keys = [
            state.key_for("profile"),
            state.key_for("cart:{7}"),
            state.index_key,
            state.index_key + "bytes",
            *presence.keys_for("room:1"),
            f"{prefix}:{{tenant:{tenant}}}:view-state:session_liveview_/",
        ]
        slots = {redis_cluster.keyslot(k) for k in keys}
        assert slots == {redis_cluster.keyslot(f"{{tenant:{tenant}}}")}, (tenant, keys)
        # And the keys really are where that slot lives.
        owner = redis_cluster.owner(state.key_for("profile"))
        stored = owner.client().keys(f"{prefix}:{{tenant:{tenant}}}:*")
        assert len(stored) == 8, stored  # 4 state keys (with the byte count), 4 presence keys
        state.delete_tenant()
        presence.leave("room:1", "u1")


def test_tenants_spread_across_the_nodes(redis_cluster):
    prefix = f"spread-{uuid.uuid4().hex[:8]}"
    owners: Counter[int] = Counter()
    tenants = [f"tenant-{i}" for i in range(60)]
    for tenant in tenants:
        backend = TenantStateRedisBackend(tenant, redis_url=redis_cluster.url, key_prefix=prefix)
        backend.set("k", tenant)
        owners[redis_cluster.owner(backend.key_for("k")).port] += 1
    assert set(owners) == {node.port for node in redis_cluster.nodes}, owners
    per_node = [
        len(node.client().keys(f"{prefix}:*")) // 3  # the key, the index, its sizes
        for node in redis_cluster.nodes
    ]
    assert sum(per_node) == len(tenants) and all(n > 0 for n in per_node), per_node
    for tenant in tenants:
        backend = TenantStateRedisBackend(tenant, redis_url=redis_cluster.url, key_prefix=prefix)
        backend.delete_tenant()


def test_one_seed_node_is_enough(redis_cluster):
    """The client learns the other nodes from the one it is given."""
    seed = redis_cluster.nodes[0]
    url = f"redis+cluster://127.0.0.1:{seed.port}"
    prefix = f"seed-{uuid.uuid4().hex[:8]}"
    ports = set()
    for i in range(30):
        backend = TenantStateRedisBackend(f"t{i}", redis_url=url, key_prefix=prefix)
        backend.set("k", i)
        assert backend.get("k") == i
        ports.add(redis_cluster.owner(backend.key_for("k")).port)
        backend.delete_tenant()
    assert len(ports) == 3


def wait_for(call, *, limit=60.0):
    """``call()`` once it stops raising BackendUnavailable (a bound against a
    hang, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return call()
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_node_stopped_mid_run_then_restarted(redis_cluster_factory):
    cluster = redis_cluster_factory()
    tenants = [f"t{i}" for i in range(30)]
    options = {"redis_url": cluster.url, "connect_timeout": 0.5}
    state = {t: TenantStateRedisBackend(t, **options) for t in tenants}
    presence = {t: TenantAwareRedisBackend(t, **options) for t in tenants}
    for t in tenants:
        state[t].set("k", {"tenant": t})
        presence[t].join("room", "u1", {})
    victim = cluster.owner(state["t0"].key_for("k"))
    on_victim = [t for t in tenants if cluster.owner(state[t].key_for("k")) is victim]

    victim.stop()
    for t in on_victim[:5]:
        s, p = state[t], presence[t]
        for call in (
            lambda s=s: s.get("k"),
            lambda s=s: s.set("k", 1),
            lambda s=s: s.incr("n"),
            lambda p=p: p.count("room"),
        ):
            start = time.monotonic()
            with pytest.raises(BackendUnavailable) as info:
                call()
            assert time.monotonic() - start < 15, "a hang, not a fast failure"
            assert "redis+cluster://" in str(info.value)
    assert state["t0"].health_check()["status"] in ("healthy", "unhealthy")

    victim.start()  # same ports; rejoins from its nodes.conf, data gone
    cluster.wait_ok()
    # The same backend objects recover: no restart of the app.
    for t in tenants:
        s, p = state[t], presence[t]
        expected = None if t in on_victim else {"tenant": t}
        assert wait_for(lambda: s.get("k")) == expected  # noqa: B023 (called at once)
        s.set("k", {"again": t})
        assert s.get("k") == {"again": t}
        joined = wait_for(lambda: p.join("room", "u2", {}))  # noqa: B023
        assert joined["tenant_id"] == t
    assert state["t0"].health_check()["status"] == "healthy"
