import logging
import os
import secrets

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from djust import LiveView, push_to_view
from djust.decorators import event_handler
from djust.presence import PresenceMixin

from tenantry import BackendUnavailable, InvalidKey, TenantMixin, TenantPresenceMixin, impersonation
from tenantry.flags import tenant_flag
from tenantry.live_presence import SharedRoomMixin
from tenantry.ratelimit import tenant_ratelimit
from tenantry.storage import TenantFileSystemStorage

from .imports import add_items
from .models import Item, SharedBoard

try:  # Celery is optional: imports run as jobs when it is installed
    from .tasks import import_items_job
except ImportError:
    import_items_job = None

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


@tenant_ratelimit("60/m", key="tenant+ip", scope="api")
def items_api(request):
    """The tenant's items as JSON, for integrations: limited per client
    address (``DJUST_CONFIG["TENANT_RATE_LIMITS"]["api"]`` replaces the rate;
    docs/ratelimits.md). Over the limit: 429 with ``Retry-After``."""
    items = [item.name for item in Item.objects.all()]
    return JsonResponse({"tenant": request.tenant.id, "items": items})


class BoardView(TenantMixin, TenantPresenceMixin, LiveView):
    """The tenant's board: its items, a form that adds one over the WebSocket
    (the tenant's other viewers see it appear), and who else is looking at
    this tenant's board right now, with how many tabs each has open."""

    template_name = "board/board.html"
    presence_key = "board"  # TenantMixin makes it tenant:<id>:board

    def mount(self, request, **kwargs):
        self.presence_down = False
        self.has_logo = current_logo() is not None
        # The tenant's shared boards and those other tenants granted to it
        # (docs/collaboration.md): links to their live rooms.
        self.shared_boards = [
            {"id": b.pk, "title": b.title, "owner": b.tenant_id}
            for b in SharedBoard.objects.with_shared()
        ]
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
        return visitor_name(self, request)

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
    def import_items(self, names: str = "", now: bool = False, **options):
        """Adds comma-separated ``names`` through a job (an import from a
        file, in a real app): run here and now (``apply``) or queued
        (``delay``; Celery's ``task_always_eager`` runs it in place in the
        demo). Careless on purpose: the client's other parameters go to
        Celery as task options, headers included. tenantry runs the job in
        this view's tenant whatever they say: a header naming another tenant
        is refused (``TenantMismatchError``, docs/jobs.md#eager-runs)."""
        names = [n.strip()[:80] for n in names.split(",") if n.strip()]
        if import_items_job is None:  # no Celery: the same work, in this request
            self.items = add_items(names)
            return
        if now:
            job = import_items_job.apply(args=(names,), **options)
        else:
            job = import_items_job.s(names).set(**options).delay()
        # The job answers with the board as it left it: no second query.
        self.items = job.get()

    @event_handler
    def item_added(self, name: str = "", **kwargs):
        """Pushed by another viewer's ``add_item``: show it without a query."""
        self.items = [*self.items, name]


def visitor_name(view, request) -> str:
    """The browser's visitor: named by its first page load (the session
    cookie carries it to the live view's WebSocket)."""
    session = request.session
    name = session.get("visitor")
    if name is None and not hasattr(view, "_websocket_session_id"):
        name = session["visitor"] = f"Visitor {secrets.token_hex(2)}"
    return name or f"Visitor {str(view._websocket_session_id)[-4:]}"


class SharedBoardView(TenantMixin, SharedRoomMixin, LiveView):
    """A board shared between two tenants (``/shared/?board=<id>``): acme
    owns "Launch plan" and granted it to globex with a write grant (the
    seed). On acme's host and on globex's, each tenant's users are in one
    live room: who is here, each with their tenant, and notes either side
    adds appear on both (docs/collaboration.md#live-rooms). Another tenant,
    or globex once acme revokes the grant, gets a 404 here; an open globex
    page leaves the room within ``TENANT_READMIT_INTERVAL`` of the revoke."""

    template_name = "board/shared.html"
    #: What the room's other members may run here by a push: a re-read
    #: only (it takes nothing from the sender's payload).
    shared_room_handlers = ("note_added",)

    def mount(self, request, **kwargs):
        self.board_id = int(request.GET.get("board", "0") or 0)
        # Only the tenant's own boards and those granted to it: a board of
        # a tenant that granted nothing is not found.
        board = SharedBoard.objects.with_shared().filter(pk=self.board_id).first()
        if board is None:
            raise Http404("No such board here")
        self.open_shared_room(board)
        self._load(board)
        self.track_presence(meta={"name": visitor_name(self, request)})

    def _load(self, board=None):
        if board is None:
            board = SharedBoard.objects.with_shared().filter(pk=self.board_id).first()
        self.title = board.title if board else ""
        self.owner = board.tenant_id if board else ""
        self.notes = board.notes.splitlines() if board else []

    @event_handler
    def add_note(self, text: str = "", **kwargs):
        text = text.strip()[:120]
        if text and not self.shared_room_closed:
            board = SharedBoard.objects.with_shared().get(pk=self.board_id)
            board.notes = "\n".join([*board.notes.splitlines(), f"{text} ({self.tenant.id})"])
            # globex's save goes through its write grant (a read grant: refused).
            board.save(update_fields=["notes"])
            # Every other view in the room, of both tenants, re-reads it.
            self.push_to_shared_room("note_added")
        self._load()

    @event_handler
    def note_added(self, **kwargs):
        self._load()

    def handle_shared_room_closed(self):
        """The grant ended: forget the board."""
        self.title, self.owner, self.notes = "", "", []


def _room_from_url(view) -> str:
    """The presence room the link names (``?room=``)."""
    request = getattr(view, "request", None)
    return getattr(request, "GET", {}).get("room", "lobby")[:100]


class SiteLobbyView(PresenceMixin, LiveView):
    """Who is in a room right now, the room named by the link
    (``/site-lobby/?room=support&name=Ann``), on a view without tenancy
    (djust's own ``PresenceMixin``): e.g. the marketing site's "who is
    here". With tenantry installed, its rooms live in the presence space of
    views without a tenant, which no tenant can read or join.

    The room comes from the URL as is, so a visitor can name any key,
    ``tenant:globex:board`` (globex's board) included: tenantry never lets a
    caller-named key address a tenant that is not the one bound. With none
    bound it is refused (``InvalidKey``: the mount gets an error frame;
    docs/presence.md). The soak's attacker tries exactly this."""

    tenant_required = False  # read by TenantMiddleware
    login_required = False  # public: anyone may see who is in a lobby
    template_name = "board/site_lobby.html"

    def get_presence_key(self) -> str:
        return _room_from_url(self)

    def mount(self, request, **kwargs):
        self.room = _room_from_url(self)
        try:
            self.track_presence(meta={"name": request.GET.get("name", "Guest")[:40]})
            self._list()
        except InvalidKey:
            # A room naming a tenant ("tenant:<id>:...") with no tenant bound.
            raise Http404("No such room here") from None

    def _list(self):
        self.names = [str(p["meta"].get("name")) for p in self.list_presences()]

    @event_handler
    def _on_presence_change(self, **kwargs):
        """djust pushes this when someone joins or leaves: list again."""
        super()._on_presence_change(**kwargs)
        self._list()


class LobbyView(TenantMixin, SiteLobbyView):
    """The same lobby on a tenant view that also serves the main domain
    (``tenant_required = False``): on a tenant's host the room is
    ``tenant:<id>:<room>`` (a ``tenant:globex:board`` from the link stays
    inside the host's tenant), and on the main domain, where no tenant is
    bound, it behaves as :class:`SiteLobbyView`."""

    tenant_required = False
    template_name = "board/lobby.html"


@tenant_flag("item_export")
def export_items(request):
    """The tenant's items as text, a feature on for tenants whose plan turns
    on the flag ``item_export`` (acme's settings; off by default:
    ``DJUST_CONFIG["TENANT_FLAGS"]``). 404 for the others
    (docs/operations.md#feature-flags)."""
    names = "\n".join(item.name for item in Item.objects.all())
    return HttpResponse(names + "\n", content_type="text/plain; charset=utf-8")


def support(request):
    """Support staff act as a member of this tenant (docs/operations.md#impersonation):
    sign in at /support/login/ as ``support`` (password ``support``), pick a
    member and a reason; every page then shows the "acting as" banner."""
    error = ""
    if request.method == "POST":
        if "stop" in request.POST:
            impersonation.stop(request)
            return redirect("support")
        member = User.objects.filter(username=request.POST.get("member", "")).first()
        try:
            impersonation.start(request, member, reason=request.POST.get("reason", ""), minutes=15)
        except (PermissionDenied, ValueError) as exc:
            error = str(exc)
        else:
            return redirect("support")
    members = User.objects.filter(is_staff=False, is_superuser=False).order_by("username")
    return render(request, "board/support.html", {"members": members, "error": error})
