"""Tenant-scoped broadcasts (docs/broadcasts.md): ``tenant_group`` / ``group_send``
on a real channel layer, and djust's own pushes (``push_to_view`` and
``PresenceMixin``'s presence changes) between real live views over
WebSocket (djust's consumer behind the test project's ASGI router)."""

from __future__ import annotations

import asyncio
import random
import string

import pytest
from asgiref.sync import sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from djust.presence import PresenceManager
from djust.push import apush_to_view, push_to_view, view_group_name

from tenantry import (
    InvalidKey,
    InvalidTenantId,
    TenantInfo,
    TenantNotSetError,
    get_current_tenant,
    tenant_context,
)
from tenantry.channels import agroup_send, group_send, tenant_group
from tests.app import views
from tests.app.models import Item
from tests.live_client import LiveClient

CONFIG = {"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"}
ITEMS = "tests.app.views.ItemsView"
#: How long a tab must stay silent to count as "never got it".
QUIET = 0.5


def assert_valid_group(name: str) -> None:
    assert BaseChannelLayer().require_valid_group_name(name)
    assert len(name) < BaseChannelLayer.MAX_NAME_LENGTH


# --- tenant_group -------------------------------------------------------------


def test_group_names_are_valid_and_readable_when_they_fit():
    assert tenant_group("chat", "acme") == "tenantry.4.acme.n.chat"
    with tenant_context("globex", must_exist=False):
        assert tenant_group("chat") == "tenantry.6.globex.n.chat"
        # An explicit tenant wins over the bound one.
        assert tenant_group("chat", TenantInfo("acme")) == "tenantry.4.acme.n.chat"
    assert tenant_group("chat", 42) == "tenantry.2.42.n.chat"
    for name in ("room:1", "naïve", "x" * 200, "a b", "٣"):
        group = tenant_group(name, "acme")
        assert group.startswith("tenantry.4.acme.h.")
        assert_valid_group(group)
    long_id = "t" * 128
    assert tenant_group("chat", long_id).startswith("tenantry.x.")
    assert_valid_group(tenant_group("chat", long_id))


def test_group_names_are_injective_over_hostile_pairs():
    """Ids and names built to collide under naive joining ("a" + "_b" vs
    "a_b" + ""), every length boundary, unicode, and random pairs."""
    rng = random.Random(11)
    alphabet = string.ascii_letters + string.digits + "._-:{} \n/é"
    ids = ["a", "a_b", "a.b", "a-b", "ab", "a.n", "n", "h", "x", "1", "12", "t" * 43, "t" * 44]
    ids += ["t" * n for n in (60, 80, 127, 128)]
    ids += ["".join(rng.choice(string.ascii_letters + "._-") for _ in range(rng.randint(1, 20)))
            for _ in range(40)]  # fmt: skip
    ids = [i for i in ids if i[0] not in ".-"]
    names = ["b", "_b", "b_c", "n.b", "h.b", "b.n", "x", "." , "-", "tenantry", "chat", "room:1"]
    names += ["y" * n for n in (1, 40, 70, 80, 86, 87, 88, 99, 100, 300)]
    names += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 90))) for _ in range(60)]
    seen: dict[str, tuple[str, str]] = {}
    for tenant_id in ids:
        for name in names:
            group = tenant_group(name, tenant_id)
            assert_valid_group(group)
            assert seen.setdefault(group, (tenant_id, name)) == (tenant_id, name), group
    assert len(seen) == len(set(ids)) * len(set(names))


def test_group_name_refuses_no_tenant_bad_ids_and_bad_names():
    with pytest.raises(TenantNotSetError, match="none is bound"):
        tenant_group("chat")
    for bad in ("acme:1", "{acme}", "", ".acme", "a b", "x" * 129):
        with pytest.raises(InvalidTenantId):
            tenant_group("chat", bad)
    for name in ("", None, b"chat", 3):
        with pytest.raises(TypeError, match="group name"):
            tenant_group(name, "acme")


def test_a_djust_tenants_tenant_bound_by_an_unswitched_view_is_read_as_ours():
    """djust.tenants' mixin binds its own TenantInfo in the variable the two
    libraries share; tenantry's group names (djust's view groups of a live
    mount) read it by its id, validated like any id."""
    from djust.tenants import TenantInfo as DjustTenantInfo
    from djust.tenants.middleware import tenant_context as djust_tenant_context

    with djust_tenant_context(DjustTenantInfo("acme", name="Acme")):
        bound = get_current_tenant()
        assert type(bound) is DjustTenantInfo
        # As djust's view groups ask for a tenant view's live mount:
        assert tenant_group("chat", bound) == tenant_group("chat") == tenant_group("chat", "acme")
    for bad in ("acme:1", "a b"):
        with djust_tenant_context(DjustTenantInfo(bad)), pytest.raises(InvalidTenantId):
            tenant_group("chat")


# --- group_send -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_group_send_reaches_the_bound_tenant_only():
    layer = get_channel_layer()
    acme, globex = await layer.new_channel(), await layer.new_channel()
    await layer.group_add(tenant_group("news", "acme"), acme)
    await layer.group_add(tenant_group("news", "globex"), globex)
    try:
        with tenant_context("acme", must_exist=False):
            await agroup_send("news", {"type": "news.item", "text": "async"})
            await sync_to_async(group_send)("news", {"type": "news.item", "text": "sync"})
        got = [await asyncio.wait_for(layer.receive(acme), 2) for _ in range(2)]
        assert sorted(m["text"] for m in got) == ["async", "sync"]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(globex), QUIET)
        with pytest.raises(TenantNotSetError):
            await agroup_send("news", {"type": "news.item"})
        with pytest.raises(TenantNotSetError):
            await sync_to_async(group_send)("news", {"type": "news.item"})
    finally:
        await layer.group_discard(tenant_group("news", "acme"), acme)
        await layer.group_discard(tenant_group("news", "globex"), globex)


# --- djust's pushes between live views -------------------------------------------


@pytest.fixture
def live(settings):
    settings.DJUST_CONFIG = CONFIG
    views.observed.clear()

    async def open_tab(host: str, view: str = ITEMS) -> LiveClient:
        tab = LiveClient(host)
        frame = await tab.mount(view, "/items/")
        assert frame["type"] == "mount", frame
        return tab

    return open_tab


async def close_all(*tabs: LiveClient) -> None:
    for tab in tabs:
        await tab.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_push_to_view_reaches_the_pushing_tenants_views_only(live):
    await sync_to_async(Item.all_tenants.create)(tenant_id="acme", name="anvil")
    await sync_to_async(Item.all_tenants.create)(tenant_id="globex", name="globe")
    acme_1, acme_2 = await live("acme.example.com"), await live("acme.example.com")
    globex = await live("globex.example.com")

    await sync_to_async(Item.all_tenants.create)(tenant_id="acme", name="rocket")
    with tenant_context("acme", must_exist=False):
        await apush_to_view(ITEMS, handler="reload_items")
    for tab in (acme_1, acme_2):
        frame = await tab.until("patch", "html_update")
        assert "rocket" in str(frame)
    assert await globex.socket.receive_nothing(timeout=QUIET)
    pushed = [entry for entry in views.observed if entry[1] == "reload_items"]
    # The push's handler ran in each acme view with acme bound, seeing acme's rows.
    assert pushed == [("ItemsView", "reload_items", "acme", ["acme"])] * 2

    # The synchronous push_to_view (what a job calls) too, and for globex.
    await sync_to_async(Item.all_tenants.create)(tenant_id="globex", name="hammock")

    def push_globex():
        with tenant_context("globex", must_exist=False):
            push_to_view(ITEMS, handler="reload_items")

    await sync_to_async(push_globex)()
    frame = await globex.until("patch", "html_update")
    assert "hammock" in str(frame)
    for tab in (acme_1, acme_2):
        assert await tab.socket.receive_nothing(timeout=QUIET)

    # With no tenant bound a push reaches no tenant's views.
    await apush_to_view(ITEMS, handler="reload_items")
    for tab in (acme_1, acme_2, globex):
        assert await tab.socket.receive_nothing(timeout=QUIET)
    await close_all(acme_1, acme_2, globex)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_live_views_join_tenant_groups_only(live):
    layer = get_channel_layer()
    acme = await live("acme.example.com")
    globex = await live("globex.example.com", "tests.app.views.RoomView")
    joined = {group for group, members in layer.groups.items() if members}
    shared = {view_group_name(ITEMS), view_group_name("tests.app.views.RoomView")}
    assert not joined & shared
    with tenant_context("acme", must_exist=False):
        assert view_group_name(ITEMS) in joined
    with tenant_context("globex", must_exist=False):
        assert view_group_name("tests.app.views.RoomView") in joined
    with tenant_context("globex", must_exist=False):
        room = PresenceManager.presence_group_name("tenant:globex:room:lobby")
    assert room == tenant_group("presence:room:lobby", "globex") and room in joined
    with tenant_context("acme", must_exist=False):
        assert PresenceManager.presence_group_name("tenant:acme:room:lobby") != room
    # With no tenant bound a tenant's key names no group at all
    # (docs/presence.md#keys-and-the-tenant).
    with pytest.raises(InvalidKey):
        PresenceManager.presence_group_name("tenant:globex:room:lobby")
    await close_all(acme, globex)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_views_with_no_tenant_get_only_pushes_sent_with_no_tenant(live):
    notice = "tests.app.views.NoticeView"
    nobody = await live("example.com", notice)  # optional tenant, none resolved
    acme = await live("acme.example.com", notice)
    with tenant_context("acme", must_exist=False):
        await apush_to_view(notice, handler="show", payload={"text": "for-acme"})
    frame = await acme.until("patch", "html_update")
    assert "for-acme" in str(frame)
    assert await nobody.socket.receive_nothing(timeout=QUIET)

    await apush_to_view(notice, handler="show", payload={"text": "for-nobody"})
    frame = await nobody.until("patch", "html_update")
    assert "for-nobody" in str(frame)
    assert await acme.socket.receive_nothing(timeout=QUIET)
    shown = [(entry[2], entry[3]) for entry in views.observed if entry[1] == "show"]
    assert shown == [("acme", ["for-acme"]), (None, ["for-nobody"])]
    await close_all(nobody, acme)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_views_without_tenant_mixin_keep_djusts_shared_group(live):
    plain = "tests.app.views.PlainLiveView"
    tabs = [await live(host, plain) for host in ("acme.example.com", "globex.example.com")]
    # Not a tenant view: a push names djust's own group, whatever is bound.
    with tenant_context("acme", must_exist=False):
        assert view_group_name(plain) == "djust_view_tests_app_views_PlainLiveView"
        await apush_to_view(plain, handler="bump")
    for tab in tabs:
        frame = await tab.until("patch", "html_update")
        assert "count=1" in str(frame)
    with tenant_context("acme", must_exist=False):
        # A path that does not import counts as a tenant view (scoped).
        assert view_group_name("nowhere.views.Gone") == tenant_group(
            "djust_view_nowhere_views_Gone", "acme"
        )
    await close_all(*tabs)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_presence_pushes_go_to_the_views_tenant_whatever_the_mro(live):
    """``PresenceMixin`` listed before ``TenantMixin``, and the leave push
    sent on disconnect (after djust unbound the tenant): both still reach
    the view's tenant's group only."""
    view = "tests.app.views.PresenceFirstRoomView"
    layer = get_channel_layer()
    listeners = {}
    for tenant in ("acme", "globex"):
        with tenant_context(tenant, must_exist=False):
            group = view_group_name(view)
        listeners[tenant] = (group, await layer.new_channel())
        await layer.group_add(group, listeners[tenant][1])
    try:
        tab = await live("acme.example.com", view)
        joined = await asyncio.wait_for(layer.receive(listeners["acme"][1]), 5)
        assert joined["handler"] == "_on_presence_change"
        await tab.close()
        left = await asyncio.wait_for(layer.receive(listeners["acme"][1]), 5)
        assert left["handler"] == "_on_presence_change"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(listeners["globex"][1]), QUIET)
    finally:
        for group, channel in listeners.values():
            await layer.group_discard(group, channel)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_presence_changes_reach_the_same_tenant_only(live):
    room = "tests.app.views.RoomView"
    acme = await live("acme.example.com", room)
    globex = await live("globex.example.com", room)
    await asyncio.sleep(QUIET)  # let the joins' own pushes settle
    views.observed.clear()

    newcomer = await live("acme.example.com", room)  # djust pushes "presence changed"
    for _ in range(100):
        if any(entry[1] == "presence_change" for entry in views.observed):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(QUIET)
    changes = [entry for entry in views.observed if entry[1] == "presence_change"]
    assert changes and {entry[2] for entry in changes} == {"acme"}

    views.observed.clear()
    await newcomer.close()  # leaving pushes again, to acme only
    for _ in range(100):
        if any(entry[1] == "presence_change" for entry in views.observed):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(QUIET)
    changes = [entry for entry in views.observed if entry[1] == "presence_change"]
    assert changes and {entry[2] for entry in changes} == {"acme"}
    await close_all(acme, globex)
