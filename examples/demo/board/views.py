from djust import LiveView
from djust.decorators import event_handler

from tenantry import TenantMixin

from .models import Item


class BoardView(TenantMixin, LiveView):
    """The tenant's board: its items, and a form that adds one over the WebSocket."""

    template_name = "board/board.html"

    def mount(self, request, **kwargs):
        self._load()

    def _load(self):
        # Item.objects is scoped to the bound tenant: no filter needed here.
        self.items = [item.name for item in Item.objects.all()]

    @event_handler
    def add_item(self, name: str = "", **kwargs):
        name = name.strip()[:80]
        if name:
            Item.objects.create(name=name)
        self._load()
