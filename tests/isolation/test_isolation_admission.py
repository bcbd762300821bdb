"""Admission, origins, custom domains and streaming (docs/security.md): the ways a
request, a live event or a WebSocket handshake could bind or reach a tenant
its user may not see. Each class of attack is tried in its sibling forms."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.test import Client

from tenantry import TenantNotFound, get_current_tenant, tenant_context
from tests.app import views
from tests.app.models import Domain, Item, Tenant
from tests.live_client import LiveClient

pytestmark = pytest.mark.django_db(transaction=True)

BASE = {"TENANT_MAIN_DOMAIN": "example.com"}
MEMBERSHIP = "tests.isolation.test_isolation_admission.is_member"


def is_member(user, tenant) -> bool:
    """Users are named ``<tenant>-<name>``: members of that tenant only."""
    return user.username.split("-", 1)[0] == tenant.id


@pytest.fixture(autouse=True)
def rows(settings):
    settings.DJUST_CONFIG = {**BASE, "TENANT_RESOLVER": "subdomain"}
    Item.all_tenants.create(tenant_id="acme", name="anvil")
    Item.all_tenants.create(tenant_id="globex", name="globe")
    views.observed.clear()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("acme-alice", password="pw")


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def cookie_of(client: Client) -> str:
    return "; ".join(f"{k}={v.value}" for k, v in client.cookies.items())


# --- 5. anonymous users and client-chosen sources ---------------------------------------


@pytest.mark.parametrize(
    "config, headers",
    [
        ({"TENANT_RESOLVER": ["header", "subdomain"]}, {"HTTP_X_TENANT_ID": "globex"}),
        (
            {
                "TENANT_RESOLVER": ["custom", "subdomain"],
                "TENANT_CUSTOM_RESOLVER": "tests.sample_resolvers.from_query",
            },
            {"QUERY_STRING": "tenant=globex"},
        ),
        (
            {"TENANT_RESOLVER": ["tests.sample_resolvers.QueryResolver", "subdomain"]},
            {"QUERY_STRING": "t=globex"},
        ),
    ],
    ids=["header", "custom", "python-resolver"],
)
def test_anonymous_user_cannot_pick_a_tenant_when_membership_is_checked(
    settings, client, config, headers
):
    settings.DJUST_CONFIG = {**BASE, **config, "TENANT_MEMBERSHIP_CHECK": MEMBERSHIP}
    response = client.get("/items/", HTTP_HOST="acme.example.com", **headers)
    assert response.status_code == 404
    assert b"globe" not in response.content
    # The address itself still serves anonymous visitors.
    response = client.get("/items/", HTTP_HOST="acme.example.com")
    assert response.status_code == 200 and b"anvil" in response.content


def test_anonymous_session_tenant_is_refused(settings, client):
    settings.DJUST_CONFIG = {
        **BASE,
        "TENANT_RESOLVER": ["session", "subdomain"],
        "TENANT_MEMBERSHIP_CHECK": MEMBERSHIP,
    }
    session = client.session
    session["tenant_id"] = "globex"
    session.save()
    client.cookies["sessionid"] = session.session_key
    assert client.get("/items/", HTTP_HOST="acme.example.com").status_code == 404


def test_without_a_membership_check_the_header_still_resolves(settings, client):
    settings.DJUST_CONFIG = {**BASE, "TENANT_RESOLVER": ["header", "subdomain"]}
    response = client.get("/items/", HTTP_HOST="acme.example.com", HTTP_X_TENANT_ID="globex")
    assert response.status_code == 200 and b"globe" in response.content


def test_member_cannot_pick_another_tenant_by_header(settings, alice):
    settings.DJUST_CONFIG = {
        **BASE,
        "TENANT_RESOLVER": ["header", "subdomain"],
        "TENANT_MEMBERSHIP_CHECK": MEMBERSHIP,
    }
    client = signed_in(alice)
    ok = client.get("/items/", HTTP_HOST="acme.example.com", HTTP_X_TENANT_ID="acme")
    assert ok.status_code == 200 and b"anvil" in ok.content
    refused = client.get("/items/", HTTP_HOST="acme.example.com", HTTP_X_TENANT_ID="globex")
    assert refused.status_code == 404 and b"globe" not in refused.content


@pytest.mark.asyncio
async def test_websocket_mount_with_client_chosen_tenant_is_refused(settings):
    settings.DJUST_CONFIG = {
        **BASE,
        "TENANT_RESOLVER": ["header", "subdomain"],
        "TENANT_MEMBERSHIP_CHECK": MEMBERSHIP,
    }
    tab = LiveClient("acme.example.com", headers=[("x-tenant-id", "globex")])
    frame = await tab.mount()
    await tab.close()
    # Either refused, or (djust's live request carries no custom headers)
    # resolved from the host: never globex.
    assert "globe" not in str(frame)
    assert all(bound == "acme" for _, _, bound, _ in views.observed)


# --- 6. set_tenant and every other write of a view's tenant ------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["set_tenant", "tenant", "_tenant"])
async def test_live_event_cannot_switch_to_a_tenant_the_user_may_not_see(settings, alice, how):
    settings.DJUST_CONFIG = {
        **BASE,
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MEMBERSHIP_CHECK": MEMBERSHIP,
    }
    client = await sync_to_async(signed_in)(alice)
    tab = LiveClient("acme.example.com", cookie=cookie_of(client))
    frame = await tab.mount("tests.app.views.SwitchView", "/switch/")
    assert frame["type"] == "mount", frame
    refused = await tab.event("switch", tenant="globex", how=how)
    await tab.event("peek")
    await tab.close()
    assert refused["type"] == "error", refused
    assert views.observed == [
        ("SwitchView", "mount", "acme", ["acme"]),
        ("SwitchView", "peek", "acme", ["acme"]),
    ]


@pytest.mark.asyncio
async def test_live_event_switch_within_membership_works(settings, django_user_model):
    settings.DJUST_CONFIG = {
        **BASE,
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MEMBERSHIP_CHECK": "tests.isolation.test_isolation_admission.everyone_is_member",
    }
    user = await sync_to_async(django_user_model.objects.create_user)("acme-bob", password="pw")
    client = await sync_to_async(signed_in)(user)
    tab = LiveClient("acme.example.com", cookie=cookie_of(client))
    await tab.mount("tests.app.views.SwitchView", "/switch/")
    await tab.event("switch", tenant="globex")
    await tab.event("peek")
    await tab.close()
    assert views.observed[-1] == ("SwitchView", "peek", "globex", ["globex"])


def everyone_is_member(user, tenant) -> bool:
    return True


@pytest.mark.asyncio
async def test_anonymous_live_event_cannot_switch_when_membership_is_checked(settings):
    settings.DJUST_CONFIG = {
        **BASE,
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MEMBERSHIP_CHECK": "tests.isolation.test_isolation_admission.everyone_is_member",
    }
    tab = LiveClient("acme.example.com")
    await tab.mount("tests.app.views.SwitchView", "/switch/")
    refused = await tab.event("switch", tenant="globex")
    await tab.event("peek")
    await tab.close()
    assert refused["type"] == "error", refused
    assert views.observed[-1] == ("SwitchView", "peek", "acme", ["acme"])


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["set_tenant", "tenant", "_tenant"])
async def test_live_event_cannot_switch_to_a_tenant_the_registry_does_not_know(settings, how):
    await sync_to_async(Tenant.objects.create)(slug="acme", name="Acme")
    settings.DJUST_CONFIG = {**BASE, "TENANT_RESOLVER": "subdomain", "TENANT_MODEL": "app.Tenant"}
    tab = LiveClient("acme.example.com")
    await tab.mount("tests.app.views.SwitchView", "/switch/")
    refused = await tab.event("switch", tenant="globex", how=how)
    await tab.event("peek")
    await tab.close()
    assert refused["type"] == "error", refused
    assert views.observed[-1] == ("SwitchView", "peek", "acme", ["acme"])


def test_set_tenant_on_a_plain_view_is_admitted(settings, rf):
    from django.http import Http404

    from tenantry import TenantMixin

    Tenant.objects.create(slug="acme", name="Acme")
    settings.DJUST_CONFIG = {**BASE, "TENANT_RESOLVER": "subdomain", "TENANT_MODEL": "app.Tenant"}

    class View(TenantMixin):
        pass

    view = View()
    view.request = rf.get("/", HTTP_HOST="acme.example.com")
    assert view.tenant.id == "acme" and view.tenant.name == "Acme"
    with pytest.raises(Http404):
        view.set_tenant("nosuch")
    assert view.tenant.id == "acme"


# --- 6b. tenant_context and the registry --------------------------------------------------


def test_tenant_context_refuses_an_unknown_tenant(settings):
    Tenant.objects.create(slug="acme", name="Acme")
    settings.DJUST_CONFIG = {**BASE, "TENANT_RESOLVER": "subdomain", "TENANT_MODEL": "app.Tenant"}
    with pytest.raises(TenantNotFound, match="nosuch"), tenant_context("nosuch"):
        pass
    assert get_current_tenant() is None
    assert issubclass(TenantNotFound, LookupError)
    with tenant_context("acme") as bound:
        assert bound.name == "Acme" and isinstance(bound.raw, Tenant)
        assert [i.name for i in Item.objects.all()] == ["anvil"]
    with tenant_context("nosuch", must_exist=False) as bound:
        assert bound.id == "nosuch" and Item.objects.count() == 0


def test_tenant_context_without_registry_binds_any_valid_id():
    with tenant_context("initech") as bound:
        assert bound.id == "initech" and get_current_tenant() == "initech"


# --- 7. WebSocket origin ---------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "origin",
    [
        "http://acme.example.com",
        "https://acme.example.com:8443",
        "http://evil.org",
        "null",
        None,
        "http://example.com",
    ],
)
async def test_handshake_from_another_tenants_page_is_refused(origin):
    tab = LiveClient("globex.example.com", origin=origin)
    assert not await tab.connect()
    assert views.observed == []


@pytest.mark.asyncio
@pytest.mark.parametrize("origin", ["http://globex.example.com", "https://GLOBEX.example.com:8443"])
async def test_handshake_from_the_same_tenant_is_accepted(origin):
    tab = LiveClient("globex.example.com", origin=origin)
    frame = await tab.mount()
    await tab.close()
    assert frame["type"] == "mount", frame


@pytest.mark.asyncio
async def test_custom_domain_origin_counts_as_its_tenant(settings):
    settings.DJUST_CONFIG = {
        **BASE,
        "TENANT_RESOLVER": ["domain", "subdomain"],
        "TENANT_DOMAIN_MODEL": "app.Domain",
    }
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "shop.acme-corp.com"]
    await sync_to_async(Domain.objects.create)(domain="shop.acme-corp.com", tenant_id="acme")
    tab = LiveClient("acme.example.com", origin="https://shop.acme-corp.com")
    frame = await tab.mount()
    await tab.close()
    assert frame["type"] == "mount", frame
    other = LiveClient("globex.example.com", origin="https://shop.acme-corp.com")
    assert not await other.connect()


@pytest.mark.asyncio
async def test_missing_origin_can_be_allowed_explicitly():
    from channels.testing import WebsocketCommunicator
    from djust.websocket import LiveViewConsumer

    from tenantry.channels import TenantOriginValidator

    app = TenantOriginValidator(LiveViewConsumer.as_asgi(), allow_missing_origin=True)
    socket = WebsocketCommunicator(app, "/ws/live/", headers=[(b"host", b"acme.example.com")])
    connected, _ = await socket.connect()
    await socket.disconnect()
    assert connected
    strict = TenantOriginValidator(LiveViewConsumer.as_asgi())
    socket = WebsocketCommunicator(strict, "/ws/live/", headers=[(b"host", b"acme.example.com")])
    connected, _ = await socket.connect()
    assert not connected


def test_system_check_warns_without_the_origin_validator(settings):
    from tenantry.checks import check_origin_validator

    assert check_origin_validator() == []
    settings.ASGI_APPLICATION = "tests.isolation.test_isolation_admission.unguarded"
    assert [m.id for m in check_origin_validator()] == ["tenantry.W010"]


def _unguarded():
    from channels.auth import AuthMiddlewareStack
    from channels.routing import ProtocolTypeRouter, URLRouter

    return ProtocolTypeRouter({"websocket": AuthMiddlewareStack(URLRouter([]))})


unguarded = _unguarded()


# --- 8. custom domains cannot claim the platform's hosts -------------------------------------


@pytest.fixture
def domain_chain(settings):
    settings.DJUST_CONFIG = {
        **BASE,
        "TENANT_RESOLVER": ["domain", "subdomain"],
        "TENANT_DOMAIN_MODEL": "app.Domain",
    }


@pytest.mark.parametrize(
    "domain", ["ACME.example.com", "acme.example.com.", "example.com", "www.example.com"]
)
def test_domain_row_claiming_a_platform_host_is_refused_on_save(domain_chain, domain):
    with pytest.raises(ValidationError, match="cannot be a custom domain"):
        Domain.objects.create(domain=domain, tenant_id="globex")
    with pytest.raises(ValidationError):
        Domain(domain=domain, tenant_id="globex").full_clean()
    # bulk_create sends no pre_save: refused too (docs/registry.md#custom-domains).
    with pytest.raises(ValidationError, match="cannot be a custom domain"):
        Domain.objects.bulk_create([Domain(domain=domain, tenant_id="globex")])
    assert Domain.objects.count() == 0


def test_domain_row_repeating_the_subdomain_rule_is_allowed(domain_chain, client):
    Domain.objects.create(domain="acme.example.com", tenant_id="acme")
    Domain.objects.create(domain="shop.acme-corp.com", tenant_id="globex")
    assert Domain.objects.count() == 2


@pytest.mark.parametrize("how", ["update", "sql"])
def test_domain_row_written_around_validation_is_ignored(domain_chain, client, how, caplog):
    from django.db import connection

    if how == "update":
        row = Domain.objects.create(domain="shop.acme-corp.com", tenant_id="globex")
        Domain.objects.filter(pk=row.pk).update(domain="acme.example.com")
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {Domain._meta.db_table} (domain, tenant_id) VALUES (%s, %s)",
                ["acme.example.com", "globex"],
            )
    response = client.get("/items/", HTTP_HOST="acme.example.com")
    assert response.status_code == 200
    assert b"anvil" in response.content and b"globe" not in response.content
    assert any(
        getattr(r, "tenantry", {}).get("event") == "domain.ignored" for r in caplog.records
    )


def test_domain_command_refuses_platform_hosts(domain_chain):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="cannot be a custom domain"):
        call_command("tenantry", "domain", "acme.example.com", "globex")
    call_command("tenantry", "domain", "Shop.Acme-Corp.com", "acme")
    assert list(Domain.objects.values_list("domain", "tenant_id")) == [
        ("shop.acme-corp.com", "acme")
    ]


# --- 11. streaming bodies keep the tenant bound ---------------------------------------------


@pytest.mark.parametrize("url", ["/stream/", "/stream-view/"])
def test_streaming_body_is_produced_with_the_tenant_bound(client, url):
    response = client.get(url, HTTP_HOST="acme.example.com")
    assert response.status_code == 200 and response.streaming
    assert b"".join(response.streaming_content) == b"acme:anvil;"
    assert get_current_tenant() is None


def test_streaming_body_of_a_tenant_view_without_middleware(rf):
    request = rf.get("/", HTTP_HOST="globex.example.com")
    response = views.StreamingTenantView.as_view()(request)
    assert b"".join(response.streaming_content) == b"globex:globe;"
    assert get_current_tenant() is None


@pytest.mark.asyncio
@pytest.mark.parametrize("url", ["/astream/", "/stream/"])
async def test_streaming_body_over_asgi(async_client, settings, url):
    # Django's AsyncClient always sends Host: testserver; the header names the tenant.
    settings.DJUST_CONFIG = {"TENANT_RESOLVER": "header"}
    response = await async_client.get(url, headers={"X-Tenant-ID": "globex"})
    assert response.status_code == 200
    if response.is_async:
        body = b"".join([chunk async for chunk in response.streaming_content])
    else:
        body = await sync_to_async(lambda: b"".join(response.streaming_content))()
    assert body == b"globex:globe;"
