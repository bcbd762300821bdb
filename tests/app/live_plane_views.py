"""Live views of the live-plane tests (tests/live/test_live_gates.py,
tests/isolation/test_input_mutation.py, tests/live/test_live_delivery.py,
tests/live/test_live_switch.py, tests/live/test_live_db_notify.py): one presence meta
dict shared by every view, a view that follows URL changes, a collaborative
board, an org switcher and order boards fed by PostgreSQL NOTIFY."""

import threading

from djust import LiveView
from djust.decorators import event_handler
from djust.presence import LiveCursorMixin, PresenceMixin

from tenantry import TenantMixin, TenantPresenceMixin, get_current_tenant

from .models import Item
from .views import _snapshot

#: One meta dict for every connection, as an app might keep a default.
SHARED_META = {"role": "viewer"}


class SharedMetaRoom(TenantMixin, TenantPresenceMixin, LiveView):
    """Tracks every connection with the module-level :data:`SHARED_META`."""

    presence_key = "room:shared"
    template = (
        '<div dj-root dj-id="0">{% for p in presences %}'
        "<i>{{ p.meta.name }}/{{ p.meta.user_id }}/{{ p.meta.role }}</i>{% endfor %}</div>"
    )

    def mount(self, request, **kwargs):
        self.track_presence(meta=SHARED_META)

    @event_handler
    def peek(self, **kwargs):
        """Records the names the view's copy of the room shows."""
        from .views import observed

        names = sorted(str(p["meta"].get("name")) for p in self.presences)
        observed.append(("SharedMetaRoom", "peek", self.tenant.id, names))


class PagedView(TenantMixin, LiveView):
    """Follows ``url_change`` frames (``handle_params``)."""

    template = '<div dj-root dj-id="0">{{ page }}</div>'

    def mount(self, request, **kwargs):
        self.page = "1"
        _snapshot("PagedView", "mount")

    def handle_params(self, params, uri):
        self.page = str(params.get("page", "1"))
        _snapshot("PagedView", "handle_params")

    @event_handler
    def peek(self, **kwargs):
        _snapshot("PagedView", "peek")


# -- every turn and frame of an open socket (tests/live/test_live_delivery.py,
#    tests/live/test_live_switch.py, tests/live/test_live_db_notify.py) -----------------------

#: Released by a test to let :class:`CursorBoard`'s background work finish.
WORK_GATE = threading.Event()


class CursorBoard(TenantMixin, LiveCursorMixin, LiveView):
    """A collaborative page: live cursors (``cursor_move`` frames broadcast
    to the room) and a chat through presence broadcasts, a tick, and
    background work (``start_async``)."""

    presence_key = "board"
    tick_interval = None
    template = '<div dj-root dj-id="0">{{ said }}|{{ worked }}</div>'

    def mount(self, request, **kwargs):
        self.said = ""
        self.worked = ""
        self.track_presence(meta={"name": getattr(request.user, "username", "anon")})

    @event_handler
    def say(self, text: str = "", **kwargs):
        self.broadcast_to_presence("chat", {"text": text})

    @event_handler
    def peek(self, **kwargs):
        _snapshot("CursorBoard", "peek")

    @event_handler
    def work(self, **kwargs):
        self.start_async(self._slow_report)

    def _slow_report(self):
        WORK_GATE.wait(10)
        _snapshot("CursorBoard", "work")
        self.worked = "report-of-" + str(getattr(self.tenant, "id", None))

    def handle_info(self, message):
        _snapshot("CursorBoard", "handle_info")
        self.said = repr(message.get("payload"))


class TickingBoard(CursorBoard):
    """:class:`CursorBoard` with a fast tick."""

    tick_interval = 50

    def handle_tick(self):
        _snapshot("TickingBoard", "tick")


class SwitchBoard(TenantMixin, PresenceMixin, LiveView):
    """An org switcher on one page: ``set_tenant`` from a client-sent id
    (admitted by membership), pushes to the board (``show``), presence
    broadcasts to its room, and PostgreSQL NOTIFY on ``orders``."""

    presence_key = "board"
    template = '<div dj-root dj-id="0">{{ who }}|{{ names }}|{{ shown }}</div>'

    def mount(self, request, **kwargs):
        self._read("mount")
        self.shown = ""
        self.track_presence(meta={"name": getattr(request.user, "username", "anon")})
        self._listen_channels = {"orders"}  # NotificationMixin.listen() without a LISTEN

    def _read(self, phase: str) -> None:
        _snapshot("SwitchBoard", phase)
        bound = get_current_tenant()
        self.who = None if bound is None else bound.id
        self.names = ",".join(sorted(i.name for i in Item.objects.all())) if bound else ""

    @event_handler
    def switch(self, tenant: str = "", how: str = "set_tenant", **kwargs):
        if how == "set_tenant":
            self.set_tenant(tenant)
        elif how == "tenant":
            self.tenant = tenant
        else:
            self._tenant = tenant
        self._read("switch")  # the new tenant, in the same handler

    @event_handler
    def show(self, text: str = "", **kwargs):
        _snapshot("SwitchBoard", "show")
        self.shown = text

    @event_handler
    def rejoin(self, **kwargs):
        self.track_presence(meta={"name": "again"})

    @event_handler
    def peek(self, **kwargs):
        self._read("peek")

    def handle_info(self, message):
        _snapshot("SwitchBoard", "handle_info")
        self.shown = repr(message.get("payload"))


class LiveSwitchBoard(TenantMixin, TenantPresenceMixin, LiveView):
    """:class:`SwitchBoard` on tenantry's presence (per connection, diffs)."""

    presence_key = "board"
    template = '<div dj-root dj-id="0">{{ online_count }}</div>'

    def mount(self, request, **kwargs):
        self.track_presence(meta={"name": getattr(request.user, "username", "anon")})

    @event_handler
    def switch(self, tenant: str = "", **kwargs):
        self.set_tenant(tenant)


class OrderBoard(TenantMixin, LiveView):
    """A live order board refreshed by PostgreSQL NOTIFY on ``orders``."""

    template = '<div dj-root dj-id="0">{{ seen }}</div>'

    def mount(self, request, **kwargs):
        self.seen = ""
        self._listen_channels = {"orders"}

    def handle_info(self, message):
        _snapshot("OrderBoard", "handle_info")
        self.seen = repr(message.get("payload"))


class PlainOrderBoard(LiveView):
    """:class:`OrderBoard` without tenancy."""

    tenant_required = False  # read by TenantMiddleware
    template = '<div dj-root dj-id="0">{{ seen }}</div>'

    def mount(self, request, **kwargs):
        self.seen = ""
        self._listen_channels = {"orders"}

    def handle_info(self, message):
        _snapshot("PlainOrderBoard", "handle_info")
        self.seen = repr(message.get("payload"))


class ResolvingBoard(SwitchBoard):
    """:class:`SwitchBoard` whose tenant comes from its own ``resolve_tenant``
    (an org the user picked), resolved again after ``_tenant_resolved = False``
    (djust.tenants' way to re-resolve)."""

    def resolve_tenant(self, request):
        picked = self.__dict__.get("picked")
        return picked if picked else super().resolve_tenant(request)

    @event_handler
    def pick(self, tenant: str = "", **kwargs):
        self.picked = tenant
        self._tenant_resolved = False
        self.tenant  # noqa: B018  (resolves again, admitted like any override)
        self._read("switch")
