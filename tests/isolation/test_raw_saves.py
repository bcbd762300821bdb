"""Raw saves (docs/security.md#raw-saves-deserialization-and-loaddata):
``save_base(raw=True)`` — what Django's deserializers and ``loaddata`` call —
is trusted only when no tenant is bound (``manage.py loaddata``). With a
tenant bound (a deserializer run in a request or a job), it is held to
every rule of an ordinary save: no parent row shared with another tenant's
child, no key to another tenant's row (foreign key, generic foreign key,
many-to-many), no other tenant's column. SQLite and PostgreSQL.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core import serializers
from django.db import transaction

from tenantry import TenantMismatchError, tenant_context
from tenantry.db import rls_bypass
from tests.app.models import Tenant
from tests.collaboration.models import Board, Card, Label, Pin
from tests.graph import models as graph

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenants(settings):
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_MODEL": "app.Tenant",
        **{k: v for k, v in settings.DJUST_CONFIG.items() if k == "TENANT_RLS"},
    }
    for slug in ("acme", "globex"):
        Tenant.objects.create(slug=slug, name=slug.title())


@pytest.fixture
def acme(tenants):
    with tenant_context("acme"):
        return {
            "vehicle": graph.Vehicle.objects.create(label="acme-van", plate="ACME-1"),
            "board": Board.objects.create(title="acme-board"),
            "label": Label.objects.create(name="acme-label"),
        }


def stored_machines(pk) -> bool:
    with rls_bypass(reason="test: as stored"):
        return graph.Machine.all_tenants.filter(pk=pk).exists()


def deserialized(records: list[dict]):
    return list(serializers.deserialize("json", json.dumps(records)))


def test_a_raw_save_shares_no_parent_row_with_another_tenants_child(acme):
    vehicle = acme["vehicle"]
    with tenant_context("globex"):
        machine = graph.Machine(serial="S", label="x")
        machine.pk = machine.asset_ptr_id = vehicle.pk
        with pytest.raises(TenantMismatchError), transaction.atomic():
            machine.save_base(raw=True)
    assert not stored_machines(vehicle.pk)


def test_a_deserialized_child_shares_no_parent_row_in_a_bound_request(acme):
    vehicle = acme["vehicle"]
    record = {
        "model": "graph.machine",
        "pk": vehicle.pk,
        "fields": {"tenant_id": "globex", "serial": "S"},
    }
    with tenant_context("globex"):
        (obj,) = deserialized([record])
        with pytest.raises(TenantMismatchError), transaction.atomic():
            obj.save()
    assert not stored_machines(vehicle.pk)


def test_a_raw_save_keys_no_other_tenants_row(acme):
    with tenant_context("globex"):
        card = Card(tenant_id="globex", text="c", board_id=acme["board"].pk)
        with pytest.raises(TenantMismatchError), transaction.atomic():
            card.save_base(raw=True)
        pin = Pin(
            tenant_id="globex",
            content_type=ContentType.objects.get_for_model(Board),
            object_id=str(acme["board"].pk),
        )
        with pytest.raises(TenantMismatchError), transaction.atomic():
            pin.save_base(raw=True)
    with rls_bypass(reason="test: as stored"):
        assert not Card.all_tenants.filter(tenant_id="globex").exists()
        assert not Pin.all_tenants.filter(tenant_id="globex").exists()


def test_a_raw_save_writes_no_other_tenants_column(acme):
    with tenant_context("globex"):
        board = Board(tenant_id="acme", title="planted")
        with pytest.raises(TenantMismatchError), transaction.atomic():
            board.save_base(raw=True)
    with rls_bypass(reason="test: as stored"):
        assert not Board.all_tenants.filter(title="planted").exists()


def test_a_deserialized_link_to_another_tenants_row_is_refused(acme):
    record = {
        "model": "collaboration.card",
        "pk": None,
        "fields": {"tenant_id": "globex", "text": "c", "labels": [acme["label"].pk]},
    }
    with tenant_context("globex"):
        (obj,) = deserialized([record])
        with pytest.raises(TenantMismatchError), transaction.atomic():
            obj.save()
    with rls_bypass(reason="test: as stored"):
        assert not Card.all_tenants.filter(tenant_id="globex").exists()


def test_a_bound_tenant_deserializes_its_own_rows(tenants):
    with tenant_context("globex"):
        label = Label.objects.create(name="globex-label")
        parent = graph.Asset.objects.create(label="v")  # a multi-table child's parent row
        records = [
            {
                "model": "graph.vehicle",
                "pk": parent.pk,
                "fields": {"tenant_id": "globex", "plate": "G"},
            },
            {
                "model": "collaboration.card",
                "pk": None,
                "fields": {"tenant_id": "globex", "text": "c", "labels": [label.pk]},
            },
        ]
        for obj in deserialized(records):
            obj.save()
        card = Card.objects.get(text="c")
        assert [lbl.name for lbl in card.labels.all()] == ["globex-label"]
        assert graph.Vehicle.objects.filter(plate="G").exists()


def test_an_unbound_loaddata_stays_trusted(acme):
    """loaddata with no tenant bound writes any tenant's rows, as any
    tenant-less code may (a restore, a fixture)."""
    vehicle = acme["vehicle"]
    record = {
        "model": "graph.machine",
        "pk": vehicle.pk,
        "fields": {"tenant_id": "globex", "serial": "S"},
    }
    with rls_bypass(reason="test: loaddata as tenant-less code runs it"):
        (obj,) = deserialized([record])
        obj.save()
    assert stored_machines(vehicle.pk)
