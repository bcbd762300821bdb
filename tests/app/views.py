"""Views the integration tests drive over HTTP and WebSocket."""

from django.http import HttpResponse, StreamingHttpResponse
from django.views.generic import TemplateView, View
from djust import LiveView
from djust.decorators import event_handler
from djust.presence import PresenceMixin

from tenantry import TenantMixin, TenantPresenceMixin, TenantScopedMixin, get_current_tenant
from tenantry.ratelimit import tenant_ratelimit

from .models import Item, Organization

#: What handlers saw, for the tests to inspect: (view, phase, tenant id, item tenants).
observed: list[tuple[str, str, str | None, list[str]]] = []


def _snapshot(view: str, phase: str) -> None:
    bound = get_current_tenant()
    rows = sorted({i.tenant_id for i in Item.objects.all()}) if bound is not None else []
    observed.append((view, phase, None if bound is None else bound.id, rows))


class ItemsView(TenantMixin, LiveView):
    template_name = "app/items.html"

    def mount(self, request, **kwargs):
        _snapshot("ItemsView", "mount")
        self.mounted_for = self.tenant.id
        self.items = [i.name for i in Item.objects.all()]

    @event_handler
    def add_item(self, name: str = "", **kwargs):
        _snapshot("ItemsView", "add_item")
        Item.objects.create(name=name)
        self.items = [i.name for i in Item.objects.all()]

    @event_handler
    def peek(self, **kwargs):
        _snapshot("ItemsView", "peek")

    @event_handler
    def reload_items(self, **kwargs):
        """What ``push_to_view(..., handler="reload_items")`` runs."""
        _snapshot("ItemsView", "reload_items")
        self.items = [i.name for i in Item.objects.all()]


class OptionalTenantView(TenantMixin, LiveView):
    tenant_required = False
    template = '<div dj-root dj-id="0">optional {{ tenant.id|default:"none" }}</div>'

    def mount(self, request, **kwargs):
        self.seen = True


class ScopedView(TenantScopedMixin, LiveView):
    model = Item
    template = '<div dj-root dj-id="0">{% for i in items %}{{ i }};{% endfor %}</div>'

    def mount(self, request, **kwargs):
        self.items = [i.name for i in self.get_tenant_queryset()]


class PlainTenantView(TenantMixin, TemplateView):
    """A plain Django class-based view."""

    template_name = "app/plain.html"


class BoundTenantView(View):
    """A function of the middleware only: reports the bound tenant."""

    tenant_required = False

    def get(self, request):
        bound = get_current_tenant()
        return HttpResponse(f"bound={bound} request={request.tenant}")


def public_view(request):
    return HttpResponse(f"public tenant={getattr(request, 'tenant', None)}")


class SavedStateView(TenantMixin, LiveView):
    """The saved-view-state tests mount this with one session id under two
    tenants (djust saves and restores it through tenantry's state adapter)."""

    template = '<div dj-root dj-id="0">saved state of {{ owner }}</div>'

    def mount(self, request, **kwargs):
        self.owner = self.tenant.id


class RoomView(TenantMixin, PresenceMixin, LiveView):
    """Presence through djust's PresenceMixin on a tenant view: the same room
    name in every tenant."""

    presence_key = "room:lobby"
    presence_unique_per_connection = True
    template = '<div dj-root dj-id="0">{% for p in online %}<i>{{ p }}</i>{% endfor %}</div>'

    def mount(self, request, **kwargs):
        self.track_presence(meta={"who": f"{self.tenant.id}-visitor"})
        self.online = sorted(p["meta"]["who"] for p in self.list_presences())

    @event_handler
    def peek_presence(self, **kwargs):
        self.online = sorted(p["meta"]["who"] for p in self.list_presences())
        observed.append(("RoomView", "peek", self.tenant.id, self.online))

    @event_handler
    def _on_presence_change(self, **kwargs):
        """djust pushes this to the room's views when someone joins or leaves."""
        super()._on_presence_change(**kwargs)
        _snapshot("RoomView", "presence_change")


class LiveRoomView(TenantMixin, TenantPresenceMixin, LiveView):
    """Presence per connection, by diffs: one line per user with its tabs.
    The user is the browser session (djust's ``anon_<session key>``)."""

    presence_key = "room:lobby"
    template = (
        '<div dj-root dj-id="0">{% for p in presences %}'
        "<i>{{ p.meta.name }}={{ p.metas|length }}</i>{% endfor %}</div>"
    )

    def mount(self, request, **kwargs):
        self.track_presence(meta={"name": request.session.get("visitor", "nobody")})

    def handle_presence_join(self, presence):
        self._hook("join", presence)

    def handle_presence_leave(self, presence):
        self._hook("leave", presence)

    def _hook(self, what, presence):
        own = self.request.session.get("visitor", "nobody")
        observed.append(
            ("LiveRoomView", f"{what} seen by {own}", self.tenant.id, [presence["meta"]["name"]])
        )

    @event_handler
    def peek_presence(self, **kwargs):
        """Records what the view holds now (its own copy of the room)."""
        held = sorted((p["meta"]["name"], len(p["metas"])) for p in self.presences)
        observed.append(("LiveRoomView", "peek", self.tenant.id, held))


class NoticeView(TenantMixin, LiveView):
    """Optional tenant: mounted on the main domain it has none."""

    tenant_required = False
    template = '<div dj-root dj-id="0">{{ notice }} for {{ tenant.id|default:"nobody" }}</div>'

    def mount(self, request, **kwargs):
        self.notice = "none"

    @event_handler
    def show(self, text: str = "", **kwargs):
        bound = get_current_tenant()
        observed.append(("NoticeView", "show", None if bound is None else bound.id, [text]))
        self.notice = text


def visits_view(request):
    """Counts visits in the tenant's state (STATE_BACKEND): the outage tests
    point it at a Redis that is not running."""
    from tenantry import get_tenant_state_backend

    return HttpResponse(f"visits={get_tenant_state_backend(request.tenant).incr('visits')}")


class PlainLiveView(LiveView):
    """A LiveView without TenantMixin next to the tenant views (docs/migrating-from-djust.md): it
    works on any host and its saved state lives in the shared space."""

    tenant_required = False  # read by TenantMiddleware: no tenant needed here
    template = '<div dj-root dj-id="0">plain count={{ count }}</div>'

    def mount(self, request, **kwargs):
        self.count = 0

    @event_handler
    def bump(self, **kwargs):
        self.count += 1


class PlainWriterLiveView(LiveView):
    """A LiveView without TenantMixin that writes a shared row: an
    impersonation is tracked on it too (tests/operations_life/test_impersonation.py)."""

    tenant_required = False
    template = '<div dj-root dj-id="0">written={{ count }}</div>'

    def mount(self, request, **kwargs):
        self.count = 0

    @event_handler
    def write(self, slug: str = "", **kwargs):
        Organization.objects.create(slug=slug, name=slug)
        self.count += 1


class PresenceFirstRoomView(PresenceMixin, TenantMixin, LiveView):
    """PresenceMixin listed BEFORE TenantMixin: the presence group must still
    be the tenant's."""

    presence_key = "room:lobby"
    template = '<div dj-root dj-id="0">room</div>'

    def mount(self, request, **kwargs):
        self.track_presence(meta={"who": f"{self.tenant.id}-first"})


class SwitchView(TenantMixin, LiveView):
    """Handlers that try to move the view to a tenant the client names: each
    write of the view's tenant goes through admission."""

    template = '<div dj-root dj-id="0">on {{ tenant.id }}</div>'

    def mount(self, request, **kwargs):
        _snapshot("SwitchView", "mount")

    @event_handler
    def switch(self, tenant: str = "", how: str = "set_tenant", **kwargs):
        if how == "set_tenant":
            self.set_tenant(tenant)
        elif how == "tenant":
            self.tenant = tenant
        else:
            self._tenant = tenant
        _snapshot("SwitchView", "switch")

    @event_handler
    def peek(self, **kwargs):
        _snapshot("SwitchView", "peek")


def _item_names():
    for item in Item.objects.all():
        yield f"{item.tenant_id}:{item.name};"


async def _aitem_names():
    from asgiref.sync import sync_to_async

    for line in await sync_to_async(lambda: list(_item_names()))():
        yield line


def stream_view(request):
    """The body queries scoped rows while the server sends it."""
    return StreamingHttpResponse(_item_names())


async def astream_view(request):
    return StreamingHttpResponse(_aitem_names())


class StreamingTenantView(TenantMixin, View):
    """A TenantMixin view (no middleware needed) streaming scoped rows."""

    def get(self, request):
        return StreamingHttpResponse(_item_names())


@tenant_ratelimit("2/m", key="tenant+user", scope="report")
def report_view(request):
    return HttpResponse(f"report for {request.tenant.id}")


def _room_from_url(view) -> str:
    """The presence room a visitor names in the URL (``?room=``)."""
    request = getattr(view, "request", None)
    return getattr(request, "GET", {}).get("room", "lobby")


class UrlRoomView(TenantMixin, PresenceMixin, LiveView):
    """A tenant view that also serves the main domain (``tenant_required =
    False``) and takes its presence room from the URL: the caller names the
    key (docs/presence.md#with-djust)."""

    tenant_required = False
    template = '<div dj-root dj-id="0">{% for p in online %}<i>{{ p }}</i>{% endfor %}</div>'

    def get_presence_key(self) -> str:
        return _room_from_url(self)

    def mount(self, request, **kwargs):
        self.track_presence(meta={"who": request.GET.get("who", "visitor")})
        self.online = sorted(str(p["meta"].get("who")) for p in self.list_presences())


class PlainRoomView(PresenceMixin, LiveView):
    """djust's own PresenceMixin on a view without tenancy, room from the URL."""

    tenant_required = False  # read by TenantMiddleware
    template = '<div dj-root dj-id="0">{% for p in online %}<i>{{ p }}</i>{% endfor %}</div>'

    def get_presence_key(self) -> str:
        return _room_from_url(self)

    def mount(self, request, **kwargs):
        self.track_presence(meta={"who": request.GET.get("who", "visitor")})
        self.online = sorted(str(p["meta"].get("who")) for p in self.list_presences())

    @event_handler
    def peek_presence(self, **kwargs):
        self.online = sorted(str(p["meta"].get("who")) for p in self.list_presences())
