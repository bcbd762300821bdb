"""Several ASGI processes of one app (docs/deployment.md): two daphne
processes of the demo on free loopback ports, sharing one database, one
Redis channel layer (channels_redis, both ``RedisChannelLayer`` and
``RedisPubSubChannelLayer``) and Redis presence, view state and rate
limits. A change made through one process reaches the views mounted on
the other, only within its tenant; a user's tabs on different processes
are one presence; a process killed with SIGKILL leaves its rooms by diffs
(docs/presence.md#expiry-sends-diffs)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tenantry import TenantAwareRedisBackend
from tests.demo_server import ROOT
from tests.fleet_live.fleet import Fleet, Tab, visitor
from tests.redis_servers import RedisServer

#: Short, so a killed process's connections expire within seconds (the
#: tabs below ping every second, as djust's client does every 25 s), and
#: long enough that a starved machine's late pings expire none.
PRESENCE_TIMEOUT = 5.0
#: How long a tab that must not get something is watched.
QUIET = 1.5

pytestmark = pytest.mark.soak


@pytest.fixture(scope="module", params=["core", "pubsub"])
def fleet(request, tmp_path_factory):
    """Two processes of the demo on one channel layer of ``request.param``'s
    kind (a plain Redis: channels_redis has no Cluster support) and one
    Redis for presence, state and rate limits."""
    workdir = tmp_path_factory.mktemp(f"fleet-{request.param}")
    layer = RedisServer(workdir / "layer").start()
    data = RedisServer(workdir / "data").start()
    env = {
        "DEMO_CHANNEL_LAYER_URL": layer.url,
        "DEMO_CHANNEL_LAYER": request.param,
        "DEMO_REDIS_URL": data.url,
        "DEMO_RATE_LIMIT_REDIS": "1",
        "DEMO_PRESENCE_TIMEOUT": str(PRESENCE_TIMEOUT),
        "DEMO_WS_PER_IP": "1000",
    }
    try:
        with Fleet(workdir, env) as running:
            running.data = data
            yield running
    finally:
        layer.stop()
        data.stop()


def presence(fleet, tenant: str) -> dict[str, int]:
    """The board room as the shared store holds it: user → connections."""
    backend = TenantAwareRedisBackend(tenant, redis_url=fleet.data.url, timeout=PRESENCE_TIMEOUT)
    return {r["id"]: len(r["metas"]) for r in backend.list("board")}


async def quiet_since(tab: Tab, mark: int) -> str:
    """What ``tab`` received from ``mark`` on, after a round trip of its own
    (its ping answered) and :data:`QUIET` seconds."""
    await asyncio.sleep(QUIET)
    await tab.ping()
    return tab.text(mark)


def test_broadcasts_reach_the_other_process_only_in_their_tenant(fleet):
    """An item added on a board of process A appears on the same tenant's
    boards of process B (djust's push_to_view through the channel layer),
    and the other way round; another tenant's board on either process never
    gets it (docs/broadcasts.md, docs/deployment.md#the-channel-layer)."""
    a, b = fleet.ports

    async def run() -> None:
        acme_a, acme_b = Tab(a, "acme"), Tab(b, "acme")
        globex_a, globex_b = Tab(a, "globex"), Tab(b, "globex")
        tabs = [acme_a, acme_b, globex_a, globex_b]
        for tab in tabs:
            assert (await tab.open())["type"] == "mount", tab.mount
        marks = {id(tab): len(tab.frames) for tab in tabs}
        for sender, receiver, name in (
            (acme_a, acme_b, f"item-acme-from-a-{fleet.count}"),
            (acme_b, acme_a, f"item-acme-from-b-{fleet.count}"),
        ):
            await sender.send_event("add_item", name=name)
            await sender.showing(name)
            frame = await receiver.showing(name)
            assert frame.get("source") == "broadcast", frame
        for tab in (globex_a, globex_b):
            seen = await quiet_since(tab, marks[id(tab)])
            assert "item-acme" not in seen
        for tab in tabs:
            await tab.close()

    asyncio.run(run())


def test_presence_diffs_cross_processes_only_within_their_tenant(fleet):
    """A visitor arriving on process A shows on the tenant's board on
    process B (a join diff), and leaving takes it away (a leave diff);
    the other tenant's board on B lists neither."""
    a, b = fleet.ports

    async def run() -> None:
        watcher, other = Tab(b, "acme"), Tab(b, "globex")
        for tab in (watcher, other):
            assert (await tab.open())["type"] == "mount"
        assert "Online now (1)" in json.dumps(watcher.mount)
        marks = (len(watcher.frames), len(other.frames))
        arriving = Tab(a, "acme", await visitor(a, "acme"))
        assert (await arriving.open())["type"] == "mount"
        await watcher.showing("Online now (2)", start=marks[0])
        (name,) = _visitor_names(arriving.mount) - _visitor_names(watcher.mount)
        assert name in watcher.text(marks[0])
        await arriving.close()
        await watcher.showing("Online now (1)", start=marks[0])
        seen = await quiet_since(other, marks[1])
        assert name not in seen and "Online now (2)" not in seen
        assert "Online now (1)" in json.dumps(other.mount)
        for tab in (watcher, other):
            await tab.close()

    asyncio.run(run())


async def eventually(condition, timeout: float = 30) -> None:
    """Waits until ``condition()`` holds (a closed socket's untrack runs on
    the server after the client saw the close)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


def _visitor_names(frame: dict) -> set[str]:
    import re

    return set(re.findall(r"Visitor [0-9a-f]{4}", json.dumps(frame)))


def test_one_users_tabs_on_two_processes_are_one_presence(fleet):
    """One browser session with a tab on each process: one user with two
    connections in the shared store, "2 tabs" on both boards; closing the
    tab on A leaves the user present with one tab, shown on B."""
    a, b = fleet.ports

    async def run() -> None:
        cookie = await visitor(a, "acme")
        on_a, on_b = Tab(a, "acme", cookie), Tab(b, "acme", cookie)
        assert (await on_a.open())["type"] == "mount"
        mark = len(on_a.frames)
        assert (await on_b.open())["type"] == "mount"
        assert "(2 tabs)" in json.dumps(on_b.mount)
        await on_a.showing("(2 tabs)", start=mark)
        user = "anon_" + cookie.split("sessionid=", 1)[1].split(";", 1)[0]
        assert presence(fleet, "acme")[user] == 2
        mark = len(on_b.frames)
        await on_a.close()
        await on_b.showing("(1 tab)", start=mark)
        assert presence(fleet, "acme")[user] == 1
        await on_b.close()
        await eventually(lambda: user not in presence(fleet, "acme"))

    asyncio.run(run())


def test_a_killed_process_leaves_its_rooms_by_diffs(fleet):
    """Process A is killed with SIGKILL (no disconnect, no untrack) while it
    holds the second tab of two visitors whose first tabs are on process B.
    Within the presence timeout plus the sweep interval
    (docs/presence.md#expiry-sends-diffs) B's board shows both visitors
    down to one tab. No user leaves, so only the expiry's leave diffs can
    show it (a change in the number of users would also be caught by the
    heartbeat's re-list; tests/fleet_live/test_expiry_diffs.py follows a
    user's last connection). The other tenant's board on B sees none of it.
    A new process then takes A's place."""
    a, b = fleet.ports
    figures: dict[str, float] = {}

    async def run() -> None:
        first, second = await visitor(b, "acme"), await visitor(b, "acme")
        watcher, keeper, other = Tab(b, "acme", first), Tab(b, "acme", second), Tab(b, "globex")
        for tab in (watcher, keeper, other):
            assert (await tab.open())["type"] == "mount"
        doomed = [Tab(a, "acme", first), Tab(a, "acme", second)]
        for tab in doomed:
            assert (await tab.open())["type"] == "mount"
        await watcher.until(lambda f: json.dumps(f).count("(2 tabs)") >= 1)
        await eventually(lambda: sorted(presence(fleet, "acme").values()) == [2, 2])
        await watcher.ping()
        marks = (len(watcher.frames), len(other.frames))

        def both_down(_frame: dict) -> bool:
            return watcher.text(marks[0]).count("(1 tab)") >= 2

        killed = time.monotonic()
        fleet.kill(0)
        await watcher.until(both_down, timeout=10 * PRESENCE_TIMEOUT, start=marks[0])
        figures["leave_diff_seconds"] = time.monotonic() - killed
        # The frames count "(1 tab)" across re-renders (one visitor's line can
        # be counted twice): the store settles on one tab each.
        await eventually(lambda: sorted(presence(fleet, "acme").values()) == [1, 1])
        assert "Online now (1)" not in watcher.text(marks[0])  # nobody left
        seen = await quiet_since(other, marks[1])
        acme_visitors = _visitor_names({"frames": watcher.frames})
        assert len(acme_visitors) == 2
        assert not any(name in seen for name in acme_visitors)
        for tab in (watcher, keeper, other, *doomed):
            await tab.close()

    try:
        asyncio.run(run())
    finally:
        fleet.replace(0)
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    figures["presence_timeout"] = PRESENCE_TIMEOUT
    (out / f"fleet-process-death-{fleet.env['DEMO_CHANNEL_LAYER']}.json").write_text(
        json.dumps(figures, indent=2)
    )
    print("process death:", figures)

    async def after() -> None:  # the replacement serves live views again
        tab = Tab(fleet.ports[0], "acme")
        assert (await tab.open())["type"] == "mount"
        await tab.close()

    asyncio.run(after())
