"""The plugin's reset between tests (tenantry.testing), in the issue's
scenario: DJUST_CONFIG stays the same for the whole module (as when it lives
in settings.py), so no ``setting_changed`` drops the registry cache. Test A
creates and resolves acme (cached in Rust); test B, after the rollback,
expects acme to be unknown. Without the reset B got the cached row and 200."""

import pytest
from django.test import override_settings

from tenantry import resolve_tenant
from tests.app.models import Tenant

REGISTRY = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "app.Tenant",
}


@pytest.fixture(autouse=True, scope="module")
def registry():
    with override_settings(DJUST_CONFIG=REGISTRY):
        yield


@pytest.mark.django_db
def test_a_caches_acme(client):
    Tenant.objects.create(slug="acme", name="Acme")
    assert client.get("/items/", HTTP_HOST="acme.example.com").status_code == 200


@pytest.mark.django_db
def test_b_after_the_rollback_acme_is_unknown_again(client, rf):
    assert not Tenant.objects.exists()
    assert resolve_tenant(rf.get("/", HTTP_HOST="acme.example.com")) is None
    assert client.get("/items/", HTTP_HOST="acme.example.com").status_code == 404


TENANT_CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "tenantry-reset-test",
        "KEY_FUNCTION": "tenantry.cache.make_key",
    }
}


def test_c_caches_a_tenant_value(settings):
    from django.core.cache import cache

    from tenantry import tenant_context

    settings.CACHES = TENANT_CACHES
    with tenant_context("acme", must_exist=False):
        cache.set("greeting", "hello from test c")
        assert cache.get("greeting") == "hello from test c"


def test_d_the_tenant_cache_does_not_survive_the_test(settings):
    from django.core.cache import cache

    from tenantry import tenant_context

    settings.CACHES = TENANT_CACHES
    with tenant_context("acme", must_exist=False):
        assert cache.get("greeting") is None
