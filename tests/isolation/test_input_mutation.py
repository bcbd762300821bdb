"""tenantry never changes what a caller passes in
(docs/security.md#the-live-plane-sockets-events-and-jobs): presence metas
(one module-level dict shared by every view, over a real WebSocket),
configs, rate-limit plans, broadcast messages, ASGI scopes, model values;
job headers in tests/django/test_celery.py. Each input is compared with a deep copy
taken before the call."""

from __future__ import annotations

import copy

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from tenantry import (
    TenantInfo,
    conf,
    get_tenant_presence_backend,
    get_tenant_state_backend,
    tenant_context,
)
from tenantry.channels import TenantOriginValidator, group_send, tenant_group
from tenantry.ratelimit import TenantRateLimiter, check
from tests.app import views
from tests.app.live_plane_views import SHARED_META
from tests.live_client import LiveClient

pytestmark = pytest.mark.django_db(transaction=True)

BASE = {"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"}
ROOM = "tests.app.live_plane_views.SharedMetaRoom"


@pytest.fixture(autouse=True)
def clean(settings):
    settings.DJUST_CONFIG = dict(BASE)
    views.observed.clear()
    TenantRateLimiter.clear_all()
    yield
    TenantRateLimiter.clear_all()


def signed_in(django_user_model, name: str) -> str:
    user = django_user_model.objects.create_user(name, password="pw")
    client = Client()
    client.force_login(user)
    return "; ".join(f"{k}={v.value}" for k, v in client.cookies.items())


# --- presence metas ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_shared_meta_dict_never_carries_one_users_name_to_another(django_user_model):
    """One module-level meta dict for every view: acme's user tracked first
    must not leave its name and id in it for globex's (or acme's next) user."""
    sent = copy.deepcopy(SHARED_META)
    alice = await sync_to_async(signed_in)(django_user_model, "acme-alice")
    carol = await sync_to_async(signed_in)(django_user_model, "acme-carol")
    bob = await sync_to_async(signed_in)(django_user_model, "globex-bob")
    tabs = [
        LiveClient("acme.example.com", cookie=alice),
        LiveClient("globex.example.com", cookie=bob),
        LiveClient("acme.example.com", cookie=carol),
    ]
    for tab in tabs:
        assert (await tab.mount(ROOM, "/items/"))["type"] == "mount"
    assert SHARED_META == sent
    for tab in tabs:
        await tab.event("peek")
        await tab.close()
    seen = {(tenant, tuple(names)) for _v, phase, tenant, names in views.observed}
    assert ("globex", ("globex-bob",)) in seen
    assert ("acme", ("acme-alice", "acme-carol")) in seen
    assert all("acme-alice" not in names for tenant, names in seen if tenant == "globex")
    assert SHARED_META == sent


@pytest.mark.parametrize("backend", ["memory"])
def test_presence_backends_keep_the_callers_meta(backend):
    meta = {"name": "x", "tags": ["a"], "nested": {"k": 1}}
    sent = copy.deepcopy(meta)
    store = get_tenant_presence_backend("acme")
    store.join("room", "u1", meta)
    diff = store.track("room", "u2", "ref-1", meta)
    assert meta == sent
    # What the store hands back is its own: changing it leaves the caller's.
    diff["joins"]["u2"]["metas"][0]["name"] = "changed"
    for record in store.list("room"):
        record["meta"]["name"] = "changed"
    assert meta == sent
    store.leave("room", "u1")
    store.untrack("room", "u2", "ref-1")


def test_state_writes_keep_the_callers_value():
    value = {"cart": [{"sku": "a", "qty": 1}], "meta": {"k": "v"}}
    sent = copy.deepcopy(value)
    store = get_tenant_state_backend("acme")
    store.set("session", value)
    assert value == sent
    read = store.get("session")
    read["cart"].append("changed")
    assert value == sent
    store.delete("session")


# --- configs and plans --------------------------------------------------------------------


def test_loading_and_checking_the_config_leaves_it_as_given(settings):
    config = {
        **BASE,
        "TENANT_EXEMPT_PATHS": ["/public/"],
        "TENANT_SUBDOMAIN_EXCLUDE": ["www"],
        "TENANT_RATE_LIMITS": {
            "http": ["100/s", {"rate": "10/m", "key": "tenant+user"}],
            "mounts": "5/m",
        },
        "TENANT_QUOTAS": {"events_per_day": 1000},
        "TENANT_READMIT_INTERVAL": 2,
    }
    sent = copy.deepcopy(config)
    settings.DJUST_CONFIG = config
    conf.reload()
    assert conf.current().readmit_interval == 2
    conf.check()
    with tenant_context("acme"):
        check("http")
    assert config == sent


def test_a_tenants_plan_is_read_not_changed(settings):
    plan = {"rate_limits": {"http": ["2/m", {"rate": "1/m", "key": "tenant+ip"}]}}
    sent = copy.deepcopy(plan)
    settings.DJUST_CONFIG = {**BASE, "TENANT_RATE_LIMITS": {"http": "100/m"}}
    with tenant_context(TenantInfo("acme", settings=plan), must_exist=False):
        for _ in range(3):
            check("http")
    assert plan == sent


# --- broadcasts and ASGI scopes -----------------------------------------------------------


def test_group_send_leaves_the_message_as_given(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    message = {"type": "notice", "payload": {"rows": [1, 2]}}
    sent = copy.deepcopy(message)
    with tenant_context("acme"):
        group_send("board", message)
        assert tenant_group("board").startswith("tenantry.")
    assert message == sent


@pytest.mark.asyncio
@pytest.mark.parametrize("origin", [b"http://acme.example.com", b"http://globex.example.com"])
async def test_the_origin_validator_leaves_the_scope_as_given(origin):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope)
        await send({"type": "websocket.close"})

    inbound = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]

    async def receive():
        return inbound.pop(0) if inbound else {"type": "websocket.disconnect", "code": 1000}

    async def send(message):
        pass

    scope = {
        "type": "websocket",
        "path": "/ws/live/",
        "headers": [(b"host", b"acme.example.com"), (b"origin", origin)],
    }
    sent = copy.deepcopy(scope)
    await TenantOriginValidator(app)(scope, receive, send)
    assert scope == sent
    assert len(seen) == (1 if origin == b"http://acme.example.com" else 0)


# --- writes -------------------------------------------------------------------------------


def test_create_for_tenant_leaves_the_values_as_given():
    from tenantry import TenantScopedMixin
    from tests.app.models import Item

    class View(TenantScopedMixin):
        model = Item

    view = View()
    view.tenant = "acme"
    values = {"name": "anvil"}
    sent = dict(values)
    view.create_for_tenant(**values)
    assert values == sent
