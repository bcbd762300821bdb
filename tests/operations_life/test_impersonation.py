"""Staff impersonation (docs/operations.md#impersonation): a staff user
with ``tenantry.impersonate`` acts as a member of a tenant for a bounded
time, with a reason; audited at start, at each write and at the end; the
"acting as" banner on pages through the context processor; never more than
the member may do (the membership check and every permission see the
member); no nesting; it ends at stop(), when its time is up, and on logout.
Real Django over HTTP with real sessions and users, real djust over
WebSocket."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from tenantry import impersonation
from tests.app.models import Item, Organization, Tenant
from tests.live_client import LiveClient, SSETab
from tests.operations_life import views

pytestmark = pytest.mark.django_db(transaction=True)

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenantry.impersonation.ImpersonationMiddleware",
    "tenantry.middleware.TenantMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
AUDITED: list[dict] = []


def audited(record):
    AUDITED.append(record)


def events(name):
    return [r for r in AUDITED if r["event"] == name]


@pytest.fixture(autouse=True)
def configured(settings):
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_MODEL": "app.Tenant",
        "TENANT_MEMBERSHIP_CHECK": "tests.operations_life.views.member",
        "TENANT_AUDIT_CALLBACK": f"{__name__}.audited",
    }
    settings.ROOT_URLCONF = "tests.operations_life.views"
    settings.MIDDLEWARE = MIDDLEWARE
    AUDITED.clear()
    views.MEMBERS.clear()
    yield
    views.MEMBERS.clear()


@pytest.fixture
def people(django_user_model):
    Tenant.objects.create(slug="acme", name="Acme")
    Tenant.objects.create(slug="globex", name="Globex")
    staff = django_user_model.objects.create_user("support", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="impersonate"))
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    root = django_user_model.objects.create_superuser("root")
    plain_staff = django_user_model.objects.create_user("intern", is_staff=True)
    views.MEMBERS.update(
        {
            ("support", "acme"),
            ("alice", "acme"),
            ("bob", "globex"),
            ("root", "acme"),
            ("intern", "acme"),
        }
    )
    return {"staff": staff, "alice": alice, "bob": bob, "root": root, "intern": plain_staff}


def signed_in(user) -> Client:
    client = Client(HTTP_HOST="acme.example.com")
    client.force_login(user)
    return client


def start(client, who="alice", reason="ticket 4521", minutes="15"):
    return client.post("/impersonate/", {"as": who, "reason": reason, "minutes": minutes})


def page(client, host="acme.example.com"):
    return client.get("/page/", HTTP_HOST=host)


def test_acting_as_a_member_shows_the_banner_and_is_audited(people):
    client = signed_in(people["staff"])
    assert "support" in page(client).content.decode()
    response = start(client)
    assert response.status_code == 200, response.content
    body = page(client).content.decode()
    assert "<p id='user'>alice</p>" in body
    assert (
        "data-tenantry-impersonation" in body and "Acting as <strong data-acting-as>alice" in body
    )
    assert "ticket 4521" in body
    (started,) = events("impersonation.started")
    assert started["tenant_id"] == "acme" and started["reason"] == "ticket 4521"
    assert started["staff"] == str(people["staff"].pk)
    assert started["acting_as"] == str(people["alice"].pk)
    assert client.post("/impersonate/stop/").content == b"stopped"
    body = page(client).content.decode()
    assert "<p id='user'>support</p>" in body and "data-tenantry-impersonation" not in body
    (ended,) = events("impersonation.ended")
    assert ended["why"] == "stopped" and ended["tenant_id"] == "acme"


def test_each_write_is_audited(people):
    client = signed_in(people["staff"])
    client.post("/write/", {"name": "before"})  # not impersonating: no write event
    assert events("impersonation.write") == []
    start(client)
    client.post("/write/", {"name": "as alice"})
    writes = [(r["model"], r["action"]) for r in events("impersonation.write")]
    assert writes == [
        ("app.Item", "insert"),
        ("app.Item", "update"),
        ("app.Item", "delete"),
        ("app.Item", "insert"),
    ]
    assert {r["tenant_id"] for r in events("impersonation.write")} == {"acme"}
    assert {r["acting_as"] for r in events("impersonation.write")} == {str(people["alice"].pk)}


def test_a_reason_a_bound_and_the_permission_are_required(people):
    client = signed_in(people["staff"])
    assert start(client, reason="").status_code == 403
    assert start(client, reason="   ").status_code == 403
    for minutes in ("0", "-5", str(impersonation.MAX_MINUTES + 1), "nan"):
        assert start(client, minutes=minutes).status_code == 403, minutes
    intern = signed_in(people["intern"])  # staff, without the permission
    refused = start(intern)
    assert refused.status_code == 403 and b"tenantry.impersonate" in refused.content
    assert events("impersonation.started") == []


def test_never_more_than_the_member(people):
    client = signed_in(people["staff"])
    # Not a member of this tenant: refused (the membership check sees the member).
    assert start(client, who="bob").status_code == 403
    # A superuser would grant more than a member's rights.
    assert start(client, who="root").status_code == 403
    assert start(client, who="support").status_code == 403  # oneself
    assert start(client).status_code == 200
    # As alice: another tenant's pages are refused as they are to alice.
    assert page(client, "globex.example.com").status_code == 404
    # alice loses her membership: the next request is refused like hers.
    views.MEMBERS.discard(("alice", "acme"))
    assert page(client).status_code == 404


def test_no_nesting(people, django_user_model):
    carol = django_user_model.objects.create_user("carol")
    views.MEMBERS.add(("carol", "acme"))
    client = signed_in(people["staff"])
    assert start(client).status_code == 200
    nested = start(client, who="carol")
    assert nested.status_code == 403 and b"do not nest" in nested.content
    assert "<p id='user'>alice</p>" in page(client).content.decode()
    assert carol.pk  # carol was never acted as
    assert len(events("impersonation.started")) == 1


def test_it_ends_when_its_time_is_up(people, monkeypatch):
    client = signed_in(people["staff"])
    assert start(client, minutes="1").status_code == 200
    assert "alice" in page(client).content.decode()
    later = time.time() + 61
    monkeypatch.setattr(impersonation.time, "time", lambda: later)
    body = page(client).content.decode()
    assert "<p id='user'>support</p>" in body and "data-tenantry-impersonation" not in body
    (ended,) = events("impersonation.ended")
    assert ended["why"] == "expired"


def test_it_ends_on_logout(people):
    client = signed_in(people["staff"])
    start(client)
    assert client.post("/logout/").content == b"signed out"
    assert "anonymous" in page(client).content.decode()
    (ended,) = events("impersonation.ended")
    assert ended["why"] == "logout"


def test_the_members_last_login_is_not_touched(people):
    client = signed_in(people["staff"])
    start(client)
    people["alice"].refresh_from_db()
    assert people["alice"].last_login is None


def test_the_middleware_is_required(people, settings):
    settings.MIDDLEWARE = [m for m in MIDDLEWARE if "impersonation" not in m]
    client = signed_in(people["staff"])
    with pytest.raises(ImproperlyConfigured, match="ImpersonationMiddleware"):
        start(client)
    settings.MIDDLEWARE = [m for m in MIDDLEWARE if "impersonation" not in m] + [
        "tenantry.impersonation.ImpersonationMiddleware"
    ]
    with pytest.raises(ImproperlyConfigured, match="before"):
        start(signed_in(people["staff"]))


def test_writes_of_other_requests_are_not_attributed(people):
    """Only the impersonated session's requests are audited as the staff's."""
    staff = signed_in(people["staff"])
    start(staff)
    other = signed_in(people["alice"])  # alice herself, in her own session
    other.post("/write/", {"name": "alice herself"})
    assert events("impersonation.write") == []
    assert Item.all_tenants.filter(name="alice herself").count() == 1


# -- live views ---------------------------------------------------------------------------


def cookie_of(client) -> str:
    return "; ".join(f"{name}={morsel.value}" for name, morsel in client.cookies.items())


@pytest.mark.asyncio
async def test_a_live_view_runs_as_the_member_audited_and_stops_on_time(people, monkeypatch):
    client = await sync_to_async(signed_in)(people["staff"])
    assert (await sync_to_async(start)(client)).status_code == 200
    tab = LiveClient("acme.example.com", cookie=cookie_of(client))
    try:
        assert (await tab.mount())["type"] == "mount"
        assert (await tab.event("add_item", name="via socket"))["type"] != "error"
        writes = [(r["model"], r["action"]) for r in events("impersonation.write")]
        assert writes == [("app.Item", "insert")]
        assert events("impersonation.write")[0]["acting_as"] == str(people["alice"].pk)
        later = time.time() + 16 * 60
        monkeypatch.setattr(impersonation.time, "time", lambda: later)
        refused = await tab.event("add_item", name="after the bound")
        assert refused == {
            "type": "error",
            "error": impersonation.LIVE_ENDED,
            "refused": "impersonation",
        }
        # The socket's session still names the member: a new mount is refused
        # until a page load gives the staff user's session back.
        again = LiveClient("acme.example.com", cookie=cookie_of(client))
        assert (await again.mount())["type"] == "error"
        await again.close()
    finally:
        await tab.close()
    names = await sync_to_async(lambda: list(Item.all_tenants.values_list("name", flat=True)))()
    assert names == ["via socket"]


# -- open sockets learn of the end (docs/operations.md#impersonation-on-open-sockets) ----------

ITEMS = ("tests.app.views.ItemsView", "/items/")
PLAIN = ("tests.app.views.PlainWriterLiveView", "/items/")
ENDED = {"type": "error", "error": impersonation.LIVE_ENDED, "refused": "impersonation"}


def live_config(settings, interval):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_READMIT_INTERVAL": interval}


async def turn(tab, view, name):
    if view == ITEMS:
        return await tab.event("add_item", name=name)
    return await tab.event("write", slug=name)


async def written(view):
    if view == ITEMS:
        rows = Item.all_tenants.values_list("name", flat=True)
    else:
        rows = Organization.objects.values_list("slug", flat=True)
    return await sync_to_async(lambda: sorted(rows))()


async def refused_and_closed(tab, view, name):
    assert await turn(tab, view, name) == ENDED
    closed = await tab.socket.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4403}


async def acting_tab(people, view):
    client = await sync_to_async(signed_in)(people["staff"])
    assert (await sync_to_async(start)(client)).status_code == 200
    tab = LiveClient("acme.example.com", cookie=cookie_of(client))
    assert (await tab.mount(*view))["type"] == "mount"
    assert (await turn(tab, view, "while-acting"))["type"] != "error"
    return client, tab


@pytest.mark.asyncio
@pytest.mark.parametrize("view", [ITEMS, PLAIN], ids=["tenant-view", "view-without-mixin"])
@pytest.mark.parametrize("end", ["stop", "logout"])
async def test_an_open_socket_learns_of_the_end_at_its_next_event(people, settings, view, end):
    """stop() or logout in this process: the socket's next event is refused
    (long before the re-admission interval), the socket closed, nothing
    written; a view without TenantMixin is tracked the same."""
    live_config(settings, 3600)
    client, tab = await acting_tab(people, view)
    try:
        writes = events("impersonation.write")
        assert [w["acting_as"] for w in writes] == [str(people["alice"].pk)]
        url = "/impersonate/stop/" if end == "stop" else "/logout/"
        assert (await sync_to_async(client.post)(url)).status_code == 200
        await refused_and_closed(tab, view, "after-the-end")
    finally:
        await tab.close()
    assert await written(view) == ["while-acting"]


@pytest.mark.asyncio
@pytest.mark.parametrize("view", [ITEMS, PLAIN], ids=["tenant-view", "view-without-mixin"])
@pytest.mark.parametrize("end", ["stop", "logout"])
async def test_a_socket_of_another_process_learns_by_the_session(people, settings, view, end):
    """Ended in another process (this process forgets what it saw): the
    socket learns from its session at its check (every turn here: a
    re-admission interval of 0)."""
    live_config(settings, 0)
    client, tab = await acting_tab(people, view)
    try:
        url = "/impersonate/stop/" if end == "stop" else "/logout/"
        assert (await sync_to_async(client.post)(url)).status_code == 200
        impersonation._ended_here.clear()  # what another process knows
        await refused_and_closed(tab, view, "after-the-end")
    finally:
        await tab.close()
    assert await written(view) == ["while-acting"]


@pytest.mark.asyncio
@pytest.mark.parametrize("view", [ITEMS, PLAIN], ids=["tenant-view", "view-without-mixin"])
@pytest.mark.parametrize("loss", ["permission", "deactivated"])
async def test_the_impersonator_losing_the_permission_ends_it(people, settings, view, loss):
    """The staff user loses tenantry.impersonate (or is deactivated): the
    socket is refused at its check, audited, and the session no longer acts
    as the member on the next page load (ended: nobody is signed in by it)."""
    live_config(settings, 0)
    client, tab = await acting_tab(people, view)
    staff = people["staff"]
    try:
        if loss == "permission":
            await sync_to_async(staff.user_permissions.clear)()
        else:
            staff.is_active = False
            await sync_to_async(staff.save)()
        await refused_and_closed(tab, view, "after-the-loss")
    finally:
        await tab.close()
    assert await written(view) == ["while-acting"]
    assert [e["why"] for e in events("impersonation.ended")] == ["permission revoked"]
    body = (await sync_to_async(page)(client)).content.decode()
    assert "<p id='user'>anonymous</p>" in body


@pytest.mark.parametrize("loss", ["permission", "deactivated"])
def test_a_page_load_after_the_loss_gives_the_staff_session_back(people, loss):
    """Over HTTP alone: the next request ends it (audited) and the session is
    the staff user's again (nobody's for a deactivated one)."""
    client = signed_in(people["staff"])
    assert start(client).status_code == 200
    staff = people["staff"]
    if loss == "permission":
        staff.user_permissions.clear()
    else:
        staff.is_active = False
        staff.save()
    body = page(client).content.decode()
    expected = "support" if loss == "permission" else "anonymous"
    assert f"<p id='user'>{expected}</p>" in body
    assert [e["why"] for e in events("impersonation.ended")] == ["permission revoked"]


@pytest.mark.asyncio
async def test_a_view_without_the_mixin_refuses_a_mount_after_the_bound(people, monkeypatch):
    """The mount gate holds for every live view: the socket's session still
    names the member after the bound, so a new mount is refused."""
    client = await sync_to_async(signed_in)(people["staff"])
    assert (await sync_to_async(start)(client)).status_code == 200
    later = time.time() + 16 * 60
    monkeypatch.setattr(impersonation.time, "time", lambda: later)
    tab = LiveClient("acme.example.com", cookie=cookie_of(client))
    try:
        assert await tab.mount(*PLAIN) == ENDED
    finally:
        await tab.close()


# -- one tenant, one session (docs/operations.md#impersonation) ---------------------------------


def test_an_impersonation_acts_only_in_its_own_tenant(people):
    """alice is a member of globex too: acting as her in acme does not reach
    globex (pages and writes refused, nothing audited under acme)."""
    views.MEMBERS.add(("alice", "globex"))
    client = signed_in(people["staff"])
    assert start(client).status_code == 200
    refused = page(client, host="globex.example.com")
    assert refused.status_code == 403
    assert b"an impersonation acts only there" in refused.content
    AUDITED.clear()
    written = client.post("/write/", {"name": "into globex"}, HTTP_HOST="globex.example.com")
    assert written.status_code == 403
    assert not Item.all_tenants.filter(tenant_id="globex").exists()
    assert events("impersonation.write") == []
    # Its own tenant still works.
    assert "<p id='user'>alice</p>" in page(client).content.decode()


@pytest.mark.asyncio
@pytest.mark.parametrize("view", [ITEMS, PLAIN], ids=["tenant-view", "view-without-mixin"])
async def test_a_socket_in_another_tenant_is_refused(people, view):
    views.MEMBERS.add(("alice", "globex"))
    client = await sync_to_async(signed_in)(people["staff"])
    assert (await sync_to_async(start)(client)).status_code == 200
    tab = LiveClient("globex.example.com", cookie=cookie_of(client))
    try:
        frame = await tab.mount(*view)
        if view == ITEMS:
            assert frame["type"] == "error" and frame["refused"] == "impersonation"
            assert "acts only there" in frame["error"]
        else:  # a view without tenancy has no tenant to be another one
            assert frame["type"] == "mount"
    finally:
        await tab.close()
    assert not await sync_to_async(Item.all_tenants.filter(tenant_id="globex").exists)()


@pytest.mark.parametrize("end", ["stop", "logout"])
def test_a_session_replayed_after_the_end_is_nobody(people, end):
    """A cookie session captured while acting and sent again after stop() or
    logout signs nobody in (the end is kept server-side until the bound)."""
    client = signed_in(people["staff"])
    assert start(client).status_code == 200
    captured = {name: morsel.value for name, morsel in client.cookies.items()}
    client.post("/impersonate/stop/" if end == "stop" else "/logout/")

    def replayed() -> Client:
        replay = Client(HTTP_HOST="acme.example.com")
        for name, value in captured.items():
            replay.cookies[name] = value
        return replay

    body = page(replayed()).content.decode()
    assert "<p id='user'>anonymous</p>" in body
    AUDITED.clear()
    replayed().post("/write/", {"name": "replayed"})
    assert events("impersonation.write") == []  # not acting: not the member's write


@pytest.mark.parametrize("promotion", ["superuser", "impersonator"])
def test_a_member_promoted_meanwhile_ends_it(people, promotion):
    """Never more than a member: alice made a superuser (or given
    tenantry.impersonate) while support acts as her ends it at the next
    request (audited "refused"); support is support again."""
    client = signed_in(people["staff"])
    assert start(client).status_code == 200
    alice = people["alice"]
    if promotion == "superuser":
        alice.is_superuser = True
        alice.save()
    else:
        alice.user_permissions.add(Permission.objects.get(codename="impersonate"))
    assert "<p id='user'>support</p>" in page(client).content.decode()
    assert [e["why"] for e in events("impersonation.ended")] == ["refused"]


@pytest.mark.asyncio
@pytest.mark.parametrize("view", [ITEMS, PLAIN], ids=["tenant-view", "view-without-mixin"])
async def test_a_member_promoted_meanwhile_ends_it_on_an_open_socket(people, settings, view):
    live_config(settings, 0)
    _client, tab = await acting_tab(people, view)
    try:
        alice = people["alice"]
        alice.is_superuser = True
        await sync_to_async(alice.save)()
        await refused_and_closed(tab, view, "as-a-superuser")
    finally:
        await tab.close()
    assert await written(view) == ["while-acting"]


# -- the SSE transport --------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("view", [ITEMS, PLAIN], ids=["tenant-view", "view-without-mixin"])
@pytest.mark.parametrize("where", ["this-process", "another-process"])
async def test_an_sse_session_stops_acting_after_stop(people, settings, view, where):
    """Over SSE each event is an HTTP POST with the session of the mount:
    after stop() (here, or in another process: the end kept server-side) the
    member's write does not happen."""
    live_config(settings, 3600 if where == "this-process" else 0)
    client = await sync_to_async(signed_in)(people["staff"])
    assert (await sync_to_async(start)(client)).status_code == 200
    tab = SSETab("acme.example.com", view[0], cookie=cookie_of(client))
    assert (await tab.open())["type"] == "mount"
    event, field = ("add_item", "name") if view == ITEMS else ("write", "slug")
    assert (await tab.post(event, {field: "while-acting"})).status_code in (200, 202)
    await tab.next()
    assert await written(view) == ["while-acting"]
    assert (await sync_to_async(client.post)("/impersonate/stop/")).status_code == 200
    if where == "another-process":
        impersonation._ended_here.clear()
    response = await tab.post(event, {field: "after-stop"})
    if response.status_code in (200, 202):
        frame = await tab.next()
        assert frame["type"] == "error", frame
    assert await written(view) == ["while-acting"]
