import logging
import os

from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from djust import LiveView, push_to_view
from djust.decorators import event_handler
from djust.presence import PresenceMixin

from tenantry import BackendUnavailable, TenantMixin
from tenantry.storage import TenantFileSystemStorage

from .models import Item

logger = logging.getLogger(__name__)

#: Each tenant's files: MEDIA_ROOT/tenants/<id>/ of the tenant of the request.
logos = TenantFileSystemStorage()
LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
MAX_LOGO_BYTES = 200_000
#: What push_to_view() names to reach the board's viewers.
VIEW_PATH = "board.views.BoardView"


def current_logo() -> str | None:
    """The bound tenant's logo file name (``logo.<ext>``), if it has one."""
    _, files = logos.listdir("")
    return next((name for name in sorted(files) if name.startswith("logo.")), None)


def logo_page(request):
    """A plain Django view: the tenant's logo and a form to replace it."""
    error = ""
    if request.method == "POST":
        upload = request.FILES.get("logo")
        extension = os.path.splitext(upload.name)[1].lower() if upload else ""
        if extension not in LOGO_TYPES:
            error = "Choose a PNG, JPEG or GIF image."
        elif upload.size > MAX_LOGO_BYTES:
            error = f"The logo may be {MAX_LOGO_BYTES // 1000} kB at most."
        else:
            old = current_logo()
            if old is not None:
                logos.delete(old)
            logos.save(f"logo{extension}", upload)
            logger.info("logo uploaded (%d bytes)", upload.size)
            return redirect("board")
    context = {"has_logo": current_logo() is not None, "error": error}
    return render(request, "board/logo.html", context)


def logo_file(request):
    """The tenant's logo, read from the tenant's own folder."""
    name = current_logo()
    if name is None:
        raise Http404("no logo yet")
    content_type = LOGO_TYPES[os.path.splitext(name)[1]]
    return FileResponse(logos.open(name), content_type=content_type)


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
        self.has_logo = current_logo() is not None
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
