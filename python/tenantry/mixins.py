"""Mixins for djust LiveViews and Django class-based views.

``TenantMixin`` goes first in the bases::

    class Dashboard(TenantMixin, LiveView):
        def mount(self, request, **kwargs):
            self.items = Item.objects.all()   # scoped: the tenant is bound

The tenant is resolved once per view instance, before ``mount()``: on the
HTTP request in ``dispatch`` (reusing ``request.tenant`` from the middleware),
and on djust's live mounts, where djust calls ``_ensure_tenant(request)`` and
then binds ``view._tenant`` around every event. djust reads the hooks below
by name, with djust's meaning.

This module holds the tenant's resolution and admission for a view. The
rules behind the hooks djust calls by name (its "not context" marker, the
template variable, the presence key, the saved-state prefix) are in
``tenantry.djust.view_hooks``; the hooks stay methods here (a base class of
their own would add a class to the MRO djust walks on every render). A live
view's move to another tenant is ``tenantry.djust.broadcasts.move_live_view``.

``resolve_tenant`` here is the function the mixins and
:func:`context_processor` resolve with, looked up at call time: tests patch
it as they patched ``djust.tenants.mixin.resolve_tenant``::

    with patch("tenantry.mixins.resolve_tenant", return_value=None):
        ...
"""

from __future__ import annotations

import weakref
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Model
from django.http import Http404
from django.views import View

from . import audit, conf
from ._core import TenantInfo, TenantNotSetError, resolve_tenant
from .access import (
    _NO_DICT,
    NOT_FOUND,
    VIEW_SOURCE,
    admit,
    admitted_live,
    missing,
    tenant_for_request,
)
from .channels import check_live_origin
from .context import _current, keep_bound
from .context_processors import tenant_of
from .djust.broadcasts import move_live_view
from .djust.view_hooks import (
    SCOPED,
    context_key,
    derived_property,
    live_consumer,
    not_context,
    presence_key,
    state_key_prefix,
    tenant_scoped_presence_key,
)
from .isolation import tenant_kwargs
from .managers import scoped_queryset

__all__ = [
    "TenantContextProcessor",
    "TenantMixin",
    "TenantScopedMixin",
    "context_processor",
    "resolve_tenant",
]

#: ``_tenantry_tenant`` of a view that has not resolved its tenant yet.
_UNRESOLVED: Any = type("Unresolved", (), {"__repr__": lambda self: "<unresolved tenant>"})()
#: ``_tenantry_tenant`` of a view that refused its tenant (404): a refusal
#: stays a refusal for the view's life.
_REFUSED: Any = type("Refused", (), {"__repr__": lambda self: "<refused tenant>"})()


def _admit_view_tenant(view: Any, value: TenantInfo | str | int | None) -> TenantInfo | None:
    """Admit ``value`` for the view's user and make it the view's tenant.
    A live view that changes tenant moves with it (``move_live_view``: the
    socket leaves everything keyed on the old tenant, joins the new one's
    groups, and the new tenant is bound for the rest of the turn)."""
    tenant = admit(value, request=getattr(view, "request", None), source=VIEW_SOURCE)
    previous = view.__dict__.get("_tenantry_tenant", _UNRESOLVED)
    if previous is _UNRESOLVED or previous is _REFUSED or previous == tenant:
        view._tenantry_tenant = tenant
        return tenant

    def assign() -> None:
        view._tenantry_tenant = tenant

    move_live_view(view, previous, tenant, assign)
    return tenant


def _bound_tenant(view: Any) -> TenantInfo | None:
    """The view's tenant if it has resolved one, else None (never resolves)."""
    tenant = view._tenantry_tenant
    return None if tenant is _REFUSED or tenant is _UNRESOLVED else tenant


def _view_tenant(view: Any) -> TenantInfo | None:
    """The view's tenant, resolved from ``view.request`` on first use (None
    for a view that refused one)."""
    tenant = view._tenantry_tenant
    if tenant is _UNRESOLVED:
        request = getattr(view, "request", None)
        return None if request is None else _resolve(view, request)
    return None if tenant is _REFUSED else tenant


def _tenant_of(view: Any, request: Any) -> TenantInfo | None:
    """The view's tenant, resolved from ``request`` once per view; a view that
    refused answers 404 again."""
    tenant = view._tenantry_tenant
    if tenant is _UNRESOLVED:
        return _resolve(view, request)
    if tenant is _REFUSED:
        raise Http404(NOT_FOUND)
    return tenant


#: Live views told to resolve again (``_tenant_resolved = False``) → the
#: tenant they had: a different answer (or a refusal) moves their socket
#: (``move_live_view``), as a switch does.
_RESOLVED_BEFORE: weakref.WeakKeyDictionary[Any, TenantInfo | None] = weakref.WeakKeyDictionary()


def _settle(view: Any, value: Any) -> None:
    """Set the view's ``_tenantry_tenant`` to what resolution decided."""
    previous = _UNRESOLVED
    if _RESOLVED_BEFORE:  # a dict test: this runs on every request
        try:
            previous = _RESOLVED_BEFORE.pop(view, _UNRESOLVED)
        except TypeError:  # an unhashable view: never recorded
            pass
    new = None if value is _REFUSED else value
    if previous is _UNRESOLVED or previous == new:
        view._tenantry_tenant = value
        return

    def assign() -> None:
        view._tenantry_tenant = value

    move_live_view(view, previous, new, assign, join=value is not _REFUSED)


def _resolve(view: Any, request: Any) -> TenantInfo | None:
    resolved = getattr(request, "__dict__", _NO_DICT).get("tenant", _UNRESOLVED)
    try:
        if (
            resolved is not _UNRESOLVED
            and type(view).resolve_tenant is _RESOLVE_TENANT
            and "resolve_tenant" not in getattr(view, "__dict__", _NO_DICT)
        ):
            # What TenantMiddleware resolved and admitted: the answer of the
            # default resolve_tenant(), without its calls.
            tenant = resolved
        else:
            tenant = view.resolve_tenant(request)
            if tenant is not getattr(request, "__dict__", _NO_DICT).get("tenant"):
                # An overridden resolve_tenant(): admit what it chose.
                tenant = admit(tenant, request=request, source=VIEW_SOURCE)
    except Http404:
        _settle(view, _REFUSED)
        raise
    if tenant is None:
        required = getattr(view, "tenant_required", None)
        if required is None:
            required = conf.current().required
        if required:
            _settle(view, _REFUSED)
            raise missing(request, source=type(view).__name__)
    _settle(view, tenant)
    return tenant


#: ``(view class, name)`` → what ``super().<name>`` is from ``TenantMixin``.
_PARENT_HOOKS: dict[tuple[type, str], Any] = {}


def _next_in_mro(cls: type, name: str) -> Any:
    """The function ``super().<name>`` finds from ``TenantMixin`` in ``cls``
    (``None`` when no later class has it), looked up once per class: djust
    asks for these on every render, and a missing name costs ``super()`` a
    walk of the whole MRO and an ``AttributeError``."""
    try:
        return _PARENT_HOOKS[cls, name]
    except KeyError:
        pass
    mro = cls.__mro__
    found = None
    for klass in mro[mro.index(TenantMixin) + 1 :]:
        if name in vars(klass):
            found = vars(klass)[name]
            break
    _PARENT_HOOKS[cls, name] = found
    return found


def _run_bound(
    tenant: TenantInfo | None, handler: Any, request: Any, args: Any, kwargs: Any
) -> Any:
    """``handler(request, ...)`` with ``tenant`` bound (no-op when it is:
    TenantMiddleware, or dispatch() before get()/post())."""
    if _current.get() is tenant:
        return handler(request, *args, **kwargs)
    token = _current.set(tenant)  # admitted when the view resolved it
    try:
        response = handler(request, *args, **kwargs)
    finally:
        _current.reset(token)
    return keep_bound(response, tenant)


def _require_mixin_first(cls: type) -> None:
    """``ImproperlyConfigured`` when a view base comes before TenantMixin in
    ``cls``'s MRO (``class V(LiveView, TenantMixin)``; djust's ``LiveView`` is
    a Django ``View``, and any ``View`` subclass counts): its ``__init__`` and
    ``dispatch`` would run without the mixin's, and the view would fail at
    its first request. Runs at class creation only."""
    mro = cls.__mro__
    ahead = [
        klass
        for klass in mro[: mro.index(TenantMixin)]
        if not issubclass(klass, TenantMixin) and issubclass(klass, View)
    ]
    if not ahead:
        return
    mixins = [b.__name__ for b in cls.__bases__ if issubclass(b, TenantMixin)]
    others = [b.__name__ for b in cls.__bases__ if not issubclass(b, TenantMixin)]
    raise ImproperlyConfigured(
        f"{cls.__module__}.{cls.__qualname__}: TenantMixin must come before "
        f"{', '.join(k.__name__ for k in ahead)} in the bases, e.g. "
        f"class {cls.__name__}({', '.join(mixins + others)}) (docs/mixins.md)."
    )


@not_context
class TenantMixin:
    # Set on your view, not here: djust copies every public class attribute
    # of a view's classes into its template context and saved state on every
    # render, so the mixin itself keeps none (``tenant_required``: True/False
    # overrides ``TENANT_REQUIRED`` for the view; ``tenant_context_name``: the
    # template variable, unset uses ``TENANT_CONTEXT_NAME``). The helpers are
    # module functions, and the methods carry djust's "not context" marker
    # (``not_context``): djust walks every class attribute of the view on
    # each render, and these cost it least.
    #
    # The view's tenant lives in one attribute, ``_tenantry_tenant``:
    # ``_UNRESOLVED`` until the view resolves, then the tenant, None, or
    # ``_REFUSED``. One, because djust walks, snapshots and saves a view's
    # ``__dict__`` several times per request, and every attribute costs there.
    def __init__(self, **kwargs: Any) -> None:
        # Set before djust's LiveView.__init__ snapshots its framework
        # attributes, so djust never saves it as user state.
        self._tenantry_tenant = _UNRESOLVED
        super().__init__(**kwargs)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _require_mixin_first(cls)
        method = cls.get_presence_key
        if method is not TenantMixin.get_presence_key and not getattr(method, SCOPED, False):
            cls.get_presence_key = tenant_scoped_presence_key(method)  # type: ignore[method-assign]

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        # Once per route, when the URLconf loads: a view of an app without
        # tenantry installed fails here, not silently unguarded.
        conf.require_installed(f"TenantMixin ({cls.__module__}.{cls.__qualname__})")
        return super().as_view(**initkwargs)  # type: ignore[misc]

    # -- the tenant ---------------------------------------------------------

    # djust binds ``view._tenant`` around every live event, so every write of
    # it is admitted (tenantry.access.admit): an event handler that assigns
    # ``self._tenant``, ``self.tenant`` or calls ``set_tenant()`` with a
    # client-sent id gets a 404 for a tenant its user may not see, and the
    # view keeps its tenant.
    @derived_property
    def _tenant(self) -> TenantInfo | None:
        return _bound_tenant(self)

    @_tenant.setter
    def _tenant(self, value: TenantInfo | str | int | None) -> None:
        _admit_view_tenant(self, value)

    # djust.tenants' flag, for code and tests that read or set it: setting it
    # False makes the view resolve again on next use.
    @derived_property
    def _tenant_resolved(self) -> bool:
        return self._tenantry_tenant is not _UNRESOLVED and self._tenantry_tenant is not _REFUSED

    @_tenant_resolved.setter
    def _tenant_resolved(self, value: bool) -> None:
        tenant = self._tenantry_tenant
        if value and tenant is _UNRESOLVED:
            self._tenantry_tenant = None
        elif not value and tenant is not _REFUSED:  # a refusal stays a refusal
            if tenant is not _UNRESOLVED and live_consumer(self) is not None:
                try:
                    _RESOLVED_BEFORE[self] = tenant  # its socket's groups are this tenant's
                except TypeError:  # an unhashable view
                    pass
            self._tenantry_tenant = _UNRESOLVED

    @derived_property
    def tenant(self) -> TenantInfo | None:
        """This view's tenant (resolved from ``self.request`` on first use)."""
        return _view_tenant(self)

    @tenant.setter
    def tenant(self, value: TenantInfo | str | int | None) -> None:
        _admit_view_tenant(self, value)

    def set_tenant(self, tenant_id: TenantInfo | str | int) -> TenantInfo:
        """Switch this view to another tenant: validated (``InvalidTenantId``),
        and admitted like a resolved one (the registry must know it and
        ``TENANT_MEMBERSHIP_CHECK`` must accept the user; ``Http404``
        otherwise, and the view keeps its tenant). The view's state is
        authoritative; with the session resolver configured the id is also
        mirrored into the session, which only an HTTP response can save."""
        if tenant_id is None:
            raise TypeError("set_tenant() needs a tenant id or a TenantInfo, not None")
        previous = _bound_tenant(self)
        tenant = _admit_view_tenant(self, tenant_id)
        request = getattr(self, "request", None)
        audit.emit(
            "tenant.switched",
            tenant=tenant,
            request=request,
            previous=None if previous is None else previous.id,
        )
        # Mirror into the session for the session resolver.
        session = getattr(request, "session", None)
        config = conf.current()
        if session is not None and config.uses_session:
            session[config.session_key] = tenant.id
        return tenant

    def resolve_tenant(self, request: Any) -> TenantInfo | None:
        """Override to resolve differently for this view."""
        return tenant_for_request(request, resolve_tenant)

    def _ensure_tenant(self, request: Any) -> None:
        """djust's hook on every live mount (WebSocket, SSE), before
        ``mount()``: resolve and admit once per view instance (a refusal
        stays a refusal: 404); refuse a page of another tenant (the
        handshake's ``Origin``, ``tenantry.channels.check_live_origin``:
        ``PermissionDenied``, which djust answers "Permission denied" and
        closes 4403); start the view's re-admission clock
        (``TENANT_READMIT_INTERVAL``, tenantry.live)."""
        tenant = _tenant_of(self, request)
        if tenant is None:
            return
        consumer = live_consumer(self)
        scope = getattr(consumer, "scope", None)
        # The checks count and audit as the view's tenant: bound for them,
        # whatever the transport left bound (a stream kept its tenant).
        token = _current.set(tenant)
        try:
            try:
                check_live_origin(tenant, scope=scope, request=request)
            except Exception:
                self._tenantry_tenant = _REFUSED
                raise
            admitted_live(self, tenant, request)
        finally:
            _current.reset(token)

    # -- HTTP ---------------------------------------------------------------

    # Thin on purpose: djust inspects dispatch/get/post overrides. Live
    # transports never call dispatch(); they call _ensure_tenant() directly.
    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return _run_bound(_tenant_of(self, request), super().dispatch, request, args, kwargs)

    # djust's own tests, and code ported from djust.tenants, call get()/post()
    # without dispatch(): resolve and bind there too (a no-op after dispatch).
    def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return _run_bound(_tenant_of(self, request), super().get, request, args, kwargs)  # type: ignore[misc]

    def post(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return _run_bound(_tenant_of(self, request), super().post, request, args, kwargs)  # type: ignore[misc]

    # -- template context -----------------------------------------------------

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        parent = getattr(super(), "get_context_data", None)
        context = parent(**kwargs) if parent is not None else dict(kwargs)
        context[context_key(self)] = _view_tenant(self)
        return context

    def _apply_context_processors(self, context: dict[str, Any], request: Any) -> dict[str, Any]:
        """djust: mark the tenant as request-scoped, like a context processor's
        output, so djust renders it through its raw-object path instead of
        serializing it as view state (which logs a warning every render)."""
        context = super()._apply_context_processors(context, request)  # type: ignore[misc]
        key = context_key(self)
        context[key] = _view_tenant(self)
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

    # -- djust hooks ----------------------------------------------------------

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
        return state_key_prefix(_bound_tenant(self))


#: The default ``resolve_tenant`` (see ``_resolve``).
_RESOLVE_TENANT = TenantMixin.resolve_tenant


@not_context
class TenantScopedMixin(TenantMixin):
    """``TenantMixin`` plus helpers that scope a model to ``self.tenant``."""

    model: Any = None
    tenant_field: str = "tenant_id"

    def _scoped_model(self, model: Any) -> Any:
        model = model or self.model
        if model is None:
            raise ValueError(f"{type(self).__name__} has no model: set `model` or pass one")
        return model

    def _require_view_tenant(self, action: str) -> TenantInfo | None:
        tenant = self.tenant
        if tenant is None and conf.current().strict == "raise":
            raise TenantNotSetError(
                f"{type(self).__name__}.{action}() needs a tenant; none resolved"
            )
        return tenant

    def get_tenant_queryset(self, model: Any = None) -> Any:
        """``model.objects`` filtered to this view's tenant (never a
        NULL-tenant query), as djust.tenants: a custom ``objects`` (say, one
        that hides inactive rows) applies. A ``TenantManager`` is filtered to
        the view's tenant whatever tenant is bound."""
        model = self._scoped_model(model)
        tenant = self._require_view_tenant("get_tenant_queryset")
        try:
            manager = model.objects
        except AttributeError:
            raise TypeError(
                f"{type(self).__name__}: {model!r} has no `objects` manager to scope"
            ) from None
        if isinstance(model, type) and issubclass(model, Model):
            return scoped_queryset(model, self.tenant_field, tenant, manager)
        # A model-like class with `objects`: filter the field as named.
        if tenant is None:
            return manager.none()
        return manager.filter(**{self.tenant_field: tenant.id})

    def create_for_tenant(self, model: Any = None, **kwargs: Any) -> Any:
        """Create a row of this view's tenant. A tenant field among ``kwargs``
        (name, attname or instance) naming another tenant raises
        ``TenantMismatchError``."""
        model = self._scoped_model(model)
        tenant = self.tenant
        if tenant is None:
            raise TenantNotSetError(
                f"{type(self).__name__}.create_for_tenant(): tenant not resolved"
            )
        kwargs = tenant_kwargs(
            model, self.tenant_field, tenant, kwargs, "create_for_tenant()", fill=True
        )
        return self.get_tenant_queryset(model).create(**kwargs)

    def get_tenant_object(self, pk: Any, model: Any = None) -> Any:
        """One row of this tenant; another tenant's pk is ``DoesNotExist``."""
        return self.get_tenant_queryset(model).get(pk=pk)


class TenantContextProcessor:
    """Adds the request's tenant to every template (``tenantry.context_processors.tenant``)."""

    def __call__(self, request: Any) -> dict[str, Any]:
        return context_processor(request)


def context_processor(request: Any) -> dict[str, Any]:
    """djust.tenants' name for ``tenantry.context_processors.tenant``,
    resolving with this module's ``resolve_tenant``."""
    return tenant_of(request, resolve_tenant)
