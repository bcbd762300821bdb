"""Tenant-scoped channels groups: the group names of one tenant, and sends
to the bound tenant's groups (docs/broadcasts.md).

:func:`tenant_group` names a channels group of one tenant, :func:`group_send`
/ :func:`agroup_send` send to the bound tenant's group, :func:`presence_group`
and :func:`db_notify_group` name a presence room's and a PostgreSQL NOTIFY
channel's group of a tenant, and :func:`tag_notify_payload` /
:func:`notified_tenant` carry the tenant a NOTIFY was raised in. Nothing
here knows djust: ``tenantry.djust.broadcasts`` puts djust's own groups in
these names. ``tenantry.channels`` re-exports all of it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from asgiref.sync import async_to_sync

from ._core import TenantInfo, TenantNotSetError
from .context import as_tenant, get_current_tenant

__all__ = [
    "DB_NOTIFY_PREFIX",
    "GROUP_NAME_LIMIT",
    "GROUP_PREFIX",
    "NOTIFY_TENANT_KEY",
    "agroup_send",
    "db_notify_group",
    "group_send",
    "notified_tenant",
    "presence_group",
    "shared_room_group",
    "tag_notify_payload",
    "tenant_group",
]


#: channels refuses group names of 100 characters or more
#: (``BaseChannelLayer.MAX_NAME_LENGTH``).
GROUP_NAME_LIMIT = 99
GROUP_PREFIX = "tenantry."
#: What channels allows in a group name (ASCII only: channels' ``\d`` would
#: also take other scripts' digits, which some layers reject).
_GROUP_SAFE = re.compile(r"[A-Za-z0-9._-]+")
#: Name hashes kept beside a readable tenant id (160 bits).
_NAME_HASH_CHARS = 40


def _hexdigest(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(str(len(encoded)).encode() + b":" + encoded)
    return digest.hexdigest()


def _group_tenant(tenant: TenantInfo | str | int | None, what: str) -> TenantInfo:
    # The bound one too: djust.tenants' views bind djust's TenantInfo there.
    bound = as_tenant(tenant if tenant is not None else get_current_tenant())
    if bound is None:
        raise TenantNotSetError(
            f"{what} needs a tenant: none is bound. Call it inside the tenant's request, "
            "live-view event or job, or inside tenant_context(<id>), or pass tenant=."
        )
    return bound


def tenant_group(name: str, tenant: TenantInfo | str | int | None = None) -> str:
    """The channels group name of ``name`` in ``tenant`` (default: the bound
    tenant; ``TenantNotSetError`` when none is bound, ``InvalidTenantId`` for
    a bad id).

    Valid for every channel layer (ASCII letters, digits, ``-``, ``_``,
    ``.``; under 100 characters) and injective: two different
    ``(tenant, name)`` pairs never share a group. Readable when it fits
    (``tenantry.4.acme.n.chat``: the id's length, the id, the name); a name
    with other characters, or too long, is replaced by its SHA-256
    (``tenantry.4.acme.h.<40 hex>``), and a pair that still does not fit
    is hashed whole (``tenantry.x.<64 hex>``).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"tenant_group() needs a non-empty str group name, got {name!r}")
    tenant_id = _group_tenant(tenant, f"tenant_group({name!r})").id
    head = f"{GROUP_PREFIX}{len(tenant_id)}.{tenant_id}."
    if _GROUP_SAFE.fullmatch(name) and len(head) + 2 + len(name) <= GROUP_NAME_LIMIT:
        return f"{head}n.{name}"
    if len(head) + 2 + _NAME_HASH_CHARS <= GROUP_NAME_LIMIT:
        return f"{head}h.{_hexdigest(name)[:_NAME_HASH_CHARS]}"
    return f"{GROUP_PREFIX}x.{_hexdigest(tenant_id, name)}"


def _layer(alias: str) -> Any:
    from channels.layers import get_channel_layer

    layer = get_channel_layer(alias)
    if layer is None:
        raise RuntimeError(
            f"no channel layer {alias!r}: set CHANNEL_LAYERS in settings to broadcast"
        )
    return layer


async def agroup_send(name: str, message: dict[str, Any], *, using: str = "default") -> None:
    """Send ``message`` to the bound tenant's group ``name`` (consumers join
    it with ``channel_layer.group_add(tenant_group(name), channel_name)``).
    ``TenantNotSetError`` when no tenant is bound: a broadcast never goes
    to a group of no tenant by accident."""
    group = tenant_group(name)
    await _layer(using).group_send(group, message)


def group_send(name: str, message: dict[str, Any], *, using: str = "default") -> None:
    """:func:`agroup_send` for synchronous code (views, jobs, threads)."""
    group = tenant_group(name)
    async_to_sync(_layer(using).group_send)(group, message)


#: djust's prefix of the PostgreSQL NOTIFY groups (``djust_db_notify_<channel>``).
DB_NOTIFY_PREFIX = "djust_db_notify_"
#: The key of a NOTIFY payload that names the tenant it was raised in:
#: ``send_pg_notify`` sets it from the bound tenant (replacing any value the
#: caller's payload had) and the listener takes it out again.
NOTIFY_TENANT_KEY = "tenantry_tenant"


def presence_group(room: str, tenant: TenantInfo | str | int) -> str:
    """The channels group of presence room ``room`` of ``tenant``: where
    djust's presence events and tenantry's presence diffs of that room go."""
    return tenant_group(f"presence:{room}", tenant)


#: The head of a shared live room's group: ``r`` is neither a length (the
#: second part of :func:`tenant_group`'s names) nor ``x``, so no tenant's
#: group name can be one.
SHARED_ROOM_GROUP_PREFIX = f"{GROUP_PREFIX}r."


def shared_room_group(owner: str, room: str) -> str:
    """The channels group of the shared live room ``room`` hosted by
    ``owner`` (``tenantry.shared_rooms``, docs/collaboration.md#live-rooms):
    ``tenantry.r.<SHA-256 of (owner, room)>``. Apart from every group
    :func:`tenant_group` names (its second part is a length or ``x``), and
    from every other owner's rooms."""
    owner = _group_tenant(owner, f"shared_room_group({room!r})").id
    return f"{SHARED_ROOM_GROUP_PREFIX}{_hexdigest(owner, room)}"


def db_notify_group(channel: str, tenant: TenantInfo | str | int | None) -> str:
    """The group of NOTIFY channel ``channel`` for ``tenant``'s views:
    djust's own ``djust_db_notify_<channel>`` for views (and notifications)
    without a tenant, else that name in ``tenant`` (:func:`tenant_group`)."""
    name = DB_NOTIFY_PREFIX + channel
    tenant = as_tenant(tenant)
    return name if tenant is None else tenant_group(name, tenant)


def tag_notify_payload(payload: Any) -> Any:
    """``payload`` of a NOTIFY sent now: a copy naming the bound tenant
    (:data:`NOTIFY_TENANT_KEY`), or without the key when none is bound, so
    no payload names a tenant other than the one it was raised in. A
    payload that is not a dict cannot carry it: refused while a tenant is
    bound (``TypeError``)."""
    tenant = get_current_tenant()
    if isinstance(payload, dict):
        tagged = {key: value for key, value in payload.items() if key != NOTIFY_TENANT_KEY}
        if tenant is not None:
            tagged[NOTIFY_TENANT_KEY] = tenant.id
        return tagged
    if tenant is not None:
        raise TypeError(
            f"send_pg_notify() payload must be a dict while a tenant is bound (got "
            f"{type(payload).__name__}): tenantry adds the tenant to it so only "
            f"{tenant.id!r}'s views receive it"
        )
    return payload


def notified_tenant(payload: Any) -> tuple[Any, TenantInfo | None]:
    """A NOTIFY payload as the views receive it and the tenant it names
    (None: none). An id that is not a tenant id raises."""
    if not isinstance(payload, dict) or NOTIFY_TENANT_KEY not in payload:
        return payload, None
    payload = dict(payload)
    named = payload.pop(NOTIFY_TENANT_KEY)
    if not isinstance(named, (str, int)) or isinstance(named, bool):
        raise ValueError(f"{NOTIFY_TENANT_KEY}={named!r} is not a tenant id")
    return payload, as_tenant(named)
