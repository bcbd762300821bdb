"""Django Channels pieces: the WebSocket origin gate.

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
``allow_missing_origin=True``. Refusals are audited (``websocket.refused``).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async

from . import _core, audit, conf

__all__ = ["TenantOriginValidator", "origin_refusal"]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def origin_refusal(origin: str | None, host: str | None, *, allow_missing: bool) -> str | None:
    """Why a handshake from ``origin`` to ``host`` is refused, or ``None``."""
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
    if origin_domain == host_domain:
        return None
    if origin_tenant is not None and origin_tenant == host_tenant:
        return None
    return (
        f"Origin {origin_domain!r} (tenant {origin_tenant}) is not the tenant of "
        f"Host {host_domain!r} (tenant {host_tenant})"
    )


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
        audit.emit(
            "websocket.refused",
            level=logging.WARNING,
            path=scope.get("path"),
            origin=origin,
            host=host,
            reason=reason,
        )
        from channels.security.websocket import WebsocketDenier

        return await WebsocketDenier()(scope, receive, send)
