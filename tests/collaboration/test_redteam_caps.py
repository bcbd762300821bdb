"""Red-team attacks on who pays for a shared live room
(docs/collaboration.md#live-rooms "Who pays for a room", docs/presence.md
#per-tenant-caps, docs/configuration.md PRESENCE_TENANT_MAX_* E046-E048,
docs/ratelimits.md#usage ``peak_presences``): written from the docs and the
public API only. acme owns the boards, globex holds a grant of
``rows.shared`` (the grantee, an attacker), initech is a stranger
(tests/collaboration/conftest.py). Each test asserts the documented safe
behaviour: a refused attack passes; a hole is ``xfail(strict=True)`` naming
its section of FINDINGS.md."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.urls import include, path
from djust.sse import sse_urlpatterns

from tenantry import (
    InvalidTenantId,
    QuotaExceeded,
    TenantAwareMemoryBackend,
    TenantAwareRedisBackend,
    TenantMismatchError,
    get_tenant_presence_backend,
    tenant_context,
    usage,
)
from tenantry.context import _room_member
from tenantry.presence import SharedRoomSpace, get_shared_room_backend
from tenantry.shared_rooms import member_id, shared_room
from tests.app import shared_views
from tests.collaboration import test_live_rooms
from tests.collaboration.models import Board
from tests.collaboration.test_live_rooms import (
    INTERVAL,
    QUIET,
    give,
    room_name,
    take_back,
    wait_for,
)
from tests.collaboration.test_room_allowances import (
    VisitorTab,
    forget_usage,
    peak,
    stats,
    visitor_in,
)
from tests.collaboration.test_room_allowances import room_members as member_tenants
from tests.live_client import HostClient, SSETab

store = test_live_rooms.store
close_tabs = test_live_rooms.close_tabs

VIEW = "tests.app.shared_views.SharedBoardView"
#: The per-tenant cap of present users in the capped tests (memory store).
CAP = 3

#: docs/presence.md#per-tenant-caps: the defaults.
DEFAULT_LIMITS = {
    "max_rooms": 10000,
    "max_users": 50000,
    "max_connections": 50000,
    "max_meta_bytes": 8192,
}

#: For the SSE tests: djust's SSE endpoints beside the test project's URLs.
urlpatterns = [
    path("djust/", include(sse_urlpatterns)),
    path("board/", shared_views.SharedBoardView.as_view()),
    path("", include("tests.app.urls")),
]

# --- helpers ----------------------------------------------------------------------------



@contextlib.contextmanager
def member_calls(tenant: str):
    """``tenant`` bound, its calls into a rooms space admitted as the room
    it opened would make them (what ``shared_room(obj).presence`` does;
    docs/collaboration.md#live-rooms): the counting tests below call the
    space's backend directly, room names with no row included."""
    with tenant_context(tenant):
        token = _room_member.set(tenant)
        try:
            yield
        finally:
            _room_member.reset(token)


def visitor_cookie(name: str) -> str:
    """The session cookie of one browser (its own anonymous user)."""
    session = SessionStore()
    session["visitor"] = name
    session.save()
    return f"{django_settings.SESSION_COOKIE_NAME}={session.session_key}"


def tab_with_cookie(host: str, cookie: str) -> test_live_rooms.RoomTab:
    """A new tab (a new connection) of the browser holding ``cookie``."""
    tab = test_live_rooms.RoomTab(host)
    tab.socket.scope["headers"] = [
        (k, v) for k, v in tab.socket.scope["headers"] if k != b"cookie"
    ] + [(b"cookie", cookie.encode())]
    return tab


def attempt(call) -> bool:
    """True when ``call`` was refused (any error): a refusal is the safe outcome."""
    try:
        call()
    except Exception:
        return True
    return False


@pytest.fixture(autouse=True)
def empty_memory_store():
    """No test leaves members (a forged one, a refused attack's) or caps
    (the caps in force are the last ones a backend was made with) to the next."""
    TenantAwareMemoryBackend.clear_all()
    TenantAwareMemoryBackend.set_limits(**DEFAULT_LIMITS)
    yield
    TenantAwareMemoryBackend.clear_all()
    TenantAwareMemoryBackend.set_limits(**DEFAULT_LIMITS)


@pytest.fixture
def capped(settings, tenants):
    """Memory presence, every tenant's user cap at CAP."""
    settings.DJUST_CONFIG = dict(
        settings.DJUST_CONFIG,
        PRESENCE_TENANT_MAX_USERS=CAP,
        TENANT_READMIT_INTERVAL=INTERVAL,
    )
    shared_views.observed.clear()
    return "memory"


@pytest.fixture(params=["memory", "redis"])
def space(request, settings, tenants):
    """A factory of presence backends of one owner's rooms space, on both stores."""
    if request.param == "memory":
        return lambda owner, **kw: TenantAwareMemoryBackend(SharedRoomSpace(owner), **kw)
    url = request.getfixturevalue("redis_server").url
    prefix = f"caps-{uuid.uuid4().hex[:8]}"
    return lambda owner, **kw: TenantAwareRedisBackend(
        SharedRoomSpace(owner), redis_url=url, key_prefix=prefix, **kw
    )


# --- 1-8: member ids naming another tenant, through the public room API -------------


@pytest.mark.django_db(transaction=True)
def test_01_a_grantee_cannot_bill_a_third_tenant_through_its_open_room(capped, rows):
    """globex opens acme's room (documented opener) and joins members
    named ``initech:...`` through the room's presence: initech's cap and
    peak must not move (docs: each member tenant pays for its own members,
    and only its own code makes them)."""
    give(rows.shared, "globex")
    forget_usage("initech")
    with tenant_context("globex"):
        room = shared_room(rows.shared)
        for i in range(CAP):
            assert attempt(lambda i=i: room.presence.join(room.name, member_id("initech", i), {}))
    assert stats("initech")["users"] == 0
    assert peak("initech") == 0


@pytest.mark.django_db(transaction=True)
def test_02_a_grantee_cannot_bill_the_owner_through_its_open_room(capped, rows):
    give(rows.shared, "globex")
    forget_usage("acme")
    with tenant_context("globex"):
        room = shared_room(rows.shared)
        for i in range(CAP):
            assert attempt(lambda i=i: room.presence.join(room.name, member_id("acme", i), {}))
    assert stats("acme")["users"] == 0
    assert peak("acme") == 0


@pytest.mark.django_db(transaction=True)
def test_03_the_rooms_space_backend_refuses_other_tenants_members_while_bound(space, rows):
    """``get_shared_room_backend(owner)`` / ``SharedRoomSpace(owner)``
    (docs/presence.md, docs/api.md) under a bound tenant: a member of
    another tenant (initech, the owner, an id no registry knows) is not
    joined, on memory and Redis; the figures of initech stay 0."""
    give(rows.shared, "globex")
    forget_usage("acme", "initech")
    backend = space("acme")
    room = room_name(rows.shared)
    with tenant_context("globex"):
        for victim in ("initech", "acme", "nobody"):
            assert attempt(lambda v=victim: backend.join(room, member_id(v, "forged"), {}))
            assert attempt(lambda v=victim: backend.track(room, member_id(v, "forged2"), "t", {}))
    assert backend.list(room) == []
    assert peak("initech") == 0
    assert peak("acme") == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_04_a_grantee_cannot_lock_a_third_tenant_out_of_its_own_board(capped, rows):
    """globex's code fills initech's user cap with forged members of acme's
    room; initech's own visitor must still mount initech's own board."""
    await sync_to_async(give)(rows.shared, "globex")

    def fill():
        with tenant_context("globex"):
            backend = get_shared_room_backend("acme")
            for i in range(CAP):
                try:
                    backend.join(room_name(rows.shared), member_id("initech", f"ghost{i}"), {})
                except Exception:
                    pass

    await sync_to_async(fill)()
    tab = VisitorTab("initech.example.com")
    frame = await tab.open(rows.attacker.pk, "ivy")
    assert frame["type"] == "mount", frame


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_05_a_grantee_cannot_lock_the_owner_out(capped, rows):
    """The same with acme's cap: acme's visitor must still mount its board."""
    await sync_to_async(give)(rows.shared, "globex")

    def fill():
        with tenant_context("globex"):
            room = shared_room(rows.shared)
            for i in range(CAP):
                try:
                    room.presence.join(room.name, member_id("acme", f"ghost{i}"), {})
                except Exception:
                    pass

    await sync_to_async(fill)()
    tab = VisitorTab("acme.example.com")
    frame = await tab.open(rows.secret.pk, "ann")
    assert frame["type"] == "mount", frame


@pytest.mark.django_db(transaction=True)
def test_06_an_unknown_tenants_members_do_not_escape_the_grantees_cap(capped, rows):
    """globex at its cap names its members after tenants no registry knows
    (each its own fresh allowance): past its cap it must be refused."""
    give(rows.shared, "globex")
    with tenant_context("globex"):
        room = shared_room(rows.shared)
        for i in range(CAP):
            room.presence.join(room.name, member_id("globex", f"g{i}"), {})
        joined = 0
        for i in range(10):
            try:
                room.presence.join(room.name, member_id(f"nobody{i}", "x"), {})
                joined += 1
            except Exception:
                pass
    assert joined == 0
    assert len(get_shared_room_backend("acme").list(room_name(rows.shared))) == CAP


@pytest.mark.django_db(transaction=True)
def test_07_a_stranger_cannot_sit_in_or_kick_from_an_owners_room_by_the_space(space, rows):
    """initech (no grant) and globex (for a row not granted to it) reach
    acme's rooms through the space backend: no join, and acme's member is
    not removed (leave, untrack)."""
    give(rows.shared, "globex")
    backend = space("acme")
    shared, secret = room_name(rows.shared), room_name(rows.secret)
    backend.join(shared, member_id("acme", "ann"), {"name": "ann"})
    backend.join(secret, member_id("acme", "sam"), {"name": "sam"})
    with tenant_context("initech"):
        assert attempt(lambda: backend.join(shared, member_id("initech", "eve"), {}))
        attempt(lambda: backend.leave(shared, member_id("acme", "ann")))
    with tenant_context("globex"):
        assert attempt(lambda: backend.join(secret, member_id("globex", "gus"), {}))
        attempt(lambda: backend.untrack(secret, member_id("acme", "sam"), ""))
        attempt(lambda: backend.leave(shared, member_id("acme", "ann")))
    assert [r["id"] for r in backend.list(shared)] == ["acme:ann"]
    assert [r["id"] for r in backend.list(secret)] == ["acme:sam"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_08_a_tenant_backend_named_for_another_tenant_does_not_inflate_its_peak(
    kind, tenants, request
):
    """docs/ratelimits.md#usage: "acme's code can neither inflate, read nor
    erase globex's figures". globex's code (bound) making acme's presence
    backend and joining: acme's ``peak_presences`` must not move."""
    forget_usage("acme")
    if kind == "memory":
        make = [
            lambda: get_tenant_presence_backend("acme"),
            lambda: TenantAwareMemoryBackend("acme"),
        ]
    else:
        url = request.getfixturevalue("redis_server").url
        make = [lambda: TenantAwareRedisBackend("acme", redis_url=url, key_prefix="p08")]
    with tenant_context("globex"):
        for new in make:
            for i in range(5):
                attempt(lambda i=i, new=new: new().join("lobby", f"ghost{i}", {}))
    assert peak("acme") == 0


# --- 9-14: a tenant's own view and calls keep to its own allowance (refused) --------


@pytest.mark.django_db(transaction=True)
def test_09_another_tenants_stats_usage_and_counts_are_not_reachable(tenants):
    """The documented refusals that guard the figures: reading or clearing
    another tenant's presence stats and usage while bound."""
    with tenant_context("globex"):
        for call in (
            lambda: TenantAwareMemoryBackend.tenant_stats("acme"),
            lambda: TenantAwareMemoryBackend.clear_tenant("acme"),
            lambda: usage.get_usage("acme"),
            lambda: usage.clear_tenant("acme"),
            lambda: usage.record("acme", "peak_presences", 10**6),
        ):
            with pytest.raises(TenantMismatchError):
                call()
        # The rooms space is no tenant: none of these name it.
        for call in (
            lambda: TenantAwareMemoryBackend.tenant_stats("-rooms.acme"),
            lambda: TenantAwareMemoryBackend.clear_tenant("-rooms.acme"),
            lambda: usage.record("-rooms.acme", "peak_presences", 1),
        ):
            with pytest.raises((InvalidTenantId, TenantMismatchError, ValueError)):
                call()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_10_a_view_naming_its_user_after_another_tenant_is_still_its_own_member(
    store, rows, monkeypatch
):
    """A grantee view whose ``get_presence_user_id()`` (djust's documented
    hook) returns ``initech:...``, ``acme:...``, an unknown tenant's or a
    plain id: its member is ``globex:<that>`` (docs: ``id`` = ``<tenant>:<user
    id>``, the member's own tenant), counted to globex."""
    await sync_to_async(give)(rows.shared, "globex")
    await sync_to_async(forget_usage)("acme", "initech", "globex")
    for forged in ("initech:ivy", "acme:ann", "nobody:x", "-rooms.acme:x", "7"):
        monkeypatch.setattr(
            shared_views.SharedBoardView, "get_presence_user_id", lambda self, f=forged: f
        )
        tab = VisitorTab("globex.example.com")
        frame = await tab.open(rows.shared.pk, "gus")
        assert set(await sync_to_async(member_tenants)(rows.shared)) <= {"globex"}, forged
        assert frame["type"] == "mount", (forged, frame)
    assert set(await sync_to_async(member_tenants)(rows.shared)) == {"globex"}
    assert await sync_to_async(peak)("initech") == 0
    assert await sync_to_async(peak)("acme") == 0
    if store == "memory":
        assert (await sync_to_async(stats)("initech"))["users"] == 0
        assert (await sync_to_async(stats)("acme"))["users"] == 0


@pytest.mark.django_db(transaction=True)
def test_11_each_cap_is_the_member_tenants_and_a_room_counts_once_per_tenant(
    settings, tenants, rows
):
    """ROOMS, USERS and CONNECTIONS (E046-E048) in shared rooms: globex at
    each cap is refused naming itself and the key, acme still joins the
    same rooms; a room with two globex users is one room of globex's."""
    give(rows.shared, "globex")
    give(rows.secret, "globex")
    give(rows.secret, "initech")
    settings.DJUST_CONFIG = dict(
        settings.DJUST_CONFIG,
        PRESENCE_TENANT_MAX_ROOMS=1,
        PRESENCE_TENANT_MAX_USERS=2,
        PRESENCE_TENANT_MAX_CONNECTIONS=3,
    )
    backend = get_shared_room_backend("acme")
    shared, secret = room_name(rows.shared), room_name(rows.secret)
    with member_calls("globex"):
        backend.track(shared, member_id("globex", "a"), "t1", {})
        backend.track(shared, member_id("globex", "b"), "t1", {})
        assert stats("globex") == {"rooms": 1, "users": 2, "connections": 2}
        with pytest.raises(QuotaExceeded, match=r"globex.*PRESENCE_TENANT_MAX_ROOMS"):
            backend.track(secret, member_id("globex", "a"), "t1", {})
        with pytest.raises(QuotaExceeded, match=r"globex.*PRESENCE_TENANT_MAX_USERS"):
            backend.track(shared, member_id("globex", "c"), "t1", {})
        backend.track(shared, member_id("globex", "a"), "t2", {})
        with pytest.raises(QuotaExceeded, match=r"globex.*PRESENCE_TENANT_MAX_CONNECTIONS"):
            backend.track(shared, member_id("globex", "a"), "t3", {})
        # Re-tracking a held connection at the caps adds nothing and is allowed.
        backend.track(shared, member_id("globex", "a"), "t2", {"again": True})
        assert stats("globex") == {"rooms": 1, "users": 2, "connections": 3}
    with member_calls("acme"):  # acme's own allowance, under the same caps
        for user in ("ann", "bob"):
            backend.track(shared, member_id("acme", user), "t1", {})
        assert stats("acme") == {"rooms": 1, "users": 2, "connections": 2}
    with member_calls("initech"):  # a third member tenant's own, too
        backend.track(secret, member_id("initech", "ivy"), "t1", {})
        assert stats("initech") == {"rooms": 1, "users": 1, "connections": 1}
    assert stats("globex") == {"rooms": 1, "users": 2, "connections": 3}
    # Refused calls left nothing behind.
    assert sorted(r["id"] for r in backend.list(shared)) == [
        "acme:ann",
        "acme:bob",
        "globex:a",
        "globex:b",
    ]
    assert sorted(r["id"] for r in backend.list(secret)) == ["initech:ivy"]


@pytest.mark.django_db(transaction=True)
def test_12_clearing_a_tenant_never_makes_its_room_counts_drift(capped, rows):
    """``clear_tenant`` of the grantee or of the owner (docs: the rooms'
    presence is not cleared with the owner's): the grantee's count still
    matches its members in acme's room, so it can neither exceed its cap
    afterwards nor be locked out."""
    give(rows.shared, "globex")
    backend = get_shared_room_backend("acme")
    room = room_name(rows.shared)
    with member_calls("globex"):
        for i in range(CAP):
            backend.join(room, member_id("globex", f"g{i}"), {})
        TenantAwareMemoryBackend.clear_tenant("globex")
        with pytest.raises(QuotaExceeded):
            backend.join(room, member_id("globex", "over"), {})
    with member_calls("acme"):
        TenantAwareMemoryBackend.clear_tenant("acme")
    assert stats("globex") == {"rooms": 1, "users": CAP, "connections": CAP}
    assert len(backend.list(room)) == CAP
    with member_calls("globex"):
        for i in range(CAP):
            backend.leave(room, member_id("globex", f"g{i}"))
    assert stats("globex") == {"rooms": 0, "users": 0, "connections": 0}
    with member_calls("globex"):
        backend.join(room, member_id("globex", "back"), {})


@pytest.mark.django_db(transaction=True)
def test_13_expiry_cleanup_and_reclaim_give_each_tenant_its_own_count_back(capped, rows):
    """Every way out by time (docs/presence.md#per-tenant-caps): a count,
    ``cleanup_stale``, ``reclaim_expired``; never below zero (a later
    untrack of an expired connection removes nothing twice)."""
    backend = TenantAwareMemoryBackend(SharedRoomSpace("acme"), timeout=0.5)
    rooms = [room_name(rows.shared), room_name(rows.secret), "collaboration.board:999"]
    for room in rooms:
        with member_calls("globex"):
            for i in range(CAP):
                backend.track(room, member_id("globex", f"g{i}"), "t", {})
        time.sleep(0.7)
        with member_calls("globex"):
            if room == rooms[0]:
                assert backend.count(room) == 0
            elif room == rooms[1]:
                assert backend.cleanup_stale(room) == CAP
            else:
                assert TenantAwareMemoryBackend.reclaim_expired() >= 1
            for i in range(CAP):  # the late untracks of the expired connections
                assert backend.untrack(room, member_id("globex", f"g{i}"), "t") == {
                    "joins": {},
                    "leaves": {},
                }
        assert stats("globex") == {"rooms": 0, "users": 0, "connections": 0}
    with member_calls("globex"):
        for i in range(CAP):
            backend.track(rooms[0], member_id("globex", f"n{i}"), "t", {})
    assert stats("globex")["users"] == CAP


@pytest.mark.django_db(transaction=True)
def test_14_redis_peak_counts_live_members_only(space, rows):
    """A member tenant's ``peak_presences`` from its own live members in
    the room (docs: the ``presence-members`` set, counted from the liveness
    cutoff): expired members, untracked members and leaves are not counted;
    the owner's members are never the grantee's and back."""
    backend = space("acme", timeout=0.5)
    room = room_name(rows.shared)
    forget_usage("acme", "globex")
    with member_calls("globex"):
        for i in range(4):
            backend.track(room, member_id("globex", f"g{i}"), "t", {})
    with member_calls("acme"):
        backend.track(room, member_id("acme", "ann"), "t", {})
    assert (peak("globex"), peak("acme")) == (4, 1)
    time.sleep(0.7)
    forget_usage("acme", "globex")
    with member_calls("globex"):
        backend.track(room, member_id("globex", "late"), "t", {})
        backend.track(room, member_id("globex", "late"), "t2", {})
        backend.join(room, member_id("globex", "late"), {})
    assert (peak("globex"), peak("acme")) == (1, 0)
    with member_calls("globex"):
        backend.leave(room, member_id("globex", "late"))
        backend.track(room, member_id("globex", "other"), "t", {})
    assert peak("globex") == 1


# --- 15-21: over WebSocket: re-mounts, reconnects, revokes, expiry (refused) ---------


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_15_a_reconnect_loop_leaves_no_count_behind(store, rows):
    """Ten mount-and-close cycles of a grantee tab (one visitor, and ten
    visitors): the room holds acme only after, globex's count is 0 and
    (Redis) its members set is empty."""
    await sync_to_async(give)(rows.shared, "globex")
    ann = await visitor_in("acme.example.com", rows.shared.pk, "ann")
    for i in range(10):
        tab = VisitorTab("globex.example.com")
        assert (await tab.open(rows.shared.pk, f"g{i}"))["type"] == "mount"
        await tab.close()
    cookie = visitor_cookie("one-globex-browser")
    for _ in range(5):  # one visitor reconnecting: a new connection (ref) each time
        same = tab_with_cookie("globex.example.com", cookie)
        assert (await same.open(rows.shared.pk, "same"))["type"] == "mount"
        await same.close()
    await ann.drain(QUIET)
    assert await sync_to_async(member_tenants)(rows.shared) == ["acme"]
    if store == "memory":
        assert await sync_to_async(stats)("globex") == {"rooms": 0, "users": 0, "connections": 0}
    else:
        users_key = get_shared_room_backend("acme").keys_for(room_name(rows.shared))[0]
        members_key = users_key.replace(":presence-users:", ":presence-members:globex:")
        client = redis.Redis.from_url(django_settings.DJUST_CONFIG["PRESENCE_REDIS_URL"])
        assert client.zcard(members_key) == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_16_a_replaced_view_leaves_its_room_every_way(store, rows):
    """docs/presence.md: a view replaced on its socket (a second mount,
    ``live_redirect_mount``, a ``mount_batch`` of two room views) leaves its
    room; the socket holds one member at a time, counted once."""
    await sync_to_async(give)(rows.shared, "globex")
    await sync_to_async(give)(rows.secret, "globex")
    gus = await visitor_in("globex.example.com", rows.shared.pk, "gus")

    async def where() -> tuple:
        shared = await sync_to_async(member_tenants)(rows.shared)
        secret = await sync_to_async(member_tenants)(rows.secret)
        held = await sync_to_async(stats)("globex") if store == "memory" else None
        return shared, secret, held

    one = {"rooms": 1, "users": 1, "connections": 1} if store == "memory" else None
    assert (await gus.mount(VIEW, f"/board/?board={rows.shared.pk}&who=g2"))["type"] == "mount"
    assert await where() == (["globex"], [], one)
    await gus.send(
        {
            "type": "live_redirect_mount",
            "view": VIEW,
            "url": f"/board/?board={rows.secret.pk}&who=g3",
        }
    )
    assert (await gus.until("mount", "error"))["type"] == "mount"
    assert await where() == ([], ["globex"], one)
    await gus.send(
        {
            "type": "mount_batch",
            "views": [
                {"view": VIEW, "url": f"/board/?board={rows.secret.pk}&who=b1", "target_id": "a"},
                {"view": VIEW, "url": f"/board/?board={rows.shared.pk}&who=b2", "target_id": "b"},
            ],
        }
    )
    batch = await gus.until("mount_batch", "error")
    assert batch["type"] == "mount_batch" and len(batch["views"]) == 2, batch
    assert await where() == (["globex"], [], one)
    assert (await gus.mount("tests.app.views.ItemsView", "/items/"))["type"] == "mount"
    empty = {"rooms": 0, "users": 0, "connections": 0} if store == "memory" else None
    assert await where() == ([], [], empty)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_17_revoke_then_grant_again_never_lets_a_closed_view_back_in(store, rows):
    """Revoked (the watcher closes globex's view), granted again, then the
    closed view heartbeats (``ping``, ``presence_heartbeat``) and acts: it
    does not re-enter the room (where no watcher would watch it)."""
    given = await sync_to_async(give)(rows.shared, "globex")
    ann = await visitor_in("acme.example.com", rows.shared.pk, "ann")
    gus = await visitor_in("globex.example.com", rows.shared.pk, "gus")
    await wait_for(ann, "gus@globex")
    await sync_to_async(take_back)(given)
    await wait_for(gus, "closed")
    given = await sync_to_async(give)(rows.shared, "globex")
    for frame in ({"type": "ping"}, {"type": "presence_heartbeat"}):
        await gus.send(frame)
        await gus.drain(QUIET)
    await gus.event("peek")
    assert await sync_to_async(member_tenants)(rows.shared) == ["acme"]
    await sync_to_async(take_back)(given)
    await asyncio.sleep(INTERVAL * 3)
    assert await sync_to_async(member_tenants)(rows.shared) == ["acme"]
    if store == "memory":
        assert (await sync_to_async(stats)("globex"))["users"] == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_18_a_grantee_at_every_cap_over_websocket_never_stops_the_owner(settings, rows):
    """Memory: globex at its ROOMS and CONNECTIONS caps through many tabs
    (one visitor, several tabs: one user, many connections) in acme's two
    granted rooms; acme's visitors and initech (another grantee) still
    mount there; closing globex's tabs gives back exactly its count."""
    settings.DJUST_CONFIG = dict(
        settings.DJUST_CONFIG,
        PRESENCE_TENANT_MAX_ROOMS=2,
        PRESENCE_TENANT_MAX_CONNECTIONS=4,
        TENANT_READMIT_INTERVAL=INTERVAL,
    )
    await sync_to_async(give)(rows.shared, "globex")
    await sync_to_async(give)(rows.secret, "globex")
    await sync_to_async(give)(rows.shared, "initech")
    cookie = visitor_cookie("one-globex-browser")
    tabs = []
    for board in (rows.shared.pk, rows.shared.pk, rows.shared.pk, rows.secret.pk):
        tab = tab_with_cookie("globex.example.com", cookie)
        assert (await tab.open(board, "gus"))["type"] == "mount"
        tabs.append(tab)
    assert await sync_to_async(stats)("globex") == {"rooms": 2, "users": 2, "connections": 4}
    refused = []
    for board in (rows.shared.pk, rows.own.pk):  # connections; rooms and connections
        tab = VisitorTab("globex.example.com")
        assert (await tab.open(board, "over"))["type"] == "error"
        refused.append(tab)
    for host, board, who in (
        ("acme.example.com", rows.shared.pk, "ann"),
        ("acme.example.com", rows.secret.pk, "sam"),
        ("initech.example.com", rows.shared.pk, "ivy"),
    ):
        await visitor_in(host, board, who)
    assert await sync_to_async(member_tenants)(rows.shared) == ["acme", "globex", "initech"]
    for tab in tabs + refused:
        await tab.close()
    assert await sync_to_async(stats)("globex") == {"rooms": 0, "users": 0, "connections": 0}
    assert await sync_to_async(stats)("acme") == {"rooms": 2, "users": 2, "connections": 2}
    assert await sync_to_async(stats)("initech") == {"rooms": 1, "users": 1, "connections": 1}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_19_an_expired_grantee_socket_is_not_released_twice(settings, rows):
    """A silent grantee tab (no pings) expires; other globex visitors join;
    then the silent tab closes: its untrack removes nothing twice, so
    globex's count is its live members (no underflow, no lock-out)."""
    settings.DJUST_CONFIG = dict(
        settings.DJUST_CONFIG,
        PRESENCE_TIMEOUT=3,
        PRESENCE_TENANT_MAX_USERS=CAP,
        TENANT_READMIT_INTERVAL=INTERVAL,
    )
    await sync_to_async(give)(rows.shared, "globex")
    silent = await visitor_in("globex.example.com", rows.shared.pk, "silent")
    await asyncio.sleep(3.3)
    assert await sync_to_async(member_tenants)(rows.shared) == []
    fresh = [await visitor_in("globex.example.com", rows.shared.pk, f"f{i}") for i in range(2)]
    await silent.close()
    assert await sync_to_async(stats)("globex") == {"rooms": 1, "users": 2, "connections": 2}
    for tab in fresh:
        await tab.close()
    assert await sync_to_async(stats)("globex") == {"rooms": 0, "users": 0, "connections": 0}
    for i in range(CAP):
        await visitor_in("globex.example.com", rows.shared.pk, f"again{i}")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_20_grant_expiry_while_joined_gives_the_count_back(capped, rows):
    from datetime import timedelta

    await sync_to_async(give)(rows.shared, "globex", expires=timedelta(seconds=2))
    ann = await visitor_in("acme.example.com", rows.shared.pk, "ann")
    for i in range(CAP):
        await visitor_in("globex.example.com", rows.shared.pk, f"g{i}")
    await wait_for(ann, f"g{CAP - 1}@globex")
    for _ in range(40):
        if await sync_to_async(member_tenants)(rows.shared) == ["acme"]:
            break
        await asyncio.sleep(INTERVAL / 2)
    assert await sync_to_async(member_tenants)(rows.shared) == ["acme"]
    assert (await sync_to_async(stats)("globex"))["users"] == 0
    await visitor_in("globex.example.com", rows.own.pk, "gil")  # its allowance is back


# --- 21-22: HTTP SSE ------------------------------------------------------------------


class BoardStream(SSETab):
    """One SSE session of the room view of ``board`` on ``host`` (djust's
    stream GET mounts it; the query string is the mount's request)."""

    def __init__(self, host: str, board: int, who: str) -> None:
        super().__init__(host, VIEW, cookie=visitor_cookie(who))
        self.board, self.who = board, who

    async def open(self) -> dict:
        response = await self.client.get(
            f"/djust/sse/{self.session_id}/",
            {"view": self.view, "board": self.board, "who": self.who},
        )
        assert response.status_code == 200, response
        self.response = response
        self.stream = aiter(response.streaming_content)
        assert (await self.next())["type"] == "sse_connect"
        return await self.next()

    async def end(self) -> None:
        """The browser goes away: the stream's generator is closed."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.stream.aclose(), 5)
        self.response.close()


@pytest.fixture
def sse(settings):
    settings.ROOT_URLCONF = __name__
    settings.DJUST_CONFIG = dict(settings.DJUST_CONFIG, TENANT_EXEMPT_PATHS=["/djust/"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_21_a_grantees_sse_view_never_sits_in_the_room(store, sse, rows):
    """docs/collaboration.md "Use shared rooms over WebSocket": djust's SSE
    transport has no disconnect hook, so a room view served over SSE tracks
    no member (one tracked there would outlive a revoke until
    PRESENCE_TIMEOUT); after the revoke the room holds acme's member only."""
    given = await sync_to_async(give)(rows.shared, "globex")
    ann = await visitor_in("acme.example.com", rows.shared.pk, "ann")
    stream = BoardStream("globex.example.com", rows.shared.pk, "gus")
    assert (await stream.open())["type"] == "mount"
    assert await sync_to_async(member_tenants)(rows.shared) == ["acme"]
    await sync_to_async(take_back)(given)
    await ann.drain(INTERVAL)
    assert await sync_to_async(member_tenants)(rows.shared) == ["acme"]
    await stream.end()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_22_an_ended_sse_stream_leaves_no_count(store, sse, rows):
    """Counts go back down on every way out: a grantee's SSE stream holds
    none to give back (no member over SSE), before and after it ends."""
    await sync_to_async(give)(rows.shared, "globex")
    stream = BoardStream("globex.example.com", rows.shared.pk, "gus")
    assert (await stream.open())["type"] == "mount"
    assert await sync_to_async(member_tenants)(rows.shared) == []
    await stream.end()
    await asyncio.sleep(QUIET)
    assert await sync_to_async(member_tenants)(rows.shared) == []
    if store == "memory":
        assert await sync_to_async(stats)("globex") == {"rooms": 0, "users": 0, "connections": 0}


# --- 23-26: process-wide tools, failed mounts, Redis keys, two processes -------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_23a_a_bound_tenant_cannot_set_every_tenants_caps(capped, rows):
    """``TenantAwareMemoryBackend.set_limits`` called by globex's code while
    globex is bound (as ``clear_tenant`` of another tenant is refused):
    acme's visitors still mount under the configured cap."""
    await sync_to_async(give)(rows.shared, "globex")
    await visitor_in("acme.example.com", rows.shared.pk, "ann")

    def attack() -> None:
        with tenant_context("globex"):
            attempt(lambda: TenantAwareMemoryBackend.set_limits(max_users=1))

    await sync_to_async(attack)()
    bob = VisitorTab("acme.example.com")
    assert (await bob.open(rows.secret.pk, "bob"))["type"] == "mount"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_23b_a_bound_tenant_cannot_clear_every_tenants_presence(capped, rows):
    """``TenantAwareMemoryBackend.clear_all`` by globex's code while bound:
    acme's member stays in acme's room (and in its count)."""
    await sync_to_async(give)(rows.shared, "globex")
    await visitor_in("acme.example.com", rows.shared.pk, "ann")

    def attack() -> None:
        with tenant_context("globex"):
            attempt(lambda: TenantAwareMemoryBackend.clear_all())

    await sync_to_async(attack)()
    assert await sync_to_async(member_tenants)(rows.shared) == ["acme"]
    assert (await sync_to_async(stats)("acme"))["users"] == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_24_a_mount_that_fails_after_tracking_leaves_no_member(store, rows, monkeypatch):
    """App code that raises after ``track_presence()`` in a room view's
    mount: the failed view is no member once its socket closes (its count
    goes back; nothing waits for PRESENCE_TIMEOUT)."""
    await sync_to_async(give)(rows.shared, "globex")
    mount = shared_views.SharedBoardView.mount

    def failing_mount(self, request, **kwargs):
        mount(self, request, **kwargs)
        raise RuntimeError("the app's code fails after tracking")

    monkeypatch.setattr(shared_views.SharedBoardView, "mount", failing_mount)
    tabs = []
    for i in range(CAP + 1):
        tab = VisitorTab("globex.example.com")
        assert (await tab.open(rows.shared.pk, f"g{i}"))["type"] == "error"
        tabs.append(tab)
    for tab in tabs:
        await tab.close()
    assert await sync_to_async(member_tenants)(rows.shared) == []
    if store == "memory":
        assert await sync_to_async(stats)("globex") == {"rooms": 0, "users": 0, "connections": 0}


@pytest.mark.xfail(strict=True, reason="FINDINGS #6")
@pytest.mark.django_db(transaction=True)
def test_25_redis_a_room_whose_last_connection_went_leaves_no_key(tenants, redis_server):
    """docs/presence.md#redis-key-layout: "Removing the last connection
    deletes the keys at once" — the members sets of the room's member
    tenants too (``cleanup_stale`` and ``list`` of a room that expired)."""
    prefix = f"caps-{uuid.uuid4().hex[:8]}"
    backend = TenantAwareRedisBackend(
        SharedRoomSpace("acme"), redis_url=redis_server.url, key_prefix=prefix, timeout=0.5
    )
    client = redis.Redis.from_url(redis_server.url)
    for room, last in (("collaboration.board:1", "cleanup"), ("collaboration.board:2", "list")):
        backend.track(room, member_id("acme", "ann"), "t", {})
        backend.track(room, member_id("globex", "gus"), "t", {})
        time.sleep(0.7)
        if last == "cleanup":
            assert backend.cleanup_stale(room) == 2
        else:
            assert backend.list(room) == []
    assert sorted(k.decode() for k in client.keys(f"{prefix}:*")) == []


#: A second process on the same Redis: tracks globex members in acme's
#: room, says so, and waits to be killed (no untrack, no goodbye).
OTHER_PROCESS = """
import sys, time
import django
django.setup()
from tenantry import TenantAwareRedisBackend
from tenantry.presence import SharedRoomSpace
from tenantry.shared_rooms import member_id
url, prefix, room = sys.argv[1:4]
space = SharedRoomSpace("acme")
backend = TenantAwareRedisBackend(space, redis_url=url, key_prefix=prefix, timeout=3)
for i in range(5):
    backend.track(room, member_id("globex", f"other{i}"), "t", {})
print("tracked", flush=True)
time.sleep(600)
"""


@pytest.mark.django_db(transaction=True)
def test_26_redis_two_processes_a_killed_ones_members_stop_counting(tenants, redis_server):
    """Two processes on one Redis: the other process tracks five globex
    members and is SIGKILLed. Once they expire, globex's peak in this
    process is its live members only, acme's never includes them, and the
    room lists none of them."""
    import os
    import signal
    import subprocess
    import sys

    prefix = f"caps-{uuid.uuid4().hex[:8]}"
    room = "collaboration.board:1"
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings")
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS, redis_server.url, prefix, room],
        stdout=subprocess.PIPE,
        env=env,
        cwd=Path(__file__).resolve().parents[2],  # the repository: tests.settings imports
    )
    try:
        assert other.stdout.readline().strip() == b"tracked"
        backend = TenantAwareRedisBackend(
            SharedRoomSpace("acme"), redis_url=redis_server.url, key_prefix=prefix, timeout=3
        )
        forget_usage("acme", "globex")
        with member_calls("acme"):
            backend.track(room, member_id("acme", "ann"), "t", {})
        with member_calls("globex"):
            backend.track(room, member_id("globex", "here"), "t", {})
        assert (peak("acme"), peak("globex")) == (1, 6)
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait(timeout=10)
    time.sleep(3.3)  # the other process's members expire (ours are tracked again)
    forget_usage("acme", "globex")
    with member_calls("globex"):
        backend.track(room, member_id("globex", "here"), "t", {})
    with member_calls("acme"):
        backend.track(room, member_id("acme", "ann"), "t", {})
    assert (peak("acme"), peak("globex")) == (1, 1)
    assert sorted(r["id"] for r in backend.list(room)) == ["acme:ann", "globex:here"]


# --- 27-28: more siblings ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_27_a_grantee_cannot_keep_the_owners_member_alive(space, rows):
    """globex (bound) heartbeats acme's member through its open room's
    presence and the space backend: acme's member still expires with its
    own last heartbeat (else acme is counted, and its ghost listed, for as
    long as globex likes)."""
    give(rows.shared, "globex")
    backend = space("acme", timeout=0.6)
    room = room_name(rows.shared)
    with member_calls("acme"):
        backend.track(room, member_id("acme", "ann"), "t", {})
    with tenant_context("globex"):
        for _ in range(4):
            time.sleep(0.3)
            attempt(lambda: backend.heartbeat(room, member_id("acme", "ann")))
            attempt(lambda: backend.heartbeat(room, member_id("acme", "ann"), "t"))
    assert backend.list(room) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_28_refused_redirects_and_a_grant_given_again_keep_counts_exact(store, rows):
    """A grantee view redirected to a room it may not open (initech's,
    acme's secret), and a grant revoked and given again within one watcher
    interval while joined: the socket holds at most its one member, and
    closing it leaves globex nothing."""
    given = await sync_to_async(give)(rows.shared, "globex")
    gus = await visitor_in("globex.example.com", rows.shared.pk, "gus")
    for board in (rows.attacker.pk, rows.secret.pk):
        await gus.send(
            {"type": "live_redirect_mount", "view": VIEW, "url": f"/board/?board={board}&who=x"}
        )
        await gus.until("mount", "error")
        assert await sync_to_async(member_tenants)(rows.secret) == []
        assert await sync_to_async(member_tenants)(rows.shared) in ([], ["globex"])

    def again():
        take_back(given)
        return give(rows.shared, "globex")

    await sync_to_async(again)()
    other = await visitor_in("globex.example.com", rows.shared.pk, "gil")
    await other.drain(INTERVAL * 2)
    assert await sync_to_async(member_tenants)(rows.shared) in (["globex"], ["globex", "globex"])
    await gus.close()
    await other.close()
    assert await sync_to_async(member_tenants)(rows.shared) == []
    if store == "memory":
        assert await sync_to_async(stats)("globex") == {"rooms": 0, "users": 0, "connections": 0}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_29_a_tenant_at_its_cap_can_still_move_its_socket_between_rooms(settings, rows):
    """globex at its CONNECTIONS cap (one tab, memory): the tab's view is
    replaced (second mount, ``live_redirect_mount``) by another room view.
    The replaced view's connection goes, so the move is within the cap."""
    settings.DJUST_CONFIG = dict(
        settings.DJUST_CONFIG,
        PRESENCE_TENANT_MAX_CONNECTIONS=1,
        TENANT_READMIT_INTERVAL=INTERVAL,
    )
    await sync_to_async(give)(rows.shared, "globex")
    await sync_to_async(give)(rows.secret, "globex")
    gus = await visitor_in("globex.example.com", rows.shared.pk, "gus")
    frame = await gus.mount(VIEW, f"/board/?board={rows.secret.pk}&who=gus")
    assert frame["type"] == "mount", frame
    await gus.send(
        {
            "type": "live_redirect_mount",
            "view": VIEW,
            "url": f"/board/?board={rows.shared.pk}&who=g",
        }
    )
    assert (await gus.until("mount", "error"))["type"] == "mount"
    assert await sync_to_async(stats)("globex") == {"rooms": 1, "users": 1, "connections": 1}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_30_plain_http_renders_of_a_room_view_are_no_members(store, sse, rows):
    """docs/presence.md: on the HTTP render (no connection) track_presence
    does nothing: a grantee's crawler fetching the room page (each a new
    session) adds no member and costs no allowance."""
    await sync_to_async(give)(rows.shared, "globex")
    for i in range(CAP + 2):
        client = HostClient("globex.example.com")
        response = await client.get("/board/", {"board": rows.shared.pk, "who": f"crawler{i}"})
        assert response.status_code == 200, response
        assert b"dj-root" in response.content
    # The page runs the room view's mount: a stranger's is refused there
    # (its scoped query finds no such board; ?raw=1: the room refuses it,
    # or on PostgreSQL row-level security already hides the row).
    stranger = HostClient("initech.example.com")
    for raw in ({}, {"raw": 1}):
        with pytest.raises((Board.DoesNotExist, TenantMismatchError)):
            await stranger.get("/board/", {"board": rows.shared.pk, "who": "eve", **raw})
    assert await sync_to_async(member_tenants)(rows.shared) == []
    if store == "memory":
        assert await sync_to_async(stats)("globex") == {"rooms": 0, "users": 0, "connections": 0}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_31_the_owner_at_its_cap_never_locks_its_grantees_out(capped, rows):
    """The other direction: acme at its user cap (its own visitors in its
    own rooms) — globex and initech, each with a grant, still join acme's
    shared room, and a fourth acme visitor is refused naming acme."""
    await sync_to_async(give)(rows.shared, "globex")
    await sync_to_async(give)(rows.shared, "initech")
    await visitor_in("acme.example.com", rows.shared.pk, "ann")
    for i in range(CAP - 1):
        await visitor_in("acme.example.com", rows.secret.pk, f"a{i}")
    assert await sync_to_async(stats)("acme") == {"rooms": 2, "users": CAP, "connections": CAP}
    await visitor_in("globex.example.com", rows.shared.pk, "gus")
    await visitor_in("initech.example.com", rows.shared.pk, "ivy")
    assert await sync_to_async(member_tenants)(rows.shared) == ["acme", "globex", "initech"]
    over = VisitorTab("acme.example.com")
    assert (await over.open(rows.shared.pk, "over"))["type"] == "error"

    def one_more():
        with tenant_context("acme"):
            room = shared_room(rows.shared)
            room.presence.join(room.name, member_id("acme", "one-more"), {})

    with pytest.raises(QuotaExceeded, match=r"acme.*PRESENCE_TENANT_MAX_USERS"):
        await sync_to_async(one_more)()
    assert await sync_to_async(stats)("globex") == {"rooms": 1, "users": 1, "connections": 1}
