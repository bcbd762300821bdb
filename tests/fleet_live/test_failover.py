"""A Redis Cluster master killed under load (docs/deployment.md#redis-cluster-failover):
two processes of the demo keep presence, view state and rate limits in a
Redis Cluster of 3 masters with a replica each (the channel layer and the
sessions live elsewhere: channels_redis has no Cluster support). A master
is SIGKILLed while clients of ten tenants load both processes; its replica
is promoted; pages answer 503 and live mounts error frames meanwhile, never
a 500 and never another tenant's data; afterwards presence, state and rate
limits work again without restarting the app, and no key of one tenant is
readable by another. The failover time as the clients saw it goes to
test-output/fleet-failover.json."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from tenantry import TenantAwareRedisBackend, TenantStateRedisBackend
from tests.demo_server import ROOT
from tests.fleet_live.fleet import Fleet, Tab, http
from tests.redis_servers import RedisServer
from tests.soak import Stats

TENANTS = [f"t{n:03d}" for n in range(10)]
#: The demo's API allows this many requests per client address an hour.
API_ALLOWANCE = 4
PRESENCE_TIMEOUT = 5.0

pytestmark = pytest.mark.soak


@pytest.fixture(scope="module")
def cluster_fleet(tmp_path_factory, redis_replicated_cluster):
    workdir = tmp_path_factory.mktemp("fleet-failover")
    layer = RedisServer(workdir / "layer").start()
    env = {
        "DEMO_CHANNEL_LAYER_URL": layer.url,
        "DEMO_REDIS_URL": redis_replicated_cluster.url,
        "DEMO_RATE_LIMIT_REDIS": "1",
        "DEMO_API_RATE": f"{API_ALLOWANCE}/h",
        "DEMO_PRESENCE_TIMEOUT": str(PRESENCE_TIMEOUT),
        "DEMO_WS_PER_IP": "1000",
        "ASGI_THREADS": "8",
    }
    try:
        with Fleet(workdir, env, extra_tenants=len(TENANTS)) as fleet:
            fleet.cluster = redis_replicated_cluster
            yield fleet
    finally:
        layer.stop()


class Outcomes:
    """What the clients saw, with when (seconds since the kill)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.killed: float | None = None
        self.seen = Stats()
        self.ok: list[float] = []
        self.refused: list[tuple[float, str]] = []  # 503s and error frames
        self.wrong: list[str] = []  # anything else: a 500, an exception...

    def at(self) -> float:
        return time.monotonic() - (self.killed or self.started)


async def client(fleet: Fleet, seen: Outcomes, n: int, stop: asyncio.Event) -> None:
    """Pages and live mounts of tenant ``n % 10`` on alternating processes,
    each mount adding an item, until ``stop``."""
    tenant = TENANTS[n % len(TENANTS)]
    k = 0
    while not stop.is_set():
        port = fleet.ports[(n + k) % len(fleet.ports)]
        k += 1
        try:
            status, _, body = await http(port, f"{tenant}.localhost:{port}", "/board/")
            seen.seen.check(tenant, body, f"GET by {n}")
            if status == 200:
                seen.ok.append(seen.at())
            elif status == 503:
                seen.refused.append((seen.at(), "503"))
            else:
                seen.wrong.append(f"{tenant} GET: HTTP {status}: {body[:200]}")
            tab = Tab(port, tenant, heartbeat=None)
            frame = await tab.open()
            if frame["type"] == "mount":
                name = f"item-{tenant}-f{n}-{k}"
                mark = await tab.send_event("add_item", name=name)
                answer = await tab.until(
                    lambda f: (
                        f.get("type") in ("patch", "html_update", "noop", "error")
                        and f.get("source") != "broadcast"
                    ),
                    start=mark,
                )
                if answer["type"] == "error":
                    seen.refused.append((seen.at(), "event error frame"))
                else:
                    seen.ok.append(seen.at())
            elif frame["type"] == "error":
                seen.refused.append((seen.at(), "mount error frame"))
            else:
                seen.wrong.append(f"{tenant} mount: {frame}")
            seen.seen.check(tenant, tab.text(), f"frames of {n}")
            await tab.close()
        except Exception as exc:  # counted: the run reports every failure
            seen.wrong.append(f"{tenant} client {n}: {type(exc).__name__}: {exc}")
        await asyncio.sleep(0.05)


def test_a_master_killed_under_load_fails_over_without_a_restart(cluster_fleet):
    fleet, cluster = cluster_fleet, cluster_fleet.cluster
    # The master holding the first tenant's keys (its hash tag's slot).
    victim = cluster.owner("djust:{tenant:t000}:x")
    affected = [t for t in TENANTS if cluster.owner(f"djust:{{tenant:{t}}}:x") is victim]
    seen = Outcomes()

    async def run() -> None:
        stop = asyncio.Event()
        clients = [asyncio.create_task(client(fleet, seen, n, stop)) for n in range(10)]
        await asyncio.sleep(3)  # load before the kill
        before = len(seen.ok)
        seen.killed = time.monotonic()
        await asyncio.to_thread(cluster.kill, victim)
        # Until the cluster has promoted the replica and the clients have
        # been served for 3 s in a row since the last refusal.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            last = max((t for t, _ in seen.refused), default=0.0)
            if seen.refused and seen.at() - last > 3 and any(t > last for t in seen.ok):
                break
        stop.set()
        await asyncio.gather(*clients)
        assert before > 0

    asyncio.run(run())
    last_refusal = max(t for t, _ in seen.refused)
    recovered = min(t for t in seen.ok if t > last_refusal)
    first_refusal = min(t for t, _ in seen.refused)
    figures = {
        "served": len(seen.ok),
        "refused_503_or_error_frame": len(seen.refused),
        "wrong": len(seen.wrong),
        "leaks": len(seen.seen.leaks),
        "first_refusal_after_kill_s": round(first_refusal, 2),
        "failover_seconds": round(recovered, 2),
        "node_timeout_ms": cluster.NODE_TIMEOUT_MS,
        "affected_tenants": len(affected),
    }

    assert seen.wrong == [], seen.wrong[:10]
    assert seen.seen.leaks == [], seen.seen.leaks[:10]
    assert {kind for _, kind in seen.refused} <= {"503", "mount error frame", "event error frame"}
    assert victim not in cluster.primaries()
    assert "Traceback" not in _server_errors(fleet.logs())

    # After the promotion, with the same processes: presence, state and
    # rate limits of a tenant on the promoted replica.
    tenant = affected[0]
    asyncio.run(_writes_after_promotion(fleet, tenant))
    figures.update(_isolation_of_every_key(cluster, TENANTS))
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    (out / "fleet-failover.json").write_text(json.dumps(figures, indent=2))
    print("failover:", figures)
    cluster.heal()


def _server_errors(log: str) -> str:
    """Server-side 500s (Django logs "Internal Server Error")."""
    return "\n".join(line for line in log.splitlines() if "Internal Server Error" in line)


async def _writes_after_promotion(fleet: Fleet, tenant: str) -> None:
    a, b = fleet.ports
    tabs = [Tab(a, tenant), Tab(b, tenant)]
    for tab in tabs:
        assert (await tab.open())["type"] == "mount", tab.mount
    await tabs[1].showing("Online now (2)")
    presence = TenantAwareRedisBackend(
        tenant, redis_url=fleet.env["DEMO_REDIS_URL"], timeout=PRESENCE_TIMEOUT
    )
    assert len(presence.list("board")) == 2
    name = f"item-{tenant}-after"
    await tabs[0].send_event("add_item", name=name)
    await tabs[1].showing(name)
    for tab in tabs:
        await tab.close()
    # Rate limits: a fresh client address gets its allowance, then 429,
    # from either process (one count in the cluster).
    statuses = []
    for k in range(API_ALLOWANCE + 2):
        port = fleet.ports[k % 2]
        status, _, body = await http(
            port, f"{tenant}.localhost:{port}", "/api/items/", {"X-Forwarded-For": "10.9.9.9"}
        )
        statuses.append(status)
        if status == 200:
            assert json.loads(body)["tenant"] == tenant
    assert statuses == [200] * API_ALLOWANCE + [429, 429], statuses
    state = TenantStateRedisBackend(tenant, redis_url=fleet.env["DEMO_REDIS_URL"])
    state.set("after-failover", {"tenant": tenant})
    assert state.get("after-failover") == {"tenant": tenant}


TAG = re.compile(r"\{tenant:([^}]+)\}")


def _isolation_of_every_key(cluster, tenants: list[str]) -> dict[str, int]:
    """Every key of the cluster is under the hash tag of a tenant of this
    run; the same state name written by every tenant reads back as each
    tenant's own; every tenant's presence lists only its own visitors."""
    keys = [k for k in cluster.keys("*") if TAG.search(k) or not k.startswith("asgi")]
    owners = {}
    for key in keys:
        tag = TAG.search(key)
        assert tag is not None, key
        owners[key] = tag.group(1)
    assert set(owners.values()) <= set(tenants), set(owners.values())
    url = cluster.url
    for tenant in tenants:
        TenantStateRedisBackend(tenant, redis_url=url).set("probe", {"tenant": tenant})
    for tenant in tenants:
        assert TenantStateRedisBackend(tenant, redis_url=url).get("probe") == {"tenant": tenant}
        records = TenantAwareRedisBackend(tenant, redis_url=url).list("board")
        assert {r["tenant_id"] for r in records} <= {tenant}
    views = [k for k in owners if ":view-state:" in k]
    return {
        "keys_checked": len(keys),
        "tenants_with_keys": len(set(owners.values())),
        "saved_views": len(views),
    }
