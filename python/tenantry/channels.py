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

Broadcasts (docs/broadcasts.md), re-exported here: :func:`tenant_group` names
a channels group of one tenant, :func:`group_send` / :func:`agroup_send` send
to the bound tenant's group (``tenantry.groups``), and
:func:`install_djust_broadcasts` (run by ``tenantry.djust.install()``) scopes
djust's own groups (``push_to_view``, ``PresenceMixin``) the same way, so a
push from one tenant never reaches another's sessions
(``tenantry.djust.broadcasts``).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied

from . import _core, conf
from ._core import TenantInfo
from .access import refuse
from .djust.broadcasts import (
    djust_group_problems,
    install_djust_broadcasts,
    move_live_view,
    scoped_presence_group_name,
    uninstall_djust_broadcasts,
)
from .groups import (
    DB_NOTIFY_PREFIX,
    NOTIFY_TENANT_KEY,
    agroup_send,
    db_notify_group,
    group_send,
    notified_tenant,
    presence_group,
    tag_notify_payload,
    tenant_group,
)
from .naming import refuse_naming_another

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
    "notified_tenant",
    "origin_refusal",
    "presence_group",
    "scoped_presence_group_name",
    "tag_notify_payload",
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
    :class:`TenantOriginValidator` can refuse those at the handshake.
    ``tenant`` must be the bound one when one is bound (``TenantMismatchError``)."""
    refuse_naming_another(tenant, "tenantry.channels.check_live_origin")
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
