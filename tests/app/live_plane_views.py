"""Live views of the live-plane tests (tests/test_live_gates.py,
tests/test_input_mutation.py): one presence meta dict shared by every view,
and a view that follows URL changes."""

from djust import LiveView
from djust.decorators import event_handler

from tenantry import TenantMixin, TenantPresenceMixin

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
