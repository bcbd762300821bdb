"""tenantry as djust's presence backend: the calls into djust's presence
registry and ``PresenceMixin`` (``tenantry.presence.install_djust_presence_backend``
uses them).

What takes djust's slot is :class:`TenantDjustPresenceBackend`: djust's own
``InMemoryPresenceBackend`` for the calls of apps that do not use tenantry
(nothing bound and a key without a ``tenant:`` scope, on the memory store;
or djust.tenants' own ``TenantInfo`` bound), and tenantry's router for the
rest (a tenantry tenant bound, or a ``tenant:`` scope with no tenant bound,
which the router refuses: ``InvalidKey``).

While tenantry is djust's backend, djust's ``PresenceMixin`` methods that
reach the backend run in the view's own tenant (:func:`wrap_presence_calls`).
"""

from __future__ import annotations

import functools
from typing import Any

from .._core import TenantPresenceRouter
from ..context import _current, get_current_tenant, tenant_context
from .context import is_djust_tenant_info
from .slots import MEMORY, TENANT_SCOPE, tenantry_tenant_bound

try:
    from djust.backends import registry
    from djust.backends.base import PresenceBackend
    from djust.backends.memory import InMemoryPresenceBackend
    from djust.presence import PresenceMixin
except ImportError:  # djust missing, or without these modules (see names.problems())
    registry = PresenceBackend = PresenceMixin = None
    InMemoryPresenceBackend = object

__all__ = [
    "PRESENCE_CALLS",
    "TenantDjustPresenceBackend",
    "available",
    "register_backends",
    "reset_backend_if",
    "set_backend",
    "unwrap_presence_calls",
    "wrap_presence_calls",
]

#: djust's ``PresenceMixin`` methods that reach the presence backend; while
#: tenantry is djust's backend each runs in the view's own tenant.
PRESENCE_CALLS = (
    "track_presence",
    "untrack_presence",
    "list_presences",
    "presence_count",
    "update_presence_heartbeat",
    "_restore_presence",
    "_refresh_online_count",
)
#: name → djust's own method, while ours wrap them.
_originals: dict[str, Any] = {}


def _routes_to_tenantry(router: TenantPresenceRouter, presence_key: str) -> bool:
    """Whether a call on ``presence_key``, now, is tenantry's router's: a
    tenantry tenant is bound, or nothing is and the key names a tenant (the
    router refuses it: a key never addresses a tenant by itself), or nothing
    is and the store is Redis (the router's space of callers without a
    tenant is shared by every process, as djust's Redis backend would be).
    Else it is djust's own in-memory backend's: a plain view with nothing
    bound, or a djust.tenants view (djust binds its own ``TenantInfo``)."""
    if _current.get() is None:
        return presence_key.startswith(TENANT_SCOPE) or router.backend != MEMORY
    return tenantry_tenant_bound()


class TenantDjustPresenceBackend(InMemoryPresenceBackend):
    """djust's in-memory presence backend, with tenantry's tenants (and every
    ``tenant:`` key named with no tenant bound) routed to tenantry's router.
    Anything else the router offers (``track``, ``untrack``, ``resolve``,
    ``backend``) is the router's."""

    def __init__(self, router: TenantPresenceRouter) -> None:
        super().__init__()
        self._router = router

    @property
    def router(self) -> TenantPresenceRouter:
        return self._router

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._router, name)

    def join(self, presence_key: str, user_id: str, meta: dict[str, Any]) -> dict[str, Any]:
        if _routes_to_tenantry(self._router, presence_key):
            return self._router.join(presence_key, user_id, meta)
        return super().join(presence_key, user_id, meta)

    def leave(self, presence_key: str, user_id: str) -> dict[str, Any] | None:
        if _routes_to_tenantry(self._router, presence_key):
            return self._router.leave(presence_key, user_id)
        return super().leave(presence_key, user_id)

    def list(self, presence_key: str) -> list[dict[str, Any]]:
        if _routes_to_tenantry(self._router, presence_key):
            return self._router.list(presence_key)
        return super().list(presence_key)

    def count(self, presence_key: str) -> int:
        if _routes_to_tenantry(self._router, presence_key):
            return self._router.count(presence_key)
        return super().count(presence_key)

    def heartbeat(self, presence_key: str, user_id: str) -> Any:
        if _routes_to_tenantry(self._router, presence_key):
            return self._router.heartbeat(presence_key, user_id)
        return super().heartbeat(presence_key, user_id)

    def cleanup_stale(self, presence_key: str) -> int:
        if _routes_to_tenantry(self._router, presence_key):
            return self._router.cleanup_stale(presence_key)
        return super().cleanup_stale(presence_key)

    def health_check(self) -> dict[str, Any]:
        return self._router.health_check()

    def __repr__(self) -> str:
        return f"TenantDjustPresenceBackend({self._router!r})"


def available() -> bool:
    """Whether djust (with its presence registry) is installed."""
    return registry is not None


def register_backends(*classes: type) -> None:
    """Make ``isinstance(backend, djust.backends.base.PresenceBackend)`` true
    for ``classes`` (virtual subclasses: the Rust methods stay the ones that
    run)."""
    if PresenceBackend is None:
        return
    for cls in classes:
        PresenceBackend.register(cls)


def set_backend(backend: Any) -> None:
    """Make ``backend`` djust's presence backend (``set_presence_backend``)."""
    registry.set_presence_backend(backend)


def reset_backend_if(backend: Any) -> None:
    """Reset djust's presence backend slot if it still holds ``backend``
    (someone may have set another since; djust has no public getter without
    side effects, so its private slot is read)."""
    if registry is None:
        return
    current = getattr(getattr(registry, "_registry", None), "_backend", backend)
    if current is backend:
        registry.reset_presence_backend()


def _in_view_tenant(method: Any) -> Any:
    """``method`` of djust's ``PresenceMixin``, run with the view's own
    tenant bound when nothing is bound. djust binds a tenant view's tenant
    around mount and events, but calls ``untrack_presence`` on disconnect
    after it unbound it (and code may call these outside any event), while
    the router refuses a ``tenant:<id>:`` key with no tenant bound: a key
    never addresses a tenant by itself. The view's tenant was resolved and
    admitted by the view; a view without one runs as is."""

    @functools.wraps(method)
    def run_in_view_tenant(view: Any, *args: Any, **kwargs: Any) -> Any:
        tenant = getattr(view, "_tenant", None)
        if tenant is None or get_current_tenant() is not None:
            return method(view, *args, **kwargs)
        if is_djust_tenant_info(tenant):
            # A djust.tenants view: bound as djust binds it, so its calls
            # stay djust's own backend's, as without tenantry.
            token = _current.set(tenant)
            try:
                return method(view, *args, **kwargs)
            finally:
                _current.reset(token)
        with tenant_context(tenant, must_exist=False):  # admitted by the view
            return method(view, *args, **kwargs)

    return run_in_view_tenant


def wrap_presence_calls() -> None:
    """Run djust's :data:`PRESENCE_CALLS` in the view's own tenant (once)."""
    if _originals or PresenceMixin is None:
        return
    for name in PRESENCE_CALLS:
        method = getattr(PresenceMixin, name, None)
        if method is None:
            continue
        _originals[name] = method
        setattr(PresenceMixin, name, _in_view_tenant(method))


def unwrap_presence_calls() -> None:
    """Give djust's ``PresenceMixin`` its own methods back."""
    for name, method in _originals.items():
        setattr(PresenceMixin, name, method)
    _originals.clear()
