"""The rule of every call that names a tenant (docs/security.md#naming-another-tenant):
with a tenant bound, naming another one is refused (``TenantMismatchError``),
so an id that flows from input into such a call never reaches another
tenant's figures, limits, audit trail or watchers.

The test runs in Python, reading the bound tenant's variable directly: the
common case (nothing bound, or the bound tenant itself) costs a
``ContextVar.get`` and no call into the core, so the request path can use it
(docs/performance-design.md#crossings-per-request). Anything else, a str
subclass included, goes to the core's check (``_core.refuse_other_tenant``),
which reads the id's actual characters.
"""

from __future__ import annotations

from typing import Any

from ._core import InvalidTenantId, TenantInfo, refuse_other_tenant
from .djust.context import shared_tenant_variable

__all__ = ["refuse_naming_another"]

_bound = shared_tenant_variable()


def refuse_naming_another(tenant: Any, what: str) -> None:
    """Raise ``TenantMismatchError`` when a tenant is bound and ``tenant``
    (a ``TenantInfo`` or an id) names another; ``what`` names the call.
    ``None`` and a value that is no valid id name no tenant and pass (the
    call itself says what is wrong with them)."""
    bound = _bound.get()
    if bound is None or tenant is None or tenant is bound:
        return
    named = tenant.id if type(tenant) is TenantInfo else tenant
    if type(named) is str and named == bound.id:
        return
    try:
        refuse_other_tenant(tenant, what)
    except InvalidTenantId:
        return
