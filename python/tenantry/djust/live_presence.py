"""Presence of live connections, delivered as diffs (SPEC §16).

``TenantPresenceMixin`` is djust's ``PresenceMixin`` with Phoenix.Presence's
model: every live connection (each WebSocket of a view) is tracked under its
user with its own ``ref``, and every change reaches the room's other views as
one ``{"joins", "leaves"}`` diff that they apply to their own copy of the
room, instead of each of them listing the whole room again::

    class Board(TenantMixin, TenantPresenceMixin, LiveView):
        presence_key = "board"            # tenant:<id>:board

        def mount(self, request, **kwargs):
            self.track_presence(meta={"name": request.user.username})

    {% for p in presences %}{{ p.meta.name }} ({{ p.metas|length }} tabs){% endfor %}

* ``presences`` (one record per user, each with ``metas``: one per open
  connection) and ``online_count`` (users) are kept by the view itself:
  listed once when it starts tracking, then updated from diffs.
* Closing one tab removes that tab's meta; the user leaves with the last one.
* A diff goes to the room's group of the view's tenant
  (:func:`tenantry.channels.presence_group`), once per subscribed view:
  one channel-layer message and one render per view, no backend read.
* djust's names keep working: ``track_presence``, ``untrack_presence``,
  ``list_presences`` / ``presence_count`` (read the backend),
  ``update_presence_heartbeat`` (now per connection),
  ``handle_presence_join`` / ``handle_presence_leave`` (now also called for
  other users arriving and leaving), ``broadcast_to_presence``.

* Connections that expire (their process died, or their socket went
  silent) reach the room's views as leave diffs too: each process sweeps
  the rooms its views follow (:class:`ExpirySweeper`).

See docs/presence.md ("Live views: connections and diffs", "Expiry sends
diffs").
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import weakref
from typing import Any

from asgiref.sync import async_to_sync
from djust.decorators import event_handler
from djust.presence import PresenceMixin

from .. import conf
from .._core import SharedRoomSpace, TenantNotSetError
from ..context import get_current_tenant
from ..groups import presence_group
from ..presence import apply_diff, by_user, get_presence_router, get_tenant_presence_backend
from ..shared_rooms import SharedRoomPresence
from .broadcasts import PRESENCE_VIEW

__all__ = ["TenantPresenceMixin"]

logger = logging.getLogger(__name__)

#: The view method a diff calls on every subscribed view (a ``server_push``).
DIFF_HANDLER = "_on_presence_diff"


def _order(record: dict[str, Any]) -> tuple[float, str]:
    return (record.get("joined_at") or 0.0, str(record.get("id")))


#: (tenant id, room, group) of a followed room; a shared live room's
#: "tenant" is its owner's ``SharedRoomSpace`` (tenantry.shared_rooms).
Target = tuple[Any, str, str]


def presence_store(tenant_id: Any) -> Any:
    """The presence backend of a room's space: a tenant's own, or the
    owner's shared rooms (records with each member's tenant)."""
    if isinstance(tenant_id, SharedRoomSpace):
        return SharedRoomPresence(tenant_id.owner)
    return get_tenant_presence_backend(tenant_id)


def _refs(record: dict[str, Any] | None) -> set[str]:
    return {m["ref"] for m in record["metas"]} if record else set()


def _gone(before: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The leaves that take ``before`` (a room by user) to ``now``: every
    connection of ``before`` that ``now`` lacks, under its user's record."""
    leaves: dict[str, Any] = {}
    for user_id, record in before.items():
        still = _refs(now.get(user_id))
        metas = [m for m in record["metas"] if m["ref"] not in still]
        if metas:
            leaves[user_id] = {**record, "metas": metas}
    return leaves


class ExpirySweeper:
    """Leave diffs for connections that expired (docs/presence.md#expiry-sends-diffs).

    A connection that is untracked sends its own leave diff; one whose
    process died (SIGKILL, a lost machine) or whose socket went silent
    just stops heartbeating, and the store drops it silently once
    ``PRESENCE_TIMEOUT`` has passed. So every process sweeps the rooms its
    own live views follow: every ``PRESENCE_TIMEOUT / 2`` seconds it lists
    each such room once (one store call per room, whatever the number of
    views) and compares it with the room as it was at the previous sweep,
    minus the leaves its views have applied since. What is missing left
    without a diff: the process sends that leave diff to each of its own
    views of the room that still holds one of those connections (a
    channel-layer ``send`` per view, not a group send, so N processes never
    deliver N copies to one view, and a view that already applied the
    untrack's diff gets nothing).

    Delay: a connection expires ``PRESENCE_TIMEOUT`` after its last
    heartbeat and is reported at the next sweep, so its leave diff reaches
    every view at most ``1.5 × PRESENCE_TIMEOUT`` after that heartbeat
    (plus a store round trip and a channel-layer hop). Because the sweep
    interval is shorter than the timeout, every connection is in some
    listing before it can expire, so none is missed. A leave that races
    its own untrack's diff (in the channel layer when the view was checked)
    may arrive twice; applying it again changes nothing.

    The sweep runs as one asyncio task on the event loop of the server
    (started by the first view that follows a room, ended when no view
    follows any), never on a request's path; the store call runs in a
    worker thread. While the store is unreachable it skips the room (the
    views' heartbeats resync them afterwards).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Followed room → this process's views in it, by channel name.
        self._views: dict[Target, dict[str, weakref.ref[Any]]] = {}
        #: Followed room → the room at the last sweep (by user), less the
        #: leaves this process's views applied since.
        self._seen: dict[Target, dict[str, dict[str, Any]]] = {}
        self._layer: Any = None
        self._task: asyncio.Task[None] | None = None

    def follow(self, target: Target, channel: str, layer: Any, view: Any) -> None:
        """``view`` of this process (its consumer's ``channel``) follows ``target``."""
        with self._lock:
            self._views.setdefault(target, {})[channel] = weakref.ref(view)
            self._layer = layer
            task = self._task
        if not _running(task):
            async_to_sync(self._start)()

    def unfollow(self, target: Target | None, channel: str | None) -> None:
        if target is None or channel is None:
            return
        with self._lock:
            channels = self._views.get(target)
            if channels is not None:
                channels.pop(channel, None)
                if not channels:
                    del self._views[target]
                    self._seen.pop(target, None)

    def applied(self, target: Target, diff: dict[str, Any]) -> None:
        """A view of this process applied ``diff``: its leaves are reported."""
        leaves = diff.get("leaves") or {}
        if not leaves:
            return
        with self._lock:
            seen = self._seen.get(target)
            if seen is not None:
                apply_diff(seen, {"leaves": leaves})

    def following(self) -> dict[Target, int]:
        """Followed rooms and this process's views in each (for tests)."""
        with self._lock:
            return {target: len(channels) for target, channels in self._views.items()}

    async def _start(self) -> None:
        with self._lock:
            if _running(self._task):
                return
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(conf.current().presence_timeout / 2)
            with self._lock:
                if not self._views:
                    if self._task is asyncio.current_task():  # not a newer loop's
                        self._task = None
                    return
                rooms = {target: dict(views) for target, views in self._views.items()}
                layer = self._layer
            for target, channels in rooms.items():
                try:
                    await self.sweep(target, channels, layer)
                except Exception:  # one room's failure must not stop the others'
                    logger.warning("presence sweep of %s failed", target[1], exc_info=True)

    async def sweep(self, target: Target, views: dict[str, weakref.ref[Any]], layer: Any) -> None:
        """Lists ``target`` once and sends what left without a diff to the
        ``views`` (by channel name) that still hold some of it. A view that
        was dropped without untracking (garbage collected) is unfollowed."""
        for channel, view_ref in views.items():
            if view_ref() is None:
                self.unfollow(target, channel)
        tenant_id, room, _group = target
        backend = presence_store(tenant_id)
        now = by_user(await asyncio.to_thread(backend.list, room))
        with self._lock:
            if target not in self._views:
                return
            before = self._seen.get(target)
            self._seen[target] = now
        leaves = _gone(before, now) if before is not None else {}
        if not leaves:
            return
        message = {
            "type": "server_push",
            "state": None,
            "handler": DIFF_HANDLER,
            "payload": {"joins": {}, "leaves": leaves},
        }
        for channel, view_ref in views.items():
            if view_ref() is None:
                continue
            # Read from this thread while the view's own turn may apply a
            # diff: apply_diff publishes new records and lists, never
            # changes one in place, so this sees one or the other.
            users = getattr(view_ref(), "_presence_users", None)
            if users is not None and _leaves_any(users, leaves):
                await layer.send(channel, message)


def _running(task: asyncio.Task[None] | None) -> bool:
    """Whether ``task`` still sweeps: not finished, on a loop not closed (a
    test's loop, or a server's that stopped, may close with it pending)."""
    return task is not None and not task.done() and not task.get_loop().is_closed()


#: This process's sweeper.
expiry_sweeper = ExpirySweeper()


def _leaves_any(users: dict[str, dict[str, Any]], leaves: dict[str, Any]) -> bool:
    """Whether ``leaves`` removes a connection ``users`` holds."""
    return any(_refs(users.get(u)) & _refs(left) for u, left in leaves.items())


class TenantPresenceMixin(PresenceMixin):
    """djust's ``PresenceMixin``, per connection and by diffs (see the module
    docstring). List it after ``TenantMixin``:
    ``class Room(TenantMixin, TenantPresenceMixin, LiveView)``. A view
    without a tenant fails closed (``TenantNotSetError``), like every
    presence call through tenantry."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: This connection's ref while it is tracked.
        self._presence_ref: str | None = None
        #: (tenant id, room, group) of the room this view follows.
        self._presence_room: tuple[str, str, str] | None = None
        #: The view's copy of the room: user id → record. ``None`` until the
        #: view tracks (or :meth:`subscribe_presence`); diffs before that
        #: are ignored.
        self._presence_users: dict[str, dict[str, Any]] | None = None
        #: (room, channel) under which the expiry sweeper counts this view.
        self._presence_followed: tuple[Target, str] | None = None
        self.presences: list[dict[str, Any]] = []
        self.online_count = 0

    # -- where ------------------------------------------------------------------

    def _presence_target(self) -> tuple[str, str, str]:
        """(tenant id, room, group) of this view's presence key: the key's
        tenant as the router decides it (``tenant:<id>:`` prefix and/or the
        bound tenant; ``TenantNotSetError`` / ``TenantMismatchError``).

        With no tenant bound the router would put a plain key in the space
        of callers without a tenant (docs/presence.md); this mixin keeps
        rooms per tenant only, so it refuses instead, naming the view."""
        if get_current_tenant() is None:
            raise TenantNotSetError(
                f"{type(self).__name__} tracks presence per tenant and has no tenant bound "
                f"(presence key {self.get_presence_key()!r}): mount it where a tenant resolves "
                "(TenantMixin with tenant_required=True), or use djust's PresenceMixin for a "
                "room of visitors without a tenant"
            )
        tenant_id, room = get_presence_router().resolve(self.get_presence_key())
        return tenant_id, room, presence_group(room, tenant_id)

    def _presence_backend(self, tenant_id: Any) -> Any:
        return presence_store(tenant_id)

    def _presence_member(self, user_id: str) -> str:
        """The id this view's user is tracked under in its room (a shared
        room wraps it with the member's tenant); applied after
        ``get_presence_user_id()``, so an override of that hook never
        chooses the tenant."""
        return user_id

    def _consumer(self) -> Any:
        return getattr(self, "_ws_consumer", None)

    # -- following the room -------------------------------------------------------

    def subscribe_presence(self) -> None:
        """Follow the room without being in it: join its group and list it
        once; diffs keep ``presences`` current from then on. Called by
        :meth:`track_presence`; call it yourself for a view that only
        watches, or on the HTTP render to list the room once for the first
        HTML (there is no connection to follow it with). Does nothing when
        the view already follows the room."""
        target = self._presence_target()
        group = target[2]
        consumer = self._consumer()
        if consumer is None:
            self._presence_users = self._presence_listed(target)
            self._presence_changed()
            self._presence_users = None  # not followed: diffs would not reach it
            return
        if self._presence_room == target and self._presence_users is not None:
            return
        # The socket's presence view: its replacement by a re-mount or a
        # live_redirect on this socket untracks it (broadcasts.join_listen_channels).
        setattr(consumer, PRESENCE_VIEW, weakref.ref(self))
        # djust's consumer joined the group of the key it computed before
        # mount() (consumer._presence_group) and leaves it on disconnect:
        # make that the group of the key as it is now, so the view follows
        # its own room and the disconnect still cleans up.
        previous = getattr(consumer, "_presence_group", None)
        if previous != group:
            layer = consumer.channel_layer
            if previous:
                async_to_sync(layer.group_discard)(previous, consumer.channel_name)
            async_to_sync(layer.group_add)(group, consumer.channel_name)
            consumer._presence_group = group
        self._presence_room = target
        # Listed after joining the group: a change from now on arrives as a
        # diff, and a diff of a change the list already shows is a no-op.
        self._presence_users = self._presence_listed(target)
        self._presence_changed()
        # Expired connections send no diff of their own: this process
        # sweeps the rooms its views follow and sends their leaves.
        followed = getattr(self, "_presence_followed", None)
        if followed is not None:
            expiry_sweeper.unfollow(*followed)
        self._presence_followed = (target, consumer.channel_name)
        expiry_sweeper.follow(target, consumer.channel_name, consumer.channel_layer, self)

    def _presence_listed(self, target: tuple[str, str, str]) -> dict[str, dict[str, Any]]:
        """The room as the store lists it now: user id → record."""
        tenant_id, room, _group = target
        return by_user(self._presence_backend(tenant_id).list(room))

    def _presence_changed(self) -> None:
        users = self._presence_users or {}
        self.presences = sorted(users.values(), key=_order)
        self.online_count = len(users)

    def _send_presence_diff(self, group: str, diff: dict[str, Any]) -> None:
        """One ``server_push`` of ``diff`` to the room's group: each view in
        it applies the diff (:meth:`_on_presence_diff`). The sending view
        skips its own copy (it applied the change itself)."""
        if not (diff.get("joins") or diff.get("leaves")):
            return
        consumer = self._consumer()
        if consumer is None:
            return
        message = {
            "type": "server_push",
            "state": None,
            "handler": DIFF_HANDLER,
            "payload": {"joins": diff.get("joins") or {}, "leaves": diff.get("leaves") or {}},
            "sender_channel": consumer.channel_name,
        }
        try:
            async_to_sync(consumer.channel_layer.group_send)(group, message)
        except Exception:  # like djust: delivery must not break track/untrack
            logger.warning("presence diff to %s could not be sent", group, exc_info=True)

    # -- djust's PresenceMixin API ---------------------------------------------------

    def track_presence(self, meta: dict[str, Any] | None = None) -> None:
        """Track this connection under this view's user (djust's
        ``get_presence_user_id()``) with ``meta``; tell the room; start
        following it. Does nothing on the HTTP render (no connection) or
        when this connection is already tracked."""
        if self._presence_tracked or not hasattr(self, "_websocket_session_id"):
            return
        tenant_id, room, group = self._presence_target()
        user_id = self._presence_member(str(self.get_presence_user_id()))
        # A copy: the caller's dict (one module-level dict shared by every
        # view, say) is never changed, so one user's name cannot reach
        # another user's meta, nor a later change of it this connection's.
        meta = {} if meta is None else dict(meta) if isinstance(meta, dict) else meta
        request = getattr(self, "request", None)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and isinstance(meta, dict):
            meta.setdefault("name", user.username)
            meta.setdefault("user_id", user_id)
        ref = secrets.token_hex(8)
        diff = self._presence_backend(tenant_id).track(room, user_id, ref, meta)
        # Where this connection is tracked: untrack and heartbeat use it,
        # whatever the key or the bound tenant is by then (on disconnect
        # djust has already unbound the tenant).
        self._presence_room = (tenant_id, room, group)
        self._presence_tracked = True
        self._presence_user_id = user_id
        self._presence_meta = meta
        self._presence_ref = ref
        self._send_presence_diff(group, diff)
        self.subscribe_presence()
        # djust calls this for the view's own join too.
        own = (self._presence_users or {}).get(user_id) or diff["joins"].get(user_id)
        if own is not None:
            self._presence_hooks([own], [])

    def untrack_presence(self) -> None:
        """Stop tracking this connection (djust calls it on disconnect): its
        meta leaves, and the user with it if it was the user's last
        connection; the room's other views get the diff. The view stops
        following the room for the expiry sweep too (djust calls this on
        every disconnect, also of a view that only watched)."""
        followed = getattr(self, "_presence_followed", None)
        self._presence_followed = None
        if followed is not None:
            expiry_sweeper.unfollow(*followed)
        if not self._presence_tracked:
            return
        tenant_id, room, group = self._presence_room or self._presence_target()
        user_id, ref = self._presence_user_id, self._presence_ref
        self._presence_tracked = False
        self._presence_user_id = None
        self._presence_meta = None
        self._presence_ref = None
        diff = self._presence_backend(tenant_id).untrack(room, user_id, ref)
        self._send_presence_diff(group, diff)
        self._presence_apply(diff)

    def update_presence_heartbeat(self) -> None:
        """Refresh this connection (djust calls it on every client ping).

        A connection the store no longer has (it expired while the process
        stalled, or Redis lost its data) is tracked again, and the room
        told. Then the view's copy is checked against the room's user count
        (O(1)): a mismatch (a dead process's connections expired, or a diff
        djust dropped from a busy session's queue) re-lists it once."""
        if not self._presence_tracked:
            return
        tenant_id, room, group = self._presence_room or self._presence_target()
        backend = self._presence_backend(tenant_id)
        if not backend.heartbeat(room, self._presence_user_id, self._presence_ref):
            diff = backend.track(
                room, self._presence_user_id, self._presence_ref, self._presence_meta
            )
            self._send_presence_diff(group, diff)
        users = self._presence_users
        consumer = self._consumer()
        if users is None or consumer is None or backend.count(room) == len(users):
            return
        # Re-listed inside a render turn of this connection, so it shows.
        message = {"type": "server_push", "state": None, "handler": "_on_presence_change"}
        async_to_sync(consumer.channel_layer.send)(consumer.channel_name, message)

    def _restore_presence(self) -> None:
        """djust restored this view's state without mount() on a new
        connection: track the new connection (new ref) with the saved meta."""
        if not getattr(self, "_presence_tracked", False):
            return
        meta = getattr(self, "_presence_meta", None) or {}
        self._presence_tracked = False
        try:
            self.track_presence(meta=meta)
        except Exception as exc:  # restoration must never kill the WS
            logger.warning("presence could not be restored: %s", exc)

    def _refresh_online_count(self) -> None:
        self._presence_changed()

    def _broadcast_presence_change(self) -> None:
        """djust's "re-list everyone" push: not used (diffs replace it)."""

    # -- applying changes ----------------------------------------------------------

    def _presence_apply(self, diff: dict[str, Any]) -> None:
        """Apply ``diff`` to the view's copy (if it follows the room), then
        call the hooks."""
        users = self._presence_users
        if users is None:
            return
        if self._presence_room is not None:
            expiry_sweeper.applied(self._presence_room, diff)
        before = set(users)
        apply_diff(users, diff)
        self._presence_changed()
        arrived = [users[u] for u in diff.get("joins", {}) if u in users and u not in before]
        gone = [r for u, r in diff.get("leaves", {}).items() if u in before and u not in users]
        self.handle_presence_diff(diff)
        self._presence_hooks(arrived, gone)

    def _presence_hooks(self, arrived: list[dict[str, Any]], gone: list[dict[str, Any]]) -> None:
        for hook, records in (
            (self.handle_presence_join, arrived),
            (self.handle_presence_leave, gone),
        ):
            for record in records:
                try:
                    hook(record)
                except Exception:  # like djust: an app's hook must not break presence
                    logger.exception("Error in %s", hook.__name__)

    @event_handler
    def _on_presence_diff(self, joins: Any = None, leaves: Any = None, **kwargs: Any) -> None:
        """A diff from the room (a ``server_push``; not callable by clients:
        djust refuses event names starting with ``_``)."""
        if self._presence_users is None:
            self._skip_render = True
            return
        # A leave already applied (the untrack's diff racing the expiry
        # sweep's) changes nothing; it still renders (no patch), since a
        # skipped push turn answers the client with a bare "noop" frame,
        # which a client waiting for its own event's answer would take.
        self._presence_apply({"joins": joins or {}, "leaves": leaves or {}})

    @event_handler
    def _on_presence_change(self, **kwargs: Any) -> None:
        """djust's "presence changed, re-list" push (and the heartbeat's
        resync): list the room again."""
        old = self._presence_users
        if old is None:
            self._skip_render = True
            return
        users = self._presence_users = self._presence_listed(
            self._presence_room or self._presence_target()
        )
        self._presence_changed()
        self._presence_hooks(
            [users[u] for u in users.keys() - old.keys()],
            [old[u] for u in old.keys() - users.keys()],
        )

    def handle_presence_diff(self, diff: dict[str, Any]) -> None:
        """Called with every diff this view applies (after ``presences`` is
        updated): ``{"joins": {user id: record}, "leaves": {...}}``,
        including a second tab of a present user. Override it."""
