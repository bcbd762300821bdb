"""Tenant-scoped key-value state (SPEC §8): the backends, their per-tenant
cache, and the link into djust's saved view state.

The backends are Rust classes (``tenantry._core``)::

    from tenantry import get_tenant_state_backend

    state = get_tenant_state_backend("acme")
    state.set("onboarding", {"step": 2}, ttl=3600)
    state.get("onboarding")          # {"step": 2}
    state.incr("logins")             # 1
    state.delete_tenant()            # every key of acme, nobody else's

With djust installed and ``STATE_BACKEND`` set to ``"tenant_memory"`` (the
default) or ``"tenant_redis"``, :func:`install_djust_state_backend` (run by
the app's ``ready()``) makes tenantry djust's state backend: every view state
djust saves or restores for a tenant view lands in that view's tenant (the
key's ``tenant:<id>:`` scope, which must be the bound tenant), and a view
without a tenant in a shared space no tenant can read. See docs/state.md.
"""

from __future__ import annotations

import threading
from typing import Any

from . import _core, conf
from ._core import TenantStateMemoryBackend, TenantStateRedisBackend, TenantStateRouter
from ._tenant_backend import CACHE_SIZE as CACHE_SIZE
from ._tenant_backend import TenantBackendManager, TenantStore
from .djust import state as djust_state

__all__ = [
    "TenantStateManager",
    "TenantStateMemoryBackend",
    "TenantStateRedisBackend",
    "TenantStateRouter",
    "get_djust_state_backend",
    "get_state_router",
    "get_tenant_state_backend",
    "install_djust_state_backend",
    "uninstall_djust_state_backend",
]

_Backend = TenantStateMemoryBackend | TenantStateRedisBackend


def _make_backend(tenant_id: str, config: _core.CurrentConfig) -> _Backend:
    kind, _install, redis_url = config.state_backend
    if kind == "redis":
        return TenantStateRedisBackend(
            tenant_id,
            redis_url=redis_url,
            key_prefix=config.key_prefix,
            connect_timeout=config.redis_connect_timeout,
            socket_timeout=config.redis_socket_timeout,
        )
    _core.apply_store_limits()  # DJUST_CONFIG's, whoever is bound
    return TenantStateMemoryBackend(tenant_id)


_store: TenantStore[_Backend, TenantStateRouter] = TenantStore(_make_backend, TenantStateRouter)
_backend_for = _store.backends.lookup


class TenantStateManager(TenantBackendManager[_Backend]):
    """One state backend per tenant, configured from ``DJUST_CONFIG``
    (``STATE_BACKEND``, ``STATE_REDIS_URL``, ``TENANT_KEY_PREFIX``,
    ``STATE_MEMORY_MAX_BYTES``, ``STATE_TENANT_MAX_BYTES``,
    ``REDIS_CONNECT_TIMEOUT``, ``REDIS_SOCKET_TIMEOUT``).

    The cache is bounded (:data:`CACHE_SIZE`), thread-safe, and dropped when
    ``DJUST_CONFIG`` changes.
    """

    _store = _store


def get_tenant_state_backend(tenant_id: Any) -> _Backend:
    """Shorthand for ``TenantStateManager.for_tenant(tenant_id)``."""
    return _store.for_tenant(tenant_id)


_lock = threading.Lock()
_adapter: Any = None
_installed: Any = None


def get_state_router() -> TenantStateRouter:
    """The process's router: saved view state for every tenant at once. A
    key's ``tenant:<id>:`` scope must name the bound tenant (another →
    ``TenantMismatchError``; none bound → ``InvalidKey``: a key never
    addresses a tenant by itself); a key without it (a view that is not a
    tenant view) lives in the shared space, which no tenant can read."""
    return _store.get_router()


def get_djust_state_backend() -> Any:
    """The process's djust ``StateBackend`` adapter (needs djust)."""
    global _adapter
    router = get_state_router()
    with _lock:
        if _adapter is None:
            _adapter = djust_state.make_adapter(router)
        return _adapter


def install_djust_state_backend(*, force: bool = False) -> bool:
    """Make tenantry djust's state backend (``djust.state_backends.set_backend``)
    when djust is installed and ``STATE_BACKEND`` is ``"tenant_memory"`` or
    ``"tenant_redis"`` (or ``force`` is true). Returns whether it is
    installed. Called by ``TenantryConfig.ready()``; safe to call again
    (after changing settings, it installs or removes itself to match).
    """
    global _installed
    if not djust_state.available():  # djust not installed
        return False
    _kind, wanted, _url = conf.current().state_backend
    if not (wanted or force):
        uninstall_djust_state_backend()
        return False
    adapter = get_djust_state_backend()
    djust_state.set_backend(adapter)
    _installed = adapter
    return True


def uninstall_djust_state_backend() -> None:
    """Undo :func:`install_djust_state_backend`: djust builds its own backend
    again on next use. Does nothing if tenantry is not installed."""
    global _installed
    if _installed is None:
        return
    djust_state.reset_backend_if(_installed)  # only if djust's slot still holds ours
    _installed = None
