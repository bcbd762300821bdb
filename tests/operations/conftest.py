"""Shared set-up of the operations tests: a registry (app.Tenant) with two
tenants and the stored audit trail on (docs/operations.md)."""

from __future__ import annotations

import pytest

from tests.app.models import Tenant

BASE = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "app.Tenant",
    "TENANT_AUDIT_STORE": "database",
}


@pytest.fixture
def stored(settings):
    """The config with the trail stored (and ``TENANT_RLS`` as the run has
    it: on for the PostgreSQL pass), and the tenants acme and globex."""
    config = dict(BASE)
    config.update({k: v for k, v in settings.DJUST_CONFIG.items() if k == "TENANT_RLS"})
    settings.DJUST_CONFIG = config
    return {
        slug: Tenant.objects.create(slug=slug, name=slug.title()) for slug in ("acme", "globex")
    }
