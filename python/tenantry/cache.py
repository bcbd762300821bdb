"""Django's cache, per tenant: a ``KEY_FUNCTION`` and an O(1) per-tenant clear.

    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/1",
            "KEY_FUNCTION": "tenantry.cache.make_key",
        },
    }

Keys (``<KEY_PREFIX>:<version>:`` is Django's own part):

* bound tenant: ``<KEY_PREFIX>:<version>:{tenant:<id>}:<generation>:<key>``
* inside ``shared()``: ``<KEY_PREFIX>:<version>:shared:<key>``
* a tenant's generation: ``<KEY_PREFIX>:<version>:{tenant:<id>}:generation``

Tenant ids cannot hold ``}`` and generations are digits, so no two (tenant,
key) pairs, and no tenant key and shared key, share a cache key. With no
tenant bound and outside ``shared()``, ``make_key`` raises
``TenantNotSetError``.

``clear_tenant(id)`` writes a new random generation for the tenant (one cache
write): every entry written under the old one is never read again and expires
by its timeout (or the backend evicts it). The generation lives in the cache
itself (the first alias whose ``KEY_FUNCTION`` is this one), so every process
sees it; each process keeps the generations it read for
``GENERATION_TTL`` seconds, so ``make_key`` costs no round trip. The process
that clears sees the new generation at once; other processes within
``STALENESS_BOUND`` seconds (``GENERATION_TTL`` plus one ``TICK``).

``cache.clear()`` (and ``aclear()``) of a cache keyed by ``make_key``, on
any alias, clears only the bound tenant (``clear_tenant(<id>)``); the whole
cache is cleared only with no tenant bound, or inside ``shared()``. (Each
cache ``caches[...]`` builds gets that ``clear``; see :func:`install`.)

How ``make_key`` stays cheap: its fast path compares the bound ``TenantInfo``,
the prefix and the version with the last ones it saw and concatenates a
prepared head with the key (no clock read, no dict lookup). A daemon thread
drops that prepared head every ``TICK`` seconds, and ``clear_tenant`` drops
it at once; the next call then takes the slow path, which reads the clock and
the per-process generations.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import CacheHandler, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed

from . import audit
from ._core import (
    TenantNotSetError,
    has_tenant_hash_tag,
    refuse_other_tenant,
    tenant_hash_tag,
)
from .context import _current

__all__ = [
    "GENERATION_TTL",
    "STALENESS_BOUND",
    "TICK",
    "clear_tenant",
    "generation_cache",
    "install",
    "make_key",
    "purge_tenant",
    "shared",
]

#: Seconds a process trusts a generation it read from the cache.
GENERATION_TTL = 1.0
#: Seconds between drops of ``make_key``'s prepared head (see the module docs).
TICK = 0.25
#: Longest time another process may keep reading a cleared tenant's entries.
STALENESS_BOUND = GENERATION_TTL + TICK

_KEY_FUNCTION = "tenantry.cache.make_key"
_GENERATION = re.compile(r"[0-9]{1,20}")

#: Inside ``shared()`` (and while reading a generation): the namespace that
#: replaces the tenant's part of the key.
_namespace: ContextVar[str | None] = ContextVar("tenantry_cache_namespace", default=None)

_get_tenant = _current.get
_get_namespace = _namespace.get

#: (tenant, key_prefix, version, head): the last slow path's answer.
_NOTHING: tuple[Any, Any, Any, str] = (object(), None, None, "")
_head: tuple[Any, Any, Any, str] = _NOTHING

#: tenant id → (generation, monotonic time it was read).
_generations: dict[str, tuple[str, float]] = {}
_lock = threading.Lock()
_ticker: threading.Thread | None = None


def make_key(key: Any, key_prefix: str, version: Any) -> str:
    """``CACHES[...]["KEY_FUNCTION"]``: ``key`` scoped to the bound tenant."""
    head = _head
    if (
        _get_tenant() is head[0]
        and key_prefix == head[1]
        and version == head[2]
        and _get_namespace() is None
    ):
        try:
            return head[3] + key
        except TypeError:  # a key that is not a str, as Django's default allows
            return head[3] + str(key)
    return _make_key(key, key_prefix, version)


def _make_key(key: Any, key_prefix: str, version: Any) -> str:
    global _head
    namespace = _get_namespace()
    if namespace is not None:
        return f"{key_prefix}:{version}:{namespace}:{key}"
    tenant = _get_tenant()
    if tenant is None:
        raise TenantNotSetError(
            f"cache key {key!r} is per tenant and no tenant is bound: use TenantMiddleware, "
            "a TenantMixin view or tenant_context(...), or tenantry.cache.shared() for an "
            "entry every tenant shares"
        )
    head = f"{key_prefix}:{version}:{tenant_hash_tag(tenant.id)}:{_generation(tenant.id)}:"
    _head = (tenant, key_prefix, version, head)
    return f"{head}{key}"


#: The namespace of keys every tenant shares (inside :func:`shared`).
_SHARED = "shared"
#: ``<prefix>:<version>:shared:<key>``, what :func:`shared` makes.
_SHARED_ENTRY = re.compile(rf":[0-9]+:{_SHARED}:")


def made_by_make_key(key: str) -> bool:
    """True for a full cache key :func:`make_key` made: a tenant's (it
    carries the tenant hash tag, ``{tenant:<id>}``) or a shared one."""
    return has_tenant_hash_tag(key) or _SHARED_ENTRY.search(key) is not None


@contextmanager
def shared() -> Iterator[None]:
    """Cache keys made inside the block are shared by every tenant (and need
    no tenant bound): ``with shared(): cache.get("exchange-rates")``.

    Never cache a tenant's data inside it."""
    token = _namespace.set(_SHARED)
    try:
        yield
    finally:
        _namespace.reset(token)


def generation_cache() -> Any:
    """The cache holding the generations: the first alias of ``CACHES`` whose
    ``KEY_FUNCTION`` is ``tenantry.cache.make_key``."""
    for alias, options in settings.CACHES.items():
        function = options.get("KEY_FUNCTION")
        if function is make_key or function == _KEY_FUNCTION:
            return caches[alias]
    raise LookupError(
        f"no cache in settings.CACHES has KEY_FUNCTION {_KEY_FUNCTION!r}: tenantry.cache "
        "keeps each tenant's generation in that cache"
    )


@contextmanager
def _generation_key(tenant_id: str) -> Iterator[str]:
    token = _namespace.set(tenant_hash_tag(tenant_id))
    try:
        yield "generation"
    finally:
        _namespace.reset(token)


def _new_generation() -> str:
    return str(secrets.randbits(63))


def _generation(tenant_id: str) -> str:
    """The tenant's generation: this process's copy while it is fresh, else
    the cache's (created when missing or unreadable)."""
    _ensure_ticker()
    now = time.monotonic()
    known = _generations.get(tenant_id)
    if known is not None and now - known[1] < GENERATION_TTL:
        return known[0]
    cache = generation_cache()
    with _generation_key(tenant_id) as key:
        value = cache.get(key)
        if not (isinstance(value, str) and _GENERATION.fullmatch(value)):
            fresh = _new_generation()
            if value is None:
                # Another process may create it at the same moment: keep theirs.
                cache.add(key, fresh, timeout=None)
                value = cache.get(key)
            else:  # not one of ours: replace it
                cache.set(key, fresh, timeout=None)
                value = fresh
            if not (isinstance(value, str) and _GENERATION.fullmatch(value)):
                value = fresh  # a cache that keeps nothing (DummyCache)
    with _lock:
        known = _generations.get(tenant_id)
        if known is not None and known[1] > now:  # clear_tenant() ran meanwhile
            return known[0]
        _generations[tenant_id] = (value, now)
    return value


def clear_tenant(tenant_id: Any) -> None:
    """Forget every cache entry of ``tenant_id`` (one cache write).

    With a tenant bound, only that tenant may be cleared (else
    ``TenantMismatchError``); clear other tenants where none is bound (a
    management command, a job)."""
    global _head
    tenant_id = refuse_other_tenant(tenant_id, "tenantry.cache.clear_tenant")
    fresh = _new_generation()
    with _generation_key(tenant_id) as key:
        generation_cache().set(key, fresh, timeout=None)
    with _lock:
        _generations[tenant_id] = (fresh, time.monotonic())
        _head = _NOTHING
    audit.emit("cache.cleared", tenant=tenant_id, level=logging.INFO)


# -- removing a deleted tenant's entries -------------------------------------------


def _tenant_entry(backend: Any, tenant_id: str) -> re.Pattern[str]:
    """Full keys of ``tenant_id`` on ``backend``: ``<KEY_PREFIX>:<version>:
    {tenant:<id>}:...`` (a tenant's own key part can hold that text too, so
    the prefix and the version are matched exactly)."""
    return re.compile(
        rf"{re.escape(backend.key_prefix)}:[0-9]+:{re.escape(tenant_hash_tag(tenant_id))}:"
    )


def purge_tenant(tenant_id: Any, *, dry_run: bool = False) -> int:
    """Remove (``dry_run``: count) every entry of ``tenant_id`` from the
    caches keyed by ``make_key`` whose storage tenantry can list: Django's
    local-memory cache (this process) and Django's Redis cache (a ``SCAN``).
    After ``clear_tenant`` those entries are unreadable anyway; this takes
    them out of memory and Redis (``manage.py tenantry delete``). Other
    backends keep them until they expire. With another tenant bound:
    ``TenantMismatchError``, as ``clear_tenant``."""
    tenant_id = refuse_other_tenant(tenant_id, "tenantry.cache.purge_tenant")
    count = 0
    seen: set[Any] = set()
    for alias, options in settings.CACHES.items():
        function = options.get("KEY_FUNCTION")
        if function is not make_key and function != _KEY_FUNCTION:
            continue
        backend = caches[alias]
        entry = _tenant_entry(backend, tenant_id)
        if isinstance(backend, LocMemCache):
            if id(backend._cache) in seen:
                continue
            seen.add(id(backend._cache))
            with backend._lock:
                keys = [k for k in backend._cache if isinstance(k, str) and entry.match(k)]
                if not dry_run:
                    for key in keys:
                        backend._cache.pop(key, None)
                        backend._expire_info.pop(key, None)
            count += len(keys)
        elif isinstance(backend, RedisCache):
            client = backend._cache.get_client(write=True)
            where = (tuple(backend._cache._servers), backend.key_prefix)
            if where in seen:
                continue
            seen.add(where)
            pattern = f"*{tenant_hash_tag(tenant_id)}:*"  # ids hold no glob character
            keys = [
                k
                for k in client.scan_iter(match=pattern, count=1000)
                if entry.match(k.decode() if isinstance(k, bytes) else k)
            ]
            if keys and not dry_run:
                client.delete(*keys)
            count += len(keys)
    return count


# -- clear() clears the bound tenant ------------------------------------------------


def _clears_whole_cache() -> bool:
    """``clear()`` empties the whole cache with no tenant bound, or inside
    ``shared()``; with a tenant bound it clears that tenant only."""
    return _get_tenant() is None or _get_namespace() == _SHARED


def _guard_clear(backend: Any) -> Any:
    """Give ``backend`` (a cache keyed by ``make_key``) a ``clear`` and an
    ``aclear`` that clear only the bound tenant (instance attributes: the
    backend's class, shared with other caches, is untouched)."""
    if getattr(backend, "key_func", None) is not make_key:
        return backend
    if getattr(backend.__dict__.get("clear"), "_tenantry", False):
        return backend
    whole, whole_async = backend.clear, backend.aclear

    def clear() -> None:
        if _clears_whole_cache():
            return whole()
        clear_tenant(_get_tenant().id)
        return None

    async def aclear() -> None:
        if _clears_whole_cache():
            return await whole_async()
        await sync_to_async(clear_tenant)(_get_tenant().id)
        return None

    clear._tenantry = aclear._tenantry = True  # type: ignore[attr-defined]
    backend.clear, backend.aclear = clear, aclear
    return backend


_plain_create_connection = CacheHandler.create_connection


def _create_connection(self: CacheHandler, alias: str) -> Any:
    return _guard_clear(_plain_create_connection(self, alias))


def install() -> None:
    """Every cache Django builds (``caches[alias]``, ``django.core.cache.cache``)
    whose ``KEY_FUNCTION`` is ``make_key`` gets the per-tenant ``clear()``;
    so do the ones built before (``AppConfig.ready``)."""
    global _plain_create_connection
    if CacheHandler.create_connection is not _create_connection:
        _plain_create_connection = CacheHandler.create_connection
        CacheHandler.create_connection = _create_connection  # type: ignore[method-assign]
    for backend in caches.all(initialized_only=True):
        _guard_clear(backend)


def _tick() -> None:
    global _head
    while True:
        time.sleep(TICK)
        _head = _NOTHING


def _ensure_ticker() -> None:
    global _ticker
    if _ticker is not None:
        return
    with _lock:
        if _ticker is None:
            thread = threading.Thread(target=_tick, name="tenantry-cache-tick", daemon=True)
            thread.start()
            _ticker = thread


def forget_generations() -> None:
    """Drop this process's copies of the tenants' generations: the next key
    of each tenant reads its generation from the cache again."""
    global _head
    _generations.clear()
    _head = _NOTHING


def _forget(**kwargs: Any) -> None:
    """After a fork, or when CACHES changes."""
    if kwargs and kwargs.get("setting") != "CACHES":
        return
    forget_generations()


def _after_fork() -> None:
    global _ticker, _lock
    _ticker = None  # threads do not survive fork
    _lock = threading.Lock()
    _forget()


os.register_at_fork(after_in_child=_after_fork)
setting_changed.connect(_forget, dispatch_uid="tenantry.cache")
