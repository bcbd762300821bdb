"""Expiry sends diffs (docs/presence.md#expiry-sends-diffs): a connection
that stops heartbeating without an untrack (its process died, its socket
went silent) reaches the room's live views as a leave diff, on both
presence stores, through the process's sweep of the rooms its views
follow, and only to that tenant's views."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from tenantry.channels import presence_group
from tenantry.djust.live_presence import expiry_sweeper
from tests.app import views
from tests.live.test_presence_diffs import (
    ROOM,
    Deliveries,
    hooks,
    open_tab,
    session_cookie,
    store,  # noqa: F401 (the fixture: memory and Redis)
    stored,
    user_of,
)

TIMEOUT = 1.0


async def beating(tabs, stop: asyncio.Event) -> None:
    """Pings ``tabs`` as a browser's client does (the heartbeat)."""
    while not stop.is_set():
        for tab in tabs:
            await tab.socket.send_json_to({"type": "ping"})
        await asyncio.sleep(TIMEOUT / 5)


async def eventually(condition, limit: float = 15) -> None:
    deadline = time.monotonic() + limit
    while not await condition():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.05)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_silent_connections_leave_by_diff(store, settings):  # noqa: F811
    """alice has two tabs, one silent; carol one silent tab; bob and
    alice's other tab ping. Once the silent ones expire, the acme views
    that still hold them (the silent tabs' own, at least) are sent a leave
    diff naming exactly them, the views' copies and hooks follow, and
    globex's view is sent nothing."""
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "PRESENCE_TIMEOUT": TIMEOUT}
    alice, bob, carol = (session_cookie(n) for n in ("alice", "bob", "carol"))
    layer = get_channel_layer()
    with Deliveries(layer) as deliveries:
        watcher = await open_tab("acme.example.com", bob)
        alive = await open_tab("acme.example.com", alice)
        silent = [
            await open_tab("acme.example.com", alice),
            await open_tab("acme.example.com", carol),
        ]
        globex = await open_tab("globex.example.com", alice)
        acme_views = set(layer.groups[presence_group(ROOM, "acme")])
        globex_views = set(layer.groups[presence_group(ROOM, "globex")])
        assert len(acme_views) == 4 and len(globex_views) == 1
        stop = asyncio.Event()
        pinger = asyncio.create_task(beating([watcher, alive, globex], stop))

        def leaves() -> list[tuple[str, dict]]:
            return [
                (channel, message["payload"]["leaves"])
                for channel, message in deliveries.diffs()
                if message["payload"]["leaves"] and not message["payload"]["joins"]
            ]

        async def expired() -> bool:
            return await sync_to_async(stored)("acme") == {user_of(alice): 1, user_of(bob): 1}

        await eventually(expired)
        # The silent tabs' views (they never ping, so no heartbeat re-lists
        # them) can only learn it from the diff; the pinging ones may be
        # re-listed by their heartbeat first (carol's leaving changes the
        # user count) and are then sent nothing.
        # Both silent users' leaves, which may come in separate diffs (the
        # sweeper can expire alice's tab a pass before carol's).
        gone = {user_of(alice), user_of(carol)}

        def both_left() -> bool:
            seen = leaves()
            left = {user for _, payload in seen for user in payload}
            return len({c for c, _ in seen}) >= len(silent) and left >= gone

        await eventually(lambda: _async(both_left()))
        sent = leaves()
        seen_by_bob = hooks("bob")
        # Still beating: what the views hold now.
        assert await peek(watcher) == ("acme", [("alice", 1), ("bob", 1)])
        assert await peek(globex) == ("globex", [("alice", 1)])
        stop.set()
        await pinger

    assert {channel for channel, _ in sent} <= acme_views  # never globex's
    merged: dict[str, set[str]] = {}
    for _channel, payload in sent:
        for user, record in payload.items():
            assert record["tenant_id"] == "acme"
            merged.setdefault(user, set()).update(m["ref"] for m in record["metas"])
    assert set(merged) == {user_of(alice), user_of(carol)}
    assert len(merged[user_of(alice)]) == 1 and len(merged[user_of(carol)]) == 1
    assert ("leave", "acme", ["carol"]) in seen_by_bob
    assert ("leave", "acme", ["alice"]) not in seen_by_bob  # alice stayed
    for tab in (watcher, alive, globex, *silent):
        await tab.close()
    # This test's rooms only: other modules' shared rooms may still be followed.
    assert {key: n for key, n in expiry_sweeper.following().items() if key[1] == ROOM} == {}


async def peek(tab) -> tuple[str, list[tuple[str, int]]]:
    """(tenant, (name, tabs) per user) of the tab's view's own copy of the
    room (its ``peek_presence`` handler records it), whatever frames the
    heartbeats and diffs interleave."""
    views.observed.clear()
    await tab.socket.send_json_to({"type": "event", "event": "peek_presence", "params": {}})

    async def recorded() -> bool:
        return any(phase == "peek" for _v, phase, _t, _u in views.observed)

    await eventually(recorded)
    [(_view, _phase, tenant, users)] = [o for o in views.observed if o[1] == "peek"]
    return tenant, users


async def _async(value: bool) -> bool:
    return value
