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

import hashlib
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
from .context import as_tenant, get_current_tenant, tenant_context
from .presence import get_presence_router

__all__ = [
    "TenantOriginValidator",
    "agroup_send",
    "check_live_origin",
    "group_send",
    "install_djust_broadcasts",
    "origin_refusal",
    "presence_group",
    "tenant_group",
    "uninstall_djust_broadcasts",
]


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
# every live view of that class, and
# ``PresenceManager.presence_group_name(presence_key)`` for presence events.
# Both are shared by every tenant. Installed, tenantry's versions put the
# views of a tenant view class (``TenantMixin``) in their tenant's group:
# djust binds the view's tenant before it joins the group, and a push names
# the group of the tenant bound when it is sent (a request, a live-view
# event, a job that carried its tenant). A push with no tenant bound goes to
# the views that have none; never to a tenant's.

_djust_lock = threading.Lock()
_djust_originals: dict[str, Any] = {}


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


#: djust's presence keys of a tenant view: ``tenant:<id>:<key>``.
_PRESENCE_KEY = re.compile(r"tenant:([^:]+):(.+)", re.DOTALL)


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
    if _PRESENCE_KEY.fullmatch(presence_key) is None:
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


def install_djust_broadcasts() -> bool:
    """Scope djust's push and presence groups by tenant (see above). Returns
    whether djust is there; safe to call again."""
    try:
        from djust import push
        from djust.presence import PresenceManager, PresenceMixin
    except Exception:  # djust not installed
        return False
    with _djust_lock:
        if _djust_originals:
            return True
        _djust_originals["view_group_name"] = push.view_group_name
        _djust_originals["presence_group_name"] = PresenceManager.presence_group_name
        _djust_originals["_broadcast_presence_change"] = PresenceMixin._broadcast_presence_change
        push.view_group_name = scoped_view_group_name
        PresenceManager.presence_group_name = staticmethod(scoped_presence_group_name)
        PresenceMixin._broadcast_presence_change = broadcast_presence_change_in_view_tenant
    return True


def uninstall_djust_broadcasts() -> None:
    """Give djust its own group names back."""
    try:
        from djust import push
        from djust.presence import PresenceManager, PresenceMixin
    except Exception:
        return
    with _djust_lock:
        if not _djust_originals:
            return
        push.view_group_name = _djust_originals.pop("view_group_name")
        PresenceManager.presence_group_name = staticmethod(
            _djust_originals.pop("presence_group_name")
        )
        PresenceMixin._broadcast_presence_change = _djust_originals.pop(
            "_broadcast_presence_change"
        )
