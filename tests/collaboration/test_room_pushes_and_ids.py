"""Shared live rooms, hardened (docs/collaboration.md#live-rooms): who may
push into a room and what a push may run, what a room's records show of
other tenants' visitors, and a room object re-checked on every use. Real
djust over WebSocket on both presence stores (the fixtures of
test_live_rooms)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from tenantry import InvalidTenantId, TenantMismatchError, TenantNotSetError, tenant_context
from tenantry.db import rls_bypass
from tenantry.shared_rooms import PUSH_HANDLER, member_id, shared_room
from tests.app import shared_views
from tests.collaboration import test_live_rooms
from tests.collaboration.models import Board
from tests.collaboration.test_live_rooms import QUIET, give, tab_in, take_back, wait_for

store = test_live_rooms.store
close_tabs = test_live_rooms.close_tabs


def ran(what: str, tenant: str | None = None) -> list[tuple]:
    return [e for e in shared_views.observed if e[1] == what and tenant in (None, e[2])]


def as_tenant(tenant, call):
    def run():
        if tenant is None:
            return call()
        with tenant_context(tenant):
            return call()

    return sync_to_async(run)()


def stored_title(pk) -> str:
    with rls_bypass(reason="test: the row as stored"):
        return Board.all_tenants.get(pk=pk).title


def session_key(tab) -> str:
    cookie = dict(tab.socket.scope["headers"])[b"cookie"].decode()
    return cookie.split("=", 1)[1]


# -- pushes: read grants refused, receivers run only their listed handlers ------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_read_grantee_cannot_push_by_api_or_from_its_view(store, rows):
    await sync_to_async(give)(rows.shared, "globex")  # read grant
    ann = await tab_in("acme.example.com", rows.shared.pk, "ann")
    gus = await tab_in("globex.example.com", rows.shared.pk, "gus")
    await wait_for(ann, "gus@globex")
    shared_views.observed.clear()

    with pytest.raises(TenantMismatchError, match="read grant"):
        await as_tenant("globex", lambda: shared_room(rows.shared).push("peek", {}))
    answer = await gus.event("relay", handler="peek")
    assert answer["type"] == "error", answer
    await ann.drain(QUIET)
    assert ran("peek", "acme") == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_write_grantees_push_runs_listed_handlers_and_names_the_sender(store, rows):
    await sync_to_async(give)(rows.shared, "globex", write=True)
    ann = await tab_in("acme.example.com", rows.shared.pk, "ann")
    gus = await tab_in("globex.example.com", rows.shared.pk, "gus")
    await wait_for(ann, "gus@globex")
    shared_views.observed.clear()

    await gus.event("relay", handler="peek")  # listed in shared_room_handlers
    for _ in range(20):
        if ran("sender", "acme"):
            break
        await ann.drain(QUIET)
    assert ran("sender", "acme") == [
        ("SharedBoardView", "sender", "acme", {"tenant": "globex", "access": "write"})
    ]
    # The owner's pushes reach the grantee, named as the owner's.
    shared_views.observed.clear()
    await as_tenant("acme", lambda: shared_room(rows.shared).push("peek", {}))
    for _ in range(20):
        if ran("sender", "globex"):
            break
        await gus.drain(QUIET)
    assert ("SharedBoardView", "sender", "globex", {"tenant": "acme", "access": "owner"}) in ran(
        "sender", "globex"
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_push_runs_no_unlisted_handler_hook_or_private_method(store, rows, monkeypatch):
    """The confused deputy: a grantee's push must not run the owner's write
    handler (not listed), a hook or a private method on the owner's view."""
    from djust.decorators import event_handler

    @event_handler
    def add_note(self, text="", **kwargs):
        board = Board.objects.with_shared().get(pk=rows.shared.pk)
        board.title = text
        board.save(update_fields=["title"])

    monkeypatch.setattr(shared_views.SharedBoardView, "add_note", add_note, raising=False)
    await sync_to_async(give)(rows.shared, "globex", write=True)
    ann = await tab_in("acme.example.com", rows.shared.pk, "ann")
    await ann.drain(QUIET)
    shared_views.observed.clear()
    title = await sync_to_async(stored_title)(rows.shared.pk)

    # Refused at the sender: hooks and private names.
    for name in ("handle_shared_room_closed", "_on_shared_room_closed", PUSH_HANDLER, "_x"):
        with pytest.raises(TenantMismatchError, match="shared_room_handlers"):
            await as_tenant("globex", lambda n=name: shared_room(rows.shared).push(n, {}))
    with pytest.raises(ValueError, match="method name"):
        await as_tenant("globex", lambda: shared_room(rows.shared).push("a b", {}))
    # Sent, but not run by the receiver: handlers the view does not list.
    for name in ("add_note", "shout", "mount", "get_shared_room", "relay"):
        await as_tenant(
            "globex", lambda n=name: shared_room(rows.shared).push(n, {"text": "pushed"})
        )
    # A forged envelope straight on the channel layer naming a hook: dropped.
    room = await as_tenant("acme", lambda: shared_room(rows.shared))
    forged = {
        "type": "server_push",
        "state": None,
        "handler": PUSH_HANDLER,
        "payload": {"handler": "handle_shared_room_closed", "payload": {}},
    }
    await get_channel_layer().group_send(room.group, forged)
    await ann.drain(QUIET)
    await ann.drain(QUIET)
    assert await sync_to_async(stored_title)(rows.shared.pk) == title
    assert "pushed" not in str(ann.frames)
    assert ran("closed") == []
    answer = await ann.event("peek")
    assert answer["type"] != "error"


# -- records: no session key of another tenant's visitor ----------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_no_record_either_side_reads_holds_a_visitors_session_key(store, rows):
    await sync_to_async(give)(rows.shared, "globex")
    ann = await tab_in("acme.example.com", rows.shared.pk, "ann")
    gus = await tab_in("globex.example.com", rows.shared.pk, "gus")
    await wait_for(ann, "gus@globex")
    await wait_for(gus, "ann@acme")
    keys = {session_key(ann), session_key(gus)}
    for tenant in ("acme", "globex"):
        records = await as_tenant(tenant, lambda: shared_room(rows.shared).list())
        assert len(records) == 2
        for key in keys:
            assert key not in str(records)
        for record in records:
            assert record["user_id"].startswith("anon-")
            assert record["id"] == f"{record['tenant_id']}:{record['user_id']}"
    # Nor what the views hold and the sockets got (diffs, renders).
    shared_views.observed.clear()
    await ann.event("peek")
    await gus.event("peek")
    for key in keys:
        assert key not in str(ann.frames) + str(gus.frames)


# -- a room object is re-checked on every use -------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_kept_room_refuses_other_bindings_none_and_an_ended_grant(store, rows):
    given = await sync_to_async(give)(rows.shared, "globex", write=True)
    ann = await tab_in("acme.example.com", rows.shared.pk, "ann")
    await ann.drain(QUIET)
    room = await as_tenant("globex", lambda: shared_room(rows.shared))
    uses = {
        "list": lambda: room.list(),
        "count": lambda: room.count(),
        "broadcast": lambda: room.broadcast("shout", {"text": "stale-room"}),
        "push": lambda: room.push("peek", {}),
    }
    assert await as_tenant("globex", uses["count"]) == 1
    for use in uses.values():
        with pytest.raises(TenantMismatchError, match="opened by 'globex'"):
            await as_tenant("initech", use)
        with pytest.raises(TenantMismatchError, match="opened by 'globex'"):
            await as_tenant("acme", use)
        with pytest.raises(TenantNotSetError):
            await as_tenant(None, use)
    await sync_to_async(take_back)(given)
    for use in uses.values():
        with pytest.raises(TenantMismatchError, match="no longer"):
            await as_tenant("globex", use)
    await ann.drain(QUIET)
    assert "stale-room" not in str(ann.frames)


@pytest.mark.django_db(transaction=True)
def test_the_owners_kept_room_closes_when_the_row_moves(tenants, rows):
    with tenant_context("acme"):
        room = shared_room(rows.shared)
        assert room.count() == 0
    with rls_bypass(reason="test: the row moves"):
        assert Board.all_tenants.filter(pk=rows.shared.pk).update(tenant_id="initech") == 1
    with tenant_context("acme"), pytest.raises(TenantMismatchError, match="no longer"):
        room.list()


# -- member ids -------------------------------------------------------------------------


def test_member_id_takes_valid_tenant_ids_only():
    assert member_id("globex", 7) == "globex:7"
    for bad in ("glo:bex", "", "-rooms.acme", "a b"):
        with pytest.raises(InvalidTenantId):
            member_id(bad, 7)
    for bad in (None, ""):
        with pytest.raises(ValueError, match="user id"):
            member_id("globex", bad)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_revoked_grantees_open_view_says_nothing_before_the_watcher(
    settings, tenants, rows
):
    """The watcher may be up to TENANT_READMIT_INTERVAL away (30 s here); the
    grantee's own sends are refused at once (each re-checks its grant)."""
    settings.DJUST_CONFIG = dict(settings.DJUST_CONFIG, TENANT_READMIT_INTERVAL=30.0)
    shared_views.observed.clear()
    given = await sync_to_async(give)(rows.shared, "globex", write=True)
    ann = await tab_in("acme.example.com", rows.shared.pk, "ann")
    gus = await tab_in("globex.example.com", rows.shared.pk, "gus")
    await wait_for(ann, "gus@globex")
    await sync_to_async(take_back)(given)
    assert (await gus.event("shout", text="after revoke from globex"))["type"] == "error"
    assert (await gus.event("relay", handler="peek"))["type"] == "error"
    await ann.drain(QUIET)
    assert "after revoke from globex" not in str(ann.frames)
    assert ran("sender", "acme") == []
