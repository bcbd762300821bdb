"""Who a call in djust's presence or state slot belongs to: a tenantry
tenant's (tenantry's router) or an app's that does not use tenantry (djust's
own in-memory backend, as without tenantry). One rule for both adapters
(``tenantry.djust.presence``, ``tenantry.djust.state``)."""

from __future__ import annotations

from .._core import TenantInfo
from ..context import _current

__all__ = ["MEMORY", "TENANT_SCOPE", "tenantry_tenant_bound"]

#: The scope a ``TenantMixin`` (tenantry's and djust.tenants') puts on a key.
TENANT_SCOPE = "tenant:"
#: A router's ``backend`` on the memory store.
MEMORY = "tenant_memory"


def tenantry_tenant_bound() -> bool:
    """Whether a tenantry ``TenantInfo`` is bound. djust.tenants binds its
    own ``TenantInfo`` in the same variable (or nothing, over HTTP): such a
    caller is djust's, and keeps djust's own backends."""
    return type(_current.get()) is TenantInfo

