"""Scoped querysets never touch another tenant's rows, and fail closed."""

import logging

import pytest
from django.apps import apps as django_apps
from django.db import models

from tenantry import (
    TenantInfo,
    TenantManager,
    TenantMismatchError,
    TenantNotSetError,
    TenantQuerySet,
    tenant_context,
)
from tests.app.models import Item, Organization, Project

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows():
    a1 = Item.all_tenants.create(tenant_id="acme", name="a1")
    a2 = Item.all_tenants.create(tenant_id="acme", name="a2")
    g1 = Item.all_tenants.create(tenant_id="globex", name="g1")
    return a1, a2, g1


def names(qs):
    return sorted(i.name for i in qs)


def test_reads_are_scoped(rows):
    a1, _a2, g1 = rows
    with tenant_context("acme"):
        assert names(Item.objects.all()) == ["a1", "a2"]
        assert names(Item.objects.filter(name__startswith="g")) == []
        assert Item.objects.count() == 2
        assert Item.objects.get(pk=a1.pk) == a1
        with pytest.raises(Item.DoesNotExist):
            Item.objects.get(pk=g1.pk)
        assert not Item.objects.filter(pk=g1.pk).exists()
        assert set(Item.objects.values_list("tenant_id", flat=True)) == {"acme"}
    with tenant_context("globex"):
        assert names(Item.objects.all()) == ["g1"]


def test_writes_are_scoped(rows):
    _a1, _a2, g1 = rows
    with tenant_context("acme"):
        assert Item.objects.update(name="renamed") == 2
        assert Item.objects.filter(pk=g1.pk).update(name="stolen") == 0
        deleted, _ = Item.objects.all().delete()
        assert deleted == 2
    assert names(Item.all_tenants.all()) == ["g1"]
    assert Item.all_tenants.get(pk=g1.pk).name == "g1"


def test_create_fills_the_tenant_and_refuses_another(rows):
    with tenant_context("acme"):
        item = Item.objects.create(name="new")
        assert item.tenant_id == "acme"
        assert Item.objects.create(name="same", tenant_id="acme").tenant_id == "acme"
        with pytest.raises(TenantMismatchError, match="globex"):
            Item.objects.create(name="x", tenant_id="globex")
        obj, created = Item.objects.get_or_create(name="goc")
        assert created and obj.tenant_id == "acme"
        made = Item.objects.bulk_create([Item(name="b1"), Item(name="b2", tenant_id="acme")])
        assert {m.tenant_id for m in made} == {"acme"}
        with pytest.raises(TenantMismatchError):
            Item.objects.bulk_create([Item(name="b3", tenant_id="globex")])
        with pytest.raises(TenantMismatchError, match="refused tenant_id='globex'"):
            Item.objects.update(tenant_id="globex")
    assert Item.all_tenants.filter(tenant_id="globex").count() == 1


def test_no_tenant_raises_by_default(rows):
    for action in (
        lambda: list(Item.objects.all()),
        lambda: Item.objects.count(),
        lambda: Item.objects.get(pk=rows[0].pk),
        lambda: Item.objects.filter(name="a1").exists(),
        lambda: Item.objects.update(name="x"),
        lambda: Item.objects.all().delete(),
        lambda: Item.objects.create(name="x"),
    ):
        with pytest.raises(TenantNotSetError):
            action()
    assert Item.all_tenants.count() == 3


def test_no_tenant_empty_mode(rows, settings):
    settings.DJUST_CONFIG = {"TENANT_STRICT": "empty"}
    assert Item.objects.count() == 0
    assert list(Item.objects.all()) == []
    assert Item.objects.update(name="x") == 0
    with pytest.raises(TenantNotSetError):
        Item.objects.create(name="x")
    assert Item.all_tenants.count() == 3


def test_never_queries_for_null_tenant(rows, django_assert_num_queries, settings):
    settings.DJUST_CONFIG = {"TENANT_STRICT": "empty"}
    with django_assert_num_queries(0):
        assert list(Item.objects.all()) == []


def test_unscoped_is_audited(rows, caplog):
    with caplog.at_level(logging.WARNING, logger="tenantry.audit"):
        with tenant_context("acme"):
            assert Item.objects.unscoped(reason="nightly report").count() == 3
    record = next(r for r in caplog.records if r.name == "tenantry.audit")
    assert record.tenantry["event"] == "queryset.unscoped"
    assert record.tenantry["reason"] == "nightly report"
    assert record.tenantry["model"] == "app.Item"
    assert record.tenantry["tenant_id"] == "acme"


def test_for_tenant_is_explicit(rows):
    assert names(Item.objects.for_tenant("globex")) == ["g1"]
    with tenant_context("acme"):
        assert names(Item.objects.for_tenant(TenantInfo("globex"))) == ["g1"]


def test_foreign_key_scoping():
    acme = Organization.objects.create(slug="acme", name="Acme")
    globex = Organization.objects.create(slug="globex", name="Globex")
    Project.objects.for_tenant("acme").create(title="p1")
    Project.objects.for_tenant("globex").create(title="p2")
    with tenant_context("acme"):
        assert [p.title for p in Project.objects.all()] == ["p1"]
        assert Project.objects.create(title="p3").organization == acme
        with pytest.raises(TenantMismatchError):
            Project.objects.create(title="p4", organization=globex)
    # A TenantInfo carrying the model instance scopes by the instance.
    with tenant_context(TenantInfo("globex", raw=globex)):
        assert [p.title for p in Project.objects.all()] == ["p2"]


def test_related_managers_are_scoped_too():
    acme = Organization.objects.create(slug="acme", name="Acme")
    Project.objects.for_tenant("acme").create(title="p1")
    with tenant_context("globex"):
        assert list(acme.project_set.all()) == []
    with tenant_context("acme"):
        assert [p.title for p in acme.project_set.all()] == ["p1"]


def test_as_manager_and_field_check():
    class Thing(models.Model):
        tenant = models.CharField(max_length=10)
        objects = TenantQuerySet.as_manager()
        broken = TenantManager(tenant_field="nope")

        class Meta:
            app_label = "app"

    try:
        assert isinstance(Thing.objects, TenantManager)
        assert Thing.objects.tenant_field == "tenant"
        errors = [e for e in Thing.check() if e.id == "tenantry.E200"]
        assert len(errors) == 1 and "nope" in errors[0].msg
    finally:
        # A model without a table must not outlive the test: code that walks
        # every model (manage.py tenantry delete) would query it.
        del django_apps.all_models["app"]["thing"]
        django_apps.clear_cache()
