"""Per-tenant feature flags (docs/operations.md#feature-flags).

``tenant.flags.NAME`` is True or False: the tenant's own
``settings["flags"]["NAME"]`` (its plan in the registry), else
``DJUST_CONFIG["TENANT_FLAGS"]["NAME"]``, else False. The rule is the Rust
core's (``TenantInfo.flags``); this module adds the decorator::

    @tenant_flag("beta_reports")
    def reports(request): ...          # 404 when off

    class Board(TenantMixin, LiveView):
        @event_handler
        @tenant_flag("beta_reports")
        def export(self, **kwargs): ...  # an error frame when off

and ``{% if tenant.flags.beta_reports %}`` works in templates (the context
processor's ``tenant``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from . import _core
from ._core import TenantInfo
from .context import get_current_tenant
from .exceptions import FeatureDisabled

__all__ = ["FLAG_ATTRIBUTE", "flag_refusal", "is_enabled", "tenant_flag"]

#: The attribute naming the flag a decorated callable needs.
FLAG_ATTRIBUTE = "tenantry_flag"

F = TypeVar("F", bound=Callable[..., Any])


def is_enabled(name: str, tenant: TenantInfo | None = None) -> bool:
    """Whether flag ``name`` is on for ``tenant`` (the bound tenant when
    None); off when no tenant is bound."""
    tenant = get_current_tenant() if tenant is None else tenant
    if not isinstance(tenant, TenantInfo):
        return False
    return tenant.flags[name]


def _check(name: str) -> None:
    if not is_enabled(name):
        raise FeatureDisabled(name)


def tenant_flag(name: str) -> Callable[[F], F]:
    """Run the decorated view, view class or live-view handler only while
    flag ``name`` is on for the bound tenant: ``FeatureDisabled`` (an
    ``Http404``) otherwise. A live handler is refused before it runs, with
    the error frame ``{"type": "error", "error": "Feature 'NAME' is not
    enabled for this tenant", "refused": "flag"}``."""
    _core.check_flag_name(name)  # ValueError/TypeError at import time, naming it

    def decorate(func: F) -> F:
        if isinstance(func, type):  # a class-based view: its dispatch
            func.dispatch = tenant_flag(name)(func.dispatch)  # type: ignore[attr-defined]
            setattr(func, FLAG_ATTRIBUTE, name)
            return func
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                _check(name)
                return await func(*args, **kwargs)

            wrapper: Any = guarded_async
        else:

            @functools.wraps(func)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                _check(name)
                return func(*args, **kwargs)

            wrapper = guarded
        setattr(wrapper, FLAG_ATTRIBUTE, name)
        return wrapper  # type: ignore[no-any-return]

    return decorate


def flag_refusal(handler: Any, tenant: TenantInfo | None) -> dict | None:
    """The error frame's fields when ``handler`` (a live-view handler) needs
    a flag that is off for ``tenant``, else None (the live event gate)."""
    name = getattr(handler, FLAG_ATTRIBUTE, None)
    if name is None or (tenant is not None and is_enabled(name, tenant)):
        return None
    return {"error": str(FeatureDisabled(name)), "refused": "flag"}
