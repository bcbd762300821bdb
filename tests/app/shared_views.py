"""Live views of the shared-room tests (tests/collaboration/test_live_rooms.py):
a board's live room, shared between its owner and the tenants it was
granted to (docs/collaboration.md#live-rooms)."""

from __future__ import annotations

from djust import LiveView
from djust.decorators import event_handler

from tenantry import TenantMixin
from tenantry.live_presence import SharedRoomMixin
from tests.collaboration.models import Board

#: (view, what, tenant, data) recorded by the views, for the tests.
observed: list[tuple[str, str, str, object]] = []


class SharedBoardView(TenantMixin, SharedRoomMixin, LiveView):
    """The live room of board ``?board=<pk>``: who is here, with their tenant."""

    #: ``peek`` may be pushed by the room's other members; ``shout`` may not.
    shared_room_handlers = ("peek",)

    template = (
        '<div dj-root dj-id="0">{% if shared_room_closed %}<b>closed</b>{% endif %}'
        "{% for p in presences %}<i>{{ p.meta.name }}@{{ p.tenant_id }}</i>{% endfor %}</div>"
    )

    def mount(self, request, **kwargs):
        # ?raw=1: view code that loads the row without the tenant's scope;
        # the room's own check still refuses a tenant the row is not granted to.
        rows = Board.all_tenants if request.GET.get("raw") else Board.objects.with_shared()
        board = rows.get(pk=int(request.GET["board"]))
        self.open_shared_room(board)
        self.track_presence(meta={"name": request.GET.get("who", "nobody")})

    @event_handler
    def peek(self, **kwargs):
        """Records who the view holds now (its own copy of the room)."""
        held = sorted((p["meta"]["name"], p["tenant_id"]) for p in self.presences)
        observed.append(("SharedBoardView", "peek", self.tenant.id, held))
        sender = self.get_shared_room_sender()
        observed.append(("SharedBoardView", "sender", self.tenant.id, sender))

    @event_handler
    def shout(self, text: str = "", **kwargs):
        self.broadcast_to_presence("shout", {"text": text, "from": self.tenant.id})

    @event_handler
    def relay(self, handler: str = "peek", **kwargs):
        """Pushes ``handler`` to the room's other views (the pattern of
        docs/collaboration.md#live-rooms; a client-named handler here)."""
        self.push_to_shared_room(handler)

    def handle_shared_room_closed(self):
        observed.append(("SharedBoardView", "closed", self.tenant.id, self.get_shared_room().name))
