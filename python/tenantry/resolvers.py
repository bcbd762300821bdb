"""Tenant resolution: the built-in resolvers (Rust), the registry of names
``TENANT_RESOLVER`` may use, and ``resolve_tenant()``.

Add your own resolver under a name before the first request::

    from tenantry import RESOLVER_REGISTRY, TenantResolver

    class ApiKeyResolver(TenantResolver):
        def resolve(self, request):
            return lookup_tenant_for_key(request.headers.get("X-Api-Key"))

    RESOLVER_REGISTRY["api_key"] = ApiKeyResolver
"""

from __future__ import annotations

from ._core import (
    CallableResolver,
    ChainedResolver,
    CustomResolver,
    DomainResolver,
    HeaderResolver,
    PathResolver,
    SessionResolver,
    SubdomainResolver,
    TenantInfo,
    TenantResolver,
    get_tenant_resolver,
    resolve_tenant,
)

__all__ = [
    "RESOLVER_REGISTRY",
    "CallableResolver",
    "ChainedResolver",
    "CustomResolver",
    "DomainResolver",
    "HeaderResolver",
    "PathResolver",
    "SessionResolver",
    "SubdomainResolver",
    "TenantInfo",
    "TenantResolver",
    "get_tenant_resolver",
    "resolve_tenant",
]

#: Names usable in ``TENANT_RESOLVER``. Changes are read when the config is
#: compiled: register before the first request or call ``tenantry.conf.reload()``.
RESOLVER_REGISTRY: dict[str, type[TenantResolver]] = {
    "subdomain": SubdomainResolver,
    "path": PathResolver,
    "header": HeaderResolver,
    "session": SessionResolver,
    "custom": CustomResolver,
    "domain": DomainResolver,
}
