"""Shared live rooms: presence and broadcasts between the tenants of a
granted row (docs/collaboration.md#live-rooms).

A row tenant A granted to tenant B (``tenantry.sharing.grant``) has one
live room: A's users and B's users, each on their own host and tenant, are
in it together, each listed with their own tenant::

    from tenantry.shared_rooms import shared_room

    with tenant_context("globex"):                    # the grantee, bound
        room = shared_room(Board.objects.with_shared().get(pk=42))
        room.owner, room.name          # "acme", "collaboration.board:42"
        room.list()   # [{"id": "acme:7", "tenant_id": "acme", "user_id": "7", ...}]

Who may open it: the row's owner, and a tenant the owner granted the row to
by a live grant (not revoked, not expired), decided by the same query that
admits granted rows (``Model.objects.with_shared()``), so the one rule of
docs/collaboration.md#reading-granted-rows decides rooms too. Anyone else
(another tenant, no tenant bound, a row that does not exist) gets
``TenantMismatchError`` naming the row, the same for all of them.

Where it lives: not in any tenant's presence space but in the owner's
space of shared rooms (``SharedRoomSpace``, keys
``<prefix>:{tenant:-rooms.<owner>}:presence-...:<app_label.model>:<pk>``),
which no tenant id names and no caller-named key reaches (a key a caller
names always lands in a valid tenant id's space or in the shared space of
callers without a tenant), so a tenant's own room of the same name is
another room. Its channels group is ``tenantry.r.<hash of (owner, room)>``
(``tenantry.groups.shared_room_group``), apart from every tenant group.

Each member is ``<tenant>:<user id>`` in the store (tenant ids hold no
``:``, so two tenants' user 7 are two members); :func:`member_record` gives
a record's ``tenant_id`` (the member's tenant), ``user_id`` and
``room_owner``. The djust side (``tenantry.live_presence.SharedRoomMixin``)
tracks each connection, delivers diffs and broadcasts, and closes a
grantee's part of the room within ``TENANT_READMIT_INTERVAL`` of its grant
ending.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connections, models, router
from django.utils.crypto import salted_hmac

from . import sharing
from ._core import (
    SharedRoomSpace,
    TenantMismatchError,
    TenantNotSetError,
    validate_tenant_id,
)
from .context import _room_member, get_current_tenant, tenant_context
from .graph import scope_of
from .groups import shared_room_group
from .presence import get_shared_room_backend

__all__ = ["PUSH_HANDLER", "SharedRoom", "member_id", "member_record", "shared_room"]

#: The one view method a push into a shared room calls on each receiving
#: view (``SharedRoomMixin``): it runs the pushed handler only if the view
#: lists it in ``shared_room_handlers``, with the sender's tenant at hand.
PUSH_HANDLER = "_on_shared_room_push"

#: djust's user id of an anonymous visitor is ``anon_<session key>``: the
#: session cookie, which must never reach another tenant's records.
_ANONYMOUS = "anon_"


def member_id(tenant_id: Any, user_id: Any) -> str:
    """A member's id in a shared room: ``<tenant>:<user id>``. The tenant id
    must be a valid one (``InvalidTenantId`` otherwise: those hold no
    ``:``, so the first ``:`` always splits the tenant off)."""
    tenant = validate_tenant_id(tenant_id)
    if user_id is None or str(user_id) == "":
        raise ValueError(f"member_id({tenant!r}, {user_id!r}): a member needs a user id")
    return f"{tenant}:{user_id}"


def opaque_user_id(owner: str, tenant_id: str, user_id: str) -> str:
    """What a shared room shows instead of an anonymous visitor's user id
    (``anon_<session key>``): a keyed hash (``SECRET_KEY``) of the room's
    owner, the member's tenant and the id, stable while the visitor stays,
    telling nothing of the session key."""
    digest = salted_hmac(
        "tenantry.shared_rooms.member", f"{owner}\x00{tenant_id}\x00{user_id}"
    ).hexdigest()
    return f"anon-{digest[:32]}"


def _shown_user_id(owner: str, tenant_id: str, user_id: str) -> str:
    if user_id.startswith(_ANONYMOUS):
        return opaque_user_id(owner, tenant_id, user_id)
    return user_id


def member_record(record: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """A shared room's store record as its members see it: ``tenant_id`` is
    the member's own tenant (not the room's space), ``user_id`` the user id
    within it, ``room_owner`` the tenant hosting the room; ``id`` stays
    ``<tenant>:<user id>`` (unique across tenants). An anonymous visitor's
    user id (djust's ``anon_<session key>``) is shown as
    :func:`opaque_user_id`, in ``user_id`` and ``id`` alike, to every
    member: the session key never leaves the store."""
    tenant_id, _, user_id = str(record["id"]).partition(":")
    shown = _shown_user_id(owner, tenant_id, user_id)
    return {
        **record,
        "id": f"{tenant_id}:{shown}",
        "tenant_id": tenant_id,
        "user_id": shown,
        "room_owner": owner,
    }


def _shown_member_id(uid: Any, owner: str) -> str:
    tenant_id, _, user_id = str(uid).partition(":")
    return f"{tenant_id}:{_shown_user_id(owner, tenant_id, user_id)}"


def member_diff(diff: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """A ``track``/``untrack`` diff with :func:`member_record` records."""
    return {
        side: {
            _shown_member_id(uid, owner): member_record(r, owner)
            for uid, r in (diff.get(side) or {}).items()
        }
        for side in ("joins", "leaves")
    }


def _plain(value: Any) -> str:
    """A room name, user id or ref as an exact ``str`` (a ``str`` subclass
    or any other object is converted here, outside the admitted call)."""
    return str.__str__(value) if isinstance(value, str) else str(value)


def _plain_meta(meta: Any) -> Any:
    """A meta as plain JSON values, converted here, before the admitted
    call: a caller's mapping or sequence subclass runs its own code now,
    never while the call holds the room's admission."""
    if meta is None:
        return None
    try:
        return json.loads(json.dumps(meta))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a shared room's presence meta must be JSON data: {exc}") from None


class SharedRoomPresence:
    """The presence backend of one owner's shared rooms, with every record
    it returns as :func:`member_record` gives it (djust's
    ``PresenceBackend`` calls and ``track``/``untrack``).

    With a tenant bound, it serves only ``room`` (a room that tenant opened,
    :func:`shared_room`): calls naming another room are refused, a join or
    track re-checks the room's admission (:meth:`SharedRoom.check_use`, one
    query), and each call is marked admitted for the core's gate of the
    space (which also refuses user ids that are not the bound tenant's
    members). With none bound (tenantry's sweeper, watcher and disconnects)
    it serves the owner's whole space."""

    def __init__(self, owner: str, room: SharedRoom | None = None) -> None:
        self.owner = owner
        self.room = room
        self.backend = get_shared_room_backend(owner)

    @contextmanager
    def _admitted(self, room: str, what: str, *, removal: bool = False) -> Iterator[None]:
        """Around one backend call: with a tenant bound, only the opened
        room, re-checked (:meth:`SharedRoom.check_use`: the bound tenant
        opened it and is still admitted, one query; a ``removal`` of the
        tenant's own members needs only that it opened the room, so a view
        whose grant ended can still leave), and marked admitted for the
        core's gate of the space for this call only (the arguments are
        plain values by then: no caller code runs under the mark)."""
        bound = get_current_tenant()
        if bound is None:
            yield
            return
        opened = self.room
        if opened is None or room != opened.name or opened.owner != self.owner:
            raise TenantMismatchError(
                f"presence {what} of room {room!r} in the shared rooms of {self.owner!r} with "
                f"tenant {bound.id!r} bound: only the room it opened (shared_room(obj)) serves it"
            )
        opened.check_use(what, admission=not removal)
        token = _room_member.set(bound.id)
        try:
            yield
        finally:
            _room_member.reset(token)

    def track(self, room: str, user_id: str, ref: str, meta: Any = None) -> dict[str, Any]:
        room, user_id, ref, meta = _plain(room), _plain(user_id), _plain(ref), _plain_meta(meta)
        with self._admitted(room, "track"):
            diff = self.backend.track(room, user_id, ref, meta)
        return member_diff(diff, self.owner)

    def untrack(self, room: str, user_id: str, ref: str) -> dict[str, Any]:
        room, user_id, ref = _plain(room), _plain(user_id), _plain(ref)
        with self._admitted(room, "untrack", removal=True):
            diff = self.backend.untrack(room, user_id, ref)
        return member_diff(diff, self.owner)

    def join(self, room: str, user_id: str, meta: Any = None) -> dict[str, Any]:
        room, user_id, meta = _plain(room), _plain(user_id), _plain_meta(meta)
        with self._admitted(room, "join"):
            record = self.backend.join(room, user_id, meta)
        return member_record(record, self.owner)

    def leave(self, room: str, user_id: str) -> dict[str, Any] | None:
        room, user_id = _plain(room), _plain(user_id)
        with self._admitted(room, "leave", removal=True):
            left = self.backend.leave(room, user_id)
        return None if left is None else member_record(left, self.owner)

    def list(self, room: str) -> list[dict[str, Any]]:
        room = _plain(room)
        with self._admitted(room, "list"):
            records = self.backend.list(room)
        return [member_record(r, self.owner) for r in records]

    def count(self, room: str) -> int:
        room = _plain(room)
        with self._admitted(room, "count"):
            return self.backend.count(room)

    def heartbeat(self, room: str, user_id: str, ref: str | None = None) -> Any:
        room, user_id = _plain(room), _plain(user_id)
        ref = None if ref is None else _plain(ref)
        with self._admitted(room, "heartbeat"):
            return self.backend.heartbeat(room, user_id, ref)

    def cleanup_stale(self, room: str) -> int:
        room = _plain(room)
        with self._admitted(room, "cleanup"):
            return self.backend.cleanup_stale(room)


class SharedRoom:
    """The live room of one granted row, opened by one member tenant
    (:func:`shared_room`)."""

    __slots__ = ("group", "member", "model", "name", "object_pk", "owner", "pk", "space")

    def __init__(self, model: Any, pk: Any, object_pk: str, owner: str, member: str) -> None:
        self.model = model
        self.pk = pk
        self.object_pk = object_pk
        #: The tenant that owns the row and hosts the room.
        self.owner = owner
        #: The tenant that opened it (the owner, or a grantee).
        self.member = member
        #: The room's name within the owner's space of shared rooms.
        self.name = f"{model._meta.label_lower}:{object_pk}"
        self.space = SharedRoomSpace(owner)
        #: The room's channels group (presence diffs and broadcasts).
        self.group = shared_room_group(owner, self.name)

    def __repr__(self) -> str:
        return f"SharedRoom({self.name!r}, owner={self.owner!r}, member={self.member!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SharedRoom) and (other.owner, other.name, other.member) == (
            self.owner,
            self.name,
            self.member,
        )

    def __hash__(self) -> int:
        return hash((self.owner, self.name, self.member))

    @property
    def presence(self) -> SharedRoomPresence:
        """The room's presence (djust's backend calls), serving this room
        only while a tenant is bound (:class:`SharedRoomPresence`)."""
        return SharedRoomPresence(self.owner, self)

    def list(self) -> list[dict[str, Any]]:
        """Who is in the room: one record per member, each with its tenant
        (re-checked: :meth:`check_use`)."""
        self.check_use("list")
        return self.presence.list(self.name)

    def count(self) -> int:
        self.check_use("count")
        return self.presence.count(self.name)

    def admits_member(self) -> bool:
        """Whether :attr:`member` may still be in the room now: the owner
        while the row is still its own; a grantee while the row is among
        its granted rows (one query either way: a revoked or expired grant,
        or a row moved to another tenant, ends it here)."""
        if self.member == self.owner:
            return _owned(self.model, self.pk, self.owner)
        return _admitted(self.model, self.pk, self.member)

    def check_use(self, what: str, *, admission: bool = True) -> None:
        """The check every use of the room runs (``list``, ``count``,
        ``broadcast``, ``push``), so a room object is no capability that
        outlives its grant or crosses tenants: the bound tenant must be the
        one that opened it (``TenantNotSetError`` with none bound,
        ``TenantMismatchError`` under another), and it must still be
        admitted (:meth:`admits_member`: one query per call, no cache).
        ``admission=False`` skips only that query: a view whose grant ended
        may still remove its own members (untrack, leave)."""
        bound = get_current_tenant()
        if bound is None:
            raise TenantNotSetError(
                f"{self!r}.{what}(): no tenant bound; a shared room is used only under the "
                f"tenant that opened it ({self.member!r})"
            )
        if bound.id != self.member:
            raise TenantMismatchError(
                f"{self!r}.{what}(): tenant {bound.id!r} is bound, but the room was opened by "
                f"{self.member!r}; each tenant opens its own (shared_room())"
            )
        if self.name != f"{self.model._meta.label_lower}:{_object_pk(self.model, self.pk)}":
            # Built by hand with another row's name: admission would check
            # one row and the calls reach another's room.
            raise TenantMismatchError(
                f"{self!r}.{what}(): the room's name is not its row's "
                f"({self.model._meta.label} pk={self.pk!r}); open rooms with shared_room(obj)"
            )
        if admission and not self.admits_member():
            raise TenantMismatchError(
                f"{self!r}.{what}(): {self.model._meta.label} pk={self.pk!r} is no longer "
                f"{'a row of' if self.member == self.owner else 'granted to'} tenant "
                f"{self.member!r}; its live room is closed to it"
            )

    def access(self) -> str:
        """The bound member's access to the row: ``"owner"``, ``"write"``
        (a write grant) or ``"read"`` (one query for a grantee)."""
        if self.member == self.owner:
            return "owner"
        return "write" if _write_granted(self) else "read"

    def broadcast(self, event: str, payload: dict[str, Any] | None = None) -> None:
        """Send djust's ``presence_event`` frame (``{"type": "presence_event",
        "event": event, "payload": payload}``) to every socket in the room,
        of every member tenant. Only under the tenant that opened the room,
        while it is admitted (:meth:`check_use`)."""
        self.check_use("broadcast")
        layer = _channel_layer()
        message = {"type": "presence_event", "event": event, "payload": dict(payload or {})}
        async_to_sync(layer.group_send)(self.group, message)

    def push(
        self, handler: str, payload: dict[str, Any] | None = None, *, sender: str | None = None
    ) -> None:
        """Ask every live view in the room, of every member tenant, to run
        its event handler ``handler`` with ``payload`` in its own tenant and
        re-render (djust's ``server_push``). A receiving view runs it only
        if it lists ``handler`` in ``shared_room_handlers`` (none by
        default), and the handler learns who sent it
        (``get_shared_room_sender()``): the payload is the sender tenant's
        input. Refused here (``TenantMismatchError``): a grantee holding a
        read grant (a push runs code in the other tenants' views: a read
        grant says nothing there), a handler name that is not a public one
        (``_...``, ``handle_...`` hooks), and what :meth:`check_use`
        refuses. ``sender``: the channel of a view that already re-rendered
        (djust skips it)."""
        if not isinstance(handler, str) or not handler.isidentifier():
            raise ValueError(f"{self!r}.push(): handler must be a method name, got {handler!r}")
        if handler.startswith(("_", "handle_")):
            raise TenantMismatchError(
                f"{self!r}.push({handler!r}): only event handlers a view lists in "
                "shared_room_handlers run in a shared room, never private methods or hooks"
            )
        self.check_use("push")
        access = self.access()
        if access == "read":
            raise TenantMismatchError(
                f"{self!r}.push({handler!r}): tenant {self.member!r} holds a read grant of "
                f"{self.model._meta.label} pk={self.pk!r}; a read grant may not push handlers "
                "into the room (broadcast() speaks without running code)"
            )
        layer = _channel_layer()
        message: dict[str, Any] = {
            "type": "server_push",
            "state": None,
            "handler": PUSH_HANDLER,
            "payload": {
                "handler": handler,
                "payload": dict(payload or {}),
                "sender_tenant": self.member,
                "sender_access": access,
            },
        }
        if sender is not None:
            message["sender_channel"] = sender
        async_to_sync(layer.group_send)(self.group, message)


def _channel_layer() -> Any:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer: set CHANNEL_LAYERS in settings to broadcast")
    return layer


def _refused(model: Any, pk: Any, tenant: str) -> TenantMismatchError:
    return TenantMismatchError(
        f"shared_room(): {model._meta.label} pk={pk!r} is neither a row of tenant {tenant!r} "
        f"nor a row granted to it by a live grant; its live room stays closed to {tenant!r}"
    )


def _object_pk(model: Any, pk: Any) -> str:
    """How the grant table and the room's name write ``model``'s ``pk``."""
    connection = connections[router.db_for_read(model)]
    return str(model._meta.pk.get_db_prep_value(pk, connection))


def _admitted(model: Any, pk: Any, tenant: str) -> bool:
    """Whether the bound ``tenant`` may see ``model`` row ``pk`` through the
    grants (the query ``with_shared()`` runs, on the model's own manager)."""
    bound = get_current_tenant()
    if bound is not None and bound.id == tenant:
        return model._default_manager.with_shared().filter(pk=pk).exists()
    try:
        with tenant_context(tenant):  # a tenant deleted since is refused here
            return model._default_manager.with_shared().filter(pk=pk).exists()
    except LookupError:
        return False


def _owned(model: Any, pk: Any, tenant: str) -> bool:
    """Whether ``model`` row ``pk`` is still ``tenant``'s own."""
    bound = get_current_tenant()
    if bound is not None and bound.id == tenant:
        return model._default_manager.filter(pk=pk).exists()
    try:
        with tenant_context(tenant):
            return model._default_manager.filter(pk=pk).exists()
    except LookupError:
        return False


def _write_granted(room: SharedRoom) -> bool:
    """Whether ``room.member`` holds a live write grant of the room's row."""
    table = room.model._meta.db_table
    return any(
        g.can_write
        for g in sharing.grants_received(room.member)
        if (g.target_table, g.object_pk, g.owner_tenant) == (table, room.object_pk, room.owner)
    )


def shared_room(obj: models.Model) -> SharedRoom:
    """The live room of ``obj``, opened by the bound tenant: its owner, or a
    tenant it was granted to (read or write grant, live). Anything else is
    refused with ``TenantMismatchError`` (``TenantNotSetError`` with no
    tenant bound). The owner is read from the database and the grant, never
    from the instance."""
    bound = get_current_tenant()
    if bound is None:
        raise TenantNotSetError("shared_room() needs a tenant bound (the owner or a grantee)")
    if not isinstance(obj, models.Model) or obj.pk is None:
        raise TypeError(f"shared_room() takes a saved model instance, got {obj!r}")
    model = type(obj)._meta.concrete_model
    if scope_of(model) is None or not hasattr(model._default_manager, "with_shared"):
        raise TypeError(
            f"shared_room(): {model._meta.label} is not a tenant-scoped model (no TenantManager)"
        )
    manager = model._default_manager
    object_pk = _object_pk(model, obj.pk)
    if manager.filter(pk=obj.pk).exists():
        return SharedRoom(model, obj.pk, object_pk, bound.id, bound.id)
    if not manager.with_shared().filter(pk=obj.pk).exists():
        raise _refused(model, obj.pk, bound.id)
    table = model._meta.db_table
    owners = {
        g.owner_tenant
        for g in sharing.grants_received(bound)
        if g.target_table == table and g.object_pk == object_pk
    }
    if len(owners) != 1:  # revoked between the two queries, or not a grant's row
        raise _refused(model, obj.pk, bound.id)
    return SharedRoom(model, obj.pk, object_pk, owners.pop(), bound.id)
