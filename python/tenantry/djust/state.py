"""tenantry as djust's state backend: where djust saves and restores
LiveView state (``djust.state_backends.StateBackend``).

djust keys a ``TenantMixin`` view's saved state ``tenant:<id>:<session>_…``
(``get_state_key_prefix()``). The adapter is djust's own
``InMemoryStateBackend`` with one difference: a key with that scope, saved or
read while a tenantry tenant is bound (tenantry's ``TenantMixin`` binds its
view's tenant around the request or event), goes to
:class:`tenantry.TenantStateRouter` instead, which keeps it in that tenant's
``view-state`` space (the scope must name the bound tenant: another →
``TenantMismatchError``). Every other call (a plain view's unscoped key, a
``djust.tenants`` view, which binds djust's own ``TenantInfo`` or nothing) is
djust's own in-memory backend's, unchanged, exactly as without tenantry: no
such call reaches a tenantry tenant's space, and no tenantry tenant's call
reaches djust's store.

What tenantry stores: djust's serialized view (``RustLiveView.serialize_msgpack()``
bytes, with the timestamp djust embeds), uncompressed, with djust's TTL
(``DJUST_CONFIG["SESSION_TTL"]``, default 3600 s; 0 or less: no expiry).
Building the adapter needs djust (:func:`make_adapter`). :func:`set_backend`
and :func:`reset_backend_if` are the two calls into djust's state registry
(``tenantry.state.install_djust_state_backend`` uses them).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .. import conf
from .._core import TenantStateRouter
from .slots import MEMORY, TENANT_SCOPE, tenantry_tenant_bound

try:
    from djust._rust import RustLiveView
    from djust.state_backends import registry
    from djust.state_backends.memory import InMemoryStateBackend
except ImportError:  # djust not installed (names.problems() reports a missing module)
    RustLiveView = registry = None
    InMemoryStateBackend = object

__all__ = [
    "TenantDjustStateBackend",
    "available",
    "make_adapter",
    "reset_backend_if",
    "set_backend",
]

logger = logging.getLogger("tenantry.state")


def _session_ttl() -> int:
    """djust's ``SESSION_TTL``, parsed (and defaulted) with the rest of the config."""
    return conf.current().session_ttl


class TenantDjustStateBackend(InMemoryStateBackend):
    """djust's in-memory ``StateBackend``, with the saved views of tenantry's
    tenants kept in their own spaces (tenantry's state router)."""

    def __init__(self, router: TenantStateRouter) -> None:
        config = conf.current()
        super().__init__(default_ttl=config.session_ttl)
        self._router = router

    @property
    def router(self) -> TenantStateRouter:
        return self._router

    def routes_to_tenantry(self, key: str) -> bool:
        """Whether ``key``, now, is for tenantry's router (else djust's own
        in-memory store): a tenant's scope with a tenantry tenant bound, or
        a plain view's unscoped key when the store is Redis (the router's
        shared space, seen by every process)."""
        if key.startswith(TENANT_SCOPE):
            return tenantry_tenant_bound()
        return self._router.backend != MEMORY

    def get(self, key: str) -> tuple[Any, float] | None:
        if not self.routes_to_tenantry(key):
            return super().get(key)
        data = self._router.get(key)
        if data is None:
            return None
        try:
            view = RustLiveView.deserialize_msgpack(data)
        except Exception:
            # Saved by another djust version, or damaged: a miss (djust
            # mounts afresh), and the entry goes so it does not fail again.
            logger.exception("saved view state for %r could not be restored; dropped", key)
            self._router.delete(key)
            return None
        return view, view.get_timestamp()

    def set(self, key: str, view: Any, ttl: int | None = None, **options: Any) -> None:
        if not self.routes_to_tenantry(key):
            super().set(key, view, ttl, **options)
            return
        if ttl is None:
            ttl = _session_ttl()
        data = view.serialize_msgpack()
        self._router.set(key, data, ttl if ttl > 0 else None)

    def delete(self, key: str) -> bool:
        if not self.routes_to_tenantry(key):
            return super().delete(key)
        return self._router.delete(key)

    def cleanup_expired(self, ttl: int | None = None) -> int:
        """djust's own expired entries, and tenantry's memory store's due
        entries now (Redis expires keys itself)."""
        return super().cleanup_expired(ttl) + self._router.purge_expired()

    def delete_all(self) -> int:
        """Every saved view of the bound tenantry tenant; with none bound
        (``djust clear --all``), djust's own entries and every tenant's."""
        if tenantry_tenant_bound():
            return self._router.delete_all()
        return super().delete_all() + self._router.delete_all()

    def get_stats(self) -> dict[str, Any]:
        stats = super().get_stats()
        stats.update(backend=self._router.backend, routing="per-tenant")
        count = self._router.count()
        if count is not None:
            stats["total_sessions"] += count
        return stats

    def health_check(self) -> dict[str, Any]:
        start = time.perf_counter()
        health = dict(self._router.health_check())
        health.setdefault("latency_ms", round((time.perf_counter() - start) * 1000, 2))
        return health

    def __repr__(self) -> str:
        return f"TenantDjustStateBackend({self._router!r})"


def available() -> bool:
    """Whether djust (with its state registry) is installed."""
    return registry is not None


def make_adapter(router: TenantStateRouter) -> TenantDjustStateBackend:
    """djust's ``StateBackend`` over ``router`` (``ImportError`` without djust)."""
    if registry is None:
        raise ImportError("djust is not installed: tenantry has no djust state backend to build")
    return TenantDjustStateBackend(router)


def set_backend(adapter: Any) -> None:
    """Make ``adapter`` djust's state backend (``djust.state_backends.set_backend``)."""
    registry.set_backend(adapter)


def reset_backend_if(adapter: Any) -> None:
    """Empty djust's state backend slot if it still holds ``adapter``
    (someone may have set another since; djust has no public getter
    without side effects, so its private slot is read)."""
    if registry is None:
        return
    slot = getattr(registry, "_registry", None)
    if slot is not None and getattr(slot, "_backend", None) is adapter:
        slot.reset()
