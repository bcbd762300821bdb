"""Every way something reaches an open socket passes re-admission
(docs/security.md#the-live-plane-sockets-events-and-jobs): each channel-layer
message djust's consumer handles (presence broadcasts, pushes, db_notify, and
every other handler channels' type dispatch reaches, derived from djust),
each client frame type djust accepts (derived from its receive dispatch),
ticks, async results, SSE frames; and the frames that cause work or
broadcasts are held to the tenant's rate limits. Real djust over channels'
WebSocket communicator and over SSE; the start-up check names what the
installed djust would escape."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core import checks
from django.urls import include, path
from djust.presence import PresenceManager
from djust.push import view_group_name
from djust.sse import sse_urlpatterns
from djust.websocket import LiveViewConsumer

from tenantry import expire_live_admissions, tenant_context
from tenantry.access import refusal_counts
from tenantry.djust import live as live_gates
from tenantry.ratelimit import TenantRateLimiter
from tests.app import live_plane_views, views
from tests.lifecycle.models import Account
from tests.live.test_live_gates import session_cookie, signed_in
from tests.live_client import SSETab
from tests.live_client import Tab as _Tab

pytestmark = pytest.mark.django_db(transaction=True)

BASE = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_EXEMPT_PATHS": ["/public/", "/djust/"],
}
BOARD = "tests.app.live_plane_views.CursorBoard"
TICKING = "tests.app.live_plane_views.TickingBoard"
ITEMS = "tests.app.views.ItemsView"
REFUSED = {"type": "error", "error": "Tenant not found", "refused": "admission"}
SECRET = "globex-board-meeting-secret"

urlpatterns = [
    path("djust/", include(sse_urlpatterns)),
    path("", include("tests.app.urls")),
]

MEMBERS: set[tuple[str, str]] = set()


def member(user, tenant) -> bool:
    """``TENANT_MEMBERSHIP_CHECK``: what ``MEMBERS`` says."""
    return (user.username, tenant.id) in MEMBERS


OPENED: list[_Tab] = []


class Tab(_Tab):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        OPENED.append(self)


@pytest.fixture(autouse=True)
def clean(settings):
    settings.DJUST_CONFIG = dict(BASE)
    settings.ROOT_URLCONF = __name__
    TenantRateLimiter.clear_all()
    views.observed.clear()
    MEMBERS.clear()
    live_plane_views.WORK_GATE.clear()
    yield
    live_plane_views.WORK_GATE.set()
    TenantRateLimiter.clear_all()


@pytest_asyncio.fixture(autouse=True)
async def disconnect_every_tab():
    yield
    while OPENED:
        tab = OPENED.pop()
        with contextlib.suppress(Exception):
            await tab.socket.disconnect()


def configure(settings, **more):
    settings.DJUST_CONFIG = {**BASE, **more}


def membership(settings, **more):
    configure(settings, TENANT_MEMBERSHIP_CHECK=f"{__name__}.member", **more)


@pytest.fixture
def people(django_user_model):
    """victor and mallory, members of globex, signed in."""
    MEMBERS.update({("victor", "globex"), ("mallory", "globex")})
    return {name: signed_in(django_user_model, name) for name in ("victor", "mallory")}


async def revoke(name: str, tenant: str = "globex") -> None:
    MEMBERS.discard((name, tenant))
    await sync_to_async(expire_live_admissions)(tenant)


async def board(host: str, cookie: str = "", view: str = BOARD) -> Tab:
    tab = Tab(host, cookie=cookie)
    assert (await tab.mount(view, "/items/"))["type"] == "mount"
    await tab.drain()
    return tab


async def assert_refused(tab: Tab, *, leaked: str = SECRET) -> None:
    """``tab`` got the re-admission refusal and was closed with 4403, and
    nothing carrying ``leaked`` reached it."""
    got = []
    while not got or got[-1]["type"] != "__closed__":
        got.append(await tab.recv())
    assert REFUSED in got, got
    assert got[-1] == {"type": "__closed__", "code": 4403}, got
    assert leaked not in json.dumps(got), got


def in_tenant(tenant: str, name_of):
    with tenant_context(tenant, must_exist=False):
        return name_of()


# --- channel-layer messages -----------------------------------------------------------


@pytest.mark.asyncio
async def test_a_revoked_member_gets_no_presence_broadcast(settings, people):
    """The red team's first finding: with djust's ``reauth_on_event`` off,
    ``presence_event`` re-checked nothing, and a revoked member who sends
    nothing kept receiving the room's broadcasts."""
    membership(settings, TENANT_READMIT_INTERVAL=60)
    victor = await board("globex.example.com", people["victor"])
    mallory = await board("globex.example.com", people["mallory"])
    await victor.event("say", text="before revocation")
    assert "before revocation" in json.dumps(await mallory.drain())  # the control
    await revoke("mallory")
    await victor.event("say", text=SECRET)
    await assert_refused(mallory)
    assert SECRET in json.dumps(await victor.drain())  # the room still works


@pytest.mark.asyncio
async def test_an_idle_socket_of_a_deactivated_tenant_gets_no_broadcast(settings):
    configure(
        settings, TENANT_MODEL="lifecycle.Account", TENANT_READMIT_INTERVAL=0, TENANT_CACHE_TTL=0
    )
    await sync_to_async(Account.objects.create)(slug="globex", name="Globex")
    await sync_to_async(Account.objects.create)(slug="acme", name="Acme")
    idle = await board("globex.example.com")
    other = await board("acme.example.com")
    await sync_to_async(Account.objects.filter(slug="globex").update)(is_active=False)
    group = in_tenant("globex", lambda: PresenceManager.presence_group_name("tenant:globex:board"))
    await get_channel_layer().group_send(
        group, {"type": "presence_event", "event": "chat", "payload": {"text": SECRET}}
    )
    await assert_refused(idle)
    assert (await other.event("peek"))["type"] != "error"


def _handlers() -> list[str]:
    """Every handler channels' type dispatch reaches on djust's consumer,
    from djust itself (its socket's own connect and disconnect aside)."""
    names = live_gates.consumer_handlers(LiveViewConsumer)
    assert {"presence_event", "server_push", "client_push_event", "db_notify"} <= set(names)
    return [n for n in names if n not in ("websocket_connect", "websocket_disconnect")]


@pytest.mark.asyncio
@pytest.mark.parametrize("handler", _handlers())
async def test_every_channel_layer_handler_re_admits_first(settings, people, handler):
    """A message of any type djust's consumer handles, sent to a revoked
    member's idle socket (through the view's group, as a push would be):
    refused and closed, and the handler never runs."""
    membership(settings, TENANT_READMIT_INTERVAL=60)
    mallory = await board("globex.example.com", people["mallory"])
    await revoke("mallory")
    group = in_tenant("globex", lambda: view_group_name(BOARD))
    message = {
        "type": handler,
        "event": "chat",
        "handler": "peek",
        "payload": {"text": SECRET},
        "text": SECRET,
        "channel": "orders",
    }
    await get_channel_layer().group_send(group, message)
    await assert_refused(mallory)
    assert not [o for o in views.observed if o[0] == "CursorBoard" and o[1] != "mount"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "message",
    [
        {"type": "presence_event", "event": "chat", "payload": {"text": SECRET}},
        {"type": "client_push_event", "event": "chat", "payload": {"text": SECRET}},
        {"type": "send_json", "text": SECRET},
        {"type": "server_push", "handler": "peek"},
        {"type": "db_notify", "channel": "orders", "payload": {"text": SECRET}},
    ],
    ids=lambda m: m["type"],
)
async def test_the_same_messages_reach_an_admitted_socket(settings, people, message):
    """The control of the test above: each message does reach (or run on)
    a socket whose tenant is still admitted."""
    membership(settings, TENANT_READMIT_INTERVAL=0)
    mallory = await board("globex.example.com", people["mallory"])
    group = in_tenant("globex", lambda: view_group_name(BOARD))
    await get_channel_layer().group_send(group, message)
    got = await mallory.drain(1)
    ran = [o for o in views.observed if o[0] == "CursorBoard" and o[1] != "mount"]
    assert SECRET in json.dumps(got) or ran, got
    assert REFUSED not in got


@pytest.mark.asyncio
async def test_a_refused_socket_is_told_once(settings, people):
    membership(settings, TENANT_READMIT_INTERVAL=60)
    mallory = await board("globex.example.com", people["mallory"])
    await revoke("mallory")
    before = refusal_counts()["admission"]
    group = in_tenant("globex", lambda: view_group_name(BOARD))
    for _ in range(3):
        await get_channel_layer().group_send(
            group, {"type": "client_push_event", "event": "x", "payload": {"text": SECRET}}
        )
    await assert_refused(mallory)
    assert refusal_counts()["admission"] == before + 1  # the later turns are dropped unchecked


# --- server-originated turns that do not come through the door ---------------------


@pytest.mark.asyncio
async def test_ticks_re_admit(settings, people):
    membership(settings, TENANT_READMIT_INTERVAL=60)
    mallory = await board("globex.example.com", people["mallory"], view=TICKING)
    await revoke("mallory")
    await assert_refused(mallory)
    ticks = len([o for o in views.observed if o[:2] == ("TickingBoard", "tick")])
    await asyncio.sleep(0.3)  # several tick periods: no tick runs any more
    assert len([o for o in views.observed if o[:2] == ("TickingBoard", "tick")]) == ticks


@pytest.mark.asyncio
async def test_async_results_re_admit(settings, people):
    """Background work (``start_async``) started while admitted, finishing
    after the revocation: its result is never rendered to the client."""
    membership(settings, TENANT_READMIT_INTERVAL=60)
    mallory = await board("globex.example.com", people["mallory"])
    await mallory.send({"type": "event", "event": "work", "params": {}, "ref": 1})
    await mallory.drain()
    await revoke("mallory")
    live_plane_views.WORK_GATE.set()
    await assert_refused(mallory, leaked="report-of-globex")


# --- client frames ---------------------------------------------------------------------


def _frames() -> list[str]:
    """Every frame type djust's consumer dispatches, read from djust."""
    kinds = sorted(live_gates.frame_dispatch(LiveViewConsumer))
    assert {"event", "cursor_move", "ping", "request_html", live_gates.UPLOAD_CHUNK} <= set(kinds)
    return [*kinds, "no_such_frame_type"]


def _frame(kind: str) -> dict | bytes:
    if kind == live_gates.UPLOAD_CHUNK:
        return bytes([0x01]) + b"\x00" * 32
    frame = {"type": kind, "x": 1337, "y": 4242, "event": "peek", "params": {}, "ref": 9}
    if kind in ("mount", "live_redirect_mount"):
        frame.update(view=BOARD, url="/items/")
    if kind == "mount_batch":
        frame["views"] = [{"view": BOARD, "url": "/items/"}]
    if kind == "url_change":
        frame.update(params={"page": "2"}, uri="/items/?page=2")
    return frame


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", _frames())
async def test_every_client_frame_type_re_admits_first(settings, people, kind):
    """A revoked member sends one frame of each type djust accepts (and one
    it does not): refused and closed before djust handles it."""
    membership(settings, TENANT_READMIT_INTERVAL=60)
    victor = await board("globex.example.com", people["victor"])
    mallory = await board("globex.example.com", people["mallory"])
    await revoke("mallory")
    before = len(mallory.frames)
    frame = _frame(kind)
    if isinstance(frame, bytes):
        await mallory.socket.send_to(bytes_data=frame)
    else:
        await mallory.send(frame)
    await assert_refused(mallory)
    answered = {f["type"] for f in mallory.frames[before:]}
    assert answered == {"error", "__closed__"}, mallory.frames[before:]  # djust answered nothing
    assert "1337" not in json.dumps(await victor.drain())  # no cursor of hers reached him


@pytest.mark.asyncio
async def test_a_revoked_members_cursor_moves_are_not_broadcast(settings, people):
    """The red team's F2: ``cursor_move`` frames broadcast with the member's
    meta to the room after she was revoked."""
    membership(settings, TENANT_READMIT_INTERVAL=60)
    victor = await board("globex.example.com", people["victor"])
    mallory = await board("globex.example.com", people["mallory"])
    await mallory.send({"type": "cursor_move", "x": 1, "y": 2})
    assert "cursor_move" in json.dumps(await victor.drain())  # the control
    await revoke("mallory")
    await mallory.send({"type": "cursor_move", "x": 1337, "y": 4242})
    await assert_refused(mallory)
    assert "1337" not in json.dumps(await victor.drain(1))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "frame",
    [
        {"type": "cursor_move", "x": 1, "y": 2},
        {"type": "request_html"},
        {"type": "presence_heartbeat"},
        {"type": "url_change", "params": {"page": "2"}, "uri": "/items/?page=2"},
    ],
    ids=lambda f: f["type"],
)
async def test_frames_that_cause_work_are_held_to_the_events_limit(settings, frame):
    """With ``events`` at 2 a minute, the third frame that causes work or a
    broadcast is refused with the events' error frame and not handled."""
    configure(settings, TENANT_RATE_LIMITS={"events": "2/m"})
    watcher = await board("globex.example.com")
    tab = await board("globex.example.com")
    answers = []
    for _ in range(3):
        await tab.send(frame)
        answers += await tab.drain(0.5)
    refused = [f for f in answers if f.get("rate_limited")]
    assert len(refused) == 1, answers
    assert f"Rate limit exceeded, {frame['type']} dropped" in refused[0]["error"]
    if frame["type"] == "cursor_move":
        moves = [f for f in await watcher.drain() if f.get("event") == "cursor_move"]
        assert len(moves) == 2
    # The events budget is the same one: an event is refused now too.
    assert (await tab.event("peek")).get("rate_limited") is True


@pytest.mark.asyncio
async def test_upload_chunks_are_held_to_the_uploads_limit(settings):
    configure(settings, TENANT_RATE_LIMITS={"uploads": "2/m"})
    tab = await board("globex.example.com")
    answers = []
    for _ in range(3):
        await tab.socket.send_to(bytes_data=bytes([0x02]) + b"\x00" * 32)
        answers += await tab.drain(0.5)
    refused = [f for f in answers if f.get("rate_limited")]
    assert len(refused) == 1, answers
    assert "upload_chunk dropped" in refused[0]["error"]


@pytest.mark.asyncio
async def test_the_keep_alive_ping_is_not_limited(settings):
    """The client pings every 30 s: pings never use up the tenant's events."""
    configure(settings, TENANT_RATE_LIMITS={"events": "1/m"})
    tab = await board("globex.example.com")
    for _ in range(3):
        await tab.send({"type": "ping"})
        assert (await tab.until("pong", "error"))["type"] == "pong"
    assert (await tab.event("peek"))["type"] != "error"


# --- SSE ---------------------------------------------------------------------------------


class SSEBoard(SSETab):
    async def message(self, frame: dict):
        return await self.client.post(
            f"/djust/sse/{self.session_id}/message/",
            data=json.dumps(frame),
            content_type="application/json",
            headers=self._headers(),
        )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "frame",
    [
        {"type": "url_change", "params": {"page": "2"}, "uri": "/items/?page=2"},
        {"type": "no_such_frame_type"},
        {"type": "event", "event": "peek", "params": {}},
    ],
    ids=lambda f: f["type"],
)
async def test_sse_frames_re_admit_first(settings, frame):
    """Over SSE every frame is a POST to the session (on an exempt path, so
    nothing else resolves a tenant): a deleted tenant's session is refused
    at the runtime's door and its stream ends."""
    configure(
        settings, TENANT_MODEL="lifecycle.Account", TENANT_READMIT_INTERVAL=0, TENANT_CACHE_TTL=0
    )
    await sync_to_async(Account.objects.create)(slug="acme", name="Acme")
    cookie = (await sync_to_async(session_cookie)("acme")).decode()
    tab = SSEBoard("acme.example.com", ITEMS, cookie=cookie)
    assert (await tab.open())["type"] == "mount"
    await sync_to_async(Account.objects.filter(slug="acme").delete)()
    assert (await tab.message(frame)).status_code == 200
    assert await tab.next() == REFUSED
    assert await tab.ended()
    assert not [o for o in views.observed if o[1] in ("peek", "handle_params")]


# --- the start-up check ----------------------------------------------------------------


def test_the_installed_djust_is_covered():
    assert live_gates.problems() == []
    assert [m for m in checks.run_checks() if m.id in ("tenantry.E110", "tenantry.E111")] == []


def test_a_consumer_subclass_is_gated_as_it_is_defined():
    """An app's consumer that overrides ``dispatch`` (without calling
    djust's) and a limited frame's handler still gets the gates."""

    class AppConsumer(LiveViewConsumer):
        async def dispatch(self, message):
            return await self.websocket_receive(message)

        async def handle_cursor_move(self, data):
            return None

    try:
        assert getattr(AppConsumer.dispatch, "_tenantry_live_gate", False)
        assert getattr(AppConsumer.handle_cursor_move, "_tenantry_live_gate", False)
        assert live_gates.problems() == []
    finally:
        del AppConsumer
        gc.collect()


def test_the_check_names_a_consumer_reached_without_the_gate():
    class Escaping(LiveViewConsumer):
        async def presence_event(self, event):
            return None

    async def ungated(self, message):
        return None

    Escaping.dispatch = ungated  # replaced after the class was defined
    try:
        found = live_gates.problems()
        [problem] = [p for p in found if "Escaping.dispatch is not gated" in p]
        assert "presence_event" in problem and "server_push" in problem
        errors = [m for m in checks.run_checks() if m.id == "tenantry.E110"]
        assert any("Escaping" in m.msg for m in errors)
    finally:
        del Escaping
        gc.collect()


def test_the_check_names_a_frame_type_tenantry_does_not_know():
    """A djust that grows a frame type: named by the check, and its handler
    held to the ``events`` limits until tenantry classifies it."""

    class Growing(LiveViewConsumer):
        async def receive(self, text_data=None, bytes_data=None):
            data = json.loads(text_data)
            msg_type = data.get("type")
            if msg_type == "teleport":
                await self.handle_teleport(data)
            else:
                await super().receive(text_data, bytes_data)

        async def handle_teleport(self, data):
            return None

    try:
        assert live_gates.frame_dispatch(Growing)["teleport"] == frozenset({"handle_teleport"})
        assert getattr(Growing.handle_teleport, "_tenantry_live_gate", False)
        [problem] = [p for p in live_gates.problems() if "'teleport'" in p]
        assert "FRAME_SCOPES does not classify" in problem and "'events'" in problem
    finally:
        del Growing
        gc.collect()


def test_the_check_names_a_djust_seam_that_moved(monkeypatch):
    monkeypatch.setattr(live_gates, "_missing", ["djust.runtime.ViewRuntime._somewhere_else"])
    [problem] = live_gates.problems()
    assert "ViewRuntime._somewhere_else" in problem
