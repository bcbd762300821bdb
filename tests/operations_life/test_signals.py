"""tenantry.signals (docs/operations.md#signals): tenant_created for every
way a registry row is inserted, tenant_deleted for every way a tenant is
deleted, each with ``tenant_id``; suspension's signals are in
test_suspension.py. Real ORM, real management commands."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from tenantry import delete_tenant, signals
from tests.app.models import Tenant

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def configured(settings):
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_MODEL": "app.Tenant",
    }


@pytest.fixture
def heard():
    sent: list[tuple[str, str, dict]] = []
    names = {signals.tenant_created: "created", signals.tenant_deleted: "deleted"}

    def receiver(signal, sender, tenant_id, **kwargs):
        sent.append((names[signal], tenant_id, kwargs))

    for signal in names:
        signal.connect(receiver)
    yield sent
    for signal in names:
        signal.disconnect(receiver)


def test_every_way_of_creating_a_tenant_sends_tenant_created(heard):
    Tenant.objects.create(slug="by-create", name="x")
    Tenant(slug="by-save", name="x").save()
    Tenant.objects.get_or_create(slug="by-get-or-create", defaults={"name": "x"})
    Tenant.objects.bulk_create([Tenant(slug="bulk-a", name="a"), Tenant(slug="bulk-b", name="b")])
    call_command("tenantry", "create", "by-command")
    Tenant.objects.get_or_create(slug="by-create", defaults={"name": "again"})  # exists: none
    row = Tenant.objects.get(slug="by-save")
    row.name = "renamed"
    row.save()  # an update: none
    assert [(kind, tenant_id) for kind, tenant_id, _ in heard] == [
        ("created", "by-create"),
        ("created", "by-save"),
        ("created", "by-get-or-create"),
        ("created", "bulk-a"),
        ("created", "bulk-b"),
        ("created", "by-command"),
    ]


def test_every_way_of_deleting_a_tenant_sends_tenant_deleted(heard):
    for slug in ("by-function", "by-command", "by-orm", "by-queryset", "kept"):
        Tenant.objects.create(slug=slug, name=slug)
    heard.clear()
    delete_tenant("by-function")
    delete_tenant("kept", dry_run=True)  # a dry run deletes nothing: none
    call_command("tenantry", "delete", "by-command")
    Tenant.objects.get(slug="by-orm").delete()
    Tenant.objects.filter(slug="by-queryset").delete()
    assert [(kind, tenant_id) for kind, tenant_id, _ in heard] == [
        ("deleted", "by-function"),
        ("deleted", "by-command"),
        ("deleted", "by-orm"),
        ("deleted", "by-queryset"),
    ]
    assert all(kwargs["incarnation"] for _, _, kwargs in heard)
    assert Tenant.objects.filter(slug="kept").exists()


def test_tenant_imported_is_provided():
    """Sent by ``manage.py tenantry import`` (docs/operations.md#export-and-import)."""
    received = []

    def receiver(sender, tenant_id, **kwargs):
        received.append(tenant_id)

    signals.tenant_imported.connect(receiver)
    try:
        signals.tenant_imported.send(sender=None, tenant_id="acme")
    finally:
        signals.tenant_imported.disconnect(receiver)
    assert received == ["acme"]
