"""Admission: the one place that decides whether a tenant may be bound.

Every way a tenant gets bound goes through :func:`admit`: request
resolution (the middleware, ``TenantMixin`` on HTTP and on djust's live
mounts, the context processor), ``TenantMixin.set_tenant()`` and any other
assignment of a view's tenant (so a live-view event handler cannot switch to
a tenant its user may not see), and ``tenant_context()`` (registry only).

The rules, in order:

1. the id is valid (``InvalidTenantId`` otherwise);
2. the registry (``TENANT_MODEL`` / ``TENANT_VALIDATOR``), when configured,
   knows it;
3. ``TENANT_MEMBERSHIP_CHECK``, when configured, accepts the user; an
   anonymous user is refused any tenant that came from a client-chosen
   source (a header, the session, a JWT claim, a user attribute, a custom or
   user resolver, a view's ``set_tenant``), and allowed one named by the
   address itself (subdomain, custom domain, path) or ``TENANT_DEFAULT``.

A refusal is audited and answered like a missing tenant (404, one message
for "no such tenant" and "not yours"). The resolved tenant is kept on
``request.tenant`` so nothing resolves twice.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import Http404

from . import _core, audit, conf
from ._core import TenantInfo

__all__ = ["HOST_SOURCES", "NOT_FOUND", "admit", "deny", "tenant_for_request"]

#: One message for "no such tenant" and "not yours", so a 404 never tells an
#: outsider which tenants exist.
NOT_FOUND = "Tenant not found"

#: Sources where the tenant is named by the address the client was sent to
#: (or by the server's own default), not by a value the client picks freely.
HOST_SOURCES = frozenset({"subdomain", "domain", "path", "default"})

#: The source of a tenant a view sets itself (``set_tenant``, assignment).
VIEW_SOURCE = "view"


def deny(event: str, tenant: Any, request: Any, **fields: Any) -> Http404:
    audit.emit(event, tenant=tenant, request=request, level=logging.WARNING, **fields)
    return Http404(NOT_FOUND)


def _user(request: Any) -> Any:
    return getattr(request, "user", None) if request is not None else None


def _check_membership(request: Any, tenant: TenantInfo, source: str) -> None:
    check = conf.current().membership_check
    if check is None:
        return
    user = _user(request)
    if user is None or not getattr(user, "is_authenticated", False):
        if source in HOST_SOURCES:
            return
        raise deny(
            "tenant.denied",
            tenant,
            request,
            source=source,
            reason="anonymous user, tenant chosen by the client",
        )
    if not check(user, tenant):
        raise deny("tenant.denied", tenant, request, source=source, reason="membership_check")


def admit(
    tenant: TenantInfo | str | int | None,
    *,
    request: Any = None,
    source: str,
    registered: bool = False,
) -> TenantInfo | None:
    """``tenant`` as it may be bound for ``request``'s user, or ``Http404``.

    ``source`` names where the tenant came from (a resolver's name,
    ``"default"``, or ``"view"``); ``registered=True`` when the registry
    already admitted it (resolution does that in the core).
    """
    if tenant is None:
        return None
    if not registered:
        known = _core.lookup_tenant(tenant)  # InvalidTenantId for a bad id
        if known is None:
            raise deny("tenant.unknown", tenant, request, source=source)
        tenant = known
    _check_membership(request, tenant, source)
    return tenant


#: ``request.tenant`` not set yet (``None`` is a resolved "no tenant").
_UNRESOLVED = object()
_NO_DICT: dict = {}


def tenant_for_request(request: Any, resolve: Any = None) -> TenantInfo | None:
    """``request.tenant`` when already resolved, else resolve and admit it now.
    ``resolve`` is what the mixins pass (their patchable ``resolve_tenant``):
    anything but tenantry's own is admitted like a client-chosen source.

    Raises ``Http404`` when admission refuses the tenant, and Django's
    ``DisallowedHost`` for a host outside ``ALLOWED_HOSTS``.
    """
    # A dict lookup, not an exception: this runs first on every request.
    tenant = getattr(request, "__dict__", _NO_DICT).get("tenant", _UNRESOLVED)
    if tenant is not _UNRESOLVED:
        return tenant
    if resolve is None or resolve is _core.resolve_tenant:
        tenant, source = _core.resolve_tenant_sourced(request)
        registered = True
    else:
        tenant, source, registered = resolve(request), "custom", False
    if tenant is not None:
        # admit() and audit.emit() inlined to their cheap tests: this runs on
        # every request, and each call costs more than the test it makes.
        config = conf.request_config or conf.request_settings()
        if not registered or config.membership_check is not None:
            tenant = admit(tenant, request=request, source=source, registered=registered)
        if config.audit_callback is not None or audit.logger.isEnabledFor(logging.DEBUG):
            audit.emit(
                "tenant.resolved",
                tenant=tenant,
                request=request,
                level=logging.DEBUG,
                source=source,
            )
    try:
        request.tenant = tenant
    except AttributeError:  # an object that refuses attributes
        pass
    return tenant
