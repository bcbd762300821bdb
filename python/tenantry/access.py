"""The one path from a request to its tenant, shared by the middleware, the
mixins and the context processor: resolve (``resolve_tenant``, which applies
``TENANT_DEFAULT``), then ``TENANT_MEMBERSHIP_CHECK``, then audit. The result
is kept on ``request.tenant`` so nothing resolves twice."""

from __future__ import annotations

import logging
from typing import Any

from django.http import Http404

from . import audit, conf
from ._core import TenantInfo, resolve_tenant

__all__ = ["NOT_FOUND", "deny", "tenant_for_request"]

#: One message for "no such tenant" and "not yours", so a 404 never tells an
#: outsider which tenants exist.
NOT_FOUND = "Tenant not found"


def deny(event: str, tenant: Any, request: Any, **fields: Any) -> Http404:
    audit.emit(event, tenant=tenant, request=request, level=logging.WARNING, **fields)
    return Http404(NOT_FOUND)


def _check_membership(request: Any, tenant: TenantInfo) -> None:
    check = conf.current().membership_check
    if check is None:
        return
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return
    if not check(user, tenant):
        raise deny("tenant.denied", tenant, request, source="membership_check")


def tenant_for_request(request: Any, resolve: Any = resolve_tenant) -> TenantInfo | None:
    """``request.tenant`` when already resolved, else resolve it now (with
    ``resolve``: the mixins pass their patchable ``resolve_tenant``).

    Raises ``Http404`` when ``TENANT_MEMBERSHIP_CHECK`` refuses the user, and
    Django's ``DisallowedHost`` for a host outside ``ALLOWED_HOSTS``.
    """
    try:
        return request.__dict__["tenant"]
    except (KeyError, AttributeError):
        pass
    tenant = resolve(request)
    if tenant is not None:
        _check_membership(request, tenant)
        audit.emit("tenant.resolved", tenant=tenant, request=request, level=logging.DEBUG)
    try:
        request.tenant = tenant
    except AttributeError:  # an object that refuses attributes
        pass
    return tenant
