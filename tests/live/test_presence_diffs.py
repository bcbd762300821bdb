"""Presence per connection, delivered as diffs (docs/presence.md): tenantry's
``TenantPresenceMixin`` on real djust live views over WebSocket (djust's
consumer behind the test project's ASGI router, the in-memory channel
layer), on both presence stores.

A user is a browser session (djust's ``anon_<session key>``): two tabs of
one user are two WebSockets sending the same session cookie."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.contrib.sessions.backends.signed_cookies import SessionStore

from tenantry import (
    TenantAwareMemoryBackend,
    TenantAwareRedisBackend,
    get_tenant_presence_backend,
)
from tenantry.channels import presence_group
from tenantry.live_presence import DIFF_HANDLER
from tests.app import views
from tests.demo_server import demo_server
from tests.live_client import LiveClient
from tests.soak import live_view

ROOM_VIEW = "tests.app.views.LiveRoomView"
ROOM = "room:lobby"
#: How long a tab must stay silent to count as "never got it".
QUIET = 0.5


def session_cookie(visitor: str) -> str:
    """A browser session of its own: the cookie a browser would send."""
    session = SessionStore()
    session["visitor"] = visitor
    session.save()
    return f"{django_settings.SESSION_COOKIE_NAME}={session.session_key}"


def user_of(cookie: str) -> str:
    return f"anon_{cookie.split('=', 1)[1]}"


@pytest.fixture(params=["memory", "redis"])
def store(request, settings):
    """Both presence stores, djust's presence backend either way."""
    config = {"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"}
    if request.param == "redis":
        redis_server = request.getfixturevalue("redis_server")
        config.update(
            PRESENCE_BACKEND="tenant_redis",
            PRESENCE_REDIS_URL=redis_server.url,
            TENANT_KEY_PREFIX=f"diffs-{uuid.uuid4().hex[:8]}",
        )
    settings.DJUST_CONFIG = config
    views.observed.clear()
    return request.param


class Deliveries:
    """Counts what the channel layer hands to each channel: every message
    sent to a group reaches each member through ``send``."""

    def __init__(self, layer) -> None:
        self.layer = layer
        self.original = layer.send
        self.sent: list[tuple[str, dict]] = []

    async def send(self, channel, message):
        self.sent.append((channel, message))
        return await self.original(channel, message)

    def diffs(self) -> list[tuple[str, dict]]:
        return [(c, m) for c, m in self.sent if m.get("handler") == DIFF_HANDLER]

    def __enter__(self):
        self.layer.send = self.send
        return self

    def __exit__(self, *exc):
        del self.layer.send


async def open_tab(host: str, cookie: str) -> LiveClient:
    tab = LiveClient(host, cookie=cookie)
    frame = await tab.mount(ROOM_VIEW, "/room/")
    assert frame["type"] == "mount", frame
    return tab


async def frames(tab: LiveClient, quiet: float = QUIET) -> list[dict]:
    """Every frame the tab got until it stayed silent for ``quiet``."""
    got = []
    while not await tab.socket.receive_nothing(timeout=quiet):
        got.append(await tab.socket.receive_json_from())
    return got


async def held(tab: LiveClient, tenant: str) -> list[tuple[str, int]]:
    """What the tab's view holds: (name, tabs) per user, from its own copy."""
    views.observed.clear()
    await tab.event("peek_presence")
    [(_view, _phase, seen_tenant, users)] = views.observed
    assert seen_tenant == tenant
    return users


def hooks(seen_by: str) -> list[tuple[str, str, list[str]]]:
    """The presence hooks the views of ``seen_by`` ran (join/leave, tenant, who)."""
    suffix = f" seen by {seen_by}"
    return [
        (phase.removesuffix(suffix), tenant, who)
        for view, phase, tenant, who in views.observed
        if view == "LiveRoomView" and phase.endswith(suffix)
    ]


def stored(tenant: str) -> dict[str, int]:
    """The store's view: user id → live connections."""
    return {r["id"]: len(r["metas"]) for r in get_tenant_presence_backend(tenant).list(ROOM)}


# --- live views ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_two_tabs_are_one_user_until_the_last_closes(store):
    alice, bob = session_cookie("alice"), session_cookie("bob")
    watcher = await open_tab("acme.example.com", bob)
    # The same room and the same user (same cookie) in another tenant.
    globex = await open_tab("globex.example.com", alice)
    assert await frames(watcher) == []

    views.observed.clear()
    first = await open_tab("acme.example.com", alice)
    assert "alice=1" in str(await frames(watcher))
    second = await open_tab("acme.example.com", alice)
    assert "alice=2" in str(await frames(watcher))
    # The watcher's hook saw alice arrive once (a second tab is no join);
    # each of alice's tabs saw its own join, as djust's does.
    assert hooks("bob") == [("join", "acme", ["alice"])]
    assert hooks("alice") == [("join", "acme", ["alice"])] * 2
    assert await held(watcher, "acme") == [("alice", 2), ("bob", 1)]
    assert await held(second, "acme") == [("alice", 2), ("bob", 1)]
    assert await sync_to_async(stored)("acme") == {user_of(alice): 2, user_of(bob): 1}
    [record] = [
        r for r in get_tenant_presence_backend("acme").list(ROOM) if r["id"] == user_of(alice)
    ]
    assert record["meta"]["name"] == "alice"
    assert len({m["ref"] for m in record["metas"]}) == 2

    # One tab closes: alice stays, with one connection.
    await first.close()
    assert "alice=1" in str(await frames(watcher))
    assert await held(watcher, "acme") == [("alice", 1), ("bob", 1)]
    assert await sync_to_async(stored)("acme") == {user_of(alice): 1, user_of(bob): 1}

    # The last one closes: alice leaves.
    views.observed.clear()
    await second.close()
    assert "alice" not in str(await frames(watcher))
    assert hooks("bob") == [("leave", "acme", ["alice"])]
    assert await held(watcher, "acme") == [("bob", 1)]
    assert await sync_to_async(stored)("acme") == {user_of(bob): 1}

    # Globex's alice was never touched, and globex's view got nothing.
    assert await frames(globex) == []
    assert await held(globex, "globex") == [("alice", 1)]
    assert await sync_to_async(stored)("globex") == {user_of(alice): 1}
    await watcher.close()
    await globex.close()
    assert await sync_to_async(stored)("acme") == {}
    assert await sync_to_async(stored)("globex") == {}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("subscribers", [1, 6])
async def test_a_join_costs_one_message_per_subscriber_and_no_relist(store, subscribers):
    layer = get_channel_layer()
    cookies = [session_cookie(f"u{i}") for i in range(subscribers)]
    tabs = [await open_tab("acme.example.com", cookie) for cookie in cookies]
    other = await open_tab("globex.example.com", session_cookie("g"))
    for tab in (*tabs, other):
        await frames(tab)
    group = presence_group(ROOM, "acme")
    members = set(layer.groups[group])
    assert len(members) == subscribers

    with Deliveries(layer) as deliveries:
        newcomer_cookie = session_cookie("new")
        newcomer = await open_tab("acme.example.com", newcomer_cookie)
        received = [await frames(tab) for tab in tabs]
    # One diff message per view in the room (the newcomer's own copy is
    # dropped unread: it applied its join itself).
    diffs = deliveries.diffs()
    room = set(layer.groups[group])
    assert len(room) == subscribers + 1
    assert sorted(channel for channel, _ in diffs) == sorted(room)
    [payload] = {str(m["payload"]) for _, m in diffs}
    # The change, not the room: the newcomer's user id, none of the others'.
    assert user_of(newcomer_cookie) in payload
    assert not any(user_of(cookie) in payload for cookie in cookies)
    # One frame per subscriber, and nothing else reached any channel: no
    # "presence changed, re-list" push.
    assert [len(got) for got in received] == [1] * subscribers
    assert all("new=1" in str(got) for got in received)
    assert [m.get("handler") for _, m in deliveries.sent] == [DIFF_HANDLER] * len(diffs)
    assert await frames(newcomer) == []
    assert await frames(other) == []
    for tab in (*tabs, newcomer, other):
        await tab.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_tabs_of_many_tenants_opening_and_closing_at_once_end_exact(store):
    """8 tenants × 2 users × 2 tabs open concurrently, then one tab of each
    user and every tab of one user per tenant close concurrently: every
    tenant's store and every open view's copy hold exactly that tenant's
    remaining users and tabs."""
    tenants = [f"t{i}" for i in range(8)]
    cookies = {(t, u): session_cookie(f"{t}-{u}") for t in tenants for u in ("ann", "ben")}
    layout = [(t, u) for t in tenants for u in ("ann", "ben") for _tab in range(2)]
    tabs = await asyncio.gather(*(open_tab(f"{t}.example.com", cookies[t, u]) for t, u in layout))
    # Close: ann's first tab and both of ben's tabs in every tenant.
    closing, staying = [], []
    seen: set = set()
    for (t, u), tab in zip(layout, tabs, strict=True):
        first_of_ann = u == "ann" and (t, u) not in seen
        seen.add((t, u))
        (closing if u == "ben" or first_of_ann else staying).append((t, tab))
    await asyncio.gather(*(tab.close() for _t, tab in closing))
    await asyncio.gather(*(frames(tab) for _t, tab in staying))  # the diffs have landed
    for t, tab in staying:
        assert await held(tab, t) == [(f"{t}-ann", 1)], t
    for t in tenants:
        assert await sync_to_async(stored)(t) == {user_of(cookies[t, "ann"]): 1}, t
    await asyncio.gather(*(tab.close() for _t, tab in staying))


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_client_cannot_send_a_diff(store):
    tab = await open_tab("acme.example.com", session_cookie("alice"))
    fake = {"joins": {"ghost": {"id": "ghost", "meta": {"name": "ghost"}, "metas": [{}]}}}
    frame = await tab.event(DIFF_HANDLER, **fake)
    assert frame["type"] == "error"
    assert await held(tab, "acme") == [("alice", 1)]
    await tab.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_heartbeat_resyncs_a_view_that_missed_changes(store):
    """Connections that came or went without a diff (another process died,
    or djust dropped a push from a busy session's queue) show up at the
    view's next heartbeat: the user count differs, so it lists once."""
    tab = await open_tab("acme.example.com", session_cookie("alice"))
    backend = await sync_to_async(get_tenant_presence_backend)("acme")
    await sync_to_async(backend.track)(ROOM, "ghost", "ref-1", {"name": "ghost"})
    assert await held(tab, "acme") == [("alice", 1)]  # no diff was sent
    await tab.socket.send_json_to({"type": "ping"})
    got = await frames(tab)
    assert {"type": "pong"} in got and "ghost=1" in str(got)
    assert await held(tab, "acme") == [("alice", 1), ("ghost", 1)]

    await sync_to_async(backend.untrack)(ROOM, "ghost", "ref-1")
    await tab.socket.send_json_to({"type": "ping"})
    assert "ghost" not in str([f for f in await frames(tab) if f.get("type") != "pong"])
    assert await held(tab, "acme") == [("alice", 1)]
    await tab.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_connections_the_store_lost_come_back_at_their_heartbeat(store, settings):
    """The store forgets everything (Redis restarted without persistence;
    here its keys are deleted, or the memory store cleared): each live
    connection is tracked again at its next heartbeat, and the room's views
    end up right."""
    alice, bob = session_cookie("alice"), session_cookie("bob")
    a, b = await open_tab("acme.example.com", alice), await open_tab("acme.example.com", bob)
    await frames(a)
    await frames(b)

    def forget() -> None:
        if store == "memory":
            TenantAwareMemoryBackend.clear_tenant("acme")
        else:
            client = redis.Redis.from_url(settings.DJUST_CONFIG["PRESENCE_REDIS_URL"])
            client.delete(*client.keys(f"{settings.DJUST_CONFIG['TENANT_KEY_PREFIX']}:*"))

    await sync_to_async(forget)()
    assert await sync_to_async(stored)("acme") == {}
    for tab in (a, b):
        await tab.socket.send_json_to({"type": "ping"})
        await frames(tab)
    assert await sync_to_async(stored)("acme") == {user_of(alice): 1, user_of(bob): 1}
    for tab in (a, b):
        await frames(tab)
        assert await held(tab, "acme") == [("alice", 1), ("bob", 1)]
    await a.close()
    await b.close()


# --- a server that dies ----------------------------------------------------------


def test_a_killed_servers_connections_leave_within_the_timeout(tmp_path, redis_server):
    """The demo under daphne, presence in Redis with a 2 s timeout: a live
    board's connection is in the room; the server is killed (SIGKILL: no
    disconnect, no untrack) and the connection is gone from the room once
    the timeout has passed."""
    timeout = 2.0
    board = TenantAwareRedisBackend("acme", redis_url=redis_server.url, timeout=timeout)

    def users() -> set[str]:
        return {r["id"] for r in board.list("board")}

    started: list = []
    env = {"DEMO_REDIS_URL": redis_server.url, "DEMO_PRESENCE_TIMEOUT": str(timeout)}
    with demo_server(tmp_path, env=env, started=started) as port:
        before = users()

        async def connect_then_kill() -> set[str]:
            async with live_view(port, "acme") as (socket, frame):
                assert frame["type"] == "mount", frame
                await socket.send('{"type": "ping"}')  # the heartbeat: now fresh
                while '"pong"' not in await asyncio.wait_for(socket.recv(), 30):
                    pass
                present = users() - before
                started[0].kill()
                started[0].wait()
                return present

        present = asyncio.run(connect_then_kill())
        assert len(present) == 1
        assert started[0].returncode == -9
        time.sleep(timeout + 0.5)
        assert users() & present == set()


def test_a_view_with_no_tenant_refuses_to_track_and_leaves_no_trace(store):
    """docs/presence.md: the mixin keeps rooms per tenant only. With no
    tenant bound (an optional-tenant page on the main domain) it refuses
    loudly, naming the view, instead of tracking in the space of callers
    without a tenant or failing on an internal id."""
    from tenantry import TenantNotSetError
    from tenantry.presence import get_presence_router

    view = views.LiveRoomView()
    view._websocket_session_id = "tab-1"  # as djust's consumer sets it on mount
    with pytest.raises(TenantNotSetError, match=r"LiveRoomView.*room:lobby"):
        view.track_presence(meta={"name": "nobody"})
    with pytest.raises(TenantNotSetError, match="LiveRoomView"):
        view.subscribe_presence()
    assert view._presence_ref is None and view.presences == []
    assert get_presence_router().list(ROOM) == []
