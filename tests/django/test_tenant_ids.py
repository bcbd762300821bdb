"""Tenant and domain rows hold ids a request can carry (docs/registry.md#tenant-ids):
every way a row reaches the database (save, create, get_or_create,
update_or_create, bulk_create and its upsert, their async forms, full_clean,
the admin's form) refuses what ``manage.py tenantry create`` refuses, with its
message: an id no configured resolver can produce, a case twin of an existing
tenant's id, a value that is no tenant id at all. ``manage.py tenantry check
URL`` names a case twin when it finds no tenant."""

from __future__ import annotations

from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.forms import modelform_factory

from tenantry import InvalidTenantId
from tests.app.models import Domain, Tenant

pytestmark = pytest.mark.django_db

SUBDOMAIN = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "app.Tenant",
    "TENANT_DOMAIN_MODEL": "app.Domain",
}

UNREACHABLE = "no configured resolver can ever produce the tenant id 'Initech'"
TWIN = "tenant 'acme' already exists; 'Acme' differs only in case"


@pytest.fixture(autouse=True)
def registry(settings):
    settings.DJUST_CONFIG = dict(SUBDOMAIN)


def command_message(tenant_id: str) -> str:
    with pytest.raises(CommandError) as refused:
        call_command("tenantry", "create", tenant_id, stdout=StringIO())
    return str(refused.value)


def _create(tenant_id):
    return Tenant.objects.create(slug=tenant_id, name="x")


def _save(tenant_id):
    Tenant(slug=tenant_id, name="x").save()


def _get_or_create(tenant_id):
    return Tenant.objects.get_or_create(slug=tenant_id, defaults={"name": "x"})


def _update_or_create(tenant_id):
    return Tenant.objects.update_or_create(slug=tenant_id, defaults={"name": "x"})


def _bulk_create(tenant_id):
    return Tenant.objects.bulk_create([Tenant(slug="fine", name="x"), Tenant(slug=tenant_id)])


def _bulk_upsert(tenant_id):
    return Tenant.objects.bulk_create(
        [Tenant(slug=tenant_id, name="x")],
        update_conflicts=True,
        unique_fields=["slug"],
        update_fields=["name"],
    )


def _acreate(tenant_id):
    async def create():
        return await Tenant.objects.acreate(slug=tenant_id, name="x")

    return async_to_sync(create)()


def _abulk_create(tenant_id):
    async def create():
        return await Tenant.objects.abulk_create([Tenant(slug=tenant_id, name="x")])

    return async_to_sync(create)()


ROUTES = [
    _create,
    _save,
    _get_or_create,
    _update_or_create,
    _bulk_create,
    _bulk_upsert,
    _acreate,
    _abulk_create,
]


@pytest.mark.parametrize("write", ROUTES, ids=lambda f: f.__name__.strip("_"))
def test_every_write_route_refuses_an_id_no_resolver_can_produce(write):
    expected = command_message("Initech")
    assert UNREACHABLE in expected
    with pytest.raises(InvalidTenantId) as refused:
        write("Initech")
    assert expected in str(refused.value)
    assert not Tenant.objects.filter(slug__iexact="initech").exists()
    assert not Tenant.objects.filter(slug="fine").exists()  # nothing of the batch


@pytest.mark.parametrize("write", ROUTES, ids=lambda f: f.__name__.strip("_"))
def test_every_write_route_refuses_a_case_twin(write, settings):
    # The path resolver keeps case: only the twin rule can refuse "Acme".
    settings.DJUST_CONFIG = {**SUBDOMAIN, "TENANT_RESOLVER": "path"}
    Tenant.objects.create(slug="acme", name="Acme")
    expected = command_message("Acme")
    assert TWIN in expected
    with pytest.raises(InvalidTenantId) as refused:
        write("Acme")
    assert expected in str(refused.value)
    assert list(Tenant.objects.values_list("slug", flat=True)) == ["acme"]


def test_twins_within_one_batch_are_refused(settings):
    settings.DJUST_CONFIG = {**SUBDOMAIN, "TENANT_RESOLVER": "path"}
    with pytest.raises(InvalidTenantId, match="'Zeta' and 'zeta' differ only in case"):
        Tenant.objects.bulk_create([Tenant(slug="zeta", name="z"), Tenant(slug="Zeta", name="Z")])
    assert not Tenant.objects.exists()


def test_a_value_that_is_no_tenant_id_is_refused_by_create_too():
    with pytest.raises(InvalidTenantId, match="'bad id' is not a valid tenant id"):
        Tenant.objects.create(slug="bad id", name="x")
    assert not Tenant.objects.exists()


def test_what_the_command_accepts_every_route_accepts():
    _create("initech")
    _bulk_create("hooli")
    _update_or_create("initech")  # an update of an existing row: no new id
    _bulk_upsert("initech")
    assert set(Tenant.objects.values_list("slug", flat=True)) == {"initech", "hooli", "fine"}


def test_full_clean_says_what_the_command_says(settings):
    with pytest.raises(ValidationError) as refused:
        Tenant(slug="Initech", name="x").full_clean()
    assert refused.value.message_dict["slug"] == [command_message("Initech")]
    settings.DJUST_CONFIG = {**SUBDOMAIN, "TENANT_RESOLVER": "path"}
    Tenant.objects.create(slug="acme", name="Acme")
    with pytest.raises(ValidationError) as refused:
        Tenant(slug="Acme", name="x").full_clean()
    assert refused.value.message_dict["slug"] == [command_message("Acme")]
    Tenant(slug="globex", name="x").full_clean()
    saved = Tenant.objects.get(slug="acme")
    saved.name = "Acme Corp"
    saved.full_clean()  # a saved row is not a new id: no twin of itself


def test_the_admin_form_refuses_what_the_command_refuses():
    form_class = admin.site._registry.get(Tenant)
    fields = ["slug", "name"]
    Form = (
        form_class.get_form(None, fields=fields)
        if form_class is not None
        else modelform_factory(Tenant, fields=fields)
    )
    form = Form(data={"slug": "Initech", "name": "Initech", "settings": "{}"})
    assert not form.is_valid()
    assert form.errors["slug"] == [command_message("Initech")]
    assert Form(data={"slug": "initech", "name": "Initech", "settings": "{}"}).is_valid()


# -- custom domains -----------------------------------------------------------------


def test_a_domain_row_refuses_a_case_twin_on_every_route():
    Tenant.objects.create(slug="acme", name="Acme")
    twin = "there is no tenant 'Acme' but there is 'acme'"
    with pytest.raises(ValidationError, match=twin):
        Domain(domain="shop.acme-corp.com", tenant_id="Acme").full_clean()
    for write in (
        lambda: Domain.objects.create(domain="shop.acme-corp.com", tenant_id="Acme"),
        lambda: Domain(domain="shop.acme-corp.com", tenant_id="Acme").save(),
        lambda: Domain.objects.bulk_create([Domain(domain="shop.acme-corp.com", tenant_id="Acme")]),
        lambda: Domain.objects.update_or_create(
            domain="shop.acme-corp.com", defaults={"tenant_id": "Acme"}
        ),
    ):
        with pytest.raises(ValidationError, match=twin):
            write()
    assert not Domain.objects.exists()
    Domain.objects.bulk_create([Domain(domain="shop.acme-corp.com", tenant_id="acme")])
    assert Domain.objects.get().tenant_id == "acme"


def test_a_domain_row_refuses_a_platform_host_through_bulk_create_too():
    with pytest.raises(ValidationError, match="cannot be a custom domain of tenant"):
        Domain.objects.bulk_create([Domain(domain="globex.example.com", tenant_id="acme")])
    assert not Domain.objects.exists()


# -- manage.py tenantry check URL --------------------------------------------------------


def test_check_url_names_a_case_twin_when_it_finds_no_tenant(settings):
    settings.DJUST_CONFIG = {**SUBDOMAIN, "TENANT_RESOLVER": "path"}
    Tenant.objects.create(slug="Initech", name="Initech")  # the path resolver keeps case
    settings.DJUST_CONFIG = dict(SUBDOMAIN)
    out = StringIO()
    call_command("tenantry", "check", "http://initech.example.com/", stdout=out)
    text = out.getvalue()
    assert "result: no tenant" in text
    assert "case twin: the registry has 'Initech', not 'initech'" in text
    out = StringIO()
    call_command("tenantry", "check", "http://globex.example.com/", stdout=out)
    assert "case twin" not in out.getvalue()
