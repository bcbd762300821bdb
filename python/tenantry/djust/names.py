"""The djust private names tenantry relies on, and their check against the
installed djust.

djust has no public API for what tenantry does inside it (binding its tenant
variable, gating its consumer, naming its groups, being its presence and
state backend). Every private name of djust that ``tenantry.djust`` reads,
replaces, wraps or implements is listed here, once, with what tenantry
expects of it. :func:`problems` compares the list with the installed djust:
``manage.py check`` reports each missing or changed name
(``tenantry.W112``, docs/configuration.md), and
``scripts/djust_compat.py --names`` is the upgrade guard (run it against a
new djust before raising the pin).

Two kinds of entry:

* an **attribute** (``module`` + dotted ``attribute``): imported and looked
  up; missing, or no longer the kind listed (a coroutine function, a plain
  function, a ``frozenset``, a ``ContextVar``, a class, ...), is a problem;
* a **name djust uses by string** (``kind="source"``): a hook djust calls on
  tenantry's views (``_ensure_tenant``), an attribute djust sets on its own
  objects that tenantry reads (``_ws_consumer``), a marker djust checks
  (``_djust_framework_derived``). These cannot be looked up on a class, so
  the check reads the module's source for the name: gone from it is a
  problem.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = ["PRIVATE_NAMES", "PrivateName", "problems"]

#: What an attribute must be, by the ``kind`` of its entry.
_KINDS: dict[str, Any] = {
    "coroutine": inspect.iscoroutinefunction,
    "function": lambda value: callable(value) and not inspect.iscoroutinefunction(value),
    "class": inspect.isclass,
    "frozenset": lambda value: isinstance(value, frozenset),
    "contextvar": lambda value: isinstance(value, ContextVar),
    "object": lambda value: True,
}


@dataclass(frozen=True)
class PrivateName:
    """One djust name tenantry relies on: ``module``'s ``attribute``
    (dotted: ``Class.method``), what it must be (``kind``: a key of
    ``_KINDS``, or ``"source"`` for a name djust uses by string, looked for
    in ``module``'s source), and the ``tenantry.djust`` module that uses it."""

    module: str
    attribute: str
    kind: str
    used_by: str

    @property
    def path(self) -> str:
        return f"{self.module}.{self.attribute}"


def _names(used_by: str, kind: str, module: str, *attributes: str) -> list[PrivateName]:
    return [PrivateName(module, attribute, kind, used_by) for attribute in attributes]


#: Every djust private name tenantry relies on (and the few public ones it
#: replaces or wraps, whose shape it counts on).
PRIVATE_NAMES: tuple[PrivateName, ...] = (
    # The tenant variable tenantry shares with djust (tenantry.djust.context).
    *_names("tenantry.djust.context", "contextvar", "djust.tenants.middleware", "_current_tenant"),
    # The live gates (tenantry.djust.live).
    *_names(
        "tenantry.djust.live",
        "coroutine",
        "djust.websocket_utils",
        "_validate_event_security",
    ),
    *_names("tenantry.djust.live", "coroutine", "djust.runtime", "_validate_event_security"),
    *_names("tenantry.djust.live", "coroutine", "djust.websocket", "_validate_event_security"),
    *_names(
        "tenantry.djust.live",
        "coroutine",
        "djust.runtime",
        "ViewRuntime._check_auth",
        "ViewRuntime.dispatch_message",
        "ViewRuntime.dispatch_url_change",
        "ViewRuntime._execute_async_task",
        "ViewRuntime._render_async_result",
        "SSESessionTransport.send",
    ),
    *_names(
        "tenantry.djust.live",
        "coroutine",
        "djust.websocket",
        "LiveViewConsumer.dispatch",
        "LiveViewConsumer.receive",
        "LiveViewConsumer._send_frame",
        "LiveViewConsumer._reauth_legacy_server_turn",
    ),
    *_names("tenantry.djust.live", "source", "djust.runtime", "_session", "view_instance"),
    # The tenant's channels groups (tenantry.djust.broadcasts).
    *_names("tenantry.djust.broadcasts", "function", "djust.push", "view_group_name"),
    *_names(
        "tenantry.djust.broadcasts",
        "function",
        "djust.presence",
        "PresenceManager.presence_group_name",
        "PresenceMixin._broadcast_presence_change",
    ),
    *_names("tenantry.djust.broadcasts", "function", "djust.db", "send_pg_notify"),
    *_names("tenantry.djust.broadcasts", "function", "djust.db.decorators", "send_pg_notify"),
    *_names(
        "tenantry.djust.broadcasts",
        "coroutine",
        "djust.db.notifications",
        "PostgresNotifyListener._dispatch",
    ),
    *_names(
        "tenantry.djust.broadcasts",
        "coroutine",
        "djust.runtime",
        "WSConsumerTransport._join_listen_channels",
        "WSConsumerTransport._leave_view_groups",
    ),
    *_names(
        "tenantry.djust.broadcasts", "coroutine", "djust.websocket", "LiveViewConsumer.disconnect"
    ),
    *_names(
        "tenantry.djust.broadcasts",
        "source",
        "djust.websocket",
        "_view_group",
        "_presence_group",
        "_db_notify_channels",
        "_deferred_pushes",
        "_view_path",
        "_runtime",
    ),
    *_names("tenantry.djust.broadcasts", "source", "djust.runtime", "_consumer", "_ws_consumer"),
    *_names(
        "tenantry.djust.broadcasts", "source", "djust.mixins.notifications", "_listen_channels"
    ),
    *_names("tenantry.djust.broadcasts", "source", "djust.presence", "_presence_tracked"),
    # djust's db_notify group names (djust_db_notify_<channel>): kept for views
    # without a tenant, prefixed for a tenant's (tenantry.groups.db_notify_group).
    *_names("tenantry.groups", "source", "djust.db.notifications", "djust_db_notify_"),
    # Presence: tenantry as djust's backend (tenantry.djust.presence).
    *_names("tenantry.djust.presence", "class", "djust.backends.base", "PresenceBackend"),
    # djust's own in-memory backends: the adapters are them, for every call
    # that is not a tenantry tenant's (apps without tenantry's features).
    *_names("tenantry.djust.presence", "class", "djust.backends.memory", "InMemoryPresenceBackend"),
    *_names("tenantry.djust.state", "class", "djust.state_backends.memory", "InMemoryStateBackend"),
    *_names("tenantry.djust.presence", "object", "djust.backends.registry", "_registry._backend"),
    *_names(
        "tenantry.djust.presence",
        "function",
        "djust.presence",
        "PresenceMixin._restore_presence",
        "PresenceMixin._refresh_online_count",
    ),
    # Saved view state: tenantry as djust's backend (tenantry.djust.state).
    *_names("tenantry.djust.state", "class", "djust._rust", "RustLiveView"),
    *_names(
        "tenantry.djust.state",
        "object",
        "djust.state_backends.registry",
        "_registry._backend",
    ),
    *_names("tenantry.djust.state", "function", "djust.state_backends.registry", "_registry.reset"),
    # The view hooks djust calls on TenantMixin: their rules and djust's marker
    # (tenantry.djust.view_hooks), the hook methods on the mixin itself
    # (tenantry.mixins: they stay there, off djust's per-render MRO walk);
    # and what djust's checks are told (tenantry.djust.auth).
    *_names("tenantry.djust.auth", "frozenset", "djust.auth.core", "_NON_ACCESS_MIXINS"),
    *_names("tenantry.djust.view_hooks", "source", "djust.runtime", "_tenant"),
    *_names("tenantry.djust.view_hooks", "source", "djust.presence", "get_presence_key"),
    *_names(
        "tenantry.djust.view_hooks", "source", "djust.mixins.context", "_djust_framework_derived"
    ),
    *_names("tenantry.mixins", "source", "djust.runtime", "_ensure_tenant"),
    *_names(
        "tenantry.mixins",
        "source",
        "djust.mixins.context",
        "_context_processor_keys",
        "_apply_context_processors",
    ),
    *_names(
        "tenantry.mixins",
        "source",
        "djust._tenant_state",
        "_djust_render_only_context_keys",
        "get_state_key_prefix",
    ),
)


def _source_has(module: str, name: str) -> bool | None:
    """Whether ``module``'s source uses the identifier ``name`` (None: no
    module, or no source to read)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        with open(spec.origin, encoding="utf-8") as source:
            text = source.read()
    except OSError:
        return None
    return re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", text) is not None


def _lookup(module: str, attribute: str) -> tuple[bool, Any]:
    """``(found, value)`` of ``module.attribute`` (dotted)."""
    found: Any = importlib.import_module(module)
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            return False, None
    return True, found


def _problem(name: PrivateName) -> str | None:
    if name.kind == "source":
        present = _source_has(name.module, name.attribute)
        if present:
            return None
        where = "its source cannot be read" if present is None else "it no longer uses it"
        return (
            f"djust {name.module} no longer has {name.attribute!r} ({where}); "
            f"{name.used_by} relies on it"
        )
    try:
        found, value = _lookup(name.module, name.attribute)
    except ImportError as exc:
        return f"djust has no module {name.module} ({exc}); {name.used_by} relies on {name.path}"
    if not found:
        return f"djust has no {name.path}; {name.used_by} relies on it"
    if not _KINDS[name.kind](value):
        return (
            f"djust's {name.path} changed: tenantry expects a {name.kind}, found "
            f"{type(value).__name__}; {name.used_by} relies on it"
        )
    return None


def djust_installed() -> bool:
    return importlib.util.find_spec("djust") is not None


def problems(names: tuple[PrivateName, ...] = PRIVATE_NAMES) -> list[str]:
    """One sentence per name of ``names`` the installed djust no longer has
    as tenantry expects it (empty when all are there, or djust is not
    installed)."""
    if not djust_installed():
        return []
    return [problem for problem in map(_problem, names) if problem is not None]
