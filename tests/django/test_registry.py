"""The tenant registry: only real tenants resolve, with their name and
settings, through a cached lookup that is invalidated on save/delete."""

import time

import pytest
from django.db import connection, models, transaction
from django.test.utils import CaptureQueriesContext

from tenantry import TenantInfo, _core, conf, invalidate_tenant, resolve_tenant, tenant_context
from tests.app.models import Domain, Organization, Project, Tenant

pytestmark = pytest.mark.django_db

REGISTRY = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "app.Tenant",
}


@pytest.fixture(autouse=True)
def tenants(settings):
    settings.DJUST_CONFIG = dict(REGISTRY)
    Tenant.objects.create(slug="acme", name="Acme Corp", settings={"theme": "dark", "plan": "pro"})
    Tenant.objects.create(slug="globex", name="Globex", settings={})


def host(rf, name):
    return rf.get("/", HTTP_HOST=f"{name}.example.com")


def test_known_tenant_has_its_name_settings_and_row(rf):
    tenant = resolve_tenant(host(rf, "acme"))
    assert tenant.id == "acme" and tenant.name == "Acme Corp"
    assert tenant.settings == {"theme": "dark", "plan": "pro"}
    assert isinstance(tenant.raw, Tenant) and tenant.raw.slug == "acme"


def test_unknown_tenant_is_no_tenant(rf, client):
    assert resolve_tenant(host(rf, "initech")) is None
    assert client.get("/items/", HTTP_HOST="initech.example.com").status_code == 404
    assert client.get("/items/", HTTP_HOST="acme.example.com").status_code == 200


def test_settings_are_a_copy_per_request(rf):
    first = resolve_tenant(host(rf, "acme"))
    first.settings["theme"] = "changed"
    assert resolve_tenant(host(rf, "acme")).get_setting("theme") == "dark"


class QueryCounter:
    """Counts every query (Django's own query log stops at 9,000)."""

    def __init__(self):
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def test_flood_of_unknown_subdomains_costs_one_query_each_then_none(rf, settings):
    # 10,000 lookups can outlast the default 60 s cache on a slow PostgreSQL run.
    settings.DJUST_CONFIG = {**REGISTRY, "TENANT_CACHE_TTL": 3600}
    requests = [host(rf, f"nobody{i}") for i in range(10_000)]
    first, second = QueryCounter(), QueryCounter()
    with connection.execute_wrapper(first):
        assert all(resolve_tenant(r) is None for r in requests)
    assert first.count == 10_000
    with connection.execute_wrapper(second):
        assert all(resolve_tenant(r) is None for r in requests)
    assert second.count == 0
    assert conf.current().registry_cache_sizes[1] == 10_000


def test_known_tenants_cost_no_query_once_cached(rf):
    resolve_tenant(host(rf, "acme"))
    with CaptureQueriesContext(connection) as queries:
        for _ in range(100):
            assert resolve_tenant(host(rf, "acme")).name == "Acme Corp"
    assert len(queries.captured_queries) == 0


def test_saving_settings_is_seen_on_the_next_request(rf, client):
    assert resolve_tenant(host(rf, "acme")).get_setting("theme") == "dark"
    row = Tenant.objects.get(slug="acme")
    row.settings = {"theme": "light"}
    row.save()
    assert resolve_tenant(host(rf, "acme")).get_setting("theme") == "light"


def test_deleting_a_tenant_is_seen_on_the_next_request(rf, client):
    assert client.get("/items/", HTTP_HOST="globex.example.com").status_code == 200
    Tenant.objects.get(slug="globex").delete()
    assert resolve_tenant(host(rf, "globex")) is None
    assert client.get("/items/", HTTP_HOST="globex.example.com").status_code == 404


def test_creating_a_tenant_clears_its_cached_miss(rf):
    assert resolve_tenant(host(rf, "initech")) is None
    Tenant.objects.create(slug="initech", name="Initech")
    assert resolve_tenant(host(rf, "initech")).name == "Initech"


def test_ttl_bounds_changes_made_without_signals(rf, settings):
    settings.DJUST_CONFIG = {**REGISTRY, "TENANT_CACHE_TTL": 0.3}
    assert resolve_tenant(host(rf, "acme")).name == "Acme Corp"
    Tenant.objects.filter(slug="acme").update(name="Renamed")  # no post_save
    assert resolve_tenant(host(rf, "acme")).name == "Acme Corp"  # still cached
    time.sleep(0.4)
    assert resolve_tenant(host(rf, "acme")).name == "Renamed"


def test_explicit_invalidation(rf):
    assert resolve_tenant(host(rf, "acme")).name == "Acme Corp"
    Tenant.objects.filter(slug="acme").update(name="Renamed")
    invalidate_tenant("acme")
    assert resolve_tenant(host(rf, "acme")).name == "Renamed"


def test_cache_size_is_bounded(rf, settings):
    settings.DJUST_CONFIG = {**REGISTRY, "TENANT_CACHE_SIZE": 50}
    for i in range(500):
        resolve_tenant(host(rf, f"x{i}"))
    assert conf.current().registry_cache_sizes == (0, 50)


def test_chain_moves_on_when_the_registry_refuses(rf, settings):
    settings.DJUST_CONFIG = {**REGISTRY, "TENANT_RESOLVER": ["header", "subdomain"]}
    request = rf.get("/", HTTP_HOST="globex.example.com", HTTP_X_TENANT_ID="bogus")
    assert resolve_tenant(request).id == "globex"


def test_default_tenant_must_exist_too(rf, settings):
    settings.DJUST_CONFIG = {**REGISTRY, "TENANT_DEFAULT": "globex"}
    assert resolve_tenant(rf.get("/", HTTP_HOST="example.com")).name == "Globex"
    settings.DJUST_CONFIG = {**REGISTRY, "TENANT_DEFAULT": "gone"}
    assert resolve_tenant(rf.get("/", HTTP_HOST="example.com")) is None


def test_custom_domains(rf, settings):
    settings.ALLOWED_HOSTS = [".example.com", "shop.acme-corp.com", "unknown.org"]
    settings.DJUST_CONFIG = {
        **REGISTRY,
        "TENANT_RESOLVER": ["domain", "subdomain"],
        "TENANT_DOMAIN_MODEL": "app.Domain",
    }
    Domain.objects.create(domain="Shop.Acme-Corp.com.", tenant_id="acme")
    tenant = resolve_tenant(rf.get("/", HTTP_HOST="SHOP.acme-corp.com:443"))
    assert tenant.id == "acme" and tenant.name == "Acme Corp"
    assert resolve_tenant(rf.get("/", HTTP_HOST="globex.example.com")).id == "globex"
    assert resolve_tenant(rf.get("/", HTTP_HOST="unknown.org")) is None
    Domain.objects.filter(domain="shop.acme-corp.com").delete()
    assert resolve_tenant(rf.get("/", HTTP_HOST="shop.acme-corp.com")) is None


def test_domain_resolver_needs_its_model(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.DJUST_CONFIG = {**REGISTRY, "TENANT_RESOLVER": "domain"}
    with pytest.raises(ImproperlyConfigured, match="TENANT_DOMAIN_MODEL"):
        conf.current()


def test_validator_instead_of_a_model(rf, settings):
    settings.DJUST_CONFIG = {
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_VALIDATOR": "tests.django.test_registry.only_acme",
    }
    tenant = resolve_tenant(host(rf, "acme"))
    assert tenant.name == "Acme (validated)"
    assert resolve_tenant(host(rf, "globex")) is None


def only_acme(tenant_id):
    return TenantInfo(tenant_id, name="Acme (validated)") if tenant_id == "acme" else None


def test_membership_check_denies_a_user_of_another_tenant(client, settings, django_user_model):
    settings.DJUST_CONFIG = {
        **REGISTRY,
        "TENANT_MEMBERSHIP_CHECK": "tests.django.test_registry.is_member",
    }
    user = django_user_model.objects.create_user("ann", password="pw")
    user.last_name = "acme"
    user.save()
    client.force_login(user)
    assert client.get("/items/", HTTP_HOST="acme.example.com").status_code == 200
    assert client.get("/items/", HTTP_HOST="globex.example.com").status_code == 404


def is_member(user, tenant):
    return user.last_name == tenant.id and tenant.raw is not None


def test_raw_row_scopes_foreign_keys(rf):
    org = Organization.objects.create(slug="acme", name="Acme")
    Project.objects.for_tenant("acme").create(title="p1")
    tenant = resolve_tenant(host(rf, "acme"))
    with tenant_context(tenant):
        assert [p.title for p in Project.objects.all()] == ["p1"]
    assert org.slug == "acme"


def test_bad_registry_config_is_reported(settings):
    from django.core import checks

    settings.DJUST_CONFIG = {**REGISTRY, "TENANT_MODEL": "nope"}
    ids = [m.id for m in checks.run_checks(tags=["tenantry"])]
    assert ids == [f"tenantry.E{_core.CONFIG_KEYS.index('TENANT_MODEL') + 1:03d}"]


def test_registry_model_checks(settings):
    from django.core import checks

    settings.DJUST_CONFIG = {**REGISTRY, "TENANT_MODEL": "app.Nope"}
    messages = checks.run_checks(tags=["tenantry"])
    assert [m.id for m in messages] == [
        f"tenantry.E{_core.CONFIG_KEYS.index('TENANT_MODEL') + 1:03d}"
    ]
    settings.DJUST_CONFIG = {**REGISTRY, "TENANT_MODEL_SETTINGS_FIELD": "prefs"}
    messages = checks.run_checks(tags=["tenantry"])
    assert "prefs" in messages[0].msg
    settings.DJUST_CONFIG = {**REGISTRY, "TENANT_DOMAIN_MODEL": "app.Domain"}
    assert checks.run_checks(tags=["tenantry"]) == []


def test_management_command(settings):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = StringIO()
    call_command(
        "tenantry",
        "create",
        "initech",
        "--name",
        "Initech",
        "--setting",
        'plan="gold"',
        "--setting",
        "seats=5",
        stdout=out,
    )
    assert Tenant.objects.get(slug="initech").settings == {"plan": "gold", "seats": 5}
    with pytest.raises(CommandError, match="not a valid tenant id"):
        call_command("tenantry", "create", "bad:id", stdout=StringIO())
    out = StringIO()
    call_command("tenantry", "list", stdout=out)
    assert out.getvalue().splitlines()[:3] == [
        'acme\tAcme Corp\t{"plan": "pro", "theme": "dark"}',
        "globex\tGlobex\t{}",
        'initech\tInitech\t{"plan": "gold", "seats": 5}',
    ]
    out = StringIO()
    call_command("tenantry", "check", "http://acme.example.com/items/", stdout=out)
    text = out.getvalue()
    assert "SubdomainResolver: → 'acme'" in text and "result: 'acme' name='Acme Corp'" in text
    out = StringIO()
    call_command("tenantry", "check", "nobody.example.com", stdout=out)
    assert "result: no tenant" in out.getvalue()
    out = StringIO()
    call_command("tenantry", "check", "evil.org", stdout=out)
    assert "refused by ALLOWED_HOSTS" in out.getvalue() and "DisallowedHost" in out.getvalue()
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": ["header", "subdomain"],
        "TENANT_MAIN_DOMAIN": "example.com",
    }
    out = StringIO()
    call_command("tenantry", "check", "acme.example.com", "-H", "X-Tenant-ID: globex", stdout=out)
    assert "HeaderResolver: → 'globex'" in out.getvalue()
    with pytest.raises(CommandError, match="TENANT_MODEL"):
        call_command("tenantry", "list", stdout=StringIO())


# --- lookups racing a save or delete: the generation check ------------------


@pytest.fixture
def race(monkeypatch):
    """``race(model, change)``: the next lookup through ``model``'s base
    manager (what the registry's loaders query) runs ``change()`` right after
    it read its row — a save or delete landing while the lookup is in flight,
    with the model's real signals — and then returns what it read."""

    def arm(model, change):
        fired = []

        class RacingQuerySet(models.QuerySet):
            def first(self):
                found = super().first()
                if found is not None and not fired:
                    fired.append(found)
                    change()
                return found

        manager = models.Manager.from_queryset(RacingQuerySet)()
        manager.model, manager.name = model, "racing"
        monkeypatch.setattr(model._meta, "base_manager", manager)
        return fired

    return arm


def test_a_lookup_racing_a_delete_does_not_cache_the_deleted_tenant(rf, client, race):
    fired = race(Tenant, lambda: Tenant.objects.filter(slug="globex").delete())
    # The racing lookup read the row before the delete: it may answer with it...
    assert resolve_tenant(host(rf, "globex")).name == "Globex"
    assert fired and not Tenant.objects.filter(slug="globex").exists()
    # ...but never caches it: the next request sees no tenant.
    assert resolve_tenant(host(rf, "globex")) is None
    assert client.get("/items/", HTTP_HOST="globex.example.com").status_code == 404
    assert conf.current().registry_cache_sizes == (0, 1)


def test_a_lookup_racing_a_save_does_not_cache_the_old_row(rf, race):
    def rename():
        row = Tenant.objects.get(slug="acme")
        row.name = "Renamed"
        row.save()

    race(Tenant, rename)
    assert resolve_tenant(host(rf, "acme")).name == "Acme Corp"
    assert resolve_tenant(host(rf, "acme")).name == "Renamed"


KNOWN = {}


def racing_validator(tenant_id):
    """A registry outside the database: forgets ``acme`` (and says so with
    ``invalidate_tenant``) while answering for it."""
    info = KNOWN.get(tenant_id)
    if tenant_id == "acme":
        KNOWN.pop(tenant_id, None)
        invalidate_tenant(tenant_id)
    return info


def test_a_validator_lookup_racing_an_invalidation_is_not_cached(rf, settings):
    settings.DJUST_CONFIG = {
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_VALIDATOR": "tests.django.test_registry.racing_validator",
    }
    KNOWN.update(acme=TenantInfo("acme", name="Acme"), globex=TenantInfo("globex"))
    assert resolve_tenant(host(rf, "acme")).name == "Acme"
    assert resolve_tenant(host(rf, "acme")) is None
    # Lookups with no invalidation meanwhile are cached as before.
    assert resolve_tenant(host(rf, "globex")).id == "globex"
    KNOWN.clear()
    assert resolve_tenant(host(rf, "globex")).id == "globex"


@pytest.fixture
def shop_domain(rf, settings):
    settings.ALLOWED_HOSTS = [".example.com", "shop.acme-corp.com"]
    settings.DJUST_CONFIG = {
        **REGISTRY,
        "TENANT_RESOLVER": ["domain", "subdomain"],
        "TENANT_DOMAIN_MODEL": "app.Domain",
    }
    Domain.objects.create(domain="shop.acme-corp.com", tenant_id="acme")
    return lambda: resolve_tenant(rf.get("/", HTTP_HOST="shop.acme-corp.com"))


def test_a_domain_lookup_racing_a_delete_is_not_cached(shop_domain, race):
    fired = race(Domain, lambda: Domain.objects.filter(domain="shop.acme-corp.com").delete())
    assert shop_domain().id == "acme"
    assert fired == ["acme"]
    assert shop_domain() is None


def test_a_domain_lookup_racing_a_move_is_not_cached(shop_domain, race):
    def move_to_globex():
        row = Domain.objects.get(domain="shop.acme-corp.com")
        row.tenant_id = "globex"
        row.save()

    race(Domain, move_to_globex)
    assert shop_domain().id == "acme"
    assert shop_domain().id == "globex"


def test_a_change_in_a_transaction_invalidates_again_on_commit(
    rf, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        with transaction.atomic():
            Tenant.objects.filter(slug="globex").delete()
    # Until the commit, other connections read the old row and may cache it
    # after the signal's invalidation; the commit drops it again.
    assert resolve_tenant(host(rf, "acme")) is not None
    assert conf.current().registry_cache_sizes == (1, 0)
    assert callbacks
    for callback in callbacks:
        callback()
    assert conf.current().registry_cache_sizes == (0, 0)
