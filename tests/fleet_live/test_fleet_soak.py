"""The fleet soak (docs/deployment.md#the-fleet-soak): two processes of the
demo on one channels_redis layer, presence, view state and rate limits in
a Redis Cluster with replicas, 40 tenants' clients over HTTP and WebSocket
(each adds items on one process while a board of its tenant on the other
process must receive them: broadcasts and presence diffs across
processes), an attacker tenant trying tests/soak.py's classes meanwhile,
and one master killed in the middle. Figures: test-output/fleet-soak.json."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import pytest

from tests.demo_server import ROOT
from tests.fleet_live.fleet import Fleet, Tab, http
from tests.redis_servers import RedisServer
from tests.soak import Stats, attacker

TENANTS = [f"t{n:03d}" for n in range(40)]
ATTACKER = "t040"
VICTIMS = TENANTS[:10]
#: Concurrent clients, each working rounds until the soak ends.
CLIENTS = 40
#: Seconds a witness waits for a pushed item before it counts as missed.
MISSED_AFTER = 20.0
#: Rounds of load before the kill, and after the recovery.
WARMUP_S, AFTER_S = 8.0, 8.0

pytestmark = pytest.mark.soak


@dataclass
class Soak:
    started: float = field(default_factory=time.monotonic)
    killed: float | None = None
    stats: Stats = field(default_factory=Stats)
    requests: int = 0
    mounts: int = 0
    events: int = 0
    broadcasts: int = 0
    presence_diffs: int = 0
    #: (seconds since the start, what): 503s and error frames.
    refused: list[tuple[float, str]] = field(default_factory=list)
    served: list[float] = field(default_factory=list)
    #: (when, item) of items the witness never showed within MISSED_AFTER.
    missed: list[tuple[float, str]] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.started


def _answer(frame: dict) -> bool:
    return frame.get("type") in ("patch", "html_update", "noop", "error") and (
        frame.get("source") != "broadcast"
    )


async def one_round(fleet: Fleet, soak: Soak, n: int, k: int) -> None:
    """Client ``n``'s round ``k``: its tenant's page on its home process, a
    witness board on the other process, a board on home that adds an item;
    the witness must see the newcomer (presence diff) and the item
    (broadcast)."""
    tenant = TENANTS[n % len(TENANTS)]
    home, away = fleet.ports[n % 2], fleet.ports[(n + 1) % 2]

    def refused(what: str) -> None:
        soak.refused.append((soak.now(), what))

    status, _, body = await http(home, f"{tenant}.localhost:{home}", "/board/")
    soak.requests += 1
    soak.stats.check(tenant, body, f"GET of client {n}")
    if status == 503:
        return refused("503")
    if status != 200:
        soak.wrong.append(f"{tenant} GET: HTTP {status}")
        return
    soak.served.append(soak.now())
    witness, board = Tab(away, tenant, heartbeat=None), Tab(home, tenant, heartbeat=None)
    try:
        if (await witness.open())["type"] != "mount":
            return refused("mount error frame")
        mark = len(witness.frames)
        if (await board.open())["type"] != "mount":
            return refused("mount error frame")
        soak.mounts += 2
        name = f"item-{tenant}-c{n}-{k}"
        sent = await board.send_event("add_item", name=name)
        answer = await board.until(_answer, start=sent)
        if answer["type"] == "error":
            return refused("event error frame")
        soak.events += 1
        # The witness renders the pushed item, or, while the cluster has no
        # master for its tenant's slot, answers the push with an error frame
        # (its view state cannot be saved): both within the timeout.
        try:
            got = await witness.until(
                lambda f: name in json.dumps(f) or f.get("type") == "error",
                timeout=MISSED_AFTER,
                start=mark,
            )
        except AssertionError:
            soak.missed.append((soak.now(), name))
            return
        if got.get("type") == "error":
            return refused("witness error frame")
        soak.broadcasts += 1
        if "Online now" in witness.text(mark):
            soak.presence_diffs += 1
        soak.served.append(soak.now())
    finally:
        for tab in (witness, board):
            soak.stats.check(tenant, tab.text(), f"frames of client {n}")
            await tab.close()


async def client(fleet: Fleet, soak: Soak, n: int, stop: asyncio.Event) -> None:
    k = 0
    while not stop.is_set():
        try:
            await one_round(fleet, soak, n, k)
        except Exception as exc:  # counted: the run reports every failure
            soak.wrong.append(
                f"client {n} round {k} at {soak.now():.1f}s (kill at {soak.killed}): "
                f"{type(exc).__name__}: {str(exc)[:300]}"
            )
        k += 1


def test_fleet_soak(tmp_path, redis_replicated_cluster):
    cluster = redis_replicated_cluster
    cluster.heal()  # a replica for every master, whatever ran before
    layer = RedisServer(tmp_path / "layer").start()
    env = {
        "DEMO_CHANNEL_LAYER_URL": layer.url,
        "DEMO_REDIS_URL": cluster.url,
        "DEMO_RATE_LIMIT_REDIS": "1",
        "DEMO_PRESENCE_TIMEOUT": "10",
        "DEMO_WS_PER_IP": "10000",
        "ASGI_THREADS": "8",
    }
    soak = Soak()
    try:
        with Fleet(tmp_path, env, extra_tenants=len(TENANTS) + 1) as fleet:
            soak.started = time.monotonic()
            attack = asyncio.run(_run(fleet, cluster, soak))
            log = fleet.logs()
            (ROOT / "test-output").mkdir(exist_ok=True)
            (ROOT / "test-output" / "fleet-soak-server-warnings.txt").write_text(
                "\n".join(
                    line
                    for line in log.splitlines()
                    if ("WARNING" in line or "ERROR" in line or "Error" in line)
                    and "rls.bypass" not in line
                    and "HotReload" not in line
                )
            )
    finally:
        layer.stop()
        cluster.heal()

    killed = soak.killed
    last_refusal = max((t for t, _ in soak.refused), default=killed)
    recovered = min((t for t in soak.served if t > last_refusal), default=None)
    early = [(t, what) for t, what in soak.refused if t < killed]
    summary = {
        "processes": len(fleet.ports),
        "tenants": len(TENANTS),
        "requests": soak.requests,
        "websocket_mounts": soak.mounts,
        "events": soak.events,
        "broadcasts_across_processes": soak.broadcasts,
        "broadcasts_missed": len(soak.missed),
        "missed_at": [round(t, 1) for t, _ in soak.missed],
        "presence_diffs_across_processes": soak.presence_diffs,
        "refused_during_failover": len(soak.refused),
        "failover_seconds": round(recovered - killed, 2) if recovered else None,
        "leaks": len(soak.stats.leaks) + len(attack.leaks),
        "cross_tenant_errors": len(attack.accepted),
        "errors": len(soak.wrong) + len(attack.errors),
        "seconds": round(soak.now(), 1),
        "attacker": attack.summary(),
    }
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    (out / "fleet-soak.json").write_text(json.dumps(summary, indent=2))
    print("fleet soak:", summary)

    assert soak.stats.leaks == [], soak.stats.leaks[:10]
    assert soak.wrong == [], soak.wrong[:10]
    assert early == [], early[:10]  # refusals only once the master was gone
    assert attack.accepted == [] and attack.leaks == [] and attack.errors == [], attack
    victims = len(VICTIMS)
    assert attack.origin_handshakes_refused == 2 * victims
    assert attack.no_origin_refused == victims
    assert attack.forbidden_events_refused == victims == attack.events_kept_home
    assert attack.presence_mounts_refused == 3 * victims
    assert attack.presence_kept_home == attack.presence_pages_refused == victims
    assert attack.presence_witnesses == 2 * victims
    assert attack.jobs_refused == 4 * victims and attack.jobs_kept_home == 2 * victims
    assert recovered is not None and soak.refused, "no failover was seen"
    # A push that the witness neither renders nor answers with an error
    # frame: seen about once in 400 under this load (1-2 per run, at any
    # time, not only during the failover); reported, kept under 1 %.
    assert soak.broadcasts > 0 and len(soak.missed) <= soak.events // 100, soak.missed
    assert soak.presence_diffs > 0
    assert "Internal Server Error" not in log


async def _run(fleet: Fleet, cluster, soak: Soak):
    stop = asyncio.Event()
    clients = [asyncio.create_task(client(fleet, soak, n, stop)) for n in range(CLIENTS)]
    # The attacker works on process A while the load runs, before the kill.
    attack = await attacker(fleet.ports[0], ATTACKER, VICTIMS, 0, None)
    await asyncio.sleep(max(0.0, WARMUP_S - soak.now()))
    victim = cluster.owner("djust:{tenant:t000}:x")
    soak.killed = soak.now()
    await asyncio.to_thread(cluster.kill, victim)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        last = max((t for t, _ in soak.refused), default=None)
        if last is not None and soak.now() - last > AFTER_S:
            break
    stop.set()
    await asyncio.gather(*clients)
    return attack
