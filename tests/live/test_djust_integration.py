"""A real djust LiveView with TenantMixin, over HTTP (Django's test client)
and over WebSocket (channels' WebsocketCommunicator against djust's
LiveViewConsumer behind the project's ASGI router)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from tests.app import views
from tests.app.models import Item
from tests.live_client import LiveClient

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_EXEMPT_PATHS": ["/public/"],
}


@pytest.fixture(autouse=True)
def tenants(settings):
    settings.DJUST_CONFIG = CONFIG
    Item.all_tenants.create(tenant_id="acme", name="anvil")
    Item.all_tenants.create(tenant_id="globex", name="globe")
    views.observed.clear()
    yield


# --- HTTP -------------------------------------------------------------------


def test_http_get_renders_the_tenants_data(tenant_client):
    response = tenant_client.get("/items/")  # tenantry.testing: acme.example.com
    assert response.status_code == 200
    html = response.content.decode()
    assert '<p id="tenant-id">acme</p>' in html
    assert "<li>anvil</li>" in html and "globe" not in html
    assert views.observed == [("ItemsView", "mount", "acme", ["acme"])]


def test_required_view_without_tenant_is_404(client):
    assert client.get("/items/", HTTP_HOST="example.com").status_code == 404
    assert client.get("/items/", HTTP_HOST="www.example.com").status_code == 404
    assert views.observed == []


def test_disallowed_host_is_400(client):
    assert client.get("/items/", HTTP_HOST="acme.evil.org").status_code == 400


def test_optional_view_and_exempt_paths(client):
    response = client.get("/optional/", HTTP_HOST="example.com")
    assert response.status_code == 200 and "optional none" in response.content.decode()
    response = client.get("/public/", HTTP_HOST="example.com")
    assert response.status_code == 200 and response.content == b"public tenant=None"


def test_plain_django_view(client):
    response = client.get("/plain/", HTTP_HOST="globex.example.com")
    assert response.content.decode().strip() == "plain tenant=globex name=globex view=globex"


def test_middleware_binds_and_restores(client):
    from tenantry import get_current_tenant

    response = client.get("/bound/", HTTP_HOST="globex.example.com")
    assert response.content == b"bound=globex request=globex"
    assert get_current_tenant() is None


def test_tenant_name_and_settings_reach_the_template(client, settings):
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": "custom",
        "TENANT_CUSTOM_RESOLVER": "tests.sample_resolvers.returns_tenant_info",
    }
    html = client.get("/items/", HTTP_HOST="acme.example.com").content.decode()
    assert '<h1 id="tenant-name">Acme Corp</h1>' in html
    assert 'data-theme="dark"' in html


# --- WebSocket --------------------------------------------------------------


@pytest.mark.asyncio
async def test_websocket_mount_and_events_bind_the_tenant(live_view):
    # tenantry.testing's live_view (the app runs in a context of its own, so
    # the fixture's binding cannot leak into the consumer)
    view = await live_view("tests.app.views.ItemsView", "/items/")
    assert ">anvil</li>" in view.html and "globe" not in view.html
    await view.send_event("add_item", name="rocket")
    assert ">rocket</li>" in view.html
    await view.send_event("peek")
    await view.close()
    assert views.observed == [
        ("ItemsView", "mount", "acme", ["acme"]),
        ("ItemsView", "add_item", "acme", ["acme"]),
        ("ItemsView", "peek", "acme", ["acme"]),
    ]
    names = await sync_to_async(
        lambda: sorted(Item.all_tenants.filter(tenant_id="acme").values_list("name", flat=True))
    )()
    assert names == ["anvil", "rocket"]


@pytest.mark.asyncio
async def test_websocket_without_tenant_does_not_mount():
    tab = LiveClient("example.com")
    frame = await tab.mount()
    await tab.close()
    assert frame["type"] != "mount", frame
    assert views.observed == []


@pytest.mark.asyncio
async def test_two_tenants_interleaved_never_see_each_other():
    acme, globex = LiveClient("acme.example.com"), LiveClient("globex.example.com")
    await asyncio.gather(acme.mount(), globex.mount())
    for i in range(10):
        await asyncio.gather(
            acme.event("add_item", name=f"a{i}"),
            globex.event("add_item", name=f"g{i}"),
        )
        await asyncio.gather(acme.event("peek"), globex.event("peek"))
    await asyncio.gather(acme.close(), globex.close())

    assert len(views.observed) == 2 + 40
    for _view, phase, bound, rows in views.observed:
        assert bound in ("acme", "globex")
        assert rows == [bound], (phase, bound, rows)

    acme_rows = await sync_to_async(
        lambda: list(Item.all_tenants.filter(tenant_id="acme").values_list("name", flat=True))
    )()
    globex_rows = await sync_to_async(
        lambda: list(Item.all_tenants.filter(tenant_id="globex").values_list("name", flat=True))
    )()
    assert acme_rows == ["anvil"] + [f"a{i}" for i in range(10)]
    assert globex_rows == ["globe"] + [f"g{i}" for i in range(10)]


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["tenant_memory", "tenant_redis"])
async def test_presence_of_tenant_views_is_per_tenant(backend, request, settings):
    """track_presence() in a TenantMixin LiveView lands in the tenant's space:
    the same room name in two tenants never shares its members."""
    from tenantry import TenantAwareMemoryBackend, get_tenant_presence_backend

    config = {**CONFIG, "PRESENCE_BACKEND": backend}
    if backend == "tenant_redis":
        config["PRESENCE_REDIS_URL"] = request.getfixturevalue("redis_server").url
    settings.DJUST_CONFIG = config
    TenantAwareMemoryBackend.clear_all()

    tabs = [LiveClient(h) for h in ("acme.example.com", "acme.example.com", "globex.example.com")]
    for tab in tabs:
        frame = await tab.mount("tests.app.views.RoomView", "/items/")
        assert frame["type"] == "mount", frame
    for tab in tabs:
        await tab.event("peek_presence")
    for _ in range(100):  # a presence broadcast may answer before the event's own frame
        if sum(1 for entry in views.observed if entry[1] == "peek") == 3:
            break
        await asyncio.sleep(0.05)
    seen = {(t, tuple(rows)) for _, phase, t, rows in views.observed if phase == "peek"}
    assert seen == {
        ("acme", ("acme-visitor", "acme-visitor")),
        ("globex", ("globex-visitor",)),
    }
    acme = await sync_to_async(lambda: get_tenant_presence_backend("acme").count("room:lobby"))()
    globex = await sync_to_async(
        lambda: get_tenant_presence_backend("globex").count("room:lobby")
    )()
    assert (acme, globex) == (2, 1)
    for tab in tabs:
        await tab.close()
    left = await sync_to_async(lambda: get_tenant_presence_backend("acme").count("room:lobby"))()
    assert left == 0
