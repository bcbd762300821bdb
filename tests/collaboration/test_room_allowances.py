"""Each member tenant of a shared live room spends its own presence
allowance and its own usage (docs/collaboration.md#live-rooms, "Who pays
for a room"): red team rooms findings 5 and 8. Real djust over WebSocket,
each tab its own session (so its own anonymous user), on both presence
stores; and the expiry sweeper follows nothing of a closed room view."""

from __future__ import annotations

import asyncio

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.sessions.backends.signed_cookies import SessionStore

from tenantry import (
    QuotaExceeded,
    TenantAwareMemoryBackend,
    TenantAwareRedisBackend,
    tenant_context,
    usage,
)
from tenantry.djust.live_presence import expiry_sweeper
from tenantry.djust.shared_rooms import room_watcher
from tenantry.presence import SharedRoomSpace, get_shared_room_backend
from tenantry.shared_rooms import member_id, shared_room
from tests.collaboration import test_live_rooms
from tests.collaboration.test_live_rooms import (
    INTERVAL,
    QUIET,
    RoomTab,
    give,
    held,
    room_name,
    tab_in,
    take_back,
    wait_for,
)

store = test_live_rooms.store
close_tabs = test_live_rooms.close_tabs

#: The per-tenant cap of present users in these tests (memory store).
CAP = 3


@pytest.fixture
def capped(store, settings):
    settings.DJUST_CONFIG = dict(settings.DJUST_CONFIG, PRESENCE_TENANT_MAX_USERS=CAP)
    return store


class VisitorTab(RoomTab):
    """A tab of its own visitor: a signed-cookie session with its own data
    (an empty one signs the same cookie for everyone), so djust names it a
    user of its own (``anon_<session key>``), as a new browser would be."""

    made = 0

    def __init__(self, host: str) -> None:
        VisitorTab.made += 1
        session = SessionStore()
        session["visitor"] = VisitorTab.made
        session.save()
        super().__init__(host)
        cookie = f"{django_settings.SESSION_COOKIE_NAME}={session.session_key}"
        self.socket.scope["headers"] = [
            (k, v) for k, v in self.socket.scope["headers"] if k != b"cookie"
        ] + [(b"cookie", cookie.encode())]


async def visitor_in(host: str, board: int, who: str) -> VisitorTab:
    tab = VisitorTab(host)
    frame = await tab.open(board, who)
    assert frame["type"] == "mount", frame
    return tab


def stats(tenant: str) -> dict:
    """What ``tenant`` holds in this process's memory store (its caps' count)."""
    with tenant_context(tenant):
        return TenantAwareMemoryBackend.tenant_stats(tenant)


def room_members(board) -> list[str]:
    """The member tenant of each member of the board's room, as the store has it."""
    records = get_shared_room_backend("acme").list(room_name(board))
    return sorted(r["id"].partition(":")[0] for r in records)


def peak(tenant: str) -> int:
    usage.flush()
    with tenant_context(tenant):
        return usage.get_usage(tenant)["total"].get("peak_presences", 0)


def forget_usage(*tenants: str) -> None:
    for tenant in tenants:
        with tenant_context(tenant):
            usage.clear_tenant(tenant)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_grantee_at_its_cap_never_locks_the_owner_out(capped, rows):
    """Finding 5: three globex sessions (globex's cap) in acme's shared
    room; acme still mounts its shared board and a board it never granted,
    and initech (another grantee) still joins; a fourth globex session is
    refused naming the cap (memory; Redis has no presence caps)."""
    await sync_to_async(give)(rows.shared, "globex")
    await sync_to_async(give)(rows.shared, "initech")
    globex_tabs = [
        await visitor_in("globex.example.com", rows.shared.pk, f"g{i}") for i in range(CAP)
    ]
    assert await sync_to_async(room_members)(rows.shared) == ["globex"] * CAP

    ann = await visitor_in("acme.example.com", rows.shared.pk, "ann")
    sam = await visitor_in("acme.example.com", rows.secret.pk, "sam")
    ivy = await visitor_in("initech.example.com", rows.shared.pk, "ivy")
    await wait_for(ann, "ivy@initech")
    names = [name for name, _tenant in await held(ann, "acme")]
    assert sorted(names) == ["ann", "g0", "g1", "g2", "ivy"]
    assert [name for name, _t in await held(sam, "acme")] == ["sam"]
    assert [name for name, _t in await held(ivy, "initech")] == names

    extra = VisitorTab("globex.example.com")
    frame = await extra.open(rows.shared.pk, "g3")
    if capped == "memory":
        assert frame["type"] == "error", frame
        # Each tenant's own count: globex holds its three, acme its two
        # (two rooms), initech one; nothing is counted against the space.
        assert await sync_to_async(stats)("globex") == {"rooms": 1, "users": 3, "connections": 3}
        assert await sync_to_async(stats)("acme") == {"rooms": 2, "users": 2, "connections": 2}
        assert await sync_to_async(stats)("initech") == {"rooms": 1, "users": 1, "connections": 1}

        # The refusal names the cap and the tenant that is at it.
        def one_more():
            with tenant_context("globex"):
                room = shared_room(rows.shared)
                room.presence.join(room.name, member_id("globex", "one-more"), {})

        with pytest.raises(QuotaExceeded, match=r"globex.*PRESENCE_TENANT_MAX_USERS"):
            await sync_to_async(one_more)()
        # globex's users in acme's room are globex's allowance, also for its
        # own rooms (one allowance per tenant, wherever its users are).
        own = VisitorTab("globex.example.com")
        assert (await own.open(rows.own.pk, "gil"))["type"] == "error"
    else:
        assert frame["type"] == "mount", frame

    # Closing the grantee's tabs gives its allowance back (and only its).
    await extra.close()
    for tab in globex_tabs:
        await tab.close()
    await ann.drain(QUIET)
    assert await sync_to_async(room_members)(rows.shared) == ["acme", "initech"]
    if capped == "memory":
        assert (await sync_to_async(stats)("globex"))["users"] == 0
        assert (await sync_to_async(stats)("acme"))["users"] == 2
        await visitor_in("globex.example.com", rows.own.pk, "gil")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_each_member_tenants_peak_is_its_own_members(store, rows):
    """Finding 8: globex's users in acme's shared room are globex's
    ``peak_presences``, not acme's; acme's peak is its own members."""
    await sync_to_async(forget_usage)("acme", "globex")
    await sync_to_async(give)(rows.shared, "globex")
    tabs = [await visitor_in("globex.example.com", rows.shared.pk, f"g{i}") for i in range(4)]
    ann = await visitor_in("acme.example.com", rows.shared.pk, "ann")
    await wait_for(ann, "g3@globex")
    assert await sync_to_async(peak)("globex") == 4
    assert await sync_to_async(peak)("acme") == 1
    # Another acme visitor: acme's second member.
    await visitor_in("acme.example.com", rows.shared.pk, "bob")
    assert await sync_to_async(peak)("acme") == 2
    assert await sync_to_async(peak)("globex") == 4
    if store == "redis":
        # The member tenant's count lives beside the room, in the space's slot.
        backend = get_shared_room_backend("acme")
        users_key = backend.keys_for(room_name(rows.shared))[0]
        members_key = users_key.replace(":presence-users:", ":presence-members:globex:")
        client = redis.Redis.from_url(django_settings.DJUST_CONFIG["PRESENCE_REDIS_URL"])
        assert client.zcard(members_key) == 4
        for tab in tabs:
            await tab.close()
        assert client.zcard(members_key) == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_revoked_grantees_members_are_released(capped, rows):
    """The watcher takes a revoked grantee out of the room: its members
    leave the store and its count goes back (memory: its caps; both: the
    room), while the owner stays."""
    given = await sync_to_async(give)(rows.shared, "globex")
    for i in range(2):
        await visitor_in("globex.example.com", rows.shared.pk, f"g{i}")
    ann = await visitor_in("acme.example.com", rows.shared.pk, "ann")
    await wait_for(ann, "g1@globex")
    await sync_to_async(take_back)(given)
    for _ in range(40):
        if await sync_to_async(room_members)(rows.shared) == ["acme"]:
            break
        await asyncio.sleep(INTERVAL / 2)
    assert await sync_to_async(room_members)(rows.shared) == ["acme"]
    if capped == "memory":
        assert (await sync_to_async(stats)("globex"))["users"] == 0
        assert (await sync_to_async(stats)("acme"))["users"] == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_closed_room_view_leaves_no_follow_watch_or_presence(store, rows):
    """Open and close shared-room views (owner and grantee, each re-mounted
    on its socket: on a presence view and on a plain one): afterwards the
    expiry sweeper follows nothing of the room, the watcher watches
    nothing, and the room's presence is empty."""
    await sync_to_async(give)(rows.shared, "globex")
    room = room_name(rows.shared)

    def ours(mapping: dict) -> dict:
        return {k: n for k, n in mapping.items() if room in str(k)}

    ann = await tab_in("acme.example.com", rows.shared.pk, "ann")
    gus = await tab_in("globex.example.com", rows.shared.pk, "gus")
    await wait_for(ann, "gus@globex")
    assert sum(ours(expiry_sweeper.following()).values()) == 2
    assert sum(ours(room_watcher.watching()).values()) == 1
    # A second mount on the grantee's socket replaces its view.
    assert (await gus.open(rows.own.pk, "gil"))["type"] == "mount"
    await ann.drain(QUIET)
    assert await sync_to_async(room_members)(rows.shared) == ["acme"]
    assert sum(ours(expiry_sweeper.following()).values()) == 1
    assert ours(room_watcher.watching()) == {}
    # The owner's socket moves to a view without presence: its room view
    # leaves too (djust's disconnect would untrack only the new view).
    assert (await ann.mount("tests.app.views.ItemsView", "/items/"))["type"] == "mount"
    assert await sync_to_async(room_members)(rows.shared) == []
    assert ours(expiry_sweeper.following()) == {}
    await ann.close()
    await gus.close()
    assert ours(expiry_sweeper.following()) == {}
    assert ours(room_watcher.watching()) == {}
    assert await sync_to_async(room_members)(rows.shared) == []


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_rooms_space_takes_member_ids_only(kind, request):
    """A member is counted by the tenant its id names, so a rooms space
    refuses a user id that names none (it would be nobody's allowance)."""
    if kind == "memory":
        backend = TenantAwareMemoryBackend(SharedRoomSpace("acme"))
    else:
        url = request.getfixturevalue("redis_server").url
        backend = TenantAwareRedisBackend(SharedRoomSpace("acme"), redis_url=url)
    for bad in ("7", ":7", "globex:", "-rooms.acme:7", "glo bex:7"):
        with pytest.raises(ValueError, match="member id"):
            backend.join("collaboration.board:1", bad, {})
    assert backend.list("collaboration.board:1") == []
    record = backend.join("collaboration.board:1", member_id("globex", "anon_a:b"), {})
    assert record["id"] == "globex:anon_a:b"
    backend.leave("collaboration.board:1", "globex:anon_a:b")
