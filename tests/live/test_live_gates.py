"""The live plane's gates (docs/security.md#the-live-plane-sockets-events-and-jobs):
live mounts against the ``mounts`` rate limits (``http``'s when unset), open
sockets admitted again every ``TENANT_READMIT_INTERVAL`` seconds (at their
next event, URL change or server-originated turn), and the WebSocket origin
checked at the mount against the tenant it resolved, with no
``TenantOriginValidator`` in asgi.py. Real djust over WebSocket (channels'
communicator) and over SSE (djust's stream and event views through Django's
async client); refusals are audited and counted."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import include, path
from djust.push import apush_to_view
from djust.sse import sse_urlpatterns
from djust.websocket import LiveViewConsumer

from tenantry import TenantInfo, expire_live_admissions, tenant_context
from tenantry.access import refusal_counts
from tenantry.ratelimit import TenantRateLimiter
from tests.app import views
from tests.app.models import Domain, Item
from tests.lifecycle.models import Account
from tests.live_client import HostClient, SSETab, disconnect_opened
from tests.live_client import TrackedLiveClient as LiveClient

pytestmark = pytest.mark.django_db(transaction=True)

BASE = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_EXEMPT_PATHS": ["/public/", "/djust/"],
}
ITEMS = "tests.app.views.ItemsView"
PAGED = "tests.app.live_plane_views.PagedView"
#: The frame a socket gets when its tenant is no longer admitted.
REFUSED = {"type": "error", "error": "Tenant not found", "refused": "admission"}

# Django's URLs plus djust's SSE endpoints (the SSE transport's tests).
urlpatterns = [
    path("djust/", include(sse_urlpatterns)),
    path("", include("tests.app.urls")),
]

#: asgi.py as djust's docs show it: channels' own origin check, which
#: accepts any host in ALLOWED_HOSTS (every tenant's), and no
#: TenantOriginValidator.
ROUTES = AuthMiddlewareStack(URLRouter([path("ws/live/", LiveViewConsumer.as_asgi())]))
UNGUARDED = AllowedHostsOriginValidator(ROUTES)
#: No origin check in asgi.py at all (djust's consumer keeps its own
#: ALLOWED_HOSTS check).
BARE = ROUTES


@pytest.fixture(autouse=True)
def clean(settings):
    settings.DJUST_CONFIG = dict(BASE)
    settings.ROOT_URLCONF = __name__
    TenantRateLimiter.clear_all()
    views.observed.clear()
    MEMBERS.clear()
    CHECKS.clear()
    LOADS.clear()
    AUDITED.clear()
    FAIL_CHECKS.clear()
    yield
    TenantRateLimiter.clear_all()


@pytest_asyncio.fixture(autouse=True)
async def disconnect_every_tab():
    yield
    await disconnect_opened()


def configure(settings, **more):
    settings.DJUST_CONFIG = {**BASE, **more}


# -- membership, registry and audit stand-ins (module-level: DJUST_CONFIG names them) --

MEMBERS: set[tuple[str, str]] = set()
CHECKS: list[tuple[str, str]] = []
LOADS: list[str] = []
AUDITED: list[dict] = []
FAIL_CHECKS: list[bool] = []


def member(user, tenant) -> bool:
    """``TENANT_MEMBERSHIP_CHECK``: what ``MEMBERS`` says, each call counted
    (a real check queries the database)."""
    CHECKS.append((user.username, tenant.id))
    if FAIL_CHECKS:
        FAIL_CHECKS.pop()
        raise RuntimeError("the membership table is unreachable")
    return (user.username, tenant.id) in MEMBERS


def known(tenant_id):
    """``TENANT_VALIDATOR`` with the cache off: every call is a query."""
    LOADS.append(tenant_id)
    if tenant_id == "acme":
        return TenantInfo("acme", settings={"rate_limits": {"mounts": "1/m"}})
    return tenant_id in ("globex", "initech")


def audit(record) -> None:
    AUDITED.append(record)


def signed_in(django_user_model, name: str) -> str:
    """The session cookie of a signed-in user named ``name``."""
    user = django_user_model.objects.create_user(name, password="pw")
    client = Client()
    client.force_login(user)
    return "; ".join(f"{k}={v.value}" for k, v in client.cookies.items())


async def closed_with(tab: LiveClient) -> int:
    """The close code of ``tab``'s socket, skipping frames before it."""
    for _ in range(20):
        message = await tab.socket.receive_output(timeout=5)
        if message["type"] == "websocket.close":
            return message.get("code")
    raise AssertionError("the socket was not closed")


def mounts_of(view: str = "ItemsView") -> list[str | None]:
    return [tenant for v, phase, tenant, _rows in views.observed if (v, phase) == (view, "mount")]


# --- mounts against the rate limits --------------------------------------------------


@pytest.mark.asyncio
async def test_mounts_are_limited_with_the_events_error_frame(settings):
    configure(settings, TENANT_RATE_LIMITS={"mounts": "2/m", "events": "1/m"})
    tabs = [LiveClient("acme.example.com") for _ in range(3)]
    frames = [await tab.mount() for tab in tabs]
    assert [f["type"] for f in frames] == ["mount", "mount", "error"]
    refused = frames[2]
    assert refused["rate_limited"] is True and refused["limit"] == 2
    assert refused["remaining"] == 0 and 0 < refused["retry_after"] <= 30
    assert "Rate limit exceeded, mount dropped: retry in" in refused["error"]
    # mount() never ran for the refused tab: no queries, no saved state.
    assert mounts_of() == ["acme", "acme"]
    # The same frame as a refused event (same fields, same shape).
    assert (await tabs[0].event("peek"))["type"] != "error"
    event_refused = await tabs[0].event("peek")
    assert set(event_refused) == set(refused)
    # Another tenant mounts as usual.
    globex = LiveClient("globex.example.com")
    assert (await globex.mount())["type"] == "mount"
    for tab in (*tabs, globex):
        await tab.close()


@pytest.mark.asyncio
async def test_mounts_count_against_http_when_no_mounts_limit_is_set(settings):
    """A tenant at its ``http`` limit cannot keep mounting, and mounts use up
    the ``http`` budget a page would."""
    configure(settings, TENANT_RATE_LIMITS={"http": "3/m"})
    client = HostClient("acme.example.com")
    assert [(await client.get("/public/")).status_code for _ in range(2)] == [200, 200]
    first, second = LiveClient("acme.example.com"), LiveClient("acme.example.com")
    assert (await first.mount())["type"] == "mount"  # the third unit
    refused = await second.mount()
    assert refused["type"] == "error" and refused["rate_limited"] is True
    assert refused["limit"] == 3
    assert (await client.get("/public/")).status_code == 429
    assert mounts_of() == ["acme"]
    # globex has its own budget.
    globex = LiveClient("globex.example.com")
    assert (await globex.mount())["type"] == "mount"
    for tab in (first, second, globex):
        await tab.close()


@pytest.mark.asyncio
async def test_a_plan_limits_mounts_where_the_config_does_not(settings):
    configure(
        settings,
        TENANT_VALIDATOR=f"{__name__}.known",
        TENANT_RATE_LIMITS={"http": "100/m"},
    )
    acme = [LiveClient("acme.example.com") for _ in range(2)]
    assert [(await tab.mount())["type"] for tab in acme] == ["mount", "error"]  # plan: 1/m
    globex = [LiveClient("globex.example.com") for _ in range(3)]
    assert [(await tab.mount())["type"] for tab in globex] == ["mount"] * 3  # http: 100/m
    for tab in (*acme, *globex):
        await tab.close()


@pytest.mark.asyncio
async def test_mount_batch_entries_are_limited_too(settings):
    configure(settings, TENANT_RATE_LIMITS={"mounts": "1/m"})
    tab = LiveClient("acme.example.com")
    assert await tab.connect()
    await tab.socket.receive_json_from(timeout=5)
    entries = [{"view": ITEMS, "url": "/items/", "target_id": f"t{i}"} for i in range(3)]
    await tab.socket.send_json_to({"type": "mount_batch", "views": entries})
    batch = await tab.until("mount_batch")
    # (djust reports each failed entry as "mount failed", whatever its frame.)
    assert len(batch["views"]) == 1 and len(batch["failed"]) == 2
    assert mounts_of() == ["acme"]
    await tab.close()


@pytest.mark.asyncio
async def test_mount_refusals_are_audited_and_counted(settings):
    configure(
        settings, TENANT_RATE_LIMITS={"mounts": "1/m"}, TENANT_AUDIT_CALLBACK=f"{__name__}.audit"
    )
    before = refusal_counts()["rate_limit"]
    tabs = [LiveClient("acme.example.com") for _ in range(2)]
    for tab in tabs:
        await tab.mount()
        await tab.close()
    assert refusal_counts()["rate_limit"] == before + 1
    [record] = [r for r in AUDITED if r["event"] == "ratelimit.refused"]
    assert (record["tenant_id"], record["refusal"], record["scope"]) == (
        "acme",
        "rate_limit",
        "mounts",
    )


# --- SSE: the other transport ---------------------------------------------------------


@pytest.mark.asyncio
async def test_sse_mounts_are_limited_too(settings):
    configure(settings, TENANT_RATE_LIMITS={"mounts": "1/m"})
    first, second = SSETab("acme.example.com", ITEMS), SSETab("acme.example.com", ITEMS)
    assert (await first.open())["type"] == "mount"
    refused = await second.open()
    assert refused["type"] == "error" and refused["rate_limited"] is True
    assert mounts_of() == ["acme"]


# --- open sockets: re-admission -------------------------------------------------------


@pytest.fixture
def alice(django_user_model):
    """acme-alice, a member of acme, signed in."""
    MEMBERS.add(("acme-alice", "acme"))
    return signed_in(django_user_model, "acme-alice")


def membership(settings, interval: float = 60, **more) -> None:
    configure(
        settings,
        TENANT_MEMBERSHIP_CHECK=f"{__name__}.member",
        TENANT_READMIT_INTERVAL=interval,
        **more,
    )


@pytest.mark.asyncio
async def test_a_revoked_member_is_stopped_at_the_next_event(settings, alice):
    membership(settings)
    tab = LiveClient("acme.example.com", cookie=alice)
    assert (await tab.mount())["type"] == "mount"
    checked = len(CHECKS)
    for _ in range(5):
        assert (await tab.event("peek"))["type"] != "error"
    assert len(CHECKS) == checked  # no membership check per event
    MEMBERS.discard(("acme-alice", "acme"))
    # Within the interval the admission holds (the documented bound) ...
    assert (await tab.event("peek"))["type"] != "error"
    # ... and the code that revoked it can end it now.
    await sync_to_async(expire_live_admissions)("acme")
    assert await tab.event("peek") == REFUSED
    assert await closed_with(tab) == 4403
    peeks = [entry for entry in views.observed if entry[1] == "peek"]
    assert len(peeks) == 6  # the refused event never ran


@pytest.mark.asyncio
async def test_the_interval_bounds_how_long_a_revoked_member_is_served(settings, alice):
    membership(settings, interval=0.2)
    tab = LiveClient("acme.example.com", cookie=alice)
    assert (await tab.mount())["type"] == "mount"
    MEMBERS.discard(("acme-alice", "acme"))
    await asyncio.sleep(0.3)  # the socket sat idle past the interval
    assert await tab.event("add_item", name="after revocation") == REFUSED
    assert await closed_with(tab) == 4403
    assert not await sync_to_async(Item.all_tenants.filter(name="after revocation").exists)()


@pytest.mark.asyncio
async def test_an_idle_member_keeps_working_after_the_interval(settings, alice):
    membership(settings, interval=0.2)
    tab = LiveClient("acme.example.com", cookie=alice)
    assert (await tab.mount())["type"] == "mount"
    checked = len(CHECKS)
    await asyncio.sleep(0.3)
    for _ in range(3):
        assert (await tab.event("peek"))["type"] != "error"
    assert len(CHECKS) == checked + 1  # once for the interval, not per event
    await tab.close()


@pytest.mark.asyncio
async def test_an_anonymous_visitor_of_the_address_is_admitted_again(settings):
    """With a membership check, anonymous users may see the tenant their
    address names: re-admission keeps that (no false refusal)."""
    membership(settings)
    tab = LiveClient("acme.example.com")
    assert (await tab.mount())["type"] == "mount"
    await sync_to_async(expire_live_admissions)()
    assert (await tab.event("peek"))["type"] != "error"
    await tab.close()


@pytest.mark.asyncio
async def test_a_revoked_user_who_reconnects_is_refused(settings, alice):
    membership(settings)
    tab = LiveClient("acme.example.com", cookie=alice)
    assert (await tab.mount())["type"] == "mount"
    MEMBERS.discard(("acme-alice", "acme"))
    await sync_to_async(expire_live_admissions)()
    assert await tab.event("peek") == REFUSED
    again = LiveClient("acme.example.com", cookie=alice)
    frame = await again.mount()
    assert frame["type"] == "error"
    assert mounts_of() == ["acme"]
    await again.close()


@pytest.mark.asyncio
async def test_no_query_per_event(settings, alice):
    """The registry (its cache off: every lookup is a query) and the
    membership check run once per interval per socket, not per event."""
    membership(
        settings,
        TENANT_VALIDATOR=f"{__name__}.known",
        TENANT_CACHE_TTL=0,
        TENANT_RATE_LIMITS={"mounts": "100/m"},
    )
    MEMBERS.add(("acme-alice", "globex"))
    tab = LiveClient("globex.example.com", cookie=alice)
    assert (await tab.mount())["type"] == "mount"
    loads, checks = len(LOADS), len(CHECKS)
    for _ in range(10):
        assert (await tab.event("peek"))["type"] != "error"
    assert (len(LOADS), len(CHECKS)) == (loads, checks)
    await sync_to_async(expire_live_admissions)("globex")
    for _ in range(5):
        assert (await tab.event("peek"))["type"] != "error"
    assert (len(LOADS), len(CHECKS)) == (loads + 1, checks + 1)
    await tab.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("change", ["delete", "deactivate", "queryset update"])
async def test_a_deleted_or_deactivated_tenant_stops_its_open_sockets(settings, change):
    configure(
        settings, TENANT_MODEL="lifecycle.Account", TENANT_READMIT_INTERVAL=0.2, TENANT_CACHE_TTL=0
    )
    await sync_to_async(Account.objects.create)(slug="acme", name="Acme")
    await sync_to_async(Account.objects.create)(slug="globex", name="Globex")
    acme, globex = LiveClient("acme.example.com"), LiveClient("globex.example.com")
    assert (await acme.mount())["type"] == "mount"
    assert (await globex.mount())["type"] == "mount"

    def revoke():
        row = Account.objects.get(slug="acme")
        if change == "delete":
            row.delete()
        elif change == "deactivate":
            row.is_active = False
            row.save()
        else:  # no signal: seen when the registry looks again
            Account.objects.filter(slug="acme").update(is_active=False)

    await sync_to_async(revoke)()
    await asyncio.sleep(0.3)
    assert await acme.event("peek") == REFUSED
    assert await closed_with(acme) == 4403
    assert (await globex.event("peek"))["type"] != "error"
    await globex.close()


@pytest.mark.asyncio
async def test_server_originated_turns_are_admitted_again(settings, alice):
    membership(settings)
    tab = LiveClient("acme.example.com", cookie=alice)
    assert (await tab.mount())["type"] == "mount"
    with tenant_context("acme", must_exist=False):
        await apush_to_view(ITEMS, handler="reload_items")
    assert (await tab.until("patch", "html_update", "noop"))["type"] != "error"
    MEMBERS.discard(("acme-alice", "acme"))
    await sync_to_async(expire_live_admissions)("acme")
    with tenant_context("acme", must_exist=False):
        await apush_to_view(ITEMS, handler="reload_items")
    assert await tab.until("error") == REFUSED
    assert await closed_with(tab) == 4403
    reloads = [entry for entry in views.observed if entry[1] == "reload_items"]
    assert reloads == [("ItemsView", "reload_items", "acme", [])]


@pytest.mark.asyncio
async def test_presence_heartbeats_are_admitted_again(settings, alice):
    """The client's ping refreshes a tracked user's presence (djust): a
    revoked member is not kept listed in the tenant's room by it."""
    membership(settings)
    tab = LiveClient("acme.example.com", cookie=alice)
    assert (await tab.mount("tests.app.views.LiveRoomView", "/items/"))["type"] == "mount"
    await tab.socket.send_json_to({"type": "ping"})
    assert (await tab.until("pong"))["type"] == "pong"
    MEMBERS.discard(("acme-alice", "acme"))
    await sync_to_async(expire_live_admissions)("acme")
    await tab.socket.send_json_to({"type": "ping"})
    assert await tab.until("error") == REFUSED
    assert await closed_with(tab) == 4403


@pytest.mark.asyncio
async def test_url_changes_are_admitted_again(settings, alice):
    membership(settings)
    tab = LiveClient("acme.example.com", cookie=alice)
    assert (await tab.mount(PAGED, "/items/"))["type"] == "mount"
    await tab.socket.send_json_to({"type": "url_change", "params": {"page": "2"}, "uri": "/p/"})
    assert (await tab.until("patch", "html_update", "noop", "error"))["type"] != "error"
    changes = [entry for entry in views.observed if entry[:2] == ("PagedView", "handle_params")]
    MEMBERS.discard(("acme-alice", "acme"))
    await sync_to_async(expire_live_admissions)("acme")
    await tab.socket.send_json_to({"type": "url_change", "params": {"page": "3"}, "uri": "/p/"})
    assert await tab.until("error") == REFUSED
    assert await closed_with(tab) == 4403
    after = [entry for entry in views.observed if entry[:2] == ("PagedView", "handle_params")]
    assert after == changes  # handle_params did not run for the refused change


@pytest.mark.asyncio
async def test_a_failing_recheck_drops_the_turn_and_recovers(settings, alice):
    membership(settings)
    tab = LiveClient("acme.example.com", cookie=alice)
    assert (await tab.mount())["type"] == "mount"
    await sync_to_async(expire_live_admissions)()
    FAIL_CHECKS.append(True)
    dropped = await tab.event("peek")
    assert dropped["type"] == "error" and "temporarily unavailable" in dropped["error"]
    assert (await tab.event("peek"))["type"] != "error"  # the socket stayed open
    assert len([entry for entry in views.observed if entry[1] == "peek"]) == 1
    await tab.close()


@pytest.mark.asyncio
async def test_re_admission_refusals_are_audited_and_counted(settings, alice):
    membership(settings, TENANT_AUDIT_CALLBACK=f"{__name__}.audit")
    tab = LiveClient("acme.example.com", cookie=alice)
    await tab.mount()
    before = refusal_counts()["admission"]
    MEMBERS.discard(("acme-alice", "acme"))
    await sync_to_async(expire_live_admissions)()
    assert await tab.event("peek") == REFUSED
    assert refusal_counts()["admission"] == before + 1
    [record] = [r for r in AUDITED if r.get("source") == "readmission"]
    assert (record["event"], record["tenant_id"], record["refusal"]) == (
        "tenant.denied",
        "acme",
        "admission",
    )


@pytest.mark.asyncio
async def test_sse_sessions_are_admitted_again(settings, alice):
    """Over SSE each event is an HTTP POST: a revoked member's is refused by
    the request's own admission (404), a deleted tenant's (no tenant
    resolves on an exempt path) by the live gate, which ends the stream."""
    membership(settings)
    tab = SSETab("acme.example.com", ITEMS, cookie=alice)
    assert (await tab.open())["type"] == "mount"
    assert (await tab.event("peek"))["type"] != "error"
    MEMBERS.discard(("acme-alice", "acme"))
    assert (await tab.post("peek")).status_code == 404
    configure(settings, TENANT_MODEL="lifecycle.Account", TENANT_READMIT_INTERVAL=0)
    await sync_to_async(Account.objects.create)(slug="acme", name="Acme")
    # A session of its own already: djust binds an anonymous SSE session to
    # the session's key, which a signed-cookie session saved twice within
    # the GET (djust, then Django) may change when a second passes between.
    anonymous = await sync_to_async(session_cookie)("acme")
    gone = SSETab("acme.example.com", ITEMS, cookie=anonymous.decode())
    assert (await gone.open())["type"] == "mount"
    await sync_to_async(Account.objects.filter(slug="acme").delete)()
    assert await gone.event("peek") == REFUSED
    assert await gone.ended()
    assert len([entry for entry in views.observed if entry[1] == "peek"]) == 1


# --- the origin, checked at the mount ---------------------------------------------------


class Tab(LiveClient):
    """A tab on an app without TenantOriginValidator."""

    def __init__(self, host: str, headers: list[tuple[bytes, bytes]], app=UNGUARDED):
        super().__init__(host)
        self.socket = WebsocketCommunicator(
            app, "/ws/live/", headers=[(b"host", host.encode()), *headers]
        )


APPS = pytest.mark.parametrize("app", [UNGUARDED, BARE], ids=["channels-validator", "no-validator"])


async def refused_at_mount(tab: LiveClient) -> bool:
    """The socket was refused (handshake or mount) and mount() never ran."""
    connected, _ = await tab.socket.connect()
    if not connected:
        return True
    await tab.socket.receive_json_from(timeout=5)
    await tab.socket.send_json_to({"type": "mount", "view": ITEMS, "url": "/items/"})
    frame = await tab.until("mount", "error", "navigate")
    if frame != {"type": "error", "error": "Permission denied"}:
        return False
    return await closed_with(tab) == 4403


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [
        [(b"origin", b"http://acme.example.com")],
        [(b"origin", b"https://acme.example.com:8443")],
        [(b"Origin", b"http://ACME.example.com")],  # another case, both sides
        [(b"origin", b"http://example.com")],  # the apex: no tenant's page
        [(b"origin", b"http://www.example.com")],
        [(b"origin", b"null")],
        [(b"origin", b"http://globex.example.com"), (b"origin", b"http://acme.example.com")],
        [(b"origin", b"http://globex.example.com"), (b"host", b"acme.example.com")],
    ],
    ids=["acme", "acme-port", "case", "apex", "www", "null", "two-origins", "two-hosts"],
)
@APPS
async def test_a_page_of_another_tenant_cannot_mount_without_the_validator(headers, app):
    assert await refused_at_mount(Tab("globex.example.com", headers, app))
    assert views.observed == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [
        [(b"origin", b"http://globex.example.com")],
        [(b"origin", b"https://GLOBEX.example.com:8443")],
        [(b"ORIGIN", b"http://globex.example.com")],
        [],  # not a browser: no visitor's cookies ride on it
    ],
    ids=["same", "case-port", "header-case", "none"],
)
async def test_the_tenants_own_pages_mount_without_the_validator(headers):
    # channels' validator refuses a missing (or, as it reads headers,
    # upper-case) Origin itself: the app without any check shows the mount's.
    tab = Tab("globex.example.com", headers, BARE)
    assert (await tab.mount())["type"] == "mount"
    await tab.close()
    assert mounts_of() == ["globex"]


def session_cookie(tenant_id: str) -> bytes:
    client = Client()
    session = client.session
    session["tenant_id"] = tenant_id
    session.save()
    return f"sessionid={session.session_key}".encode()


@pytest.mark.asyncio
@APPS
async def test_the_origin_is_checked_against_the_tenant_the_mount_resolved(settings, app):
    """globex's own page opens a socket to globex's host, but the session
    resolver picks acme for the mount: refused."""
    configure(settings, TENANT_RESOLVER=["session", "subdomain"])
    own = (b"origin", b"http://globex.example.com")
    acme_session = await sync_to_async(session_cookie)("acme")
    assert await refused_at_mount(Tab("globex.example.com", [own, (b"cookie", acme_session)], app))
    globex_session = await sync_to_async(session_cookie)("globex")
    same = Tab("globex.example.com", [own, (b"cookie", globex_session)], app)
    assert (await same.mount())["type"] == "mount"
    await same.close()
    assert mounts_of() == ["globex"]


@pytest.mark.asyncio
async def test_custom_domains_at_the_mount(settings):
    configure(settings, TENANT_RESOLVER=["domain", "subdomain"], TENANT_DOMAIN_MODEL="app.Domain")
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "shop.acme-corp.com"]
    await sync_to_async(Domain.objects.create)(domain="shop.acme-corp.com", tenant_id="acme")
    shop = [(b"origin", b"https://shop.acme-corp.com")]
    # BARE: channels' validator read ALLOWED_HOSTS when it was built.
    assert await refused_at_mount(Tab("globex.example.com", shop, BARE))
    own = Tab("acme.example.com", shop, BARE)
    assert (await own.mount())["type"] == "mount"
    await own.close()
    assert mounts_of() == ["acme"]


@pytest.mark.asyncio
async def test_a_live_redirect_checks_the_origin_too():
    """``live_redirect_mount`` mounts through the same checks."""
    tab = Tab("globex.example.com", [(b"origin", b"http://acme.example.com")], BARE)
    assert (await tab.socket.connect())[0]
    await tab.socket.receive_json_from(timeout=5)
    await tab.socket.send_json_to({"type": "live_redirect_mount", "view": ITEMS, "url": "/items/"})
    frame = await tab.until("mount", "error", "navigate")
    assert frame == {"type": "error", "error": "Permission denied"}
    assert views.observed == []


@pytest.mark.asyncio
async def test_mount_batch_checks_the_origin_too():
    tab = Tab("globex.example.com", [(b"origin", b"http://acme.example.com")])
    assert (await tab.socket.connect())[0]
    await tab.socket.receive_json_from(timeout=5)
    entries = [{"view": ITEMS, "url": "/items/", "target_id": f"t{i}"} for i in range(2)]
    await tab.socket.send_json_to({"type": "mount_batch", "views": entries})
    batch = await tab.until("mount_batch")
    assert batch["views"] == [] and len(batch["failed"]) == 2
    assert views.observed == []


@pytest.mark.asyncio
async def test_an_sse_mount_from_another_tenants_page_is_refused():
    tab = SSETab("globex.example.com", ITEMS, origin="http://acme.example.com")
    assert await tab.open() == {"type": "error", "error": "Permission denied"}
    own = SSETab("globex.example.com", ITEMS, origin="http://globex.example.com")
    assert (await own.open())["type"] == "mount"
    assert mounts_of() == ["globex"]


@pytest.mark.asyncio
async def test_origin_refusals_are_audited_and_counted(settings):
    configure(settings, TENANT_AUDIT_CALLBACK=f"{__name__}.audit")
    before = refusal_counts()["origin"]
    assert await refused_at_mount(
        Tab("globex.example.com", [(b"origin", b"http://acme.example.com")])
    )
    guarded = LiveClient("globex.example.com", origin="http://acme.example.com")
    assert not await guarded.connect()  # TenantOriginValidator: at the handshake
    assert refusal_counts()["origin"] == before + 2
    stages = sorted(r["stage"] for r in AUDITED if r["event"] == "websocket.refused")
    assert stages == ["handshake", "mount"]
    assert {r["refusal"] for r in AUDITED if r["event"] == "websocket.refused"} == {"origin"}
    mount = next(r for r in AUDITED if r.get("stage") == "mount")
    assert (mount["tenant_id"], mount["origin"]) == ("globex", "http://acme.example.com")
