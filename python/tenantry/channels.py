"""Django Channels pieces: the WebSocket origin gate and tenant-scoped groups.

``TenantOriginValidator`` wraps the WebSocket side of your ASGI application
(outside the session/auth stack) and refuses a handshake whose ``Origin`` is
not the same tenant as its ``Host``::

    application = ProtocolTypeRouter({
        "http": django_asgi_app,
        "websocket": TenantOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    })

Why: a browser sends the victim's cookies with a WebSocket handshake to any
host, whatever page opened it. channels' ``AllowedHostsOriginValidator`` (and
djust's own check) accept any origin in ``ALLOWED_HOSTS``, and every tenant's
host is in it, so a page on ``acme.example.com`` could open a live view on
``globex.example.com`` with a globex user's cookie. Here the origin must be
the same host as the handshake, or a host the configured resolvers map to the
same tenant (a tenant's custom domain and its subdomain). With resolvers that
do not read the host (header, session), only the same host passes.

A handshake without ``Origin`` (non-browser clients) is refused unless
``allow_missing_origin=True``. Refusals are audited (``websocket.refused``)
and counted as ``origin`` refusals.

The validator is the early gate. The same rule holds at every live mount
without it (an asgi.py with channels' ``AllowedHostsOriginValidator``, as
djust's docs show): ``TenantMixin`` checks the handshake's ``Origin`` against
the tenant the mount resolved (:func:`check_live_origin`), before ``mount()``
runs.

Broadcasts (docs/broadcasts.md): :func:`tenant_group` names a channels group
of one tenant, :func:`group_send` / :func:`agroup_send` send to the bound
tenant's group, and :func:`install_djust_broadcasts` (run by the app's
``ready()``) scopes djust's own groups (``push_to_view``, ``PresenceMixin``)
the same way, so a push from one tenant never reaches another's sessions.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import threading
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync, sync_to_async
from django.core.exceptions import PermissionDenied

from . import _core, conf
from ._core import TenantInfo, TenantNotSetError
from .access import refuse
from .context import _current, as_tenant, get_current_tenant, tenant_context
from .presence import get_presence_router

__all__ = [
    "DB_NOTIFY_PREFIX",
    "NOTIFY_TENANT_KEY",
    "TenantOriginValidator",
    "agroup_send",
    "check_live_origin",
    "db_notify_group",
    "djust_group_problems",
    "group_send",
    "install_djust_broadcasts",
    "move_live_view",
    "origin_refusal",
    "presence_group",
    "tenant_group",
    "uninstall_djust_broadcasts",
]


logger = logging.getLogger("tenantry.channels")

#: ``_header``'s answer for a header sent more than once with different values.
SEVERAL = object()


def _header(scope: dict[str, Any], name: bytes) -> Any:
    """The value of header ``name`` (any case), None when absent, or
    :data:`SEVERAL` when it was sent with different values (servers and
    djust do not agree on which one counts)."""
    found = None
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            text = value.decode("latin-1")
            if found is not None and text != found:
                return SEVERAL
            found = text
    return found


def origin_refusal(
    origin: str | None,
    host: str | None,
    *,
    allow_missing: bool,
    tenant: TenantInfo | None = None,
) -> str | None:
    """Why a WebSocket from ``origin`` to ``host`` is refused, or ``None``.

    The origin must be the same host as ``host``, or a host the configured
    host resolvers (subdomain, custom domain) map to the same tenant. With
    ``tenant`` (what a live mount resolved), an origin those resolvers map to
    a tenant must also map to that one.
    """
    if origin is SEVERAL or host is SEVERAL:
        return "several different Origin or Host headers"
    if origin is None:
        return None if allow_missing else "no Origin header"
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"Origin {origin!r} is not an http(s) origin"
    origin_side = _core.host_tenant(parts.netloc)
    if origin_side is None:
        return f"Origin {origin!r} is not in ALLOWED_HOSTS"
    host_side = _core.host_tenant(host) if host else None
    if host_side is None:
        return f"Host {host!r} is not in ALLOWED_HOSTS"
    (origin_domain, origin_tenant), (host_domain, host_tenant) = origin_side, host_side
    if tenant is not None and origin_tenant is not None and origin_tenant != tenant.id:
        return (
            f"Origin {origin_domain!r} (tenant {origin_tenant}) is not the tenant this live "
            f"view resolved ({tenant.id})"
        )
    if origin_domain == host_domain:
        return None
    if origin_tenant is not None and origin_tenant == host_tenant:
        return None
    return (
        f"Origin {origin_domain!r} (tenant {origin_tenant}) is not the tenant of "
        f"Host {host_domain!r} (tenant {host_tenant})"
    )


def check_live_origin(
    tenant: TenantInfo, *, scope: dict[str, Any] | None = None, request: Any = None
) -> None:
    """Refuse (``PermissionDenied``, audited and counted as ``origin``) a
    live mount of ``tenant`` whose page is not the tenant's: :func:`origin_refusal`
    on the WebSocket handshake's ``scope`` (or, over SSE, ``request``'s own
    headers) with ``tenant``. A mount without ``Origin`` passes (a browser
    always sends one on a WebSocket, so no visitor's cookies ride on it);
    :class:`TenantOriginValidator` can refuse those at the handshake."""
    if isinstance(scope, dict):
        origin, host = _header(scope, b"origin"), _header(scope, b"host")
    else:
        meta = getattr(request, "META", None)
        origin = meta.get("HTTP_ORIGIN") if isinstance(meta, dict) else None
        if not isinstance(origin, str):
            return  # no Origin (or not a request: a test's stand-in)
        try:
            host = request.get_host()  # as the request's tenant was resolved
        except Exception:  # DisallowedHost: refused below like any unknown host
            host = meta.get("HTTP_HOST")
    reason = origin_refusal(origin, host, allow_missing=True, tenant=tenant)
    if reason is None:
        return
    refuse(
        "origin",
        "websocket.refused",
        tenant,
        request,
        stage="mount",
        origin=None if origin is SEVERAL else origin,
        host=None if host is SEVERAL else host,
        reason=reason,
    )
    raise PermissionDenied(f"live view refused: {reason}")


class TenantOriginValidator:
    """ASGI middleware: WebSocket handshakes only from the same tenant's pages."""

    def __init__(self, application: Any, *, allow_missing_origin: bool = False) -> None:
        self.application = application
        self.allow_missing_origin = allow_missing_origin

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") != "websocket":
            return await self.application(scope, receive, send)
        origin = _header(scope, b"origin")
        host = _header(scope, b"host")
        if conf.current().resolution_needs_sync:
            # Custom domains are looked up in the database.
            reason = await sync_to_async(origin_refusal)(
                origin, host, allow_missing=self.allow_missing_origin
            )
        else:
            reason = origin_refusal(origin, host, allow_missing=self.allow_missing_origin)
        if reason is None:
            return await self.application(scope, receive, send)
        refuse(
            "origin",
            "websocket.refused",
            stage="handshake",
            path=scope.get("path"),
            origin=None if origin is SEVERAL else origin,
            host=None if host is SEVERAL else host,
            reason=reason,
        )
        from channels.security.websocket import WebsocketDenier

        return await WebsocketDenier()(scope, receive, send)


# -- tenant-scoped groups ------------------------------------------------------

#: channels refuses group names of 100 characters or more
#: (``BaseChannelLayer.MAX_NAME_LENGTH``).
GROUP_NAME_LIMIT = 99
GROUP_PREFIX = "tenantry."
#: What channels allows in a group name (ASCII only: channels' ``\d`` would
#: also take other scripts' digits, which some layers reject).
_GROUP_SAFE = re.compile(r"[A-Za-z0-9._-]+")
#: Name hashes kept beside a readable tenant id (160 bits).
_NAME_HASH_CHARS = 40


def _hexdigest(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(str(len(encoded)).encode() + b":" + encoded)
    return digest.hexdigest()


def _group_tenant(tenant: TenantInfo | str | int | None, what: str) -> TenantInfo:
    # The bound one too: djust.tenants' views bind djust's TenantInfo there.
    bound = as_tenant(tenant if tenant is not None else get_current_tenant())
    if bound is None:
        raise TenantNotSetError(
            f"{what} needs a tenant: none is bound. Call it inside the tenant's request, "
            "live-view event or job, or inside tenant_context(<id>), or pass tenant=."
        )
    return bound


def tenant_group(name: str, tenant: TenantInfo | str | int | None = None) -> str:
    """The channels group name of ``name`` in ``tenant`` (default: the bound
    tenant; ``TenantNotSetError`` when none is bound, ``InvalidTenantId`` for
    a bad id).

    Valid for every channel layer (ASCII letters, digits, ``-``, ``_``,
    ``.``; under 100 characters) and injective: two different
    ``(tenant, name)`` pairs never share a group. Readable when it fits
    (``tenantry.4.acme.n.chat``: the id's length, the id, the name); a name
    with other characters, or too long, is replaced by its SHA-256
    (``tenantry.4.acme.h.<40 hex>``), and a pair that still does not fit
    is hashed whole (``tenantry.x.<64 hex>``).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"tenant_group() needs a non-empty str group name, got {name!r}")
    tenant_id = _group_tenant(tenant, f"tenant_group({name!r})").id
    head = f"{GROUP_PREFIX}{len(tenant_id)}.{tenant_id}."
    if _GROUP_SAFE.fullmatch(name) and len(head) + 2 + len(name) <= GROUP_NAME_LIMIT:
        return f"{head}n.{name}"
    if len(head) + 2 + _NAME_HASH_CHARS <= GROUP_NAME_LIMIT:
        return f"{head}h.{_hexdigest(name)[:_NAME_HASH_CHARS]}"
    return f"{GROUP_PREFIX}x.{_hexdigest(tenant_id, name)}"


def _layer(alias: str) -> Any:
    from channels.layers import get_channel_layer

    layer = get_channel_layer(alias)
    if layer is None:
        raise RuntimeError(
            f"no channel layer {alias!r}: set CHANNEL_LAYERS in settings to broadcast"
        )
    return layer


async def agroup_send(name: str, message: dict[str, Any], *, using: str = "default") -> None:
    """Send ``message`` to the bound tenant's group ``name`` (consumers join
    it with ``channel_layer.group_add(tenant_group(name), channel_name)``).
    ``TenantNotSetError`` when no tenant is bound: a broadcast never goes
    to a group of no tenant by accident."""
    group = tenant_group(name)
    await _layer(using).group_send(group, message)


def group_send(name: str, message: dict[str, Any], *, using: str = "default") -> None:
    """:func:`agroup_send` for synchronous code (views, jobs, threads)."""
    group = tenant_group(name)
    async_to_sync(_layer(using).group_send)(group, message)


# -- djust's groups -------------------------------------------------------------
#
# djust names its groups itself: ``djust.push.view_group_name(view_path)`` for
# ``push_to_view`` (and ``PresenceMixin``'s "presence changed" push), joined by
# every live view of that class; ``PresenceManager.presence_group_name(key)``
# for presence events; ``djust_db_notify_<channel>`` for PostgreSQL NOTIFY
# (``listen()``); ``djust_hotreload`` for the development server's reloads.
# The first three are shared by every tenant in djust. Installed, tenantry
# puts the views of a tenant view class (``TenantMixin``) in their tenant's
# groups: djust binds the view's tenant before it joins the view and presence
# groups, the db_notify groups are joined for the view's own tenant, and a
# push names the group of the tenant bound when it is sent (a request, a
# live-view event, a job that carried its tenant), a NOTIFY the tenant
# ``send_pg_notify`` was called in. Sent with no tenant, they go to the views
# that have none; never to a tenant's. ``djust_hotreload`` carries no tenant's
# data (a file name; each view re-renders itself) and stays process-wide.
# :func:`djust_group_problems` reads djust's source for every group it joins
# or sends to, so a group djust adds is reported, not missed.

_djust_lock = threading.Lock()
_djust_originals: dict[str, Any] = {}

#: djust's prefix of the PostgreSQL NOTIFY groups (``djust_db_notify_<channel>``).
DB_NOTIFY_PREFIX = "djust_db_notify_"
#: The key of a NOTIFY payload that names the tenant it was raised in:
#: ``send_pg_notify`` sets it from the bound tenant (replacing any value the
#: caller's payload had) and the listener takes it out again.
NOTIFY_TENANT_KEY = "tenantry_tenant"
#: djust's groups that carry no tenant's data, process-wide by design.
PROCESS_WIDE_GROUPS = frozenset({"djust_hotreload"})
#: Where a consumer keeps the db_notify groups tenantry joined for it:
#: channel → group.
_NOTIFY_GROUPS = "_tenantry_notify_groups"


@lru_cache(maxsize=1024)
def _is_tenant_view(view_path: str) -> bool:
    """Whether the view class at ``view_path`` is tenant-aware. A path that
    does not import counts as tenant-aware: scoped is the safe side."""
    from django.utils.module_loading import import_string

    try:
        view_class = import_string(view_path)
    except Exception:
        return True
    return hasattr(view_class, "_ensure_tenant")


def scoped_view_group_name(view_path: str) -> str:
    """djust's ``view_group_name``, in the bound tenant for tenant views."""
    original = _djust_originals["view_group_name"](view_path)
    tenant = get_current_tenant()
    if tenant is None or not _is_tenant_view(view_path):
        return original
    return tenant_group(original, tenant)


def presence_group(room: str, tenant: TenantInfo | str | int) -> str:
    """The channels group of presence room ``room`` of ``tenant``: where
    djust's presence events and tenantry's presence diffs of that room go."""
    return tenant_group(f"presence:{room}", tenant)


def scoped_presence_group_name(presence_key: str) -> str:
    """djust's ``presence_group_name``, in the key's tenant for a
    ``tenant:<id>:`` key. The key is routed by the presence router's rule
    for caller-named keys: its tenant must be the bound one, and with no
    tenant bound a ``tenant:`` key raises ``InvalidKey`` (djust's mount
    then joins no presence group), so a socket without a tenant never
    follows a tenant's room."""
    original = _djust_originals["presence_group_name"](presence_key)
    # djust's presence keys of a tenant view: ``tenant:<id>:<key>``, both parts set.
    scoped = _core.split_tenant_scope(presence_key)
    if scoped is None or not all(scoped):
        return original
    tenant_id, room = get_presence_router().resolve(presence_key)
    return presence_group(room, tenant_id)


def broadcast_presence_change_in_view_tenant(view: Any) -> None:
    """djust's ``PresenceMixin._broadcast_presence_change`` (a "presence
    changed" ``push_to_view``), sent with a tenant view's own tenant bound:
    djust also sends it on disconnect, after it unbound the tenant, and a
    view may list ``PresenceMixin`` before ``TenantMixin``."""
    original = _djust_originals["_broadcast_presence_change"]
    if not hasattr(view, "_ensure_tenant"):
        return original(view)
    with tenant_context(getattr(view, "_tenant", None), must_exist=False):  # admitted on mount
        return original(view)


# -- PostgreSQL NOTIFY (djust.db) ----------------------------------------------------


def db_notify_group(channel: str, tenant: TenantInfo | str | int | None) -> str:
    """The group of NOTIFY channel ``channel`` for ``tenant``'s views:
    djust's own ``djust_db_notify_<channel>`` for views (and notifications)
    without a tenant, else that name in ``tenant`` (:func:`tenant_group`)."""
    name = DB_NOTIFY_PREFIX + channel
    tenant = as_tenant(tenant)
    return name if tenant is None else tenant_group(name, tenant)


def _view_tenant(view: Any) -> TenantInfo | None:
    """The tenant whose groups ``view`` joins: a tenant view's (``_tenant``:
    tenantry's, or djust.tenants' own), else None."""
    try:
        return as_tenant(getattr(view, "_tenant", None))
    except Exception:  # not a tenant (an app's attribute of that name)
        return None


async def join_listen_channels(transport: Any, view: Any) -> None:
    """djust's ``WSConsumerTransport._join_listen_channels``, joining each
    channel's group of the view's tenant (:func:`db_notify_group`). The
    consumer remembers the groups it joined, so leaving (a re-mount, a
    disconnect, a tenant switch) leaves exactly those."""
    consumer = transport._consumer
    listen_channels = getattr(view, "_listen_channels", None)
    if not listen_channels:
        return
    joined = getattr(consumer, "_db_notify_channels", None)
    if not isinstance(joined, set):
        joined = consumer._db_notify_channels = set()
    groups = _notify_groups(consumer)
    tenant = _view_tenant(view)
    for channel in sorted(set(listen_channels) - joined):
        group = db_notify_group(channel, tenant)
        try:
            await consumer.channel_layer.group_add(group, consumer.channel_name)
        except Exception as exc:  # like djust: retried at the next turn
            logger.warning("could not join the db_notify group of %s: %s", channel, exc)
            continue
        joined.add(channel)
        groups[channel] = group


def _notify_groups(consumer: Any) -> dict[str, str]:
    groups = consumer.__dict__.get(_NOTIFY_GROUPS)
    if groups is None:
        groups = consumer.__dict__[_NOTIFY_GROUPS] = {}
    return groups


async def _leave_notify_groups(consumer: Any) -> None:
    groups = consumer.__dict__.pop(_NOTIFY_GROUPS, None) or {}
    layer = getattr(consumer, "channel_layer", None)
    if layer is None:
        return
    for group in groups.values():
        try:
            await layer.group_discard(group, consumer.channel_name)
        except Exception as exc:  # like djust: never fails the disconnect
            logger.warning("could not leave channel group %s: %s", group, exc)


def _leaving_notify_groups(original: Any) -> Any:
    """djust's ``disconnect`` / ``_leave_view_groups``, first leaving the
    db_notify groups tenantry joined (djust leaves its own names)."""

    async def leave(self: Any, *args: Any, **kwargs: Any) -> Any:
        await _leave_notify_groups(getattr(self, "_consumer", self))
        return await original(self, *args, **kwargs)

    leave.__wrapped__ = original  # type: ignore[attr-defined]
    leave.__name__ = original.__name__
    leave.__doc__ = original.__doc__
    return leave


def tag_notify_payload(payload: Any) -> Any:
    """``payload`` of a NOTIFY sent now: a copy naming the bound tenant
    (:data:`NOTIFY_TENANT_KEY`), or without the key when none is bound, so
    no payload names a tenant other than the one it was raised in. A
    payload that is not a dict cannot carry it: refused while a tenant is
    bound (``TypeError``)."""
    tenant = get_current_tenant()
    if isinstance(payload, dict):
        tagged = {key: value for key, value in payload.items() if key != NOTIFY_TENANT_KEY}
        if tenant is not None:
            tagged[NOTIFY_TENANT_KEY] = tenant.id
        return tagged
    if tenant is not None:
        raise TypeError(
            f"send_pg_notify() payload must be a dict while a tenant is bound (got "
            f"{type(payload).__name__}): tenantry adds the tenant to it so only "
            f"{tenant.id!r}'s views receive it"
        )
    return payload


def send_pg_notify_in_tenant(channel: str, payload: Any) -> None:
    """djust's ``send_pg_notify``, its payload naming the bound tenant
    (:func:`tag_notify_payload`)."""
    return _djust_originals["send_pg_notify"](channel, tag_notify_payload(payload))


def notified_tenant(payload: Any) -> tuple[Any, TenantInfo | None]:
    """A NOTIFY payload as the views receive it and the tenant it names
    (None: none). An id that is not a tenant id raises."""
    if not isinstance(payload, dict) or NOTIFY_TENANT_KEY not in payload:
        return payload, None
    payload = dict(payload)
    named = payload.pop(NOTIFY_TENANT_KEY)
    if not isinstance(named, (str, int)) or isinstance(named, bool):
        raise ValueError(f"{NOTIFY_TENANT_KEY}={named!r} is not a tenant id")
    return payload, as_tenant(named)


async def dispatch_notification(listener: Any, channel: str, raw_payload: str) -> None:
    """djust's ``PostgresNotifyListener._dispatch``: the notification goes to
    the db_notify group of the tenant its payload names, and one that names
    none to the views without a tenant."""
    try:
        payload: Any = json.loads(raw_payload)
    except (ValueError, TypeError):  # like djust: a raw NOTIFY payload
        payload = {"raw": raw_payload}
    try:
        payload, tenant = notified_tenant(payload)
    except Exception as exc:
        logger.warning("NOTIFY on %s dropped: %s", channel, exc)
        return
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(
        db_notify_group(channel, tenant),
        {"type": "db_notify", "channel": channel, "payload": payload},
    )


# -- a live view that switches tenant --------------------------------------------------


def _page_consumer(view: Any) -> Any:
    """The WebSocket consumer whose page view ``view`` is (its groups are
    the view's), else None (SSE, HTTP, an embedded view)."""
    consumer = getattr(view, "_ws_consumer", None)
    if consumer is None or getattr(consumer, "channel_layer", None) is None:
        return None
    if getattr(consumer, "view_instance", None) is view:
        return consumer
    runtime = getattr(consumer, "_runtime", None)
    return consumer if getattr(runtime, "view_instance", None) is view else None


def move_live_view(
    view: Any, old: TenantInfo | None, new: TenantInfo | None, assign: Any, *, join: bool = True
) -> None:
    """Switch live ``view`` from tenant ``old`` to ``new``: ``assign()``
    sets the view's tenant. Around it, everything the socket holds keyed on
    ``old`` is let go (its presence tracked in ``old``'s room, its view,
    presence and db_notify groups, the pushes queued for it), the groups of
    ``new`` are joined (the view and presence groups djust joins at a mount,
    the db_notify groups of the channels it listens on), and ``new`` is bound
    in the running turn. The view is not tracked in ``new``'s room: it calls
    ``track_presence()`` again if it should be. ``join=False`` (a view that
    refused its tenant) joins nothing.

    Synchronous (an event handler's thread); from the event loop's own
    thread it raises ``RuntimeError`` before anything changes."""
    consumer = _page_consumer(view)
    if consumer is None:
        assign()
        _rebind(view, old, new)
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "set_tenant() on a live WebSocket view must run in a synchronous event handler "
            "(djust runs those in a thread): its channel groups move with it"
        )
    if getattr(view, "_presence_tracked", False):
        view.untrack_presence()  # in the old tenant's room (the key is still old's)
    if hasattr(view, "_presence_users"):  # TenantPresenceMixin: stop following old's room
        view._presence_users = None
        view._presence_room = None
    layer = consumer.channel_layer
    old_groups = [g for g in (consumer._view_group, consumer._presence_group) if g]
    old_groups += _notify_groups(consumer).values()
    for group in old_groups:
        async_to_sync(layer.group_discard)(group, consumer.channel_name)
    consumer._view_group = consumer._presence_group = None
    consumer.__dict__.pop(_NOTIFY_GROUPS, None)
    consumer._db_notify_channels = set()
    queued = getattr(consumer, "_deferred_pushes", None)
    if queued is not None:
        # Sent to the old tenant's groups. Emptied, not cancelled: this runs
        # in a handler's thread, and the drain (which may be running this
        # very turn) stops by itself at an empty queue.
        queued.clear()
    assign()
    _rebind(view, old, new)
    if join:
        _join_view_groups(consumer, view, new)


def _join_view_groups(consumer: Any, view: Any, tenant: TenantInfo | None) -> None:
    """The groups djust's mount joins, for ``tenant`` (bound while they are
    named, as at a mount)."""
    from djust.presence import PresenceManager
    from djust.push import view_group_name

    layer = consumer.channel_layer
    with tenant_context(tenant, must_exist=False):  # admitted by the switch
        view_group = view_group_name(getattr(consumer, "_view_path", "") or "")
        async_to_sync(layer.group_add)(view_group, consumer.channel_name)
        consumer._view_group = view_group
        if hasattr(view, "get_presence_key"):
            try:
                presence = PresenceManager.presence_group_name(view.get_presence_key())
            except Exception as exc:  # like djust's mount: no presence group
                logger.warning("no presence group after the tenant switch: %s", exc)
            else:
                async_to_sync(layer.group_add)(presence, consumer.channel_name)
                consumer._presence_group = presence
        groups = _notify_groups(consumer)
        joined: set[str] = set()
        for channel in sorted(getattr(view, "_listen_channels", None) or ()):
            group = db_notify_group(channel, tenant)
            async_to_sync(layer.group_add)(group, consumer.channel_name)
            groups[channel] = group
            joined.add(channel)
        consumer._db_notify_channels = joined


def _rebind(view: Any, old: TenantInfo | None, new: TenantInfo | None) -> None:
    """Bind ``new`` in the running turn when it ran as the view's ``old``
    tenant, so the rest of the handler and its render see the new one. The
    turn restores its own binding when it ends (djust's event binding, the
    mixin's HTTP dispatch); a view with no tenant before is rebound only on
    a live socket, where that holds for every turn."""
    if _current.get() != old:
        return
    if old is None and getattr(view, "_ws_consumer", None) is None:
        return
    _current.set(new)


# -- the installation ----------------------------------------------------------------


def install_djust_broadcasts() -> bool:
    """Scope djust's push, presence and db_notify groups by tenant (see
    above). Returns whether djust is there; safe to call again."""
    try:
        from djust import db as djust_db
        from djust import push, runtime, websocket
        from djust.db import decorators as notify_decorators
        from djust.db.notifications import PostgresNotifyListener
        from djust.presence import PresenceManager, PresenceMixin
    except Exception:  # djust not installed
        return False
    with _djust_lock:
        if _djust_originals:
            return True
        transport = runtime.WSConsumerTransport
        consumer = websocket.LiveViewConsumer
        _djust_originals.update(
            view_group_name=push.view_group_name,
            presence_group_name=PresenceManager.presence_group_name,
            _broadcast_presence_change=PresenceMixin._broadcast_presence_change,
            send_pg_notify=notify_decorators.send_pg_notify,
            _dispatch=PostgresNotifyListener._dispatch,
            _join_listen_channels=transport._join_listen_channels,
            _leave_view_groups=transport._leave_view_groups,
            disconnect=consumer.disconnect,
        )
        push.view_group_name = scoped_view_group_name
        PresenceManager.presence_group_name = staticmethod(scoped_presence_group_name)
        PresenceMixin._broadcast_presence_change = broadcast_presence_change_in_view_tenant
        notify_decorators.send_pg_notify = send_pg_notify_in_tenant
        djust_db.send_pg_notify = send_pg_notify_in_tenant
        PostgresNotifyListener._dispatch = dispatch_notification
        transport._join_listen_channels = join_listen_channels
        transport._leave_view_groups = _leaving_notify_groups(transport._leave_view_groups)
        consumer.disconnect = _leaving_notify_groups(consumer.disconnect)
    return True


def uninstall_djust_broadcasts() -> None:
    """Give djust its own group names back."""
    try:
        from djust import db as djust_db
        from djust import push, runtime, websocket
        from djust.db import decorators as notify_decorators
        from djust.db.notifications import PostgresNotifyListener
        from djust.presence import PresenceManager, PresenceMixin
    except Exception:
        return
    with _djust_lock:
        if not _djust_originals:
            return
        originals = dict(_djust_originals)
        _djust_originals.clear()
        push.view_group_name = originals["view_group_name"]
        PresenceManager.presence_group_name = staticmethod(originals["presence_group_name"])
        PresenceMixin._broadcast_presence_change = originals["_broadcast_presence_change"]
        notify_decorators.send_pg_notify = originals["send_pg_notify"]
        djust_db.send_pg_notify = originals["send_pg_notify"]
        PostgresNotifyListener._dispatch = originals["_dispatch"]
        runtime.WSConsumerTransport._join_listen_channels = originals["_join_listen_channels"]
        runtime.WSConsumerTransport._leave_view_groups = originals["_leave_view_groups"]
        websocket.LiveViewConsumer.disconnect = originals["disconnect"]


# -- what djust's groups are: read from its source --------------------------------------

#: djust's functions that name a group, and tenantry's versions of them.
SCOPED_NAMERS = {
    "view_group_name": "scoped_view_group_name",
    "presence_group_name": "scoped_presence_group_name",
}
#: djust's functions tenantry replaces whole, which name djust's db_notify
#: groups themselves (``<module>:<qualified name>``).
REPLACED_SENDERS = frozenset(
    {
        "djust.runtime:WSConsumerTransport._join_listen_channels",
        "djust.db.notifications:PostgresNotifyListener._dispatch",
    }
)
_GROUP_CALLS = frozenset({"group_add", "group_send"})


def djust_group_problems() -> list[str]:
    """Every channels group djust joins (``group_add``) or sends to
    (``group_send``), read from djust's source, that tenantry does not
    scope: one sentence each, naming the file and line. A group is scoped
    when it is named by a djust function tenantry replaced
    (:data:`SCOPED_NAMERS`), inside a djust function tenantry replaced whole
    (:data:`REPLACED_SENDERS`), or is process-wide by design
    (:data:`PROCESS_WIDE_GROUPS`). Empty without djust."""
    import ast
    import importlib.util
    import pathlib

    spec = importlib.util.find_spec("djust")
    if spec is None or not spec.submodule_search_locations:
        return []
    found = _installed_problems()
    root = pathlib.Path(next(iter(spec.submodule_search_locations)))
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent)
        if "tests" in relative.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if "group_add" not in text and "group_send" not in text:
            continue
        module = ".".join(relative.with_suffix("").parts)
        try:
            tree = ast.parse(text)
        except SyntaxError:
            found.append(f"{relative}: tenantry cannot read it for the channels groups it uses")
            continue
        found += _module_group_problems(tree, module, str(relative))
    return found


def _installed_problems() -> list[str]:
    """The replacements the source check counts on, where they should be."""
    expected = {
        "djust.push.view_group_name": scoped_view_group_name,
        "djust.presence.PresenceManager.presence_group_name": scoped_presence_group_name,
        "djust.db.decorators.send_pg_notify": send_pg_notify_in_tenant,
        "djust.db.notifications.PostgresNotifyListener._dispatch": dispatch_notification,
        "djust.runtime.WSConsumerTransport._join_listen_channels": join_listen_channels,
    }
    return [
        f"{path} is not tenantry's: its groups are not scoped by tenant "
        "(tenantry.channels.install_djust_broadcasts() did not run, or djust moved it)"
        for path, ours in expected.items()
        if _resolve(path) is not ours
    ]


def _resolve(path: str) -> Any:
    """The object at dotted ``path`` (a module, then attributes), or None."""
    import importlib

    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name, None)
        return found
    return None


def _module_group_problems(tree: Any, module: str, where: str) -> list[str]:
    import ast

    attributes = _attribute_assignments(tree)
    found = []

    def visit(node: Any, scope: list[str], function: Any) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = child if not isinstance(child, ast.ClassDef) else function
                visit(child, [*scope, child.name], inner)
                continue
            call = _group_call(child)
            if call is not None and child.args:
                qualname = f"{module}:{'.'.join(scope)}"
                reason = _unscoped(child.args[0], function, attributes, qualname)
                if reason is not None:
                    found.append(
                        f"djust {where}:{child.lineno} ({'.'.join(scope) or '<module>'}) "
                        f"{call}s to {reason}, a group tenantry does not scope by tenant"
                    )
            visit(child, scope, function)

    visit(tree, [], None)
    return found


def _group_call(node: Any) -> str | None:
    """``group_add`` / ``group_send`` when ``node`` calls one, directly
    (``layer.group_send(...)``) or through an adapter
    (``async_to_sync(layer.group_send)(...)``), else None."""
    import ast

    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Call) and func.args:  # async_to_sync(layer.group_send)(...)
        func = func.args[0]
    if isinstance(func, ast.Attribute) and func.attr in _GROUP_CALLS:
        return func.attr
    return None


def _attribute_assignments(tree: Any) -> dict[str, list[Any]]:
    """``<anything>.<attr> = <value>`` in a module: attr → values."""
    import ast

    found: dict[str, list[Any]] = {}
    for node in ast.walk(tree):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign) and node.value is not None
            else []
        )
        for target in targets:
            if isinstance(target, ast.Attribute):
                found.setdefault(target.attr, []).append(node.value)
    return found


def _unscoped(
    expr: Any, function: Any, attributes: dict[str, list[Any]], qualname: str, depth: int = 0
) -> str | None:
    """Why the group ``expr`` names is not scoped (a description of it), or
    None when it is."""
    import ast

    if depth > 5:
        return ast.unparse(expr)
    if isinstance(expr, ast.Constant):
        if expr.value is None or expr.value in PROCESS_WIDE_GROUPS:
            return None
        return repr(expr.value)
    if isinstance(expr, ast.JoinedStr):
        head = expr.values[0] if expr.values else None
        prefix = head.value if isinstance(head, ast.Constant) else ""
        if prefix == DB_NOTIFY_PREFIX and qualname in REPLACED_SENDERS:
            return None
        return ast.unparse(expr)
    if isinstance(expr, ast.Call):
        func = expr.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        return None if name in SCOPED_NAMERS else ast.unparse(expr)
    if isinstance(expr, ast.Name) and function is not None:
        values = [
            node.value
            for node in ast.walk(function)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == expr.id for t in node.targets)
        ]
        if not values:
            return ast.unparse(expr)
        for value in values:
            reason = _unscoped(value, function, attributes, qualname, depth + 1)
            if reason is not None:
                return reason
        return None
    if isinstance(expr, ast.Attribute) and expr.attr in attributes:
        for value in attributes[expr.attr]:
            reason = _unscoped(value, function, attributes, qualname, depth + 1)
            if reason is not None:
                return reason
        return None
    return ast.unparse(expr)
