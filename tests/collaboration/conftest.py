"""Shared set-up of the grant suite (docs/collaboration.md): a registry
(app.Tenant) with acme (the owner), globex (the grantee) and initech (the
attacker), the stored audit trail on, and boards, cards and labels of each."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tenantry import tenant_context
from tests.app.models import Tenant
from tests.collaboration.models import Board, Card, Label

BASE = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "app.Tenant",
    "TENANT_AUDIT_STORE": "database",
}


@pytest.fixture
def tenants(settings):
    config = dict(BASE)
    config.update({k: v for k, v in settings.DJUST_CONFIG.items() if k == "TENANT_RLS"})
    settings.DJUST_CONFIG = config
    return {
        slug: Tenant.objects.create(slug=slug, name=slug.title())
        for slug in ("acme", "globex", "initech")
    }


@pytest.fixture
def rows(tenants):
    """acme's shared board (with a card and a label) and its secret board
    (with a card), globex's own board, initech's board."""
    with tenant_context("acme"):
        shared = Board.objects.create(title="acme-shared")
        secret = Board.objects.create(title="acme-secret")
        shared_card = Card.objects.create(text="acme-shared-card", board=shared)
        secret_card = Card.objects.create(text="acme-secret-card", board=secret)
        label = Label.objects.create(name="acme-label")
        secret_label = Label.objects.create(name="acme-secret-label")
    with tenant_context("globex"):
        own = Board.objects.create(title="globex-own")
    with tenant_context("initech"):
        attacker = Board.objects.create(title="initech-own")
    return SimpleNamespace(
        shared=shared,
        secret=secret,
        shared_card=shared_card,
        secret_card=secret_card,
        label=label,
        secret_label=secret_label,
        own=own,
        attacker=attacker,
    )


def titles(queryset) -> list[str]:
    return sorted(board.title for board in queryset)
