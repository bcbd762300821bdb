"""Shared live rooms on granted rows (docs/collaboration.md#live-rooms):
acme's users and globex's users, each on their own host and tenant, in the
live room of a board acme granted to globex; real djust over WebSocket
(channels' communicator, the test project's ASGI router), on both presence
stores. initech (no grant) and globex without or after its grant are kept
out of the room's presence and broadcasts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
import pytest_asyncio
import redis
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.sessions.backends.signed_cookies import SessionStore

from tenantry import (
    InvalidKey,
    InvalidTenantId,
    TenantMismatchError,
    TenantNotSetError,
    get_tenant_presence_backend,
    sharing,
    tenant_context,
)
from tenantry.channels import presence_group, tenant_group
from tenantry.groups import shared_room_group
from tenantry.presence import get_presence_router, get_shared_room_backend
from tenantry.shared_rooms import shared_room
from tests.app import shared_views
from tests.collaboration.models import Board
from tests.live_client import OPENED, Tab, disconnect_opened

VIEW = "tests.app.shared_views.SharedBoardView"
#: Seconds: short, so the tests wait little for a grant's end to reach a socket.
INTERVAL = 0.4
#: How long a tab must stay silent to count as "never got it".
QUIET = 0.5


@pytest.fixture(params=["memory", "redis"])
def store(request, settings, tenants):
    """Both presence stores, on the grant suite's config (``tenants``)."""
    config = dict(settings.DJUST_CONFIG, TENANT_READMIT_INTERVAL=INTERVAL)
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        config.update(
            PRESENCE_BACKEND="tenant_redis",
            PRESENCE_REDIS_URL=server.url,
            TENANT_KEY_PREFIX=f"rooms-{uuid.uuid4().hex[:8]}",
        )
    settings.DJUST_CONFIG = config
    shared_views.observed.clear()
    return request.param


@pytest_asyncio.fixture(autouse=True)
async def close_tabs():
    yield
    await disconnect_opened()


class RoomTab(Tab):
    def __init__(self, host: str) -> None:
        session = SessionStore()
        session.save()
        super().__init__(
            host, cookie=f"{django_settings.SESSION_COOKIE_NAME}={session.session_key}"
        )
        # Disconnected after the test (close_tabs) like a browser closing,
        # so no view of one test is left in the room, the expiry sweeper or
        # the watcher for the next.
        OPENED.append(self)

    async def open(self, board: int, who: str, raw: bool = False) -> dict:
        url = f"/board/?board={board}&who={who}" + ("&raw=1" if raw else "")
        return await self.mount(VIEW, url)

    async def event(self, name: str, **params) -> dict:
        self.ref += 1
        await self.send({"type": "event", "event": name, "params": params, "ref": self.ref})
        return await self.until("patch", "html_update", "noop", "error", "response")


async def tab_in(host: str, board: int, who: str) -> RoomTab:
    tab = RoomTab(host)
    frame = await tab.open(board, who)
    assert frame["type"] == "mount", frame
    return tab


async def held(tab: RoomTab, tenant: str) -> list[tuple[str, str]]:
    """(name, tenant) of each member the tab's view holds."""
    shared_views.observed.clear()
    await tab.event("peek")
    for _ in range(20):  # the answer may come after a pushed render
        peeks = [e for e in shared_views.observed if e[1] == "peek"]
        if peeks:
            break
        await tab.drain(QUIET)
    [(_view, _what, seen_tenant, members)] = peeks
    assert seen_tenant == tenant
    return members


async def wait_for(tab: RoomTab, text: str, rounds: int = 40) -> list[dict]:
    """Every frame the tab got (those its own events' answers passed over
    too) once one holds ``text`` (bounded: ``rounds`` quiet spells)."""
    for _ in range(rounds):
        if text in str(tab.frames):
            return list(tab.frames)
        await tab.drain(QUIET)
    raise AssertionError(f"{text!r} never reached the tab: {tab.frames}")


def shouts(frames: list[dict]) -> list[dict]:
    return [f["payload"] for f in frames if f.get("type") == "presence_event"]


def room_name(board: Board) -> str:
    return f"collaboration.board:{board.pk}"


def members(board: Board) -> dict[str, str]:
    """The store's view of the shared room: member id → its tenant (the
    store's records carry the room's space; the id, its member's tenant)."""
    records = get_shared_room_backend("acme").list(room_name(board))
    assert {r["tenant_id"] for r in records} <= {"-rooms.acme"}
    return {r["id"]: r["id"].partition(":")[0] for r in records}


def give(board: Board, to: str, **kwargs):
    with tenant_context("acme"):
        return sharing.grant(board, to, **kwargs)


def take_back(given) -> None:
    with tenant_context("acme"):
        sharing.revoke(given)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_owner_and_grantee_share_one_room_each_with_their_tenant(store, rows):
    await sync_to_async(give)(rows.shared, "globex")
    ann = await tab_in("acme.example.com", rows.shared.pk, "ann")
    gus = await tab_in("globex.example.com", rows.shared.pk, "gus")
    await wait_for(ann, "gus@globex")
    assert await held(ann, "acme") == [("ann", "acme"), ("gus", "globex")]
    assert await held(gus, "globex") == [("ann", "acme"), ("gus", "globex")]

    stored = await sync_to_async(members)(rows.shared)
    assert sorted(stored.values()) == ["acme", "globex"]
    assert all(member.startswith(f"{tenant}:") for member, tenant in stored.items())
    # In neither tenant's own presence space: the owner's space of shared rooms.
    for tenant in ("acme", "globex"):
        assert get_tenant_presence_backend(tenant).list(room_name(rows.shared)) == []
    if store == "redis":
        backend = get_shared_room_backend("acme")
        users_key = backend.keys_for(room_name(rows.shared))[0]
        assert ":{tenant:-rooms.acme}:presence-users:collaboration.board:" in users_key
        client = redis.Redis.from_url(django_settings.DJUST_CONFIG["PRESENCE_REDIS_URL"])
        assert client.zcard(users_key) == 2

    # One tab closes: the other side sees the leave.
    await gus.close()
    await ann.drain(QUIET)
    assert await held(ann, "acme") == [("ann", "acme")]
    assert sorted((await sync_to_async(members)(rows.shared)).values()) == ["acme"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_broadcasts_reach_both_tenants_and_nobody_else(store, rows):
    await sync_to_async(give)(rows.shared, "globex")
    ann = await tab_in("acme.example.com", rows.shared.pk, "ann")
    gus = await tab_in("globex.example.com", rows.shared.pk, "gus")
    # Outsiders: acme's other board's room, globex's own board, initech's own.
    secret = await tab_in("acme.example.com", rows.secret.pk, "sam")
    own = await tab_in("globex.example.com", rows.own.pk, "gil")
    eve = await tab_in("initech.example.com", rows.attacker.pk, "eve")
    for tab in (ann, gus, secret, own, eve):
        await tab.drain(QUIET)

    await gus.event("shout", text="from globex")
    await ann.event("shout", text="from acme")
    for tab in (ann, gus):
        got = shouts(await wait_for(tab, "from acme"))
        assert {"text": "from globex", "from": "globex"} in got
        assert {"text": "from acme", "from": "acme"} in got
    for tab in (secret, own, eve):
        await tab.drain(QUIET)
        assert shouts(tab.frames) == []

    # The room's group is none of the tenants' own groups (same name or not).
    room = room_name(rows.shared)
    group = shared_room_group("acme", room)
    for tenant in ("acme", "globex", "initech"):
        assert group not in (presence_group(room, tenant), tenant_group(room, tenant))
    assert group != shared_room_group("globex", room)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_tenant_without_a_grant_cannot_join_list_or_hear(store, rows):
    # globex has a grant; initech has none, and globex has none of the secret board.
    await sync_to_async(give)(rows.shared, "globex")
    ann = await tab_in("acme.example.com", rows.shared.pk, "ann")
    await ann.drain(QUIET)
    for host, board in (
        ("initech.example.com", rows.shared.pk),
        ("globex.example.com", rows.secret.pk),
    ):
        for raw in (False, True):  # view code loading the row unscoped too
            tab = RoomTab(host)
            frame = await tab.open(board, "eve", raw=raw)
            assert frame["type"] in ("error", "__closed__"), frame
    assert await held(ann, "acme") == [("ann", "acme")]
    assert sorted((await sync_to_async(members)(rows.shared)).values()) == ["acme"]

    def through_the_api():
        board = rows.shared  # an instance any code may hold (the room reads the database)
        with tenant_context("initech"), pytest.raises(TenantMismatchError, match="pk="):
            shared_room(board)
        with pytest.raises(TenantNotSetError):
            shared_room(board)
        with tenant_context("acme"):
            assert shared_room(board).owner == "acme"
        with tenant_context("globex"):
            room = shared_room(board)
            assert (room.owner, room.member) == ("acme", "globex")
            assert sorted(r["tenant_id"] for r in room.list()) == ["acme"]
        # A caller-named key never reaches the space of shared rooms.
        router = get_presence_router()
        with tenant_context("initech"):
            assert router.list(room_name(rows.shared)) == []
            with pytest.raises(InvalidTenantId):
                router.list(f"tenant:-rooms.acme:{room_name(rows.shared)}")
            with pytest.raises(TenantMismatchError):
                router.list(f"tenant:acme:{room_name(rows.shared)}")
        with pytest.raises(InvalidKey):
            router.list(f"tenant:-rooms.acme:{room_name(rows.shared)}")
        # acme's own room of the very same name is another room.
        with tenant_context("acme"):
            router.join(room_name(rows.shared), "intruder", {})
            assert "intruder" not in str(shared_room(board).list())
            router.leave(room_name(rows.shared), "intruder")

    await sync_to_async(through_the_api)()


async def _grant_ends(rows, end) -> None:
    ann = await tab_in("acme.example.com", rows.shared.pk, "ann")
    gus = await tab_in("globex.example.com", rows.shared.pk, "gus")
    await wait_for(ann, "gus@globex")
    await gus.drain(QUIET)

    await end()
    # globex's view leaves the room (its own turn shows it closed) ...
    await wait_for(gus, "closed")
    assert [e[2:] for e in shared_views.observed if e[1] == "closed"] == [
        ("globex", room_name(rows.shared))
    ]
    # ... acme's view got the leave, and the store holds acme only.
    assert await held(ann, "acme") == [("ann", "acme")]
    assert sorted((await sync_to_async(members)(rows.shared)).values()) == ["acme"]
    # Nothing said in the room reaches globex's socket any more.
    await ann.event("shout", text="after the end")
    assert {"text": "after the end", "from": "acme"} in shouts(await wait_for(ann, "after the end"))
    await gus.drain(QUIET)
    assert "after the end" not in str(gus.frames)
    # And globex cannot come back in.
    again = RoomTab("globex.example.com")
    assert (await again.open(rows.shared.pk, "gus"))["type"] in ("error", "__closed__")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_revoking_removes_the_grantee_within_the_interval(store, rows):
    given = await sync_to_async(give)(rows.shared, "globex")
    await _grant_ends(rows, lambda: sync_to_async(take_back)(given))


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_an_expired_grant_removes_the_grantee_within_the_interval(store, rows):
    await sync_to_async(give)(rows.shared, "globex", expires=timedelta(seconds=2))

    async def expire() -> None:
        await asyncio.sleep(2)  # the grant's own expiry: nothing else happens

    await _grant_ends(rows, expire)
