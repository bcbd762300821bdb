"""What djust reads on ``TenantMixin`` views by name: its "not context"
marker, the tenant in the template context, the presence key, the
saved-state key prefix.

djust walks every attribute of every class of a view on each render to find
template context and state to save; an attribute carrying djust's
``_djust_framework_derived`` marker is dropped on the first test
(:func:`not_context`, :class:`derived_property`). djust's presence groups
are named from ``get_presence_key()``: a tenant view's is prefixed
``tenant:<id>:`` exactly once, whichever class of the view wins the MRO
(:func:`tenant_scoped_presence_key`). The hooks themselves stay methods of
``tenantry.mixins.TenantMixin`` (djust calls them on the view on every
render, and a base class of their own would add a class to the MRO djust
walks each time); the rules they follow are here. The names are in
``tenantry.djust.names``.
"""

from __future__ import annotations

import functools
from typing import Any

from .. import _core, conf

#: ``tenant:<id>:`` of a tenant id (the rule is the core's): a view's keys
#: need it several times per request and per event, and a cached answer
#: spares each a call into the extension (docs/performance-design.md#crossings-per-request).
tenant_scope = functools.lru_cache(maxsize=4096)(_core.tenant_scope)

__all__ = [
    "DERIVED",
    "SCOPED",
    "context_key",
    "derived_property",
    "live_consumer",
    "not_context",
    "presence_key",
    "state_key_prefix",
    "tenant_scoped_presence_key",
]

#: Marks a ``get_presence_key`` already wrapped by :func:`tenant_scoped_presence_key`.
SCOPED = "_tenantry_scoped"
#: djust's marker for class attributes that are not template context.
DERIVED = "_djust_framework_derived"


def presence_key(view: Any, base: str) -> str:
    """``base`` prefixed ``tenant:<id>:`` exactly once (as is without a tenant)."""
    tenant = getattr(view, "_tenant", None)
    if tenant is None:
        return base
    prefix = tenant_scope(tenant.id)
    return base if base.startswith(prefix) else prefix + base


def state_key_prefix(tenant: Any) -> str:
    """djust's saved-state key prefix of a view of ``tenant``: ``tenant:<id>``,
    or ``""`` (djust saves nothing) without a tenant, never the shared
    unprefixed key. djust.tenants percent-encodes the id; a validated id has
    nothing to encode (A-Z a-z 0-9 . _ -), so it is used as is."""
    # djust adds the final ":" itself.
    return "" if tenant is None else tenant_scope(tenant.id)[:-1]


def tenant_scoped_presence_key(method: Any) -> Any:
    """``get_presence_key`` of a class that wins the MRO over TenantMixin's
    (``PresenceMixin`` listed first, or the view's own override), still
    prefixed with the tenant: a presence group is never shared by tenants."""

    def get_presence_key(self: Any) -> str:
        return presence_key(self, method(self))

    get_presence_key.__doc__ = method.__doc__
    get_presence_key.__wrapped__ = method  # type: ignore[attr-defined]
    setattr(get_presence_key, SCOPED, True)
    setattr(get_presence_key, DERIVED, True)  # see not_context
    return get_presence_key


class derived_property(property):
    """A property djust leaves out of a view's template context and saved
    state (djust's ``_djust_framework_derived`` marker): ``tenant`` reaches
    templates through ``get_context_data()``, and djust would otherwise probe
    it on every render (a failing ``json.dumps``)."""

    _djust_framework_derived = True


def not_context(cls: type) -> type:
    """Mark ``cls``'s own methods with djust's ``_djust_framework_derived``.

    djust's ``get_context_data()`` walks every attribute of every class of a
    view's MRO on each render to find public class-level state; a marked
    attribute is dropped on the first test instead of being probed as a
    descriptor and filtered later. Methods are never context, so nothing
    else changes: this only makes the mixin's methods cost djust less than
    an unmarked one (the tenant's share of an HTTP GET, docs/performance.md).
    """
    for value in vars(cls).values():
        target = getattr(value, "__func__", value)  # classmethod / staticmethod
        if callable(target) and not isinstance(target, type):
            try:
                setattr(target, DERIVED, True)
            except (AttributeError, TypeError):  # a builtin: nothing to mark
                pass
    return cls


def context_key(view: Any) -> str:
    """The template variable of ``view``'s tenant."""
    return (
        getattr(view, "tenant_context_name", None)
        or (conf.request_config or conf.request_settings()).context_name
    )


def live_consumer(view: Any) -> Any:
    """The WebSocket consumer djust attached to ``view`` (``_ws_consumer``),
    else None (HTTP, SSE, not mounted yet)."""
    return getattr(view, "_ws_consumer", None)
