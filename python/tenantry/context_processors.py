"""``tenantry.context_processors.tenant``: the request's tenant in every
template, under ``TENANT_CONTEXT_NAME`` (default ``tenant``), and
``impersonation``: the staff impersonation the request is served under
(absent when none; ``{{ impersonation.banner }}`` is the "acting as" bar,
docs/operations.md#impersonation). ``{% if tenant.flags.NAME %}`` reads a
feature flag (docs/operations.md#feature-flags).

It uses the tenant already bound for this request (by the middleware or a
view) and resolves only when nothing is, with this module's
``resolve_tenant`` (a patch point for tests, like ``tenantry.mixins``')."""

from __future__ import annotations

from typing import Any

from . import conf
from ._core import resolve_tenant
from .access import tenant_for_request
from .context import get_current_tenant
from .impersonation import current


def tenant(request: Any) -> dict[str, Any]:
    return tenant_of(request, resolve_tenant)


def tenant_of(request: Any, resolve: Any) -> dict[str, Any]:
    """The context for ``request``, resolving with ``resolve`` if needed."""
    found = request.__dict__.get("tenant") if hasattr(request, "__dict__") else None
    if found is None:
        found = get_current_tenant()
    if found is None and "tenant" not in getattr(request, "__dict__", {}):
        found = tenant_for_request(request, resolve)
    context = {conf.current().context_name: found}
    acting = current(request)
    if acting is not None:  # templates read a missing ``impersonation`` as None
        context["impersonation"] = acting
    return context
