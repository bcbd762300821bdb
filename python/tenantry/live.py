"""The live plane's gates inside djust: what a live mount, a client event
and a server-originated turn of a tenant view pass before view code runs.

Installed by the app's ``ready()`` (:func:`install`, idempotent):

* **Mounts** (WebSocket, SSE, ``mount_batch``, ``live_redirect``): djust's
  pre-mount sequence (``ViewRuntime._check_auth``) runs its auth checks and
  ``TenantMixin._ensure_tenant`` (tenant resolved and admitted, the
  handshake's ``Origin`` checked against it, the re-admission clock
  started); then the tenant's ``mounts`` rate limits (``http``'s when
  nothing sets ``mounts``) refuse with the same error frame as events, and
  ``mount()`` never runs.
* **Client events** (views, components, embedded views, over WebSocket and
  SSE) at djust's per-event gate (``_validate_event_security``), **URL
  changes** (``handle_params``), and **server-originated turns** (tick,
  ``push_to_view``, ``db_notify``, presence, async results: djust's
  ``_reauth_legacy_server_turn``, run at the top of each), and **presence
  heartbeats** (djust's ``ping`` of a tracked view): an open view
  whose tenant was admitted more than ``TENANT_READMIT_INTERVAL`` seconds
  ago is admitted again (``tenantry.access.readmit_live``: the registry
  through its cache, the membership check). A refusal sends an error frame
  (``{"type": "error", "error": "Tenant not found", "refused":
  "admission"}``) and closes the socket with code 4403; the turn does not
  run. Then events pass the tenant's ``events`` rate limits.

See docs/security.md#the-live-plane-sockets-events-and-jobs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async

from . import usage
from ._core import TenantInfo
from .access import readmission_due, readmit_live
from .context import _current
from .ratelimit import (
    UNAVAILABLE_RETRY_AFTER,
    _limiter,
    _unlimited,
    event_refusal,
    mount_refusal,
    mount_unlimited,
)

__all__ = ["READMIT_CLOSE_CODE", "install"]

logger = logging.getLogger("tenantry.live")

#: The WebSocket close code of a view whose tenant is no longer admitted
#: (djust's own code for a refused principal).
READMIT_CLOSE_CODE = 4403
#: Marks a djust function already wrapped here.
_WRAPPED = "_tenantry_live_gate"


def _live_tenant(view: Any) -> TenantInfo | None:
    """The tenant a ``TenantMixin`` view resolved, else None (a view
    without tenancy, or none resolved)."""
    tenant = getattr(view, "_tenantry_tenant", None)
    return tenant if isinstance(tenant, TenantInfo) else None


async def still_admitted(transport: Any, view: Any, page: Any = None) -> bool:
    """Whether the turn of ``view`` (and of ``page``, the page view when
    ``view`` is a component or an embedded view) may run: a tenant view
    whose admission is due is admitted again. When one is refused, its
    socket gets the error frame and is closed; when re-admission cannot be
    decided (the database is down) the turn is dropped with an error frame
    and the next turn tries again."""
    if not await _admitted(transport, view):
        return False
    return page is None or page is view or await _admitted(transport, page)


async def _admitted(transport: Any, view: Any) -> bool:
    tenant = _live_tenant(view)
    if tenant is None or not readmission_due(view, tenant):
        return True
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
        return True
    with contextlib.suppress(Exception):  # the peer may be gone already
        await transport.send_error(str(refusal), refused="admission")
    with contextlib.suppress(Exception):
        await transport.close(code=READMIT_CLOSE_CODE)
    return False


# -- djust's seams ------------------------------------------------------------------


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
        if tenant is None:  # nothing to count or limit (the store says the same)
            return handler
        if _unlimited("events", tenant):
            usage.count(tenant, "live_events")
            return handler
        if _limiter.get().needs_user("events"):
            # The view's user may still be a lazy object that loads from
            # the database: not on the event loop.
            refusal = await sync_to_async(event_refusal)(owner, event_name, root_view)
        else:
            refusal = event_refusal(owner, event_name, root_view)
        if refusal is None:
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
        tenant = _live_tenant(view)
        if tenant is None or mount_unlimited(tenant):
            return None
        refusal = await sync_to_async(mount_refusal)(view, tenant)
        if refusal is None:
            return None
        await self.transport.send_error(refusal.pop("error"), **refusal)
        return True  # blocked: djust drops the view, mount() never runs

    return check_auth


def _gated_url_change(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def dispatch_url_change(self: Any, data: Any) -> Any:
        if not await still_admitted(self.transport, self.view_instance):
            return None
        return await original(self, data)

    return dispatch_url_change


def _gated_server_turn(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def reauth(self: Any, view: Any) -> bool:
        if not await still_admitted(self, view):
            return False
        return await original(self, view)

    return reauth


def _gated_heartbeat(original: Callable[..., Any]) -> Callable[..., Any]:
    """A presence heartbeat (djust's ``ping`` of a tracked view) keeps the
    user listed in the room: it is a turn of the view like an event."""

    @functools.wraps(original)
    async def handle_presence_heartbeat(self: Any, data: Any) -> Any:
        if not await still_admitted(self, self.view_instance):
            return None
        return await original(self, data)

    return handle_presence_heartbeat


def _wrap(owner: Any, name: str, gate: Callable[..., Any]) -> None:
    current = getattr(owner, name, None)
    if current is None or getattr(current, _WRAPPED, False):
        return
    wrapped = gate(current)
    setattr(wrapped, _WRAPPED, True)
    setattr(owner, name, wrapped)


def install() -> bool:
    """Put the gates into djust (see the module docstring). Returns whether
    djust is there; safe to call again."""
    try:
        from djust import runtime, websocket, websocket_utils
    except Exception:  # djust not installed
        return False
    # The event gate is imported by name into each module that calls it.
    for module in (websocket_utils, runtime, websocket):
        _wrap(module, "_validate_event_security", _gated_event_validator)
    _wrap(runtime.ViewRuntime, "_check_auth", _gated_mount_check)
    _wrap(runtime.ViewRuntime, "dispatch_url_change", _gated_url_change)
    _wrap(websocket.LiveViewConsumer, "_reauth_legacy_server_turn", _gated_server_turn)
    _wrap(websocket.LiveViewConsumer, "handle_presence_heartbeat", _gated_heartbeat)
    return True
