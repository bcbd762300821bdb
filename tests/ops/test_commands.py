"""``manage.py tenantry create/delete/deactivate`` and ``manage.py check``
(docs/registry.md): ids no resolver can produce are refused, a deleted tenant leaves
nothing behind, a deactivated one stops resolving, and every config problem
is reported at once."""

from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError

from tenantry import (
    TenantAwareMemoryBackend,
    conf,
    get_tenant_state_backend,
    resolve_tenant,
    tenant_context,
)
from tests.app.models import Document, Item, Note, Tenant
from tests.lifecycle.models import Account, Ticket

pytestmark = pytest.mark.django_db

SUBDOMAIN = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "app.Tenant",
}


def run(*args) -> str:
    out = StringIO()
    call_command("tenantry", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("tenant_id", "why"),
    [
        ("Acme", "resolves to 'acme' (hosts are lowercase)"),
        ("a_b", "'a_b.example.com' is not a valid host"),
        ("www", "resolves to no tenant (TENANT_SUBDOMAIN_EXCLUDE"),
        ("eu.acme", "TENANT_SUBDOMAIN_DEPTH 1"),
    ],
)
def test_create_refuses_ids_no_host_can_reach(settings, tenant_id, why):
    settings.DJUST_CONFIG = dict(SUBDOMAIN)
    with pytest.raises(CommandError, match="no configured resolver can ever produce") as exc:
        run("create", tenant_id)
    assert why in str(exc.value)
    assert not Tenant.objects.filter(slug=tenant_id).exists()


def test_create_accepts_what_some_step_of_the_chain_can_produce(settings, rf):
    settings.DJUST_CONFIG = {**SUBDOMAIN, "TENANT_SUBDOMAIN_DEPTH": 2}
    run("create", "eu.acme")  # two labels are fine at depth 2
    with pytest.raises(CommandError, match=r"'a_b\.example\.com' is not a valid host"):
        run("create", "a_b")
    # A header can carry what a host cannot; the path keeps case.
    settings.DJUST_CONFIG = {**SUBDOMAIN, "TENANT_RESOLVER": ["subdomain", "header"]}
    run("create", "a_b")
    settings.DJUST_CONFIG = {**SUBDOMAIN, "TENANT_RESOLVER": "path"}
    run("create", "Zeta")
    with pytest.raises(CommandError, match="TENANT_PATH_EXCLUDE"):
        run("create", "admin")
    assert set(Tenant.objects.values_list("slug", flat=True)) == {"eu.acme", "a_b", "Zeta"}
    assert resolve_tenant(rf.get("/Zeta/x/")).id == "Zeta"


def test_create_refuses_a_case_insensitive_duplicate(settings):
    settings.DJUST_CONFIG = {**SUBDOMAIN, "TENANT_RESOLVER": "path"}  # path keeps case
    run("create", "acme")
    for twin in ("ACME", "Acme"):
        with pytest.raises(CommandError, match=r"tenant 'acme' already exists; .* differs only"):
            run("create", twin)
    assert list(Tenant.objects.values_list("slug", flat=True)) == ["acme"]


@pytest.fixture
def two_tenants(settings):
    settings.DJUST_CONFIG = dict(SUBDOMAIN)
    rows = {}
    for slug in ("acme", "globex"):
        rows[slug] = Tenant.objects.create(slug=slug, name=slug.title())
        Item.all_tenants.bulk_create(Item(tenant_id=slug, name=f"i{n}") for n in range(3))
        Document.all_tenants.create(tenant_id=slug, title="doc")
        Note.all_tenants.create(org=rows[slug], text="note")
        TenantAwareMemoryBackend(slug).join("room", "u1")
        get_tenant_state_backend(slug).set("k", 1)
        get_tenant_state_backend(slug).set("j", 2)
    return rows


def test_delete_dry_run_counts_and_changes_nothing(two_tenants):
    text = run("delete", "acme", "--dry-run")
    assert "would delete 3\tapp.Item" in text
    assert "would delete 1\tapp.Document" in text
    assert "would delete 1\tapp.Note" in text
    assert "would delete 1\tapp.Tenant" in text
    assert "dry run: nothing changed for tenant 'acme'" in text
    assert Item.all_tenants.filter(tenant_id="acme").count() == 3
    assert Tenant.objects.filter(slug="acme").exists()
    assert get_tenant_state_backend("acme").get("k") == 1
    assert TenantAwareMemoryBackend("acme").count("room") == 1


def test_delete_removes_rows_presence_state_and_registry_of_that_tenant_only(two_tenants, rf):
    host = rf.get("/", HTTP_HOST="acme.example.com")
    assert resolve_tenant(host).id == "acme"  # cached now
    text = run("delete", "acme")
    assert "deleted 3\tapp.Item" in text and "deleted 1\tapp.Note" in text
    assert "deleted 1\tapp.Tenant" in text
    assert "deleted 1\tpresence (memory, this process)" in text
    assert "deleted 2\tstate (memory, this process)" in text
    assert not Item.all_tenants.filter(tenant_id="acme").exists()
    assert not Document.all_tenants.filter(tenant_id="acme").exists()
    assert not Note.all_tenants.filter(org__slug="acme").exists()
    assert get_tenant_state_backend("acme").get("k") is None
    assert TenantAwareMemoryBackend("acme").count("room") == 0
    assert resolve_tenant(host) is None  # the registry cache was dropped
    # globex keeps everything
    assert Item.all_tenants.filter(tenant_id="globex").count() == 3
    assert Note.all_tenants.filter(org__slug="globex").count() == 1
    assert get_tenant_state_backend("globex").get("j") == 2
    assert TenantAwareMemoryBackend("globex").count("room") == 1
    with pytest.raises(CommandError, match=r"no tenant 'acme' in app\.Tenant"):
        run("delete", "acme")


def test_delete_clears_the_tenants_cache_so_a_recycled_id_reads_nothing(two_tenants, settings):
    """A tenant created again under a deleted id must not be served the old
    tenant's cached entries (tenantry.cache keys them per tenant)."""
    from django.core.cache import cache

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "tenantry-delete-test",
            "KEY_FUNCTION": "tenantry.cache.make_key",
        }
    }
    for slug in ("acme", "globex"):
        with tenant_context(slug):
            cache.set("page", f"{slug}'s private page")
    assert "would delete 1\tcache (generation" in run("delete", "acme", "--dry-run")
    with tenant_context("acme"):
        assert cache.get("page") == "acme's private page"
    assert "deleted 1\tcache (generation" in run("delete", "acme")
    Tenant.objects.create(slug="acme", name="A new customer")
    with tenant_context("acme"):
        assert cache.get("page") is None
    with tenant_context("globex"):
        assert cache.get("page") == "globex's private page"


def test_delete_without_a_registry_deletes_by_the_tenant_column(settings):
    settings.DJUST_CONFIG = {"TENANT_RESOLVER": "header"}
    Item.all_tenants.create(tenant_id="solo", name="x")
    Item.all_tenants.create(tenant_id="other", name="y")
    assert "deleted 1\tapp.Item" in run("delete", "solo")
    assert list(Item.all_tenants.values_list("tenant_id", flat=True)) == ["other"]


def test_delete_follows_a_foreign_key_to_the_registry(settings):
    settings.DJUST_CONFIG = {**SUBDOMAIN, "TENANT_MODEL": "lifecycle.Account"}
    acme = Account.objects.create(slug="acme", name="Acme")
    other = Account.objects.create(slug="other", name="Other")
    Ticket.all_tenants.create(account=acme, title="t")
    Ticket.all_tenants.create(account=other, title="t")
    assert "deleted 1\tlifecycle.Ticket" in run("delete", "acme")
    assert list(Ticket.all_tenants.values_list("account__slug", flat=True)) == ["other"]


def test_deactivate_turns_the_flag_off_and_the_tenant_stops_resolving(settings, rf, client):
    settings.DJUST_CONFIG = {**SUBDOMAIN, "TENANT_MODEL": "lifecycle.Account"}
    Account.objects.create(slug="acme", name="Acme")
    host = rf.get("/", HTTP_HOST="acme.example.com")
    assert resolve_tenant(host).id == "acme"
    assert client.get("/items/", HTTP_HOST="acme.example.com").status_code == 200
    assert "it no longer resolves" in run("deactivate", "acme")
    assert Account.objects.get(slug="acme").is_active is False
    assert resolve_tenant(host) is None
    assert client.get("/items/", HTTP_HOST="acme.example.com").status_code == 404


def test_deactivate_needs_an_active_flag(settings):
    settings.DJUST_CONFIG = dict(SUBDOMAIN)
    Tenant.objects.create(slug="acme", name="Acme")
    with pytest.raises(CommandError, match=r"app\.Tenant has no active flag: add a BooleanField"):
        run("deactivate", "acme")


BROKEN = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_SUBDOMAIN_DEPTH": -3,
    "TENANT_MODEL": "app.Tenantt",
    "TENANT_EXEMPT_PATH": ["/admin/"],
}


def test_check_reports_every_config_problem_at_once(settings):
    settings.DJUST_CONFIG = dict(BROKEN)
    err = StringIO()
    with pytest.raises(SystemCheckError) as exc:
        call_command("check", stderr=err, stdout=StringIO())
    text = str(exc.value)
    assert "TENANT_SUBDOMAIN_DEPTH" in text and "got -3" in text
    assert "'app.Tenantt', which is not an installed model" in text
    assert "DJUST_CONFIG['TENANT_EXEMPT_PATH'] is not a tenantry setting" in text


def test_improperly_configured_lists_every_problem(settings):
    settings.DJUST_CONFIG = {**BROKEN, "TENANT_STRICT": "sometimes"}
    with pytest.raises(ImproperlyConfigured) as exc:
        conf.load()
    text = str(exc.value)
    assert text.startswith("2 problems in settings.DJUST_CONFIG:")
    assert "TENANT_SUBDOMAIN_DEPTH" in text and "TENANT_STRICT" in text
