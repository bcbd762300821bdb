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

import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from . import _core, conf
from ._core import (
    PRESENCE_DEFAULT_REF,
    PRESENCE_MAX_CONNECTIONS_PER_USER,
    PRESENCE_MAX_REF_LEN,
    SharedRoomSpace,
    TenantAwareMemoryBackend,
    TenantAwareRedisBackend,
    TenantPresenceRouter,
)
from ._tenant_backend import CACHE_SIZE as CACHE_SIZE
from ._tenant_backend import TenantBackendManager, TenantBackends, TenantStore
from .djust import presence as djust_presence

__all__ = [
    "PRESENCE_DEFAULT_REF",
    "PRESENCE_MAX_CONNECTIONS_PER_USER",
    "PRESENCE_MAX_REF_LEN",
    "SharedRoomSpace",
    "TenantAwareBackendMixin",
    "TenantAwareMemoryBackend",
    "TenantAwareRedisBackend",
    "TenantPresenceManager",
    "TenantPresenceRouter",
    "apply_diff",
    "by_user",
    "get_presence_router",
    "get_shared_room_backend",
    "get_tenant_presence_backend",
    "install_djust_presence_backend",
    "uninstall_djust_presence_backend",
]


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
        return _core.tenant_scope(self._tenant_id) + key


_Backend = TenantAwareMemoryBackend | TenantAwareRedisBackend


def _make_backend(tenant_id: str | SharedRoomSpace, config: _core.CurrentConfig) -> _Backend:
    kind, _install, redis_url = config.presence_backend
    _core.apply_store_limits()  # DJUST_CONFIG's, whoever is bound
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
djust_presence.register_backends(
    TenantAwareMemoryBackend, TenantAwareRedisBackend, TenantPresenceRouter
)


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


#: The presence backends of shared live rooms, one per owner
#: (:class:`SharedRoomSpace`), bounded and dropped with the config like the
#: tenants' own.
_room_backends: TenantBackends[_Backend] = TenantBackends(_make_backend)


def get_shared_room_backend(owner: Any) -> _Backend:
    """The presence backend of the shared live rooms ``owner`` hosts on rows
    it granted (``tenantry.shared_rooms``): its keys are in the space
    ``-rooms.<owner>`` (``djust:{tenant:-rooms.acme}:presence-users:<room>``),
    which no tenant id and no caller-named key reaches. Its records'
    ``tenant_id`` is that space's id; ``tenantry.shared_rooms`` gives each
    member's own tenant instead."""
    return _room_backends.lookup(SharedRoomSpace(owner))


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


_installed: Any = None
_adapter: Any = None
_adapter_lock = threading.Lock()


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


def get_djust_presence_backend() -> Any:
    """The process's djust presence backend (needs djust): djust's own
    in-memory backend for apps that do not use tenantry, the router for
    tenantry's tenants (``tenantry.djust.presence.TenantDjustPresenceBackend``)."""
    global _adapter
    router = get_presence_router()
    with _adapter_lock:
        if _adapter is None:
            _adapter = djust_presence.TenantDjustPresenceBackend(router)
        return _adapter


def install_djust_presence_backend(*, force: bool = False) -> bool:
    """Make tenantry djust's presence backend (``set_presence_backend``) when
    djust is installed and ``PRESENCE_BACKEND`` is ``"tenant_memory"`` or
    ``"tenant_redis"`` (or ``force`` is true). Returns whether it is
    installed. Called by ``TenantryConfig.ready()``; safe to call again
    (after changing settings, it installs or removes itself to match).
    """
    global _installed
    if not djust_presence.available():  # djust not installed
        return False
    _kind, wanted, _url = conf.current().presence_backend
    if not (wanted or force):
        uninstall_djust_presence_backend()
        return False
    adapter = get_djust_presence_backend()
    djust_presence.set_backend(adapter)
    djust_presence.wrap_presence_calls()
    _installed = adapter
    return True


def uninstall_djust_presence_backend() -> None:
    """Undo :func:`install_djust_presence_backend`: djust builds its own
    backend again on next use. Does nothing if tenantry is not installed."""
    global _installed
    if _installed is None:
        return
    djust_presence.reset_backend_if(_installed)  # only if djust's slot still holds ours
    djust_presence.unwrap_presence_calls()
    _installed = None
