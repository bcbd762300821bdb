"""The tenant variable tenantry shares with djust.

djust binds ``djust.tenants.middleware._current_tenant`` around every
WebSocket event; tenantry binds the same variable (``tenantry.context``), so
djust's managers and tenantry's always agree on the tenant. Without djust
(or a djust without the variable) tenantry has a variable of its own.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

try:
    from djust.tenants.middleware import _current_tenant
except ImportError:  # djust missing, or a version without the variable
    _current_tenant = None

__all__ = ["is_djust_tenant_info", "shared_tenant_variable"]


#: The one variable: djust's, or tenantry's own without djust (made once, so
#: every module that reads the bound tenant reads the same variable).
_VARIABLE: ContextVar[Any] = (
    _current_tenant
    if isinstance(_current_tenant, ContextVar)
    else ContextVar("tenantry_current_tenant", default=None)
)


def shared_tenant_variable() -> ContextVar[Any]:
    """djust's tenant variable, or tenantry's own without djust."""
    return _VARIABLE


def is_djust_tenant_info(value: Any) -> bool:
    """Whether ``value`` is ``djust.tenants``' own ``TenantInfo`` (bound in
    the shared variable by views not yet switched to tenantry)."""
    return type(value).__name__ == "TenantInfo" and type(value).__module__.startswith("djust.")
