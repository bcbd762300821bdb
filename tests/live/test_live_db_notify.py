"""djust's PostgreSQL NOTIFY bridge between tenants
(docs/broadcasts.md#postgresql-notify): a notification raised in one tenant
(``send_pg_notify``, ``@notify_on_save``) reaches only that tenant's live
views; one that names no tenant (a raw ``NOTIFY``, a trigger) reaches only
views without one. The listener's dispatch runs on both databases; the
real NOTIFY round trip on PostgreSQL. And every channels group djust uses
is derived from djust's source and scoped (the start-up check)."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from djust.db import notify_on_save, untrack
from djust.db.notifications import PostgresNotifyListener

from tenantry import channels as tenant_channels
from tenantry import tenant_context
from tenantry.channels import NOTIFY_TENANT_KEY, db_notify_group, tag_notify_payload
from tenantry.djust import broadcasts as djust_broadcasts
from tests.app import views
from tests.app.models import Item
from tests.live_client import Tab as _Tab

pytestmark = pytest.mark.django_db(transaction=True)

BASE = {"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"}
ORDERS = "tests.app.live_plane_views.OrderBoard"
PLAIN = "tests.app.live_plane_views.PlainOrderBoard"

OPENED: list[_Tab] = []


class Tab(_Tab):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        OPENED.append(self)


@pytest.fixture(autouse=True)
def clean(settings):
    settings.DJUST_CONFIG = dict(BASE)
    views.observed.clear()


@pytest_asyncio.fixture(autouse=True)
async def disconnect_every_tab():
    yield
    while OPENED:
        tab = OPENED.pop()
        with contextlib.suppress(Exception):
            await tab.socket.disconnect()


async def boards() -> dict[str, Tab]:
    """acme's and globex's order boards, and a board without tenancy."""
    opened = {}
    for name, host, view in (
        ("acme", "acme.example.com", ORDERS),
        ("globex", "globex.example.com", ORDERS),
        ("plain", "example.com", PLAIN),
    ):
        tab = Tab(host)
        assert (await tab.mount(view, "/items/"))["type"] == "mount", name
        await tab.drain()
        opened[name] = tab
    return opened


async def received(opened: dict[str, Tab], text: str, timeout: float = 1) -> set[str]:
    """Which boards got a frame with ``text`` (drained side by side: each
    waits ``timeout`` for what should not come)."""
    drained = await asyncio.gather(*(tab.drain(timeout) for tab in opened.values()))
    got = {name: json.dumps(frames) for name, frames in zip(opened, drained, strict=True)}
    return {name for name, frames in got.items() if text in frames}


def raised_in(tenant: str | None, payload: dict) -> str:
    """The NOTIFY payload ``send_pg_notify`` sends inside ``tenant``."""
    with tenant_context(tenant, must_exist=False):
        return json.dumps(tag_notify_payload(payload))


@pytest.mark.asyncio
async def test_a_notification_reaches_the_tenant_it_was_raised_in_only(settings):
    """The red team's F4: acme's ``send_pg_notify("orders", ...)`` landed in
    globex's order board's ``handle_info``."""
    opened = await boards()
    listener = PostgresNotifyListener.instance()
    await listener._dispatch("orders", raised_in("acme", {"customer": "acme-big-customer"}))
    assert await received(opened, "acme-big-customer") == {"acme"}
    await listener._dispatch("orders", raised_in("globex", {"customer": "globex-customer"}))
    assert await received(opened, "globex-customer") == {"globex"}
    handled = sorted(o[2] or "-" for o in views.observed if o[1] == "handle_info")
    assert handled == ["acme", "globex"]  # handle_info ran as the board's own tenant


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({"pk": 7, "customer": "no-tenant-customer"}),
        "no-tenant-customer: not json",
        json.dumps(["no-tenant-customer"]),
    ],
    ids=["json without tenant", "raw text", "json list"],
)
async def test_a_notification_without_a_tenant_reaches_views_without_one(settings, raw):
    opened = await boards()
    await PostgresNotifyListener.instance()._dispatch("orders", raw)
    assert await received(opened, "no-tenant-customer") == {"plain"}


@pytest.mark.asyncio
@pytest.mark.parametrize("named", ["no:such id", ["acme"], {"id": "acme"}, True, None])
async def test_a_payload_naming_no_valid_tenant_reaches_no_tenant_view(settings, named):
    opened = await boards()
    raw = json.dumps({NOTIFY_TENANT_KEY: named, "customer": "odd-customer"})
    await PostgresNotifyListener.instance()._dispatch("orders", raw)
    assert not (await received(opened, "odd-customer")) & {"acme", "globex"}


@pytest.mark.asyncio
async def test_views_do_not_see_the_routing_key(settings):
    opened = await boards()
    await PostgresNotifyListener.instance()._dispatch("orders", raised_in("acme", {"order": 1}))
    frames = json.dumps(await opened["acme"].drain(1))
    assert "order" in frames and NOTIFY_TENANT_KEY not in frames


def test_the_tag_names_the_bound_tenant_only():
    """A caller's payload cannot name another tenant (it is replaced), is
    never changed itself, and one that is not a dict is refused while a
    tenant is bound (it could not carry the tenant)."""
    theirs = {"pk": 1, NOTIFY_TENANT_KEY: "globex"}
    with tenant_context("acme", must_exist=False):
        assert tag_notify_payload(theirs) == {"pk": 1, NOTIFY_TENANT_KEY: "acme"}
        with pytest.raises(TypeError, match="must be a dict while a tenant is bound"):
            tag_notify_payload([1, 2])
    assert theirs == {"pk": 1, NOTIFY_TENANT_KEY: "globex"}
    assert tag_notify_payload(theirs) == {"pk": 1}  # no tenant bound: names none
    assert tag_notify_payload([1, 2]) == [1, 2]


@pytest.mark.asyncio
async def test_leaving_a_board_leaves_its_groups(settings):
    """A disconnect (and a re-mount) leaves the tenant's db_notify group it
    joined, not only djust's own name."""
    layer = get_channel_layer()
    group = db_notify_group("orders", "acme")
    tab = Tab("acme.example.com")
    assert (await tab.mount(ORDERS, "/items/"))["type"] == "mount"
    assert len(layer.groups.get(group, {})) == 1
    await tab.socket.disconnect()
    OPENED.remove(tab)
    for _ in range(50):
        if not layer.groups.get(group):
            break
        await asyncio.sleep(0.02)
    assert not layer.groups.get(group)


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_real_notify_reaches_the_tenant_it_was_raised_in_only(settings):
    """On a real PostgreSQL: acme's code calls djust's ``send_pg_notify``
    and saves a ``@notify_on_save`` model inside acme; a raw ``NOTIFY``
    (a trigger's) names no tenant."""
    from django.db import connection
    from djust.db.decorators import send_pg_notify

    listener = PostgresNotifyListener.instance()
    try:
        await listener.ensure_listening("orders")  # what view.listen("orders") does
        opened = await boards()

        def acme_sells():
            with tenant_context("acme", must_exist=False):
                send_pg_notify("orders", {"customer": "acme-big-customer"})

        await sync_to_async(acme_sells)()
        assert await received(opened, "acme-big-customer", 3) == {"acme"}

        notify_on_save("orders")(Item)
        try:

            def globex_saves():
                with tenant_context("globex", must_exist=False):
                    return Item.objects.create(name="globex-order").pk

            await sync_to_async(globex_saves)()
            # The payload is djust's: {"pk": ..., "event": "save", "model": "app.Item"}.
            assert await received(opened, Item._meta.label, 3) == {"globex"}
        finally:
            untrack(Item)

        def trigger():
            with connection.cursor() as cursor:
                cursor.execute("NOTIFY orders, 'trigger-payload'")

        await sync_to_async(trigger)()
        assert await received(opened, "trigger-payload", 3) == {"plain"}
    finally:
        await PostgresNotifyListener.areset_for_tests()


# --- every group djust uses, from its source ---------------------------------------------


def test_every_group_djust_uses_is_scoped():
    assert tenant_channels.djust_group_problems() == []


UNSCOPED = {
    "constant": (
        "async def f(layer, c):\n    await layer.group_add('djust_newfeature', c)\n",
        "djust_newfeature",
    ),
    "f-string through async_to_sync": (
        "def f(layer, room):\n    async_to_sync(layer.group_send)(f'djust_room_{room}', {})\n",
        "djust_room_",
    ),
    "unknown namer": (
        "async def f(layer, c):\n    name = make_group()\n    await layer.group_add(name, c)\n",
        "make_group()",
    ),
    "attribute": (
        "async def f(self, c):\n    await self.layer.group_add(self._g, c)\n",
        "self._g",
    ),
    "not replaced": (
        "class T:\n    async def _join_listen_channels(self, layer, ch):\n"
        "        await layer.group_add(f'djust_db_notify_{ch}', ch)\n",
        "djust_db_notify_",
    ),
}


@pytest.mark.parametrize("source, named", list(UNSCOPED.values()), ids=list(UNSCOPED))
def test_the_check_names_a_group_tenantry_does_not_scope(source, named):
    """What djust may grow: each is reported with its place in djust."""
    [problem] = djust_broadcasts._module_group_problems(
        ast.parse(source), "djust.fake", "djust/fake.py"
    )
    assert problem.startswith("djust djust/fake.py:") and named in problem


@pytest.mark.parametrize(
    "source",
    [
        "async def f(layer, c, path):\n    await layer.group_add(view_group_name(path), c)\n",
        "async def f(self):\n    g = PresenceManager.presence_group_name(self.key)\n"
        "    await self.layer.group_send(g, {})\n",
        "async def f(layer, c):\n    await layer.group_add('djust_hotreload', c)\n",
    ],
    ids=["view group", "presence group", "process-wide"],
)
def test_the_check_accepts_the_groups_tenantry_scopes(source):
    assert djust_broadcasts._module_group_problems(ast.parse(source), "djust.fake", "x.py") == []


def test_the_check_names_a_replacement_that_is_not_installed():
    tenant_channels.uninstall_djust_broadcasts()
    try:
        problems = tenant_channels.djust_group_problems()
        assert any("djust.db.notifications.PostgresNotifyListener._dispatch" in p for p in problems)
        assert any("djust.push.view_group_name" in p for p in problems)
    finally:
        tenant_channels.install_djust_broadcasts()
    assert tenant_channels.djust_group_problems() == []
