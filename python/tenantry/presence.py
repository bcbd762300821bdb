"""Tenant-isolated presence (SPEC §7): the backends, their per-tenant cache,
and the link into djust's ``PresenceMixin``.

The backends are Rust classes (``tenantry._core``) with djust's
``PresenceBackend`` interface::

    from tenantry import get_tenant_presence_backend

    presence = get_tenant_presence_backend("acme")
    presence.join("document:42", "user-1", {"name": "Alice"})
    presence.list("document:42")   # [{"id": "user-1", "tenant_id": "acme", ...}]

Each user may hold several connections (browser tabs), each named by a
``ref``: ``track(presence_key, user_id, ref, meta)`` and ``untrack(...)``
return the diff they caused, ``{"joins": {...}, "leaves": {...}}``, and
:func:`apply_diff` applies such a diff to a ``{user_id: record}`` view of a
room (see "Connections and diffs" in docs/presence.md).

With djust installed and ``PRESENCE_BACKEND`` set to ``"tenant_memory"`` (the
default) or ``"tenant_redis"``, :func:`install_djust_presence_backend` (run by
the app's ``ready()``) makes tenantry djust's presence backend: every
``track_presence()`` / ``list_presences()`` of a ``TenantMixin`` LiveView then
lands in that view's tenant. See docs/presence.md.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from . import _core, conf
from ._core import (
    PRESENCE_DEFAULT_REF,
    PRESENCE_MAX_CONNECTIONS_PER_USER,
    PRESENCE_MAX_REF_LEN,
    TenantAwareMemoryBackend,
    TenantAwareRedisBackend,
    TenantPresenceRouter,
)
from ._tenant_backend import CACHE_SIZE as CACHE_SIZE
from ._tenant_backend import TenantBackendManager, TenantStore
from .context import get_current_tenant, tenant_context

__all__ = [
    "PRESENCE_DEFAULT_REF",
    "PRESENCE_MAX_CONNECTIONS_PER_USER",
    "PRESENCE_MAX_REF_LEN",
    "TenantAwareBackendMixin",
    "TenantAwareMemoryBackend",
    "TenantAwareRedisBackend",
    "TenantPresenceManager",
    "TenantPresenceRouter",
    "apply_diff",
    "by_user",
    "get_presence_router",
    "get_tenant_presence_backend",
    "install_djust_presence_backend",
    "uninstall_djust_presence_backend",
]


def _register_with_djust() -> None:
    """Make ``isinstance(backend, djust.backends.base.PresenceBackend)`` true
    (a virtual subclass: the Rust methods stay the ones that run)."""
    try:
        from djust.backends.base import PresenceBackend
    except Exception:  # djust missing or without that module
        return
    for cls in (TenantAwareMemoryBackend, TenantAwareRedisBackend, TenantPresenceRouter):
        PresenceBackend.register(cls)


class TenantAwareBackendMixin:
    """djust.tenants' base for a backend of one tenant, for your own
    backends: ``tenant_id`` and ``_tenant_key(key)`` (``tenant:<id>:<key>``).
    The id is validated (``InvalidTenantId``), so it cannot inject into keys::

        class AuditLogBackend(TenantAwareBackendMixin):
            def write(self, line):
                redis.rpush(self._tenant_key("audit"), line)
    """

    def __init__(self, tenant_id: Any, *args: Any, **kwargs: Any) -> None:
        self._tenant_id = _core.validate_tenant_id(tenant_id)
        super().__init__(*args, **kwargs)

    @property
    def tenant_id(self) -> str:
        return self._tenant_id

    def _tenant_key(self, key: str) -> str:
        return f"tenant:{self._tenant_id}:{key}"


_Backend = TenantAwareMemoryBackend | TenantAwareRedisBackend


def _make_backend(tenant_id: str, config: _core.CurrentConfig) -> _Backend:
    kind, _install, redis_url = config.presence_backend
    rooms, users, connections, meta_bytes = config.presence_limits
    TenantAwareMemoryBackend.set_limits(
        max_rooms=rooms,
        max_users=users,
        max_connections=connections,
        max_meta_bytes=meta_bytes,
    )
    if kind == "redis":
        return TenantAwareRedisBackend(
            tenant_id,
            redis_url=redis_url,
            key_prefix=config.key_prefix,
            timeout=config.presence_timeout,
            connect_timeout=config.redis_connect_timeout,
            socket_timeout=config.redis_socket_timeout,
        )
    return TenantAwareMemoryBackend(tenant_id, timeout=config.presence_timeout)


_store: TenantStore[_Backend, TenantPresenceRouter] = TenantStore(
    _make_backend, TenantPresenceRouter
)
_backend_for = _store.backends.lookup
_register_with_djust()


class TenantPresenceManager(TenantBackendManager[_Backend]):
    """One presence backend per tenant, configured from ``DJUST_CONFIG``
    (``PRESENCE_BACKEND``, ``PRESENCE_REDIS_URL``, ``PRESENCE_TIMEOUT``,
    ``TENANT_KEY_PREFIX``, ``REDIS_CONNECT_TIMEOUT``, ``REDIS_SOCKET_TIMEOUT``).

    The cache is bounded (:data:`CACHE_SIZE`), thread-safe, and dropped when
    ``DJUST_CONFIG`` changes.
    """

    _store = _store


def get_tenant_presence_backend(tenant_id: Any) -> _Backend:
    """Shorthand for ``TenantPresenceManager.for_tenant(tenant_id)``."""
    return _store.for_tenant(tenant_id)


def by_user(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A room's ``list()`` as ``{user_id: record}`` (copies: :func:`apply_diff`
    may change them), the state :func:`apply_diff` works on."""
    return {r["id"]: {**r, "metas": list(r["metas"])} for r in records}


def apply_diff(
    state: MutableMapping[str, dict[str, Any]], diff: Mapping[str, Mapping[str, Any]]
) -> MutableMapping[str, dict[str, Any]]:
    """Applies a ``track``/``untrack`` diff to ``state`` (``{user_id:
    record}``, e.g. from :func:`by_user`) in place and returns it.

    Leaves first, then joins (a re-tracked ref is a leave of its old meta and
    a join of its new one, with the same ``ref``): a leave removes the
    connections with those refs, and the user once it has none left; a join
    adds the user, or replaces/adds the connections by ref. Each record's
    ``joined_at`` and ``meta`` are taken from the diff (they describe the
    user after the change). Applying the diffs of a room's changes, in
    order, to its ``list()`` gives its ``list()`` after them (up to the
    order of users, and connections that expired without an ``untrack``).
    """
    for user_id, left in diff.get("leaves", {}).items():
        record = state.get(user_id)
        if record is None:
            continue
        gone = {m["ref"] for m in left["metas"]}
        metas = [m for m in record["metas"] if m["ref"] not in gone]
        if metas:
            state[user_id] = {**record, **_head(left), "metas": metas}
        else:
            del state[user_id]
    for user_id, joined in diff.get("joins", {}).items():
        record = state.get(user_id)
        if record is None:
            state[user_id] = {**joined, "metas": list(joined["metas"])}
            continue
        new = {m["ref"]: m for m in joined["metas"]}
        metas = [new.pop(m["ref"], m) for m in record["metas"]]
        metas.extend(new.values())
        state[user_id] = {**record, **_head(joined), "metas": metas}
    return state


def _head(record: Mapping[str, Any]) -> dict[str, Any]:
    """A diff record's user-level fields."""
    return {"joined_at": record["joined_at"], "meta": record["meta"]}


_installed: TenantPresenceRouter | None = None
#: djust's ``PresenceMixin`` methods that reach the presence backend; while
#: tenantry is djust's backend each runs in the view's own tenant.
_DJUST_PRESENCE_CALLS = (
    "track_presence",
    "untrack_presence",
    "list_presences",
    "presence_count",
    "update_presence_heartbeat",
    "_restore_presence",
    "_refresh_online_count",
)
#: name → djust's own method, while ours wrap them.
_djust_presence_calls: dict[str, Any] = {}


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


def _wrap_djust_presence() -> None:
    from djust.presence import PresenceMixin

    if _djust_presence_calls:
        return
    for name in _DJUST_PRESENCE_CALLS:
        method = getattr(PresenceMixin, name, None)
        if method is None:
            continue
        _djust_presence_calls[name] = method
        setattr(PresenceMixin, name, _in_view_tenant(method))


def _unwrap_djust_presence() -> None:
    if not _djust_presence_calls:
        return
    from djust.presence import PresenceMixin

    for name, method in _djust_presence_calls.items():
        setattr(PresenceMixin, name, method)
    _djust_presence_calls.clear()


def get_presence_router() -> TenantPresenceRouter:
    """The process's router: a presence backend for every tenant at once that
    takes each call's tenant from the bound tenant. A key's ``tenant:<id>:``
    scope must name the bound tenant (another → ``TenantMismatchError``;
    none bound → ``InvalidKey``: a key never addresses a tenant by itself); a
    key without it is the bound tenant's, or, with no tenant bound, lives in
    the space of callers without a tenant, which no tenant can read.
    Like every tenantry presence backend, each ``join``/``track`` raises the
    tenant's ``peak_presences`` usage to the room's count (in Rust, with no
    extra Redis round trip)."""
    return _store.get_router()


def install_djust_presence_backend(*, force: bool = False) -> bool:
    """Make tenantry djust's presence backend (``set_presence_backend``) when
    djust is installed and ``PRESENCE_BACKEND`` is ``"tenant_memory"`` or
    ``"tenant_redis"`` (or ``force`` is true). Returns whether it is
    installed. Called by ``TenantryConfig.ready()``; safe to call again
    (after changing settings, it installs or removes itself to match).
    """
    global _installed
    try:
        from djust.backends import registry
    except Exception:  # djust not installed
        return False
    _kind, wanted, _url = conf.current().presence_backend
    if not (wanted or force):
        uninstall_djust_presence_backend()
        return False
    router = get_presence_router()
    registry.set_presence_backend(router)
    _wrap_djust_presence()
    _installed = router
    return True


def uninstall_djust_presence_backend() -> None:
    """Undo :func:`install_djust_presence_backend`: djust builds its own
    backend again on next use. Does nothing if tenantry is not installed."""
    global _installed
    if _installed is None:
        return
    try:
        from djust.backends import registry
    except Exception:
        return
    # Only reset djust's slot if it still holds ours (someone may have set
    # another backend since; djust has no public getter without side effects).
    current = getattr(getattr(registry, "_registry", None), "_backend", _installed)
    if current is _installed:
        registry.reset_presence_backend()
    _unwrap_djust_presence()
    _installed = None
