import logging
import os
import secrets

from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from djust import LiveView, push_to_view
from djust.decorators import event_handler

from tenantry import BackendUnavailable, TenantMixin, TenantPresenceMixin
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


class BoardView(TenantMixin, TenantPresenceMixin, LiveView):
    """The tenant's board: its items, a form that adds one over the WebSocket
    (the tenant's other viewers see it appear), and who else is looking at
    this tenant's board right now, with how many tabs each has open."""

    template_name = "board/board.html"
    presence_key = "board"  # TenantMixin makes it tenant:<id>:board

    def mount(self, request, **kwargs):
        self.presence_down = False
        self.has_logo = current_logo() is not None
        self._load()
        # One visitor is one browser session (djust's anon_<session key>),
        # whatever the number of tabs; each tab is one connection of it.
        # Presence is tracked on the WebSocket only (not on the HTTP render);
        # a live mount, which must track presence, fails with
        # BackendUnavailable when the store (Redis) is down.
        self.track_presence(meta={"name": self._visitor_name(request)})
        # The page still renders without it: the first HTML lists who is
        # online once; the live view then follows the board by diffs.
        try:
            self.subscribe_presence()
        except BackendUnavailable:
            self.presence_down = True

    def _visitor_name(self, request) -> str:
        session = request.session
        name = session.get("visitor")
        if name is None and not hasattr(self, "_websocket_session_id"):
            # The page load names the browser's visitor (the session cookie
            # carries it to the live view's WebSocket).
            name = session["visitor"] = f"Visitor {secrets.token_hex(2)}"
        return name or f"Visitor {str(self._websocket_session_id)[-4:]}"

    def _load(self):
        # Item.objects is scoped to the bound tenant: no filter needed here.
        self.items = [item.name for item in Item.objects.all()]

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
