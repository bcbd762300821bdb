"""djust's channels groups, scoped by tenant (docs/broadcasts.md).

djust names its groups itself and shares them between tenants. Installed
(:func:`install_djust_broadcasts`, run by ``tenantry.djust.install()``),
tenantry puts the views of a tenant view class in their tenant's groups
(``tenantry.groups``), sends NOTIFYs to the tenant they were raised in, and
moves a live view's groups when it switches tenant (:func:`move_live_view`).
:func:`djust_group_problems` reads djust's source for every group it joins
or sends to (``tenantry.E111``). ``tenantry.channels`` re-exports the public
names.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import importlib.util
import json
import logging
import pathlib
import threading
from functools import lru_cache
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.utils.module_loading import import_string

from .._core import TenantInfo, split_tenant_scope
from ..context import _current, as_tenant, get_current_tenant, tenant_context
from ..groups import (
    DB_NOTIFY_PREFIX,
    db_notify_group,
    notified_tenant,
    presence_group,
    tag_notify_payload,
    tenant_group,
)
from ..presence import get_presence_router

try:
    from channels.layers import get_channel_layer
    from djust import db as djust_db
    from djust import push, runtime, websocket
    from djust.db import decorators as notify_decorators
    from djust.db.notifications import PostgresNotifyListener
    from djust.presence import PresenceManager, PresenceMixin
except ImportError:  # djust not installed (names.problems() reports a missing module)
    djust_db = push = runtime = websocket = notify_decorators = None
    PostgresNotifyListener = PresenceManager = PresenceMixin = None

__all__ = [
    "PROCESS_WIDE_GROUPS",
    "REPLACED_SENDERS",
    "SCOPED_NAMERS",
    "broadcast_presence_change_in_view_tenant",
    "dispatch_notification",
    "djust_group_problems",
    "install_djust_broadcasts",
    "join_listen_channels",
    "move_live_view",
    "scoped_presence_group_name",
    "scoped_view_group_name",
    "send_pg_notify_in_tenant",
    "uninstall_djust_broadcasts",
]

logger = logging.getLogger("tenantry.channels")  # the public module's name, as before


# -- djust's groups -------------------------------------------------------------
#
# djust names its groups itself: ``djust.push.view_group_name(view_path)`` for
# ``push_to_view`` (and ``PresenceMixin``'s "presence changed" push), joined by
# every live view of that class; ``PresenceManager.presence_group_name(key)``
# for presence events; ``djust_db_notify_<channel>`` for PostgreSQL NOTIFY
# (``listen()``); ``djust_hotreload`` for the development server's reloads.
# The first three are shared by every tenant in djust. Installed, tenantry
# puts the views of a tenant view class (``TenantMixin``) in their tenant's
# groups: djust binds the view's tenant before it joins the view and presence
# groups, the db_notify groups are joined for the view's own tenant, and a
# push names the group of the tenant bound when it is sent (a request, a
# live-view event, a job that carried its tenant), a NOTIFY the tenant
# ``send_pg_notify`` was called in. Sent with no tenant, they go to the views
# that have none; never to a tenant's. ``djust_hotreload`` carries no tenant's
# data (a file name; each view re-renders itself) and stays process-wide.
# :func:`djust_group_problems` reads djust's source for every group it joins
# or sends to, so a group djust adds is reported, not missed.


_djust_lock = threading.Lock()
_djust_originals: dict[str, Any] = {}

#: djust's groups that carry no tenant's data, process-wide by design.
PROCESS_WIDE_GROUPS = frozenset({"djust_hotreload"})
#: Where a consumer keeps the db_notify groups tenantry joined for it:
#: channel → group.
_NOTIFY_GROUPS = "_tenantry_notify_groups"


@lru_cache(maxsize=1024)
def _is_tenant_view(view_path: str) -> bool:
    """Whether the view class at ``view_path`` is tenant-aware. A path that
    does not import counts as tenant-aware: scoped is the safe side."""
    try:
        view_class = import_string(view_path)
    except Exception:
        return True
    return hasattr(view_class, "_ensure_tenant")


def scoped_view_group_name(view_path: str) -> str:
    """djust's ``view_group_name``, in the bound tenant for tenant views."""
    original = _djust_originals["view_group_name"](view_path)
    tenant = get_current_tenant()
    if tenant is None or not _is_tenant_view(view_path):
        return original
    return tenant_group(original, tenant)


def scoped_presence_group_name(presence_key: str) -> str:
    """djust's ``presence_group_name``, in the key's tenant for a
    ``tenant:<id>:`` key. The key is routed by the presence router's rule
    for caller-named keys: its tenant must be the bound one, and with no
    tenant bound a ``tenant:`` key raises ``InvalidKey`` (djust's mount
    then joins no presence group), so a socket without a tenant never
    follows a tenant's room."""
    original = _djust_originals["presence_group_name"](presence_key)
    # djust's presence keys of a tenant view: ``tenant:<id>:<key>``, both parts set.
    scoped = split_tenant_scope(presence_key)
    if scoped is None or not all(scoped):
        return original
    tenant_id, room = get_presence_router().resolve(presence_key)
    return presence_group(room, tenant_id)


def broadcast_presence_change_in_view_tenant(view: Any) -> None:
    """djust's ``PresenceMixin._broadcast_presence_change`` (a "presence
    changed" ``push_to_view``), sent with a tenant view's own tenant bound:
    djust also sends it on disconnect, after it unbound the tenant, and a
    view may list ``PresenceMixin`` before ``TenantMixin``."""
    original = _djust_originals["_broadcast_presence_change"]
    if not hasattr(view, "_ensure_tenant"):
        return original(view)
    with tenant_context(getattr(view, "_tenant", None), must_exist=False):  # admitted on mount
        return original(view)


# -- PostgreSQL NOTIFY (djust.db) ----------------------------------------------------


def _view_tenant(view: Any) -> TenantInfo | None:
    """The tenant whose groups ``view`` joins: a tenant view's (``_tenant``:
    tenantry's, or djust.tenants' own), else None."""
    try:
        return as_tenant(getattr(view, "_tenant", None))
    except Exception:  # not a tenant (an app's attribute of that name)
        return None


#: The consumer attribute holding (a weak reference to) the view that
#: follows presence on the socket (``TenantPresenceMixin.subscribe_presence``).
PRESENCE_VIEW = "_tenantry_presence_view"


async def release_replaced_presence(consumer: Any, view: Any) -> None:
    """``view`` is now the socket's view: a previous view that held
    presence on the socket (replaced by a re-mount or a ``live_redirect``,
    which djust does without untracking it; djust's disconnect untracks
    only the socket's current view) leaves its room now, so its
    connection, its expiry-sweep follow and its shared room's watch do not
    outlive it. O(1) when the view is unchanged (every event turn)."""
    ref = getattr(consumer, PRESENCE_VIEW, None)
    previous = ref() if ref is not None else None
    if previous is None or previous is view:
        return
    setattr(consumer, PRESENCE_VIEW, None)
    try:
        await sync_to_async(previous.untrack_presence)()
    except Exception:  # like djust's disconnect: cleanup never breaks the mount
        logger.warning("presence of a replaced view could not be untracked", exc_info=True)


async def join_listen_channels(transport: Any, view: Any) -> None:
    """djust's ``WSConsumerTransport._join_listen_channels``, joining each
    channel's group of the view's tenant (:func:`db_notify_group`). The
    consumer remembers the groups it joined, so leaving (a re-mount, a
    disconnect, a tenant switch) leaves exactly those. djust calls it as
    each view mounts on the socket (and after each event turn), so this is
    also where a replaced view's presence is released
    (:func:`release_replaced_presence`)."""
    consumer = transport._consumer
    await release_replaced_presence(consumer, view)
    listen_channels = getattr(view, "_listen_channels", None)
    if not listen_channels:
        return
    joined = getattr(consumer, "_db_notify_channels", None)
    if not isinstance(joined, set):
        joined = consumer._db_notify_channels = set()
    groups = _notify_groups(consumer)
    tenant = _view_tenant(view)
    for channel in sorted(set(listen_channels) - joined):
        group = db_notify_group(channel, tenant)
        try:
            await consumer.channel_layer.group_add(group, consumer.channel_name)
        except Exception as exc:  # like djust: retried at the next turn
            logger.warning("could not join the db_notify group of %s: %s", channel, exc)
            continue
        joined.add(channel)
        groups[channel] = group


def _notify_groups(consumer: Any) -> dict[str, str]:
    groups = consumer.__dict__.get(_NOTIFY_GROUPS)
    if groups is None:
        groups = consumer.__dict__[_NOTIFY_GROUPS] = {}
    return groups


async def _leave_notify_groups(consumer: Any) -> None:
    groups = consumer.__dict__.pop(_NOTIFY_GROUPS, None) or {}
    layer = getattr(consumer, "channel_layer", None)
    if layer is None:
        return
    for group in groups.values():
        try:
            await layer.group_discard(group, consumer.channel_name)
        except Exception as exc:  # like djust: never fails the disconnect
            logger.warning("could not leave channel group %s: %s", group, exc)


def _leaving_notify_groups(original: Any) -> Any:
    """djust's ``disconnect`` / ``_leave_view_groups``, first leaving the
    db_notify groups tenantry joined (djust leaves its own names)."""

    async def leave(self: Any, *args: Any, **kwargs: Any) -> Any:
        await _leave_notify_groups(getattr(self, "_consumer", self))
        return await original(self, *args, **kwargs)

    leave.__wrapped__ = original  # type: ignore[attr-defined]
    leave.__name__ = original.__name__
    leave.__doc__ = original.__doc__
    return leave


def send_pg_notify_in_tenant(channel: str, payload: Any) -> None:
    """djust's ``send_pg_notify``, its payload naming the bound tenant
    (:func:`tag_notify_payload`)."""
    return _djust_originals["send_pg_notify"](channel, tag_notify_payload(payload))


async def dispatch_notification(listener: Any, channel: str, raw_payload: str) -> None:
    """djust's ``PostgresNotifyListener._dispatch``: the notification goes to
    the db_notify group of the tenant its payload names, and one that names
    none to the views without a tenant."""
    try:
        payload: Any = json.loads(raw_payload)
    except (ValueError, TypeError):  # like djust: a raw NOTIFY payload
        payload = {"raw": raw_payload}
    try:
        payload, tenant = notified_tenant(payload)
    except Exception as exc:
        logger.warning("NOTIFY on %s dropped: %s", channel, exc)
        return
    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(
        db_notify_group(channel, tenant),
        {"type": "db_notify", "channel": channel, "payload": payload},
    )


# -- a live view that switches tenant --------------------------------------------------


def _page_consumer(view: Any) -> Any:
    """The WebSocket consumer whose page view ``view`` is (its groups are
    the view's), else None (SSE, HTTP, an embedded view)."""
    consumer = getattr(view, "_ws_consumer", None)
    if consumer is None or getattr(consumer, "channel_layer", None) is None:
        return None
    if getattr(consumer, "view_instance", None) is view:
        return consumer
    runtime = getattr(consumer, "_runtime", None)
    return consumer if getattr(runtime, "view_instance", None) is view else None


def move_live_view(
    view: Any, old: TenantInfo | None, new: TenantInfo | None, assign: Any, *, join: bool = True
) -> None:
    """Switch live ``view`` from tenant ``old`` to ``new``: ``assign()``
    sets the view's tenant. Around it, everything the socket holds keyed on
    ``old`` is let go (its presence tracked in ``old``'s room, its view,
    presence and db_notify groups, the pushes queued for it), the groups of
    ``new`` are joined (the view and presence groups djust joins at a mount,
    the db_notify groups of the channels it listens on), and ``new`` is bound
    in the running turn. The view is not tracked in ``new``'s room: it calls
    ``track_presence()`` again if it should be. ``join=False`` (a view that
    refused its tenant) joins nothing.

    Synchronous (an event handler's thread); from the event loop's own
    thread it raises ``RuntimeError`` before anything changes."""
    consumer = _page_consumer(view)
    if consumer is None:
        assign()
        _rebind(view, old, new)
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "set_tenant() on a live WebSocket view must run in a synchronous event handler "
            "(djust runs those in a thread): its channel groups move with it"
        )
    if getattr(view, "_presence_tracked", False):
        view.untrack_presence()  # in the old tenant's room (the key is still old's)
    if hasattr(view, "_presence_users"):  # TenantPresenceMixin: stop following old's room
        view._presence_users = None
        view._presence_room = None
    layer = consumer.channel_layer
    old_groups = [g for g in (consumer._view_group, consumer._presence_group) if g]
    old_groups += _notify_groups(consumer).values()
    for group in old_groups:
        async_to_sync(layer.group_discard)(group, consumer.channel_name)
    consumer._view_group = consumer._presence_group = None
    consumer.__dict__.pop(_NOTIFY_GROUPS, None)
    consumer._db_notify_channels = set()
    queued = getattr(consumer, "_deferred_pushes", None)
    if queued is not None:
        # Sent to the old tenant's groups. Emptied, not cancelled: this runs
        # in a handler's thread, and the drain (which may be running this
        # very turn) stops by itself at an empty queue.
        queued.clear()
    assign()
    _rebind(view, old, new)
    if join:
        _join_view_groups(consumer, view, new)


def _join_view_groups(consumer: Any, view: Any, tenant: TenantInfo | None) -> None:
    """The groups djust's mount joins, for ``tenant`` (bound while they are
    named, as at a mount)."""
    layer = consumer.channel_layer
    with tenant_context(tenant, must_exist=False):  # admitted by the switch
        view_group = push.view_group_name(getattr(consumer, "_view_path", "") or "")
        async_to_sync(layer.group_add)(view_group, consumer.channel_name)
        consumer._view_group = view_group
        if hasattr(view, "get_presence_key"):
            try:
                presence = PresenceManager.presence_group_name(view.get_presence_key())
            except Exception as exc:  # like djust's mount: no presence group
                logger.warning("no presence group after the tenant switch: %s", exc)
            else:
                async_to_sync(layer.group_add)(presence, consumer.channel_name)
                consumer._presence_group = presence
        groups = _notify_groups(consumer)
        joined: set[str] = set()
        for channel in sorted(getattr(view, "_listen_channels", None) or ()):
            group = db_notify_group(channel, tenant)
            async_to_sync(layer.group_add)(group, consumer.channel_name)
            groups[channel] = group
            joined.add(channel)
        consumer._db_notify_channels = joined


def _rebind(view: Any, old: TenantInfo | None, new: TenantInfo | None) -> None:
    """Bind ``new`` in the running turn when it ran as the view's ``old``
    tenant, so the rest of the handler and its render see the new one. The
    turn restores its own binding when it ends (djust's event binding, the
    mixin's HTTP dispatch); a view with no tenant before is rebound only on
    a live socket, where that holds for every turn."""
    if _current.get() != old:
        return
    if old is None and getattr(view, "_ws_consumer", None) is None:
        return
    _current.set(new)


# -- the installation ----------------------------------------------------------------


def install_djust_broadcasts() -> bool:
    """Scope djust's push, presence and db_notify groups by tenant (see
    above). Returns whether djust is there; safe to call again."""
    if websocket is None:  # djust not installed
        return False
    with _djust_lock:
        if _djust_originals:
            return True
        transport = runtime.WSConsumerTransport
        consumer = websocket.LiveViewConsumer
        _djust_originals.update(
            view_group_name=push.view_group_name,
            presence_group_name=PresenceManager.presence_group_name,
            _broadcast_presence_change=PresenceMixin._broadcast_presence_change,
            send_pg_notify=notify_decorators.send_pg_notify,
            _dispatch=PostgresNotifyListener._dispatch,
            _join_listen_channels=transport._join_listen_channels,
            _leave_view_groups=transport._leave_view_groups,
            disconnect=consumer.disconnect,
        )
        push.view_group_name = scoped_view_group_name
        PresenceManager.presence_group_name = staticmethod(scoped_presence_group_name)
        PresenceMixin._broadcast_presence_change = broadcast_presence_change_in_view_tenant
        notify_decorators.send_pg_notify = send_pg_notify_in_tenant
        djust_db.send_pg_notify = send_pg_notify_in_tenant
        PostgresNotifyListener._dispatch = dispatch_notification
        transport._join_listen_channels = join_listen_channels
        transport._leave_view_groups = _leaving_notify_groups(transport._leave_view_groups)
        consumer.disconnect = _leaving_notify_groups(consumer.disconnect)
    return True


def uninstall_djust_broadcasts() -> None:
    """Give djust its own group names back."""
    if websocket is None:
        return
    with _djust_lock:
        if not _djust_originals:
            return
        originals = dict(_djust_originals)
        _djust_originals.clear()
        push.view_group_name = originals["view_group_name"]
        PresenceManager.presence_group_name = staticmethod(originals["presence_group_name"])
        PresenceMixin._broadcast_presence_change = originals["_broadcast_presence_change"]
        notify_decorators.send_pg_notify = originals["send_pg_notify"]
        djust_db.send_pg_notify = originals["send_pg_notify"]
        PostgresNotifyListener._dispatch = originals["_dispatch"]
        runtime.WSConsumerTransport._join_listen_channels = originals["_join_listen_channels"]
        runtime.WSConsumerTransport._leave_view_groups = originals["_leave_view_groups"]
        websocket.LiveViewConsumer.disconnect = originals["disconnect"]


# -- what djust's groups are: read from its source --------------------------------------

#: djust's functions that name a group, and tenantry's versions of them.
SCOPED_NAMERS = {
    "view_group_name": "scoped_view_group_name",
    "presence_group_name": "scoped_presence_group_name",
}
#: djust's functions tenantry replaces whole, which name djust's db_notify
#: groups themselves (``<module>:<qualified name>``).
REPLACED_SENDERS = frozenset(
    {
        "djust.runtime:WSConsumerTransport._join_listen_channels",
        "djust.db.notifications:PostgresNotifyListener._dispatch",
    }
)
_GROUP_CALLS = frozenset({"group_add", "group_send"})


def djust_group_problems() -> list[str]:
    """Every channels group djust joins (``group_add``) or sends to
    (``group_send``), read from djust's source, that tenantry does not
    scope: one sentence each, naming the file and line. A group is scoped
    when it is named by a djust function tenantry replaced
    (:data:`SCOPED_NAMERS`), inside a djust function tenantry replaced whole
    (:data:`REPLACED_SENDERS`), or is process-wide by design
    (:data:`PROCESS_WIDE_GROUPS`). Empty without djust."""
    spec = importlib.util.find_spec("djust")
    if spec is None or not spec.submodule_search_locations:
        return []
    found = _installed_problems()
    root = pathlib.Path(next(iter(spec.submodule_search_locations)))
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent)
        if "tests" in relative.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if "group_add" not in text and "group_send" not in text:
            continue
        module = ".".join(relative.with_suffix("").parts)
        try:
            tree = ast.parse(text)
        except SyntaxError:
            found.append(f"{relative}: tenantry cannot read it for the channels groups it uses")
            continue
        found += _module_group_problems(tree, module, str(relative))
    return found


def _installed_problems() -> list[str]:
    """The replacements the source check counts on, where they should be."""
    expected = {
        "djust.push.view_group_name": scoped_view_group_name,
        "djust.presence.PresenceManager.presence_group_name": scoped_presence_group_name,
        "djust.db.decorators.send_pg_notify": send_pg_notify_in_tenant,
        "djust.db.notifications.PostgresNotifyListener._dispatch": dispatch_notification,
        "djust.runtime.WSConsumerTransport._join_listen_channels": join_listen_channels,
    }
    return [
        f"{path} is not tenantry's: its groups are not scoped by tenant "
        "(tenantry.channels.install_djust_broadcasts() did not run, or djust moved it)"
        for path, ours in expected.items()
        if _resolve(path) is not ours
    ]


def _resolve(path: str) -> Any:
    """The object at dotted ``path`` (a module, then attributes), or None."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name, None)
        return found
    return None


def _module_group_problems(tree: Any, module: str, where: str) -> list[str]:
    attributes = _attribute_assignments(tree)
    found = []

    def visit(node: Any, scope: list[str], function: Any) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = child if not isinstance(child, ast.ClassDef) else function
                visit(child, [*scope, child.name], inner)
                continue
            call = _group_call(child)
            if call is not None and child.args:
                qualname = f"{module}:{'.'.join(scope)}"
                reason = _unscoped(child.args[0], function, attributes, qualname)
                if reason is not None:
                    found.append(
                        f"djust {where}:{child.lineno} ({'.'.join(scope) or '<module>'}) "
                        f"{call}s to {reason}, a group tenantry does not scope by tenant"
                    )
            visit(child, scope, function)

    visit(tree, [], None)
    return found


def _group_call(node: Any) -> str | None:
    """``group_add`` / ``group_send`` when ``node`` calls one, directly
    (``layer.group_send(...)``) or through an adapter
    (``async_to_sync(layer.group_send)(...)``), else None."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Call) and func.args:  # async_to_sync(layer.group_send)(...)
        func = func.args[0]
    if isinstance(func, ast.Attribute) and func.attr in _GROUP_CALLS:
        return func.attr
    return None


def _attribute_assignments(tree: Any) -> dict[str, list[Any]]:
    """``<anything>.<attr> = <value>`` in a module: attr → values."""
    found: dict[str, list[Any]] = {}
    for node in ast.walk(tree):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign) and node.value is not None
            else []
        )
        for target in targets:
            if isinstance(target, ast.Attribute):
                found.setdefault(target.attr, []).append(node.value)
    return found


def _unscoped(
    expr: Any, function: Any, attributes: dict[str, list[Any]], qualname: str, depth: int = 0
) -> str | None:
    """Why the group ``expr`` names is not scoped (a description of it), or
    None when it is."""
    if depth > 5:
        return ast.unparse(expr)
    if isinstance(expr, ast.Constant):
        if expr.value is None or expr.value in PROCESS_WIDE_GROUPS:
            return None
        return repr(expr.value)
    if isinstance(expr, ast.JoinedStr):
        head = expr.values[0] if expr.values else None
        prefix = head.value if isinstance(head, ast.Constant) else ""
        if prefix == DB_NOTIFY_PREFIX and qualname in REPLACED_SENDERS:
            return None
        return ast.unparse(expr)
    if isinstance(expr, ast.Call):
        func = expr.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        return None if name in SCOPED_NAMERS else ast.unparse(expr)
    if isinstance(expr, ast.Name) and function is not None:
        values = [
            node.value
            for node in ast.walk(function)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == expr.id for t in node.targets)
        ]
        if not values:
            return ast.unparse(expr)
        for value in values:
            reason = _unscoped(value, function, attributes, qualname, depth + 1)
            if reason is not None:
                return reason
        return None
    if isinstance(expr, ast.Attribute) and expr.attr in attributes:
        for value in attributes[expr.attr]:
            reason = _unscoped(value, function, attributes, qualname, depth + 1)
            if reason is not None:
                return reason
        return None
    return ast.unparse(expr)
