"""Feature flags per tenant (docs/operations.md#feature-flags): the tenant's
``settings["flags"]`` over ``DJUST_CONFIG["TENANT_FLAGS"]`` over False, read
as ``tenant.flags.NAME`` in Python and templates, and
``tenantry.flags.tenant_flag`` on views (404, sync, async and class-based)
and on live-view handlers (an error frame, the handler never runs). Real
Django over HTTP, real djust over WebSocket."""

from __future__ import annotations

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.template import Context, Template
from django.test import AsyncClient, Client

from tenantry import FeatureDisabled, TenantInfo, tenant_context
from tenantry import conf as tenantry_conf
from tenantry.flags import is_enabled, tenant_flag
from tests.app.models import Item, Tenant
from tests.live_client import TrackedLiveClient as LiveClient
from tests.live_client import disconnect_opened

pytestmark = pytest.mark.django_db(transaction=True)

BASE = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "app.Tenant",
    "TENANT_FLAGS": {"beta": False, "new_nav": True},
}
FLAGGED_VIEW = "tests.operations_life.views.FlaggedLiveView"


@pytest.fixture(autouse=True)
def configured(settings):
    settings.DJUST_CONFIG = dict(BASE)
    settings.ROOT_URLCONF = "tests.operations_life.views"
    allowed = settings.LIVEVIEW_ALLOWED_MODULES
    settings.LIVEVIEW_ALLOWED_MODULES = [*allowed, "tests.operations_life"]


@pytest.fixture
def tenants(db):
    Tenant.objects.create(slug="acme", name="Acme", settings={"flags": {"beta": True}})
    Tenant.objects.create(slug="globex", name="Globex", settings={"flags": {"new_nav": False}})
    Tenant.objects.create(slug="initech", name="Initech")


def flags_of(tenant_id):
    with tenant_context(tenant_id) as tenant:
        return tenant.flags


def test_the_tenant_over_the_default_over_off(tenants):
    acme, globex, initech = flags_of("acme"), flags_of("globex"), flags_of("initech")
    assert (acme.beta, acme.new_nav, acme.unknown) == (True, True, False)
    assert (globex.beta, globex.new_nav) == (False, False)
    assert (initech.beta, initech.new_nav, initech.unknown) == (False, True, False)
    assert acme["beta"] is True and initech["unknown"] is False
    assert acme.as_dict() == {"beta": True, "new_nav": True}
    # A TenantInfo made by hand (no registry) reads its own settings the same way.
    assert TenantInfo("x", settings={"flags": {"beta": True}}).flags.beta is True
    assert TenantInfo("x").flags.new_nav is True


def test_templates_read_flags(tenants):
    template = Template("{% if tenant.flags.beta %}on{% else %}off{% endif %}")
    with tenant_context("acme") as acme:
        assert template.render(Context({"tenant": acme})) == "on"
    with tenant_context("initech") as initech:
        assert template.render(Context({"tenant": initech})) == "off"


def test_a_page_shows_the_tenants_flag(tenants):
    client = Client()
    assert "beta-on" in client.get("/page/", HTTP_HOST="acme.example.com").content.decode()
    assert "beta-off" in client.get("/page/", HTTP_HOST="initech.example.com").content.decode()


def test_a_changed_flag_is_seen_at_once_in_this_process(tenants):
    client = Client()
    assert client.get("/beta/", HTTP_HOST="initech.example.com").status_code == 404
    row = Tenant.objects.get(slug="initech")
    row.settings = {"flags": {"beta": True}}
    row.save()
    assert client.get("/beta/", HTTP_HOST="initech.example.com").status_code == 200


@pytest.mark.parametrize("path", ["/beta/", "/abeta/", "/beta-class/"])
def test_flagged_views_answer_404_when_off(tenants, path):
    client = Client()
    assert client.get(path, HTTP_HOST="acme.example.com").status_code == 200
    assert client.get(path, HTTP_HOST="globex.example.com").status_code == 404
    assert client.get(path, HTTP_HOST="initech.example.com").status_code == 404


@pytest.mark.asyncio
async def test_flagged_views_in_an_async_stack(settings, tenants):
    # Django's AsyncClient always sends Host: testserver; the header names the tenant.
    settings.DJUST_CONFIG = {**BASE, "TENANT_RESOLVER": "header"}
    client = AsyncClient()
    assert (await client.get("/abeta/", headers={"x-tenant-id": "acme"})).status_code == 200
    assert (await client.get("/abeta/", headers={"x-tenant-id": "globex"})).status_code == 404


def test_no_tenant_means_off():
    assert is_enabled("new_nav") is False

    @tenant_flag("new_nav")
    def view():
        return "ran"

    with pytest.raises(FeatureDisabled, match="'new_nav'"):
        view()


def test_bad_flag_names_and_values_are_named(tenants):
    for bad in ("new-ui", "_private", "", "2fa"):
        with pytest.raises(ValueError, match=r"flag name|cannot"):
            tenant_flag(bad)
    with pytest.raises(TypeError):
        tenant_flag(3)
    Tenant.objects.filter(slug="globex").update(settings={"flags": {"beta": "yes"}})
    Tenant.objects.filter(slug="initech").update(settings={"flags": ["beta"]})
    tenantry_conf.reload()
    with pytest.raises(TypeError, match=r"globex.*\[\"flags\"\]\['beta'\]|globex.*beta"):
        _ = flags_of("globex").beta
    with pytest.raises(TypeError, match="initech"):
        _ = flags_of("initech").beta


@pytest.mark.parametrize(
    "bad",
    [{"new-ui": True}, {"beta": "yes"}, ["beta"], {"beta": 1}, {"__class__": True}],
)
def test_the_config_key_is_checked(settings, bad):
    settings.DJUST_CONFIG = {**BASE, "TENANT_FLAGS": bad}
    with pytest.raises(ImproperlyConfigured, match="TENANT_FLAGS"):
        tenantry_conf.load()


def test_private_attributes_are_not_flags(tenants):
    flags = flags_of("acme")
    with pytest.raises(AttributeError):
        _ = flags.__html__
    with pytest.raises(AttributeError):
        _ = flags._beta


# -- live-view handlers -----------------------------------------------------------------


@pytest_asyncio.fixture(autouse=True)
async def disconnect_every_tab():
    yield
    await disconnect_opened()


@pytest.mark.asyncio
async def test_a_flagged_handler_runs_only_where_the_flag_is_on(tenants):
    on, off = LiveClient("acme.example.com"), LiveClient("initech.example.com")
    mounted = await on.mount(FLAGGED_VIEW, "/page/")
    assert mounted["type"] == "mount" and "beta-on" in str(mounted)
    mounted = await off.mount(FLAGGED_VIEW, "/page/")
    assert mounted["type"] == "mount" and "beta-off" in str(mounted)
    assert (await on.event("beta_action"))["type"] != "error"
    refused = await off.event("beta_action")
    assert refused == {
        "type": "error",
        "error": "Feature 'beta' is not enabled for this tenant",
        "refused": "flag",
    }
    assert (await off.event("peek"))["type"] != "error"  # the socket stays open
    rows = await sync_to_async(lambda: list(Item.all_tenants.values_list("tenant_id", flat=True)))()
    assert rows == ["acme"]


@pytest.mark.asyncio
@pytest.mark.parametrize("change", ["off", "on"])
async def test_a_changed_flag_holds_on_an_open_socket(settings, tenants, change):
    """docs/operations.md#feature-flags: an open socket takes the tenant as
    its re-admission reads it (every turn here: an interval of 0), so a flag
    turned off stops the handler and one turned on starts it, without a
    reconnect."""
    settings.DJUST_CONFIG = {**BASE, "TENANT_READMIT_INTERVAL": 0, "TENANT_CACHE_TTL": 0}
    host = "acme.example.com" if change == "off" else "initech.example.com"
    slug = host.split(".")[0]
    tab = LiveClient(host)
    assert (await tab.mount(FLAGGED_VIEW, "/page/"))["type"] == "mount"
    before = await tab.event("beta_action")
    assert (before["type"] != "error") is (change == "off")

    def flip():
        row = Tenant.objects.get(slug=slug)
        row.settings = {"flags": {"beta": change == "on"}}
        row.save()

    await sync_to_async(flip)()
    after = await tab.event("beta_action")
    if change == "off":
        assert after.get("type") == "error" and after.get("refused") == "flag", after
    else:
        assert after["type"] != "error", after
    rows = await sync_to_async(lambda: list(Item.all_tenants.values_list("tenant_id", flat=True)))()
    assert rows == [slug]
