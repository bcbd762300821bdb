"""A live view that switches tenant (``set_tenant()``, ``self.tenant = ``,
``self._tenant = ``) leaves everything its socket held for the old tenant:
the view's push group, its presence room (tracking and broadcasts), its
db_notify groups, pushes queued for it; joins the new tenant's; and the new
tenant is bound at once, in the same handler and in every later turn
(docs/mixins.md#switching-tenant-on-a-live-view). Real djust over
channels' WebSocket communicator; presence in memory and in Redis."""

from __future__ import annotations

import contextlib
import json

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from djust.presence import PresenceManager
from djust.push import apush_to_view

from tenantry import expire_live_admissions, tenant_context
from tenantry.channels import db_notify_group
from tests.app import views
from tests.app.models import Item
from tests.live.test_live_gates import signed_in
from tests.live_client import Tab as _Tab

pytestmark = pytest.mark.django_db(transaction=True)

BASE = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MEMBERSHIP_CHECK": f"{__name__}.member",
    "TENANT_READMIT_INTERVAL": 60,
}
BOARD = "tests.app.live_plane_views.SwitchBoard"
LIVE_BOARD = "tests.app.live_plane_views.LiveSwitchBoard"
RESOLVING = "tests.app.live_plane_views.ResolvingBoard"
REFUSED = {"type": "error", "error": "Tenant not found", "refused": "admission"}

MEMBERS: set[tuple[str, str]] = set()


def member(user, tenant) -> bool:
    return (user.username, tenant.id) in MEMBERS


OPENED: list[_Tab] = []


class Tab(_Tab):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        OPENED.append(self)


@pytest.fixture(autouse=True)
def clean(settings):
    settings.DJUST_CONFIG = dict(BASE)
    views.observed.clear()
    MEMBERS.clear()


@pytest_asyncio.fixture(autouse=True)
async def disconnect_every_tab():
    yield
    while OPENED:
        tab = OPENED.pop()
        with contextlib.suppress(Exception):
            await tab.socket.disconnect()


@pytest.fixture
def people(django_user_model):
    """mallory, a member of acme and globex; alice, of acme; gina, of globex."""
    MEMBERS.update(
        {("mallory", "acme"), ("mallory", "globex"), ("alice", "acme"), ("gina", "globex")}
    )
    Item.all_tenants.create(tenant_id="acme", name="acme-note")
    Item.all_tenants.create(tenant_id="globex", name="globex-secret")
    return {name: signed_in(django_user_model, name) for name in ("mallory", "alice", "gina")}


async def open_board(host: str, cookie: str, view: str = BOARD) -> Tab:
    tab = Tab(host, cookie=cookie)
    assert (await tab.mount(view, "/items/"))["type"] == "mount"
    await tab.drain()
    return tab


async def switched(people, how: str = "set_tenant", view: str = BOARD) -> Tab:
    """mallory's board, mounted on acme and switched to globex."""
    tab = await open_board("acme.example.com", people["mallory"], view)
    answer = await tab.event("switch", tenant="globex", how=how)
    assert answer["type"] in ("patch", "html_update", "noop"), answer
    await tab.drain()
    return tab


async def revoke(name: str, tenant: str) -> None:
    MEMBERS.discard((name, tenant))
    await sync_to_async(expire_live_admissions)(tenant)


def seen(phase: str) -> list[tuple]:
    return [o for o in views.observed if o[:2] == ("SwitchBoard", phase)]


HOW = pytest.mark.parametrize("how", ["set_tenant", "tenant", "_tenant"])


@pytest.mark.asyncio
@HOW
async def test_the_new_tenant_is_bound_in_the_switching_handler(settings, people, how):
    tab = await open_board("acme.example.com", people["mallory"])
    answer = await tab.event("switch", tenant="globex", how=how)
    assert "globex-secret" in json.dumps(answer) and "acme-note" not in json.dumps(answer)
    assert seen("switch") == [("SwitchBoard", "switch", "globex", ["globex"])]


@pytest.mark.asyncio
@HOW
async def test_a_switched_view_gets_no_push_of_its_old_tenant(settings, people, how):
    """The red team's F3: switched to globex, then revoked by acme, she still
    received acme's ``push_to_view`` and ran its handler in the globex view."""
    tab = await switched(people, how)
    await revoke("mallory", "acme")
    with tenant_context("acme"):
        await apush_to_view(BOARD, handler="show", payload={"text": "acme-confidential"})
    assert "acme-confidential" not in json.dumps(await tab.drain(1))
    assert seen("show") == []
    # globex's pushes reach her, and run as globex (the turn's tenant is the view's now).
    with tenant_context("globex"):
        await apush_to_view(BOARD, handler="show", payload={"text": "globex-news"})
    assert "globex-news" in json.dumps(await tab.drain(1))
    assert seen("show") == [("SwitchBoard", "show", "globex", ["globex"])]


@pytest.mark.asyncio
async def test_a_switched_view_gets_no_presence_broadcast_of_its_old_tenant(settings, people):
    tab = await switched(people)
    await revoke("mallory", "acme")
    alice = await open_board("acme.example.com", people["alice"])
    group = PresenceManager.presence_group_name
    with tenant_context("acme"):
        acme_room = group("tenant:acme:board")
    with tenant_context("globex"):
        globex_room = group("tenant:globex:board")
    layer = get_channel_layer()
    for room, text in ((acme_room, "acme-chat"), (globex_room, "gx-chat")):
        await layer.group_send(room, {"type": "presence_event", "event": "chat", "payload": text})
    got = json.dumps(await tab.drain(1))
    assert "acme-chat" not in got and "gx-chat" in got
    assert "acme-chat" in json.dumps(await alice.drain())  # acme's room still works


@pytest.mark.asyncio
async def test_a_switched_view_gets_no_notification_of_its_old_tenant(settings, people):
    tab = await switched(people)
    layer = get_channel_layer()
    for tenant in ("acme", "globex"):
        await layer.group_send(
            db_notify_group("orders", tenant),
            {"type": "db_notify", "channel": "orders", "payload": {"order": f"{tenant}-order"}},
        )
    got = json.dumps(await tab.drain(1))
    assert "acme-order" not in got and "globex-order" in got
    assert [o[2] for o in seen("handle_info")] == ["globex"]


@pytest.mark.asyncio
async def test_a_switched_view_is_re_admitted_for_its_new_tenant(settings, people):
    tab = await switched(people)
    await revoke("mallory", "acme")
    assert (await tab.event("peek"))["type"] != "error"  # acme's revocation no longer matters
    await revoke("mallory", "globex")
    assert await tab.event("peek") == REFUSED
    assert await tab.closed() == 4403


@pytest.mark.asyncio
@pytest.mark.parametrize("store", ["memory", "redis"])
@pytest.mark.parametrize("view", [BOARD, LIVE_BOARD], ids=["djust-presence", "tenantry-presence"])
async def test_a_switched_view_leaves_its_old_tenants_room(settings, people, store, view, request):
    """Tracked in acme's room at the mount: after the switch acme's room no
    longer lists her (djust's PresenceMixin and tenantry's, memory and
    Redis), and she is not listed in globex's until the view tracks again."""
    if store == "redis":
        settings.DJUST_CONFIG = {
            **BASE,
            "PRESENCE_BACKEND": "tenant_redis",
            "PRESENCE_REDIS_URL": request.getfixturevalue("redis_server").url,
        }
    from tenantry import get_tenant_presence_backend

    tab = await open_board("acme.example.com", people["mallory"], view)

    def names(tenant):
        return sorted(
            str(p.get("meta", {}).get("name"))
            for p in get_tenant_presence_backend(tenant).list("board")
        )

    assert await sync_to_async(names)("acme") == ["mallory"]
    await tab.event("switch", tenant="globex")
    assert await sync_to_async(names)("acme") == []
    assert await sync_to_async(names)("globex") == []
    if view == BOARD:
        await tab.event("rejoin")
        assert await sync_to_async(names)("globex") == ["again"]


@pytest.mark.asyncio
async def test_a_refused_switch_changes_nothing(settings, people):
    """A switch the membership check refuses: the view keeps its tenant,
    its groups and its room."""
    tab = await open_board("acme.example.com", people["alice"])
    answer = await tab.event("switch", tenant="globex")
    assert answer["type"] == "error"
    with tenant_context("acme"):
        await apush_to_view(BOARD, handler="show", payload={"text": "still-acme"})
    assert "still-acme" in json.dumps(await tab.drain(1))


@pytest.mark.asyncio
async def test_a_view_that_resolves_again_to_another_tenant_moves_too(settings, people):
    """djust.tenants' re-resolution (``_tenant_resolved = False``) with a
    ``resolve_tenant`` that answers another tenant now: the same move."""
    tab = await open_board("acme.example.com", people["mallory"], RESOLVING)
    answer = await tab.event("pick", tenant="globex")
    assert "globex-secret" in json.dumps(answer)
    await tab.drain()
    await revoke("mallory", "acme")
    with tenant_context("acme"):
        await apush_to_view(RESOLVING, handler="show", payload={"text": "acme-confidential"})
    with tenant_context("globex"):
        await apush_to_view(RESOLVING, handler="show", payload={"text": "globex-news"})
    got = json.dumps(await tab.drain(1))
    assert "acme-confidential" not in got and "globex-news" in got
