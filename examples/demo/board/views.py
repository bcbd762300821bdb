from djust import LiveView, push_to_view
from djust.decorators import event_handler
from djust.presence import PresenceMixin

from tenantry import BackendUnavailable, TenantMixin

from .models import Item

VIEW_PATH = "board.views.BoardView"


class BoardView(TenantMixin, PresenceMixin, LiveView):
    """The tenant's board: its items, a form that adds one over the WebSocket
    (the tenant's other viewers see it appear), and who else is looking at
    this tenant's board right now."""

    template_name = "board/board.html"
    presence_key = "board"  # TenantMixin makes it tenant:<id>:board
    presence_unique_per_connection = True  # every open tab counts

    def mount(self, request, **kwargs):
        self.online = []
        self.presence_down = False
        self._load()
        # Presence exists on the WebSocket only (djust skips the HTTP render).
        self.track_presence(meta={"name": f"Visitor {self._visitor_number()}"})
        self._load_online()

    def _visitor_number(self) -> str:
        session_id = str(getattr(self, "_websocket_session_id", "") or "")
        return session_id[-4:] or "?"

    def _load(self):
        # Item.objects is scoped to the bound tenant: no filter needed here.
        self.items = [item.name for item in Item.objects.all()]

    def _load_online(self):
        # The page still renders when presence's store (Redis) is down; a live
        # mount, which must track presence, fails with BackendUnavailable.
        try:
            self.online = sorted(p["meta"].get("name", "?") for p in self.list_presences())
            self.presence_down = False
        except BackendUnavailable:
            self.online = []
            self.presence_down = True

    @event_handler
    def add_item(self, name: str = "", **kwargs):
        name = name.strip()[:80]
        if name:
            Item.objects.create(name=name)
            # Tell this tenant's other viewers. tenantry scopes djust's push
            # groups by tenant, so other tenants' boards never get it (djust
            # skips the sender, which re-reads below).
            push_to_view(VIEW_PATH, handler="item_added", payload={"name": name})
        self._load()

    @event_handler
    def item_added(self, name: str = "", **kwargs):
        """Pushed by another viewer's ``add_item``: show it without a query."""
        self.items = [*self.items, name]

    @event_handler
    def _on_presence_change(self, **kwargs):
        super()._on_presence_change(**kwargs)
        self._load_online()
