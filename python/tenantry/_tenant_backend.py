"""The one "tenant backend" shape of the Python layer, shared by presence,
state and rate limits: a bounded per-tenant cache of backend objects that is
dropped when ``DJUST_CONFIG`` changes (:class:`TenantBackends`), and the
process's router made on first use (:class:`ProcessRouter`). The backends and
routers themselves are Rust classes built on the same shape in the bindings
(``src/bindings/tenant_backend.rs``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Generic, TypeVar

from . import _core, conf
from .context import _current

__all__ = ["CACHE_SIZE", "ProcessRouter", "TenantBackends"]

#: Backend objects kept per kind (least recently used go first). A backend
#: object is small and cheap to make again: the memory stores and the Redis
#: pools are shared, not per object.
CACHE_SIZE = 4096

B = TypeVar("B")


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
        ``InvalidTenantId`` otherwise)."""
        return self.lookup(_core.validate_tenant_id(tenant_id))

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
