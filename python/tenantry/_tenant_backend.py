"""The one "tenant backend" shape of the Python layer, shared by presence,
state and rate limits: a bounded per-tenant cache of backend objects that is
dropped when ``DJUST_CONFIG`` changes (:class:`TenantBackends`), the
process's router made on first use (:class:`ProcessRouter`), both together
for one kind of store (:class:`TenantStore`), and the base of the public
managers (:class:`TenantBackendManager`). The backends and routers themselves
are Rust classes built on the same shape in the bindings
(``src/bindings/tenant_backend.rs``); ``tenantry.presence`` and
``tenantry.state`` only say how a kind's backend is made from the config.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any, ClassVar, Generic, TypeVar

from . import _core, conf
from .context import _current

__all__ = [
    "CACHE_SIZE",
    "ProcessRouter",
    "TenantBackendManager",
    "TenantBackends",
    "TenantStore",
]

#: Backend objects kept per kind (least recently used go first). A backend
#: object is small and cheap to make again: the memory stores and the Redis
#: pools are shared, not per object.
CACHE_SIZE = 4096

B = TypeVar("B")
R = TypeVar("R")


class TenantBackends(Generic[B]):
    """One backend object per tenant: ``make(tenant_id, config)`` builds it
    from the current config. Thread-safe, bounded (:data:`CACHE_SIZE`), and
    emptied when ``DJUST_CONFIG`` changes."""

    def __init__(self, make: Callable[[str, _core.CurrentConfig], B]) -> None:
        @lru_cache(maxsize=CACHE_SIZE)
        def lookup(tenant_id: str) -> B:
            return make(tenant_id, conf.current())

        #: The cache itself (``cache_info()`` for the bounds tests).
        self.lookup = lookup
        conf._reset_hooks.append(lookup.cache_clear)

    def for_tenant(self, tenant_id: Any) -> B:
        """The backend of ``tenant_id`` (a str, an int or a ``TenantInfo``;
        ``InvalidTenantId`` otherwise). With another tenant bound:
        ``TenantMismatchError`` (one tenant's code never reaches another's
        presence, state or usage through its backend; jobs and operators
        name a tenant with none bound, or bind it)."""
        return self.lookup(_core.refuse_other_tenant(tenant_id, "a per-tenant backend"))

    def clear(self) -> None:
        self.lookup.cache_clear()


class ProcessRouter(Generic[B]):
    """The process's router of one kind, made on first use with the current
    tenant's ``ContextVar`` (it finds each call's tenant itself)."""

    def __init__(self, make: Callable[[Any], B]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._router: B | None = None

    def get(self) -> B:
        router = self._router
        if router is not None:
            return router
        with self._lock:
            if self._router is None:
                self._router = self._make(_current)
            return self._router


class TenantStore(Generic[B, R]):
    """One kind of per-tenant store (presence, state): its backend objects,
    one per tenant (``make_backend(tenant_id, config)``, cached by
    :class:`TenantBackends`), and its process router
    (``make_router(current_tenant)``, made once by :class:`ProcessRouter`)."""

    def __init__(
        self,
        make_backend: Callable[[str, _core.CurrentConfig], B],
        make_router: Callable[[Any], R],
    ) -> None:
        self.backends: TenantBackends[B] = TenantBackends(make_backend)
        self.router: ProcessRouter[R] = ProcessRouter(make_router)

    def for_tenant(self, tenant_id: Any) -> B:
        """The backend of ``tenant_id`` (a str, an int or a ``TenantInfo``;
        ``InvalidTenantId`` otherwise)."""
        return self.backends.for_tenant(tenant_id)

    def clear(self) -> None:
        """Forgets every cached backend object (the stores keep their data)."""
        self.backends.clear()

    def get_router(self) -> R:
        return self.router.get()


class TenantBackendManager(Generic[B]):
    """The public manager of a kind (``TenantPresenceManager``,
    ``TenantStateManager``): one backend per tenant, configured from
    ``DJUST_CONFIG``; a subclass names its kind's :class:`TenantStore` in
    ``_store``. The cache is bounded (:data:`CACHE_SIZE`), thread-safe, and
    dropped when ``DJUST_CONFIG`` changes."""

    _store: ClassVar[TenantStore[Any, Any]]

    @classmethod
    def for_tenant(cls, tenant_id: Any) -> B:
        """The backend of ``tenant_id`` (a str, an int or a ``TenantInfo``;
        ``InvalidTenantId`` otherwise)."""
        return cls._store.for_tenant(tenant_id)

    @classmethod
    def clear_cache(cls) -> None:
        cls._store.clear()
