"""The live plane's gates inside djust: what a live mount, a client frame,
a channel-layer message and a server-originated turn of a tenant view pass
before view code runs or anything reaches the client.

Installed by ``tenantry.djust.install()`` from the app's ``ready()``
(:func:`install`, idempotent; ``tenantry.live`` re-exports the public names):

* **Mounts** (WebSocket, SSE, ``mount_batch``, ``live_redirect``): djust's
  pre-mount sequence (``ViewRuntime._check_auth``) runs its auth checks and
  ``TenantMixin._ensure_tenant`` (tenant resolved and admitted, the
  handshake's ``Origin`` checked against it, the re-admission clock
  started); then, for every live view with or without ``TenantMixin``,
  the impersonation the session carries (``impersonation.mounted_live``:
  one over, or for another tenant, is refused); then the tenant's
  ``mounts`` rate limits (``http``'s when nothing sets ``mounts``) refuse
  with the same error frame as events, and ``mount()`` never runs. Every
  later turn (:func:`still_admitted`) checks that impersonation again
  (docs/operations.md#impersonation-on-open-sockets).
* **Everything channels hands to djust's WebSocket consumer**: the
  consumer's ``dispatch`` (channels' type dispatch, the one door of every
  client frame and every channel-layer message: ``presence_event``,
  ``server_push``, ``client_push_event``, ``db_notify``, ``hotreload``, and
  any handler djust or a subclass adds) admits the view's tenant again
  first, and binds the view's current tenant for what runs. Every consumer
  class gets the gate, subclasses included (as they are defined).
* **Client frames** through one table, :data:`FRAME_SCOPES`, derived
  against djust's own receive dispatch (:func:`frame_dispatch`): every frame
  type passes re-admission at the door, and those that cause work or
  broadcasts (``cursor_move``, ``request_html``, uploads, time travel, URL
  changes, ...) the tenant's rate limits before their handler runs.
* **Client events** (views, components, embedded views, over WebSocket and
  SSE) at djust's per-event gate (``_validate_event_security``): re-admission,
  then the tenant's ``events`` rate limits. SSE's frames
  (``ViewRuntime.dispatch_message``) and URL changes (``handle_params``)
  are admitted again too.
* **Server-originated turns** that do not come through the door (ticks,
  queued pushes, async results of both transports) at djust's
  ``_reauth_legacy_server_turn`` and the runtime's async-result steps.
* **Delivery**: the last step of every WebSocket frame (the consumer's
  ``_send_frame``) and of every SSE frame (``SSESessionTransport.send``)
  admits again when the view is due, so nothing reaches the client of a
  refused view whatever path produced it.

An open view whose tenant was admitted more than ``TENANT_READMIT_INTERVAL``
seconds ago is admitted again (``tenantry.access.readmit_live``: the
registry through its cache, the membership check). A refusal sends an error
frame (``{"type": "error", "error": "Tenant not found", "refused":
"admission"}``) and closes the socket with code 4403; the turn does not run
and nothing more is delivered.

:func:`problems` names what the gates cannot cover in the installed djust (a
consumer class whose ``dispatch`` is not gated, a frame type
:data:`FRAME_SCOPES` does not classify, a djust seam that moved): logged at
start-up and reported by ``manage.py check`` (``tenantry.E110``).

See docs/security.md#the-live-plane-sockets-events-and-jobs.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import logging
import textwrap
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.core.exceptions import PermissionDenied

from .. import impersonation, observe, usage
from .._core import TenantInfo
from ..access import readmission_due, readmit_live, readmitted
from ..context import _current
from ..flags import flag_refusal
from ..ratelimit import (
    UNAVAILABLE_RETRY_AFTER,
    _limiter,
    _unlimited,
    event_refusal,
    frame_refusal,
    mount_refusal,
    mount_unlimited,
    needs_user,
)

try:
    from djust import runtime, websocket, websocket_utils
except ImportError:  # djust not installed (names.problems() reports a missing module)
    runtime = websocket = websocket_utils = None

__all__ = [
    "FRAME_SCOPES",
    "READMIT_CLOSE_CODE",
    "UPLOAD_CHUNK",
    "consumer_handlers",
    "frame_dispatch",
    "install",
    "problems",
]

logger = logging.getLogger("tenantry.live")  # the public module's name, as before

#: The WebSocket close code of a view whose tenant is no longer admitted
#: (djust's own code for a refused principal).
READMIT_CLOSE_CODE = 4403
#: Marks a djust function already wrapped here.
_WRAPPED = "_tenantry_live_gate"

#: The frame type of djust's binary upload chunks (0x01-0x03 frames).
UPLOAD_CHUNK = "upload_chunk"

#: Every client frame type djust's WebSocket consumer accepts, and the rate
#: limit scope its handler is held to (after re-admission, which every frame
#: passes): ``None`` for frames limited elsewhere or that cause no work.
#: :func:`problems` compares this with djust's own receive dispatch; a type
#: djust adds and this table does not know is limited as ``events``.
FRAME_SCOPES: dict[str, str | None] = {
    "event": None,  # the events limits at djust's per-event gate
    "mount": None,  # the mounts limits at djust's pre-mount sequence
    "mount_batch": None,  # each entry: the mounts limits
    "live_redirect_mount": None,  # a mount: the mounts limits
    "url_change": None,  # the events limits at the runtime's URL-change gate (both transports)
    "ping": None,  # the client's keep-alive (every 30 s): a pong and a presence heartbeat
    "debug_panel_open": None,  # a flag on the connection
    "debug_panel_close": None,
    "presence_heartbeat": "events",
    "cursor_move": "events",
    "request_html": "events",
    "upload_register": "events",
    "upload_resume": "events",
    UPLOAD_CHUNK: "uploads",
    "time_travel_jump": "events",
    "time_travel_component_jump": "events",
    "forward_replay": "events",
    "bug_capture_share": "events",
}
#: The scope of a frame type :data:`FRAME_SCOPES` does not know.
UNCLASSIFIED_SCOPE = "events"
#: Consumer methods a receive branch calls that only answer the client.
_ANSWERS = frozenset({"send", "send_json", "send_error", "close", "_send_frame"})
#: channels' lifecycle messages: a socket's own connect and disconnect (the
#: clean-up of a refused view must run).
_LIFECYCLE = frozenset({"websocket.connect", "websocket.disconnect"})

#: While a gate decides (and sends its own error frame), the delivery gate
#: lets this task's frames through.
_deciding: ContextVar[bool] = ContextVar("tenantry_live_deciding", default=False)
#: djust seams that were not where :func:`install` looks (see :func:`problems`).
_missing: list[str] = []


def _live_tenant(view: Any) -> TenantInfo | None:
    """The tenant a ``TenantMixin`` view resolved, else None (a view
    without tenancy, or none resolved)."""
    tenant = getattr(view, "_tenantry_tenant", None)
    return tenant if isinstance(tenant, TenantInfo) else None


def _bind_view_tenant(view: Any) -> None:
    """Bind ``view``'s current tenant in the running task: djust binds the
    mount's tenant for the socket's life, and a view may have switched
    since (``set_tenant``). Views without tenancy leave the binding alone."""
    if view is None or not hasattr(view, "_tenantry_tenant"):
        return
    tenant = _live_tenant(view)
    if _current.get() is not tenant:
        _current.set(tenant)


async def still_admitted(transport: Any, view: Any, page: Any = None) -> bool:
    """Whether the turn of ``view`` (and of ``page``, the page view when
    ``view`` is a component or an embedded view) may run: a tenant view
    whose admission is due is admitted again. When one is refused, its
    socket gets the error frame and is closed; when re-admission cannot be
    decided (the database is down) the turn is dropped with an error frame
    and the next turn tries again."""
    if not await _admitted(transport, view):
        return False
    if page is not None and page is not view and not await _admitted(transport, page):
        return False
    if impersonation.live_tracked(view) and not await _impersonation_holds(transport, view):
        return False
    if page is None or page is view or not impersonation.live_tracked(page):
        return True
    return await _impersonation_holds(transport, page)


async def _impersonation_holds(transport: Any, view: Any) -> bool:
    """Whether the impersonation ``view`` was mounted under (if any) still
    holds (docs/operations.md#impersonation): over at its time bound, at
    ``stop()``, logout or the staff user's loss of the permission (seen at
    once in this process, by the session and the user within
    ``TENANT_READMIT_INTERVAL`` elsewhere). Any live view, with or without
    ``TenantMixin``. Over: an error frame, the socket closed with 4403."""
    ended = impersonation.live_turn_refusal(view, _live_tenant(view))
    if ended is None and impersonation.live_recheck_due(view):
        try:
            ended = await sync_to_async(impersonation.live_recheck)(view)
        except Exception as exc:  # fail closed for this turn only
            logger.error("impersonation check of %s failed: %s", type(view).__name__, exc)
            with contextlib.suppress(Exception):
                await transport.send_error(
                    "Service temporarily unavailable, event dropped",
                    retry_after=float(UNAVAILABLE_RETRY_AFTER),
                )
            return False
    if ended is None:
        return True
    if getattr(transport, "_tenantry_refused", False):
        return False  # told and closed already
    with contextlib.suppress(Exception):
        transport._tenantry_refused = True
    token = _deciding.set(True)
    try:
        with contextlib.suppress(Exception):
            await transport.send_error(ended, refused="impersonation")
        with contextlib.suppress(Exception):
            await transport.close(code=READMIT_CLOSE_CODE)
    finally:
        _deciding.reset(token)
    return False


def _due(view: Any) -> bool:
    """Whether a frame of ``view`` must pass a gate before delivery."""
    tenant = _live_tenant(view)
    if tenant is not None and readmission_due(view, tenant):
        return True
    return impersonation.live_turn_due(view)


async def _admitted(transport: Any, view: Any) -> bool:
    tenant = _live_tenant(view)
    if tenant is None or not readmission_due(view, tenant):
        return True
    token = _deciding.set(True)
    try:
        return await _readmit(transport, view, tenant)
    finally:
        _deciding.reset(token)


async def _readmit(transport: Any, view: Any, tenant: TenantInfo) -> bool:
    try:
        refusal = await sync_to_async(readmit_live)(view, tenant)
    except Exception as exc:  # fail closed for this turn only
        logger.error("re-admission of %s for %s failed: %s", tenant.id, type(view).__name__, exc)
        with contextlib.suppress(Exception):
            await transport.send_error(
                "Service temporarily unavailable, event dropped",
                retry_after=float(UNAVAILABLE_RETRY_AFTER),
            )
        return False
    if refusal is None:
        fresh = readmitted(view)
        if fresh is not None and fresh.id == tenant.id and view._tenantry_tenant is tenant:
            # The tenant as it is now (its settings, its flags): the view's
            # from here on, bound for this turn.
            view._tenantry_tenant = fresh
            _bind_view_tenant(view)
        return True
    if getattr(transport, "_tenantry_refused", False):
        return False  # told and closed already
    with contextlib.suppress(Exception):
        transport._tenantry_refused = True
    with contextlib.suppress(Exception):  # the peer may be gone already
        await transport.send_error(str(refusal), refused="admission")
    with contextlib.suppress(Exception):
        await transport.close(code=READMIT_CLOSE_CODE)
    return False


async def _frame_allowed(transport: Any, view: Any, kind: str, scope: str) -> bool:
    """Whether ``view``'s tenant's ``scope`` limits let a ``kind`` frame
    through; a refusal answers with the events' error frame."""
    tenant = _live_tenant(view)
    if tenant is None:
        return True
    if _unlimited(scope, tenant):
        if scope == "events":
            usage.count(tenant, "live_events")
            if observe.event is not None:
                observe.event(tenant)
        return True
    if _limiter.get().needs_user(scope):
        # The view's user may still be a lazy object that loads from the
        # database: not on the event loop.
        refusal = await sync_to_async(frame_refusal)(view, tenant, kind, scope)
    else:
        refusal = frame_refusal(view, tenant, kind, scope)
    if refusal is None:
        if scope == "events" and observe.event is not None:
            observe.event(tenant)
        return True
    with contextlib.suppress(Exception):
        await transport.send_error(refusal.pop("error"), **refusal)
    return False


# -- djust's client frames: derived from its receive dispatch -----------------------


#: consumer class → :func:`frame_dispatch`'s answer (weak: a class made in a
#: test goes away with its last reference).
_frame_dispatch: weakref.WeakKeyDictionary[type, dict[str, frozenset[str]]] = (
    weakref.WeakKeyDictionary()
)


def frame_dispatch(consumer_class: type) -> dict[str, frozenset[str]]:
    """The frame types ``consumer_class.receive`` dispatches, each with the
    consumer methods its branch calls (read from djust's source: every
    ``msg_type == "<type>"`` and ``msg_type in self.<VERBS>`` branch, and
    the binary upload branch as :data:`UPLOAD_CHUNK`). Empty when the source
    cannot be read (see :func:`problems`)."""
    known = _frame_dispatch.get(consumer_class)
    if known is None:
        known = _frame_dispatch[consumer_class] = _read_frame_dispatch(consumer_class)
    return known


def _read_frame_dispatch(consumer_class: type) -> dict[str, frozenset[str]]:
    receive = getattr(consumer_class, "receive", None)
    try:
        source = textwrap.dedent(inspect.getsource(receive))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return {}
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        kinds = _branch_kinds(node.test, consumer_class)
        if not kinds:
            continue
        called = {
            call.func.attr
            for statement in node.body
            for call in ast.walk(statement)
            if isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "self"
            and call.func.attr not in _ANSWERS
        }
        for kind in kinds:
            found.setdefault(kind, set()).update(called)
    return {kind: frozenset(methods) for kind, methods in found.items()}


def _branch_kinds(test: ast.expr, consumer_class: type) -> set[str]:
    """The frame types an ``if`` of djust's receive dispatch selects."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and len(test.comparators) == 1):
        return set()
    op, right = test.ops[0], test.comparators[0]
    if not isinstance(test.left, ast.Name):
        return set()
    if isinstance(op, ast.Eq) and isinstance(right, ast.Constant) and isinstance(right.value, str):
        return {right.value} if test.left.id == "msg_type" else set()
    if not isinstance(op, ast.In):
        return set()
    if (
        test.left.id == "msg_type"
        and isinstance(right, ast.Attribute)
        and isinstance(right.value, ast.Name)
        and right.value.id == "self"
    ):
        verbs = getattr(consumer_class, right.attr, ())
        return {verb for verb in verbs if isinstance(verb, str)}
    if isinstance(right, ast.Tuple) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, int) for e in right.elts
    ):
        return {UPLOAD_CHUNK}  # ``frame_type in (0x01, 0x02, 0x03)``: binary uploads
    return set()


def _frame_kind(data: Any) -> str | None:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return UPLOAD_CHUNK
    if isinstance(data, dict):
        kind = data.get("type")
        return kind if isinstance(kind, str) else None
    return None


def _limited_methods(consumer_class: type) -> set[str]:
    """The consumer methods a limited frame type reaches."""
    methods: set[str] = set()
    for kind, called in frame_dispatch(consumer_class).items():
        if FRAME_SCOPES.get(kind, UNCLASSIFIED_SCOPE) is not None:
            methods |= called
    return methods


def consumer_handlers(consumer_class: type) -> list[str]:
    """The handlers channels' type dispatch can reach on ``consumer_class``:
    every public coroutine method (a message of type ``a.b`` calls ``a_b``;
    channels refuses a leading underscore)."""
    return sorted(
        name
        for name in dir(consumer_class)
        if not name.startswith("_") and iscoroutinefunction(getattr(consumer_class, name, None))
    )


# -- the gates ------------------------------------------------------------------------


def _gated_dispatch(original: Callable[..., Any]) -> Callable[..., Any]:
    """channels' type dispatch of djust's consumer: every client frame and
    every channel-layer message passes re-admission of the socket's view
    first (its lifecycle messages aside), and runs with the view's current
    tenant bound."""

    @functools.wraps(original)
    async def dispatch(self: Any, message: Any) -> Any:
        if message.get("type") not in _LIFECYCLE:
            view = getattr(self, "view_instance", None)
            if view is not None:
                if not await still_admitted(self, view):
                    return None
                _bind_view_tenant(view)
        return await original(self, message)

    return dispatch


def _gated_frame(original: Callable[..., Any]) -> Callable[..., Any]:
    """A consumer method a limited client frame reaches: the frame's rate
    limit scope (:data:`FRAME_SCOPES`) first."""

    @functools.wraps(original)
    async def handle(self: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
        kind = _frame_kind(data)
        scope = FRAME_SCOPES.get(kind, UNCLASSIFIED_SCOPE) if kind else UNCLASSIFIED_SCOPE
        if scope is not None:
            view = getattr(self, "view_instance", None)
            if view is not None and not await _frame_allowed(self, view, kind or "?", scope):
                return None
        return await original(self, data, *args, **kwargs)

    return handle


def _gated_delivery(original: Callable[..., Any]) -> Callable[..., Any]:
    """The consumer's last step before the socket: a view due for
    re-admission is admitted before anything more reaches its client."""

    @functools.wraps(original)
    async def send_frame(self: Any, *args: Any, **kwargs: Any) -> Any:
        view = getattr(self, "view_instance", None)
        if view is not None and not _deciding.get() and _due(view):
            if not await still_admitted(self, view):
                return None
        return await original(self, *args, **kwargs)

    return send_frame


def _gated_sse_delivery(original: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`_gated_delivery` for an SSE session's frames."""

    @functools.wraps(original)
    async def send(self: Any, data: Any) -> Any:
        view = getattr(getattr(self, "_session", None), "view_instance", None)
        if view is not None and not _deciding.get() and _due(view):
            if not await still_admitted(self, view):
                return None
        return await original(self, data)

    return send


def _gated_event_validator(original: Callable[..., Any]) -> Callable[..., Any]:
    """djust's per-event gate, preceded by re-admission and followed by
    the ``events`` limits."""

    @functools.wraps(original)
    async def validate(ws: Any, event_name: str, owner: Any, *args: Any, **kwargs: Any) -> Any:
        root_view = kwargs.get("root_view")
        if not await still_admitted(ws, owner, root_view):
            return None
        handler = await original(ws, event_name, owner, *args, **kwargs)
        if handler is None:
            return None
        tenant = _current.get()
        refusal = flag_refusal(handler, tenant)  # @tenant_flag: one getattr when unflagged
        if refusal is not None:
            await ws.send_error(refusal.pop("error"), **refusal)
            return None
        if tenant is None:  # nothing to count or limit (the store says the same)
            return handler
        if _unlimited("events", tenant):
            usage.count(tenant, "live_events")
            if observe.event is not None:
                observe.event(tenant)
            return handler
        if needs_user("events", tenant):
            # The view's user may still be a lazy object that loads from
            # the database: not on the event loop.
            refusal = await sync_to_async(event_refusal)(owner, event_name, root_view)
        else:
            refusal = event_refusal(owner, event_name, root_view)
        if refusal is None:
            if observe.event is not None:
                observe.event(tenant)
            return handler
        await ws.send_error(refusal.pop("error"), **refusal)
        return None

    return validate


def _gated_mount_check(original: Callable[..., Any]) -> Callable[..., Any]:
    """djust's pre-mount sequence, then the ``mounts`` limits."""

    @functools.wraps(original)
    async def check_auth(self: Any, request: Any) -> Any:
        blocked = await original(self, request)
        if blocked is not None:
            return blocked
        view = self.view_instance
        if impersonation.live_mount_may_act(request):  # every live view, TenantMixin or not
            try:
                await sync_to_async(impersonation.mounted_live)(view, request, _live_tenant(view))
            except PermissionDenied as ended:
                await self.transport.send_error(str(ended), refused="impersonation")
                finalize = getattr(self, "_finalize_mount_auth", None)
                if finalize is not None:
                    await finalize("permission_denied")  # djust's close (4403) of a denial
                return True
        tenant = _live_tenant(view)
        if tenant is None or mount_unlimited(tenant):
            return None
        refusal = await sync_to_async(mount_refusal)(view, tenant)
        if refusal is None:
            return None
        await self.transport.send_error(refusal.pop("error"), **refusal)
        return True  # blocked: djust drops the view, mount() never runs

    return check_auth


def _gated_runtime_frame(original: Callable[..., Any]) -> Callable[..., Any]:
    """The runtime's frame entry (SSE's one door, and the WebSocket's
    runtime-owned verbs): re-admission of the runtime's view first."""

    @functools.wraps(original)
    async def dispatch_message(self: Any, data: Any) -> Any:
        view = getattr(self, "view_instance", None)
        if view is not None:
            if not await still_admitted(self.transport, view):
                return None
            _bind_view_tenant(view)
        return await original(self, data)

    return dispatch_message


def _gated_url_change(original: Callable[..., Any]) -> Callable[..., Any]:
    """A URL change (``handle_params`` and a render): re-admission, then
    the ``events`` limits."""

    @functools.wraps(original)
    async def dispatch_url_change(self: Any, data: Any) -> Any:
        view = self.view_instance
        if not await still_admitted(self.transport, view):
            return None
        if view is not None and not await _frame_allowed(
            self.transport, view, "url_change", "events"
        ):
            return None
        return await original(self, data)

    return dispatch_url_change


def _gated_runtime_turn(original: Callable[..., Any]) -> Callable[..., Any]:
    """A step of the runtime's async work (the background callback, its
    result's render): re-admission of the runtime's view first."""

    @functools.wraps(original)
    async def turn(self: Any, *args: Any, **kwargs: Any) -> Any:
        view = getattr(self, "view_instance", None)
        if view is not None:
            if not await still_admitted(self.transport, view):
                return None
            _bind_view_tenant(view)
        return await original(self, *args, **kwargs)

    return turn


def _gated_server_turn(original: Callable[..., Any]) -> Callable[..., Any]:
    """djust's check at the top of each server-originated turn (tick,
    queued pushes, async results): re-admission, and the view's current
    tenant bound for the turn (the task may have the mount's)."""

    @functools.wraps(original)
    async def reauth(self: Any, view: Any) -> bool:
        if not await still_admitted(self, view):
            return False
        _bind_view_tenant(view)
        return await original(self, view)

    return reauth


def _wrap(owner: Any, name: str, gate: Callable[..., Any], *, own: bool = False) -> None:
    """Put ``gate`` around ``owner.<name>`` (once). ``own``: only when
    ``owner`` defines it itself (a subclass inherits the gated one)."""
    current = owner.__dict__.get(name) if own else getattr(owner, name, None)
    if current is None:
        if not own:
            _missing.append(f"{getattr(owner, '__qualname__', owner)}.{name}")
        return
    if getattr(current, _WRAPPED, False):
        return
    wrapped = gate(current)
    _take_code_name(wrapped, current)
    setattr(wrapped, _WRAPPED, True)
    setattr(owner, name, wrapped)


def _take_code_name(wrapper: Any, original: Any) -> None:
    """Give ``wrapper``'s code object the wrapped method's name.
    ``functools.wraps`` copies ``__name__``, but a coroutine's
    ``cr_code.co_name`` (what asyncio, tracebacks and code that recognises
    djust's own coroutines read) comes from the code object: without this, a
    coroutine djust spawns through a gated method would be named after the
    gate, and an app that tells djust's tasks apart by name would behave
    differently with tenantry installed."""
    code = getattr(wrapper, "__code__", None)
    name = getattr(original, "__name__", None)
    if code is None or not isinstance(name, str):
        return
    qualname = getattr(original, "__qualname__", name)
    wrapper.__code__ = code.replace(co_name=name, co_qualname=qualname)


def _gate_consumer(consumer_class: type, *, base: bool = False) -> None:
    """The gates of one consumer class (djust's, or a subclass as it is
    defined): its own ``dispatch``, ``_send_frame`` and limited frame
    handlers."""
    _wrap(consumer_class, "dispatch", _gated_dispatch, own=not base)
    _wrap(consumer_class, "_send_frame", _gated_delivery, own=not base)
    for name in sorted(_limited_methods(consumer_class)):
        _wrap(consumer_class, name, _gated_frame, own=not base)


def _subclasses(cls: type) -> list[type]:
    found, todo = [], list(cls.__subclasses__())
    while todo:
        sub = todo.pop()
        found.append(sub)
        todo.extend(sub.__subclasses__())
    return found


def _gate_subclasses_as_defined(consumer_class: type) -> None:
    """A consumer subclass defined later (asgi.py, routing) gets the gates
    of the methods it overrides, as it is defined."""
    if getattr(consumer_class.__dict__.get("__init_subclass__"), _WRAPPED, False):
        return
    parent = consumer_class.__dict__.get("__init_subclass__")

    def __init_subclass__(cls: type, **kwargs: Any) -> None:
        if parent is not None:
            parent.__func__(cls, **kwargs)
        else:
            super(consumer_class, cls).__init_subclass__(**kwargs)
        _gate_consumer(cls)

    setattr(__init_subclass__, _WRAPPED, True)
    consumer_class.__init_subclass__ = classmethod(__init_subclass__)  # type: ignore[assignment]


def install() -> bool:
    """Put the gates into djust (see the module docstring). Returns whether
    djust is there; safe to call again. What the gates cannot cover in the
    installed djust is logged (:func:`problems`)."""
    if websocket is None:
        return False
    # The event gate is imported by name into each module that calls it.
    for module in (websocket_utils, runtime, websocket):
        _wrap(module, "_validate_event_security", _gated_event_validator)
    view_runtime = runtime.ViewRuntime
    _wrap(view_runtime, "_check_auth", _gated_mount_check)
    _wrap(view_runtime, "dispatch_message", _gated_runtime_frame)
    _wrap(view_runtime, "dispatch_url_change", _gated_url_change)
    _wrap(view_runtime, "_execute_async_task", _gated_runtime_turn)
    _wrap(view_runtime, "_render_async_result", _gated_runtime_turn)
    _wrap(runtime.SSESessionTransport, "send", _gated_sse_delivery)
    consumer = websocket.LiveViewConsumer
    _wrap(consumer, "_reauth_legacy_server_turn", _gated_server_turn)
    _gate_consumer(consumer, base=True)
    for sub in _subclasses(consumer):
        _gate_consumer(sub)
    _gate_subclasses_as_defined(consumer)
    for problem in problems():
        logger.error("%s", problem)
    return True


def problems() -> list[str]:
    """What the gates cannot cover in the installed djust, one sentence
    each (empty when all is covered): a djust seam that moved, a consumer
    class whose channel-layer handlers are reached without the gate, a frame
    type :data:`FRAME_SCOPES` does not classify, a receive dispatch that
    cannot be read."""
    if websocket is None:
        return []
    LiveViewConsumer = websocket.LiveViewConsumer
    found = [
        f"djust has no {seam}: tenantry's live gate there is missing "
        "(djust changed; see docs/security.md#the-live-plane-sockets-events-and-jobs)"
        for seam in dict.fromkeys(_missing)
    ]
    for cls in [LiveViewConsumer, *_subclasses(LiveViewConsumer)]:
        name = f"{cls.__module__}.{cls.__qualname__}"
        if not getattr(getattr(cls, "dispatch", None), _WRAPPED, False):
            found.append(
                f"{name}.dispatch is not gated: its handlers "
                f"({', '.join(consumer_handlers(cls))}) reach clients without re-admission"
            )
        branches = frame_dispatch(cls)
        if not branches:
            found.append(
                f"{name}.receive: tenantry cannot read its frame dispatch, so no frame type "
                "is rate limited there"
            )
        for kind in sorted(set(branches) - set(FRAME_SCOPES)):
            found.append(
                f"{name}.receive dispatches frame type {kind!r}, which tenantry.live.FRAME_SCOPES "
                f"does not classify: it is limited as {UNCLASSIFIED_SCOPE!r} until it is"
            )
        for method in sorted(_limited_methods(cls)):
            if not getattr(getattr(cls, method, None), _WRAPPED, False):
                found.append(f"{name}.{method} handles a limited frame type but is not gated")
    return found
