"""A bad DJUST_CONFIG is ImproperlyConfigured naming the key and the value,
and ``manage.py check`` reports every problem with its own id."""

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from tenantry import _core, conf, get_tenant_resolver
from tenantry.checks import check_id


@pytest.mark.parametrize(
    "config, key, value_text",
    [
        ({"TENANT_RESOLVER": "nosuch"}, "TENANT_RESOLVER", "nosuch"),
        ({"TENANT_RESOLVER": ["path", "nosuch"]}, "TENANT_RESOLVER", "nosuch"),
        ({"TENANT_RESOLVER": 5}, "TENANT_RESOLVER", "5"),
        ({"TENANT_RESOLVER": []}, "TENANT_RESOLVER", "[]"),
        ({"TENANT_RESOLVER": "no.such.Module"}, "TENANT_RESOLVER", "no.such.Module"),
        ({"TENANT_PATH_POSITION": 0}, "TENANT_PATH_POSITION", "0"),
        ({"TENANT_PATH_POSITION": "1"}, "TENANT_PATH_POSITION", '"1"'),
        ({"TENANT_PATH_POSITION": True}, "TENANT_PATH_POSITION", "True"),
        ({"TENANT_SUBDOMAIN_EXCLUDE": "www"}, "TENANT_SUBDOMAIN_EXCLUDE", '"www"'),
        ({"TENANT_SUBDOMAIN_EXCLUDE": ["www", 3]}, "TENANT_SUBDOMAIN_EXCLUDE", "3"),
        ({"TENANT_MAIN_DOMAIN": "exa mple.com"}, "TENANT_MAIN_DOMAIN", "exa mple.com"),
        ({"TENANT_SUBDOMAIN_DEPTH": 0}, "TENANT_SUBDOMAIN_DEPTH", "0"),
        ({"TENANT_HEADER": "X Tenant"}, "TENANT_HEADER", "X Tenant"),
        ({"TENANT_REQUIRED": "yes"}, "TENANT_REQUIRED", "yes"),
        ({"TENANT_DEFAULT": "a:b"}, "TENANT_DEFAULT", "a:b"),
        ({"TENANT_DEFAULT": 1.5}, "TENANT_DEFAULT", "1.5"),
        ({"TENANT_STRICT": "loose"}, "TENANT_STRICT", "loose"),
        ({"TENANT_CONTEXT_NAME": "my tenant"}, "TENANT_CONTEXT_NAME", "my tenant"),
        ({"TENANT_EXEMPT_PATHS": ["health"]}, "TENANT_EXEMPT_PATHS", "health"),
        ({"TENANT_KEY_PREFIX": "a{b}"}, "TENANT_KEY_PREFIX", "a{b}"),
        ({"PRESENCE_BACKEND": "tenant_mongo"}, "PRESENCE_BACKEND", "tenant_mongo"),
        ({"PRESENCE_TIMEOUT": 0}, "PRESENCE_TIMEOUT", "0"),
        ({"PRESENCE_REDIS_URL": "localhost:6379"}, "PRESENCE_REDIS_URL", "localhost:6379"),
        ({"STATE_BACKEND": "disk"}, "STATE_BACKEND", "disk"),
        (
            {"TENANT_RESOLVER": "custom", "TENANT_CUSTOM_RESOLVER": "tests.nosuch.resolve"},
            "TENANT_CUSTOM_RESOLVER",
            "tests.nosuch.resolve",
        ),
        (
            {
                "TENANT_RESOLVER": "custom",
                "TENANT_CUSTOM_RESOLVER": "tests.sample_resolvers.not_callable",
            },
            "TENANT_CUSTOM_RESOLVER",
            "int",
        ),
        ({"TENANT_RESOLVER": "custom"}, "TENANT_CUSTOM_RESOLVER", "must be set"),
        ({"TENANT_MEMBERSHIP_CHECK": "nope.nope"}, "TENANT_MEMBERSHIP_CHECK", "nope.nope"),
    ],
)
def test_bad_values_name_key_and_value(tenant_config, config, key, value_text):
    tenant_config(**config)
    with pytest.raises(ImproperlyConfigured) as exc:
        get_tenant_resolver()
    message = str(exc.value)
    assert key in message, message
    assert value_text in message, message
    # manage.py check reports the same problem under the key's id.
    found = [m for m in checks.run_checks(tags=["tenantry"]) if m.id == check_id(key)]
    assert found and found[0].level == checks.ERROR, [m.id for m in checks.run_checks()]


def test_redis_password_never_in_messages(tenant_config):
    tenant_config(PRESENCE_REDIS_URL="redis://:hunter2@cache:notaport/0")
    with pytest.raises(ImproperlyConfigured) as exc:
        get_tenant_resolver()
    assert "hunter2" not in str(exc.value)
    assert "***" in str(exc.value)


def test_djust_config_must_be_a_dict(settings):
    settings.DJUST_CONFIG = ["TENANT_RESOLVER"]
    with pytest.raises(ImproperlyConfigured, match="must be a dict"):
        get_tenant_resolver()
    assert [m.id for m in checks.run_checks(tags=["tenantry"])] == ["tenantry.E100"]


def test_all_problems_reported_at_once(tenant_config):
    tenant_config(TENANT_PATH_POSITION=0, TENANT_STRICT="x", PRESENCE_TIMEOUT=-1)
    ids = {m.id for m in checks.run_checks(tags=["tenantry"])}
    assert ids == {
        check_id("TENANT_PATH_POSITION"),
        check_id("TENANT_STRICT"),
        check_id("PRESENCE_TIMEOUT"),
    }


def test_unknown_tenant_keys_warn(tenant_config):
    tenant_config(TENANT_RESOLVERS="path", SOMETHING_ELSE=1)
    messages = checks.run_checks(tags=["tenantry"])
    assert [(m.id, m.level) for m in messages] == [("tenantry.W001", checks.WARNING)]
    assert "TENANT_RESOLVERS" in messages[0].msg


def test_a_good_config_has_no_messages(tenant_config):
    tenant_config(TENANT_RESOLVER=["header", "path"], TENANT_PATH_POSITION=2)
    assert checks.run_checks(tags=["tenantry"]) == []


def test_check_ids_are_stable_positions():
    assert check_id("TENANT_RESOLVER") == "tenantry.E001"
    assert _core.CONFIG_KEYS[0] == "TENANT_RESOLVER"
    assert check_id("NOT_A_KEY") == "tenantry.E100"


def test_reload_recompiles(tenant_config, rf):
    config = tenant_config(TENANT_RESOLVER="path")
    assert conf.current().required is True
    config["TENANT_REQUIRED"] = False  # in-place edits are not seen...
    assert conf.current().required is True
    conf.reload()  # ...until a reload
    assert conf.current().required is False


def test_legacy_djust_tenants_setting_warns(settings):
    settings.DJUST_TENANTS = {"REQUIRED": True}
    messages = [m for m in checks.run_checks(tags=["tenantry"]) if m.id == "tenantry.W002"]
    assert len(messages) == 1 and "TENANT_REQUIRED" in messages[0].msg


def _w003():
    return [m for m in checks.run_checks(tags=["tenantry"]) if m.id == "tenantry.W003"]


def _assert_unconfigured_warning(client, state):
    messages = _w003()
    assert [(m.id, m.level) for m in messages] == [("tenantry.W003", checks.WARNING)]
    assert state in messages[0].msg and "404" in messages[0].msg
    assert "TENANT_RESOLVER" in messages[0].hint
    # What it warns about: a host that names no tenant is refused.
    assert client.get("/public/", HTTP_HOST="localhost").status_code == 404


@pytest.mark.parametrize(
    "config, state",
    [
        (None, "is empty or missing"),
        ({}, "is empty or missing"),
        ({"rate_limit": {}}, "has no TENANT_* key"),  # djust's own keys only
    ],
)
@pytest.mark.django_db
def test_middleware_without_tenant_settings_warns(settings, client, config, state):
    """djust.tenants' middleware passed requests through with no tenant
    setting; tenantry's resolves with the defaults and refuses a host
    without a tenant, which the warning says."""
    assert "tenantry.middleware.TenantMiddleware" in settings.MIDDLEWARE
    settings.DJUST_CONFIG = config
    _assert_unconfigured_warning(client, state)


@pytest.mark.django_db
def test_middleware_without_djust_config_warns(client):
    from django.conf import settings
    from django.test import override_settings

    try:
        with override_settings():
            del settings.DJUST_CONFIG  # sends no setting_changed: reload by hand
            conf.reload()
            _assert_unconfigured_warning(client, "is empty or missing")
    finally:
        conf.reload()
    assert _w003() == []


def test_no_unconfigured_warning_once_tenancy_is_configured(settings):
    settings.DJUST_CONFIG = {"TENANT_REQUIRED": False}
    assert _w003() == []
    settings.DJUST_CONFIG = {"TENANT_RESOLVER": "subdomain"}
    assert _w003() == []


def test_no_unconfigured_warning_without_the_middleware(settings):
    settings.DJUST_CONFIG = {}
    settings.MIDDLEWARE = [
        m for m in settings.MIDDLEWARE if m != "tenantry.middleware.TenantMiddleware"
    ]
    assert _w003() == []


def test_legacy_settings_get_their_own_warning_not_the_unconfigured_one(settings):
    settings.DJUST_CONFIG = {}
    settings.DJUST_TENANTS = {"RESOLVER": "subdomain"}
    ids = [m.id for m in checks.run_checks(tags=["tenantry"])]
    assert "tenantry.W002" in ids and "tenantry.W003" not in ids
