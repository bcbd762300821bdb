"""Which tenants exist, with their display name and theme."""

from tenantry import SubdomainResolver, TenantInfo

TENANTS = {
    "acme": {"name": "Acme Corp", "settings": {"theme": "#d9480f", "tagline": "Anvils since 1949"}},
    "globex": {"name": "Globex", "settings": {"theme": "#0b7285", "tagline": "Moving the world"}},
}

_subdomain = SubdomainResolver()


def resolve(request):
    """The subdomain, if it is one of our tenants."""
    found = _subdomain.resolve(request)
    if found is None or found.id not in TENANTS:
        return None
    return TenantInfo(found.id, **TENANTS[found.id])
