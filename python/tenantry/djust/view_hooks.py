"""What djust reads on ``TenantMixin`` views by name: its "not context"
marker, the tenant in the template context, the presence key, the
saved-state key prefix.

djust walks every attribute of every class of a view on each render to find
template context and state to save; an attribute carrying djust's
``_djust_framework_derived`` marker is dropped on the first test
(:func:`not_context`, :class:`derived_property`). djust's presence groups
are named from ``get_presence_key()``: a tenant view's is prefixed
``tenant:<id>:`` exactly once, whichever class of the view wins the MRO
(:func:`tenant_scoped_presence_key`). The hooks are the methods of
:class:`DjustViewHooks`, a base of ``tenantry.mixins.TenantMixin`` (djust
calls them on the view); the names are in ``tenantry.djust.names``.
"""

from __future__ import annotations

from typing import Any

from .. import conf

__all__ = [
    "DERIVED",
    "SCOPED",
    "DjustViewHooks",
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
    prefix = f"tenant:{tenant.id}:"
    return base if base.startswith(prefix) else prefix + base


def state_key_prefix(tenant: Any) -> str:
    """djust's saved-state key prefix of a view of ``tenant``: ``tenant:<id>``,
    or ``""`` (djust saves nothing) without a tenant, never the shared
    unprefixed key. djust.tenants percent-encodes the id; a validated id has
    nothing to encode (A-Z a-z 0-9 . _ -), so it is used as is."""
    return "" if tenant is None else f"tenant:{tenant.id}"


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


#: ``(view class, name)`` → what ``super().<name>`` is from ``DjustViewHooks``.
_PARENT_HOOKS: dict[tuple[type, str], Any] = {}


def _next_in_mro(cls: type, name: str) -> Any:
    """The function ``super().<name>`` finds from :class:`DjustViewHooks` in
    ``cls`` (``None`` when no later class has it), looked up once per class:
    djust asks for these on every render, and a missing name costs
    ``super()`` a walk of the whole MRO and an ``AttributeError``."""
    try:
        return _PARENT_HOOKS[cls, name]
    except KeyError:
        pass
    mro = cls.__mro__
    found = None
    for klass in mro[mro.index(DjustViewHooks) + 1 :]:
        if name in vars(klass):
            found = vars(klass)[name]
            break
    _PARENT_HOOKS[cls, name] = found
    return found


@not_context
class DjustViewHooks:
    """The hooks djust calls on a tenant view by name, with djust's meaning.
    A base of ``TenantMixin``, which provides ``tenant`` (the view's tenant,
    resolved on first use) and ``_tenant`` (its tenant once resolved, never
    resolving); like it, this class keeps no class attributes (djust copies
    every public one into the template context on each render)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        method = cls.get_presence_key
        if method is not DjustViewHooks.get_presence_key and not getattr(method, SCOPED, False):
            cls.get_presence_key = tenant_scoped_presence_key(method)  # type: ignore[method-assign]

    def _apply_context_processors(self, context: dict[str, Any], request: Any) -> dict[str, Any]:
        """djust: mark the tenant as request-scoped, like a context processor's
        output, so djust renders it through its raw-object path instead of
        serializing it as view state (which logs a warning every render)."""
        context = super()._apply_context_processors(context, request)  # type: ignore[misc]
        key = context_key(self)
        context[key] = self.tenant  # type: ignore[attr-defined]
        scoped = getattr(self, "_context_processor_keys", None)
        if isinstance(scoped, set):  # djust's fresh set of this call
            scoped.add(key)
        else:
            self._context_processor_keys = {*(scoped or ()), key}
        return context

    def _djust_render_only_context_keys(self) -> frozenset:
        """The tenant renders but is never saved as view state."""
        parent = _next_in_mro(type(self), "_djust_render_only_context_keys")
        key = context_key(self)
        if parent is None:
            return frozenset((key,))
        return frozenset((*parent(self), key))

    def get_presence_key(self) -> str:
        """The presence group, prefixed ``tenant:<id>:`` exactly once. Without
        djust's ``PresenceMixin`` the base is the class name, as in
        djust.tenants (djust's presence code only calls this through
        ``PresenceMixin``, whose base is ``module.Class``)."""
        parent = getattr(super(), "get_presence_key", None)
        base = parent() if parent is not None else type(self).__name__
        return presence_key(self, base)

    def get_state_key_prefix(self) -> str:
        """``tenant:<id>`` for djust's saved view state; ``""`` (save nothing)
        when there is no tenant, never the shared unprefixed key."""
        return state_key_prefix(self._tenant)  # type: ignore[attr-defined]
