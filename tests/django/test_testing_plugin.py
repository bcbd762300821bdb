"""tenantry.testing (docs/testing.md): the pytest plugin's fixtures and
TenantTestCase, used the way an application's suite would use them."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tenantry import (
    TenantAwareMemoryBackend,
    get_current_tenant,
    get_tenant_state_backend,
    resolve_tenant,
)
from tenantry.context import tenant_context
from tenantry.testing import TenantClient, TenantTestCase
from tests.app.models import Item, Tenant

REGISTRY = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "app.Tenant",
}


@pytest.fixture(autouse=True)
def registry(settings):
    settings.DJUST_CONFIG = dict(REGISTRY)


def add(tenant_id: str, name: str) -> None:
    with tenant_context(tenant_id, must_exist=False):
        Item.objects.create(name=name)


def test_plugin_is_active(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("tenantry.testing")


@pytest.mark.django_db
def test_tenant_creates_the_registry_row_and_binds_it(tenant):
    assert tenant.id == "acme" and get_current_tenant() == tenant
    assert isinstance(tenant.raw, Tenant) and Tenant.objects.get(slug="acme").name == "acme"
    Item.objects.create(name="anvil")  # the scoped manager fills the bound tenant
    assert list(Item.all_tenants.values_list("tenant_id", flat=True)) == ["acme"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "tenant",
    ["globex", {"id": "initech", "name": "Initech", "settings": {"plan": "pro"}}],
    indirect=True,
)
def test_tenant_is_parametrizable(tenant):
    assert get_current_tenant().id == tenant.id in {"globex", "initech"}
    if tenant.id == "initech":
        assert tenant.name == "Initech" and tenant.settings == {"plan": "pro"}


@pytest.mark.django_db
def test_tenant_factory_makes_more_tenants_unbound(tenant, tenant_factory, rf):
    other = tenant_factory("globex", name="Globex")
    assert other.name == "Globex" and get_current_tenant().id == "acme"
    assert resolve_tenant(rf.get("/", HTTP_HOST="globex.example.com")).id == "globex"


def test_c_writes_memory_presence_and_state():
    TenantAwareMemoryBackend("acme").join("room", "u1")
    get_tenant_state_backend("acme").set("k", 1)


def test_d_memory_presence_and_state_start_empty():
    assert TenantAwareMemoryBackend("acme").count("room") == 0
    assert get_tenant_state_backend("acme").get("k") is None


@pytest.mark.django_db
def test_tenant_client_by_subdomain(tenant, tenant_client):
    add("acme", "anvil")
    add("globex", "globe")
    response = tenant_client.get("/items/?x=1")
    assert response.wsgi_request.get_host() == "acme.example.com"
    assert response.wsgi_request.GET["x"] == "1"
    html = response.content.decode()
    assert "<li>anvil</li>" in html and "globe" not in html


@pytest.mark.django_db
def test_tenant_client_by_header(settings, tenant_factory):
    settings.DJUST_CONFIG = {"TENANT_RESOLVER": "header", "TENANT_HEADER": "X-Org"}
    Item.all_tenants.create(tenant_id="globex", name="globe")
    response = TenantClient("globex").get("/items/")
    assert response.wsgi_request.headers["X-Org"] == "globex"
    assert "<li>globe</li>" in response.content.decode()


@pytest.mark.django_db
def test_tenant_client_by_path(settings):
    settings.DJUST_CONFIG = {"TENANT_RESOLVER": "path", "TENANT_EXEMPT_PATHS": ["/"]}
    response = TenantClient("acme").get("/items/")
    assert response.wsgi_request.path == "/acme/items/"
    assert response.wsgi_request.tenant.id == "acme"
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": "path",
        "TENANT_PATH_POSITION": 2,
        "TENANT_EXEMPT_PATHS": ["/"],
    }
    response = TenantClient("acme").get("/items/")
    assert response.wsgi_request.path == "/items/acme/"
    assert response.wsgi_request.tenant.id == "acme"


@pytest.mark.django_db
def test_tenant_client_by_session(settings):
    settings.DJUST_CONFIG = {"TENANT_RESOLVER": "session"}
    Item.all_tenants.create(tenant_id="globex", name="globe")
    response = TenantClient("globex").get("/items/")
    assert response.wsgi_request.session["tenant_id"] == "globex"
    assert "<li>globe</li>" in response.content.decode()


@pytest.mark.django_db
def test_tenant_client_refuses_an_id_no_request_can_carry(settings):
    settings.DJUST_CONFIG = {"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"}
    with pytest.raises(LookupError, match="no configured resolver step can be aimed"):
        TenantClient("Acme")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_live_view_mounts_and_handles_events_for_the_tenant(tenant, live_view):
    from asgiref.sync import sync_to_async

    await sync_to_async(add)("acme", "anvil")
    await sync_to_async(add)("globex", "globe")
    view = await live_view("tests.app.views.ItemsView", "/items/")
    assert 'id="tenant-id">acme</p>' in view.html
    assert ">anvil</li>" in view.html and "globe" not in view.html
    frame = await view.send_event("add_item", name="rocket")
    assert frame["type"] == "patch", frame
    assert ">rocket</li>" in view.html and "globe" not in view.html
    names = await sync_to_async(
        lambda: sorted(Item.all_tenants.filter(tenant_id="acme").values_list("name", flat=True))
    )()
    assert names == ["anvil", "rocket"]


@override_settings(DJUST_CONFIG=REGISTRY)
class UnittestStyle(TenantTestCase):
    tenant_id = "globex"
    tenant_name = "Globex Inc"

    def test_tenant_row_binding_and_client(self):
        self.assertEqual(Tenant.objects.get(slug="globex").name, "Globex Inc")
        self.assertEqual(get_current_tenant().id, "globex")
        Item.objects.create(name="globe")
        response = self.client.get("/items/")
        self.assertContains(response, "<li>globe</li>")
        self.assertContains(response, '<h1 id="tenant-name">Globex Inc</h1>')
