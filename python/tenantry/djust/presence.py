"""tenantry as djust's presence backend: the calls into djust's presence
registry and ``PresenceMixin`` (``tenantry.presence.install_djust_presence_backend``
uses them).

While tenantry is djust's backend, djust's ``PresenceMixin`` methods that
reach the backend run in the view's own tenant (:func:`wrap_presence_calls`).
"""

from __future__ import annotations

import functools
from typing import Any

from ..context import get_current_tenant, tenant_context

try:
    from djust.backends import registry
    from djust.backends.base import PresenceBackend
    from djust.presence import PresenceMixin
except ImportError:  # djust missing, or without these modules (see names.problems())
    registry = PresenceBackend = PresenceMixin = None

__all__ = [
    "PRESENCE_CALLS",
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
