"""Shared live rooms in djust views (docs/collaboration.md#live-rooms):
``SharedRoomMixin``, ``TenantPresenceMixin`` on the live room of a granted
row (``tenantry.shared_rooms``), and the watcher that closes a grantee's
part of a room when its grant ends::

    class BoardView(TenantMixin, SharedRoomMixin, LiveView):
        shared_room_handlers = ("reload",)          # what others may push here

        def mount(self, request, board_id=None, **kwargs):
            self.board = Board.objects.with_shared().get(pk=board_id)
            self.open_shared_room(self.board)       # owner or grantee, else refused
            self.track_presence(meta={"name": request.user.username})

        @event_handler
        def move(self, card_id, column, **kwargs):
            ...                                     # a write through the grant
            self.push_to_shared_room("reload")      # every view in the room re-reads

    {% for p in presences %}{{ p.meta.name }} ({{ p.tenant_id }}){% endfor %}

* ``presences`` lists every member of the room, of every tenant, each
  record with ``tenant_id`` (the member's tenant), ``user_id`` and
  ``room_owner``; diffs, tabs, hooks and the expiry sweep work as in
  ``TenantPresenceMixin``.
* ``broadcast_to_presence(event, payload)`` reaches every socket in the
  room, of every member tenant (djust's ``presence_event`` frame);
  ``push_to_shared_room(handler, **payload)`` runs ``handler`` on every
  other view in the room that lists it in ``shared_room_handlers``, each in
  its own tenant (djust's ``server_push``), telling it the sender
  (``get_shared_room_sender()``); a read grantee's push is refused.
* A grantee's grant revoked or expired: within ``TENANT_READMIT_INTERVAL``
  each process's :class:`RoomWatcher` (one query per room and grantee per
  half interval, whatever the number of sockets) takes the grantee's
  sockets out of the room's group (nothing more reaches them) and has each
  view leave the room's presence (the others get the leave diff);
  ``shared_room_closed`` becomes true and ``handle_shared_room_closed()``
  runs in the view's own turn.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import weakref
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connections
from djust.decorators import event_handler, is_event_handler

from .. import conf
from .._core import TenantMismatchError
from ..shared_rooms import PUSH_HANDLER, SharedRoom, member_id, shared_room
from .live_presence import TenantPresenceMixin

__all__ = ["CLOSED_HANDLER", "PUSH_HANDLER", "RoomWatcher", "SharedRoomMixin", "room_watcher"]

logger = logging.getLogger(__name__)

#: The view method the watcher's push calls when the view's grant ended.
CLOSED_HANDLER = "_on_shared_room_closed"


class RoomWatcher:
    """Ends a grantee's part of the shared rooms its grant opened.

    Every ``TENANT_READMIT_INTERVAL / 2`` seconds each process checks, for
    each shared room its own views hold as a grantee, whether the grant
    still admits that grantee (``SharedRoom.admits_member``: the
    ``with_shared()`` query, once per room and grantee). When it does not
    (revoked, expired, the row moved, the grantee deleted) the process
    removes each of those views' channels from the room's group at once
    (no broadcast reaches them after that) and pushes them
    :data:`CLOSED_HANDLER`, which leaves the room's presence in the view's
    own turn (the room gets the leave diff). So a grant's end reaches
    every socket within the interval, plus one query and a channel-layer
    hop. The owner's own views are not watched (a row's owner is always
    admitted to its room; a deleted or suspended owner is refused by
    re-admission). While the check cannot run (the database is down) the
    room stays as it is and the next pass tries again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Watched room → its views in this process, by channel name.
        self._views: dict[SharedRoom, dict[str, weakref.ref[Any]]] = {}
        self._layer: Any = None
        self._task: asyncio.Task[None] | None = None

    def watch(self, room: SharedRoom, channel: str, layer: Any, view: Any) -> None:
        if room.member == room.owner:
            return
        with self._lock:
            self._views.setdefault(room, {})[channel] = weakref.ref(view)
            self._layer = layer
            task = self._task
        if not _running(task):
            async_to_sync(self._start)()

    def unwatch(self, room: SharedRoom | None, channel: str | None) -> None:
        if room is None or channel is None:
            return
        with self._lock:
            channels = self._views.get(room)
            if channels is not None:
                channels.pop(channel, None)
                if not channels:
                    del self._views[room]

    def watching(self) -> dict[SharedRoom, int]:
        """Watched rooms and this process's views in each (for tests)."""
        with self._lock:
            return {room: len(channels) for room, channels in self._views.items()}

    async def _start(self) -> None:
        with self._lock:
            if _running(self._task):
                return
            # A context of its own: nothing bound (not the tenant of the
            # view that happened to start it); each check binds its grantee.
            self._task = asyncio.get_running_loop().create_task(
                self._run(), context=contextvars.Context()
            )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(conf.current().readmit_interval / 2)
            with self._lock:
                if not self._views:
                    if self._task is asyncio.current_task():
                        self._task = None
                    return
                rooms = {room: dict(views) for room, views in self._views.items()}
                layer = self._layer
            for room, views in rooms.items():
                try:
                    await self.check(room, views, layer)
                except Exception:  # one room's failure must not stop the others'
                    logger.warning("shared room check of %r failed", room, exc_info=True)

    async def check(self, room: SharedRoom, views: dict[str, weakref.ref[Any]], layer: Any) -> None:
        """Closes ``room`` to the ``views`` (by channel) when their grant
        ended. A view dropped without untracking (garbage collected) is
        unwatched."""
        for channel, view_ref in list(views.items()):
            if view_ref() is None:
                self.unwatch(room, channel)
                del views[channel]
        if not views:
            return
        if await asyncio.to_thread(_still_admitted, room):
            return
        with self._lock:
            self._views.pop(room, None)
        for channel in views:
            await layer.group_discard(room.group, channel)
            await layer.send(
                channel,
                {"type": "server_push", "state": None, "handler": CLOSED_HANDLER, "payload": {}},
            )


def _still_admitted(room: SharedRoom) -> bool:
    """``room.admits_member()`` in a worker thread, its database connection
    closed afterwards (the thread is the executor's, not a request's)."""
    try:
        return room.admits_member()
    finally:
        connections.close_all()


def _running(task: asyncio.Task[None] | None) -> bool:
    return task is not None and not task.done() and not task.get_loop().is_closed()


#: This process's watcher.
room_watcher = RoomWatcher()


class SharedRoomMixin(TenantPresenceMixin):
    """``TenantPresenceMixin`` in the live room of a granted row (see the
    module docstring). List it after ``TenantMixin``. Until
    :meth:`open_shared_room` it is a plain ``TenantPresenceMixin`` (the
    view's own tenant's room of ``presence_key``)."""

    #: The event handlers another member of the room may run on this view
    #: by a push (``push_to_shared_room`` / ``SharedRoom.push``). Empty by
    #: default: a push runs nothing until the view lists it. A listed
    #: handler runs in this view's tenant on the sender tenant's payload;
    #: it reads who sent it with :meth:`get_shared_room_sender`.
    shared_room_handlers: tuple[str, ...] = ()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: The room this view opened (private: djust renders and saves the
        #: view's public attributes; :meth:`get_shared_room` reads it).
        self._shared_room: SharedRoom | None = None
        #: True once the view's grant ended and it left the room.
        self.shared_room_closed = False
        self._room_watched: tuple[SharedRoom, str] | None = None
        #: Who sent the push being handled (None outside a pushed turn).
        self._shared_room_sender: dict[str, str] | None = None

    def get_shared_room_sender(self) -> dict[str, str] | None:
        """In a handler run by a push into the shared room: who sent it,
        ``{"tenant": <sender tenant>, "access": "owner" | "write"}``
        (read grantees cannot push); None in the view's own turns."""
        return getattr(self, "_shared_room_sender", None)

    def get_shared_room(self) -> SharedRoom | None:
        """The room this view opened (``tenantry.shared_rooms.SharedRoom``),
        if any (a method: djust renders a view's public attributes)."""
        return getattr(self, "_shared_room", None)

    def open_shared_room(self, obj: Any) -> SharedRoom:
        """Make ``obj``'s live room this view's presence room: the bound
        tenant must own ``obj`` or hold a live grant of it
        (``TenantMismatchError`` otherwise). Call it in ``mount()`` before
        ``track_presence()``."""
        room = shared_room(obj)
        self._shared_room = room
        self.shared_room_closed = False
        return room

    def track_presence(self, meta: dict[str, Any] | None = None) -> None:
        """djust's ``track_presence``; a shared room's view tracks its user
        over WebSocket only. djust's SSE transport has no disconnect hook,
        heartbeat or channel group: a member tracked there could neither be
        taken out on a revoke nor leave when the stream ends, so over SSE
        the room view renders without presence (docs/collaboration.md)."""
        if self.get_shared_room() is not None and self._consumer() is None:
            return
        super().track_presence(meta)

    # -- TenantPresenceMixin's seams ------------------------------------------------

    def _presence_member(self, user_id: str) -> str:
        # Here, not in get_presence_user_id() (an app overrides that hook):
        # the member's tenant is always the one that opened the room.
        room = self.get_shared_room()
        return user_id if room is None else member_id(room.member, user_id)

    def _presence_target(self) -> tuple[Any, str, str]:
        room = self.get_shared_room()
        if room is None:
            return super()._presence_target()
        if self.shared_room_closed:
            raise TenantMismatchError(
                f"{room!r} is closed to tenant {room.member!r}: its grant ended"
            )
        return room.space, room.name, room.group

    def _presence_backend(self, tenant_id: Any) -> Any:
        # The room this view opened serves its calls (the space's backend
        # refuses a bound tenant's calls that come through no opened room).
        room = self.get_shared_room()
        if room is not None and tenant_id == room.space:
            return room.presence
        return super()._presence_backend(tenant_id)

    def subscribe_presence(self) -> None:
        super().subscribe_presence()
        room, consumer = self.get_shared_room(), self._consumer()
        if room is None or consumer is None or self._room_watched is not None:
            return
        self._room_watched = (room, consumer.channel_name)
        room_watcher.watch(room, consumer.channel_name, consumer.channel_layer, self)

    def untrack_presence(self) -> None:
        watched, self._room_watched = self._room_watched, None
        if watched is not None:
            room_watcher.unwatch(*watched)
        super().untrack_presence()

    def broadcast_to_presence(self, event: str, payload: dict[str, Any] | None = None) -> None:
        """djust's ``broadcast_to_presence``: to every socket in the shared
        room (of every member tenant) once one is open."""
        room = self.get_shared_room()
        if room is None:
            return super().broadcast_to_presence(event, payload)
        if self.shared_room_closed:
            raise TenantMismatchError(
                f"{room!r} is closed to tenant {room.member!r}: its grant ended"
            )
        room.broadcast(event, payload)
        return None

    def push_to_shared_room(self, handler: str, **payload: Any) -> None:
        """Run event handler ``handler`` (with ``payload``) on every other
        live view in the shared room that lists it in
        ``shared_room_handlers``, of every member tenant, each in its own
        tenant, and re-render them (djust's ``server_push``): e.g. a change
        one tenant made to the shared row, re-read by each view. Refused
        (``TenantMismatchError``) from a grantee holding a read grant
        (``SharedRoom.push``)."""
        room = self.get_shared_room()
        if room is None:
            raise TenantMismatchError("push_to_shared_room(): no shared room is open")
        if self.shared_room_closed:
            raise TenantMismatchError(
                f"{room!r} is closed to tenant {room.member!r}: its grant ended"
            )
        consumer = self._consumer()
        room.push(handler, payload, sender=None if consumer is None else consumer.channel_name)

    @event_handler
    def _on_shared_room_push(
        self,
        handler: str = "",
        payload: Any = None,
        sender_tenant: str = "",
        sender_access: str = "",
        **kwargs: Any,
    ) -> None:
        """A push into the shared room (``SharedRoom.push``): runs
        ``handler`` only if this view lists it in ``shared_room_handlers``
        and it is a public ``@event_handler`` (never a hook or a private
        method), telling it the sender; anything else is dropped and
        logged. Not callable by clients (djust refuses names with ``_``)."""
        handler_fn = getattr(self, handler, None) if isinstance(handler, str) else None
        if (
            self.get_shared_room() is None
            or self.shared_room_closed
            or handler not in type(self).shared_room_handlers
            or handler.startswith(("_", "handle_"))
            or not callable(handler_fn)
            or not is_event_handler(handler_fn)
            or not isinstance(payload, dict)
        ):
            logger.warning(
                "shared room push of %r from tenant %r refused on %s: not in its "
                "shared_room_handlers (or not a public event handler)",
                handler,
                sender_tenant,
                type(self).__name__,
            )
            self._skip_render = True
            return
        self._shared_room_sender = {"tenant": str(sender_tenant), "access": str(sender_access)}
        try:
            handler_fn(**payload)
        finally:
            self._shared_room_sender = None

    # -- the grant ended ----------------------------------------------------------------

    @event_handler
    def _on_shared_room_closed(self, **kwargs: Any) -> None:
        """The watcher's push: this view's grant ended (not callable by
        clients: djust refuses event names starting with ``_``)."""
        room = self.get_shared_room()
        if room is None or self.shared_room_closed:
            self._skip_render = True
            return
        self.untrack_presence()
        self._presence_users = None
        self.shared_room_closed = True
        self.presences = []
        self.online_count = 0
        consumer = self._consumer()
        if consumer is not None:
            async_to_sync(consumer.channel_layer.group_discard)(room.group, consumer.channel_name)
        self.handle_shared_room_closed()

    def handle_shared_room_closed(self) -> None:
        """Called in the view's turn once its grant ended and it left the
        room (``shared_room_closed`` is true). Override it (say, to drop
        the granted row from the view's state)."""
