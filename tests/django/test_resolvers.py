"""Every built-in resolver through the public ``resolve_tenant(request)``,
with the hard cases of docs/resolvers/."""

import pytest
from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.test import override_settings

import tenantry
from tenantry import (
    RESOLVER_REGISTRY,
    ChainedResolver,
    HeaderResolver,
    PathResolver,
    SubdomainResolver,
    TenantInfo,
    get_tenant_resolver,
    resolve_tenant,
)
from tests import sample_resolvers

EVERYTHING = ["*"]


def tid(request):
    tenant = resolve_tenant(request)
    return None if tenant is None else tenant.id


# --- subdomain -------------------------------------------------------------


@pytest.mark.parametrize(
    "host, expected",
    [
        ("acme.example.com", "acme"),
        ("ACME.Example.COM.", "acme"),
        ("acme.example.com:8000", "acme"),
        ("evilexample.com", None),
        ("example.com", None),
        ("www.example.com", None),
        ("WWW.example.com", None),
        ("a.b.example.com", None),
        ("acme.example.org", None),
        ("[::1]:8000", None),
        ("127.0.0.1", None),
        ("127.0.0.1:8000", None),
        ("-acme.example.com", None),
    ],
)
def test_subdomain_with_main_domain(rf, tenant_config, settings, host, expected):
    settings.ALLOWED_HOSTS = EVERYTHING
    tenant_config(TENANT_RESOLVER="subdomain", TENANT_MAIN_DOMAIN="example.com")
    assert tid(rf.get("/", HTTP_HOST=host)) == expected


def test_deeper_subdomains_only_with_depth(rf, tenant_config, settings):
    settings.ALLOWED_HOSTS = EVERYTHING
    tenant_config(TENANT_MAIN_DOMAIN="example.com")
    assert tid(rf.get("/", HTTP_HOST="a.b.example.com")) is None
    tenant_config(TENANT_MAIN_DOMAIN="example.com", TENANT_SUBDOMAIN_DEPTH=2)
    assert tid(rf.get("/", HTTP_HOST="a.b.example.com")) == "a.b"
    assert tid(rf.get("/", HTTP_HOST="a.b.c.example.com")) is None


def test_subdomain_without_main_domain(rf, tenant_config, settings):
    settings.ALLOWED_HOSTS = EVERYTHING
    tenant_config(TENANT_RESOLVER="subdomain")
    assert tid(rf.get("/", HTTP_HOST="acme.example.com")) == "acme"
    assert tid(rf.get("/", HTTP_HOST="example.com")) is None
    assert tid(rf.get("/", HTTP_HOST="10.0.0.1")) is None
    assert tid(rf.get("/", HTTP_HOST="api.example.com")) is None


def test_exclude_is_case_insensitive_and_configurable(rf, tenant_config, settings):
    settings.ALLOWED_HOSTS = EVERYTHING
    tenant_config(TENANT_MAIN_DOMAIN="example.com", TENANT_SUBDOMAIN_EXCLUDE=["Status"])
    assert tid(rf.get("/", HTTP_HOST="STATUS.example.com")) is None
    assert tid(rf.get("/", HTTP_HOST="www.example.com")) == "www"


def test_localhost_for_development(rf, tenant_config, settings):
    settings.ALLOWED_HOSTS = [".localhost"]
    tenant_config(TENANT_MAIN_DOMAIN="localhost")
    assert tid(rf.get("/", HTTP_HOST="acme.localhost:8000")) == "acme"
    assert tid(rf.get("/", HTTP_HOST="localhost:8000")) is None


def test_allowed_hosts_enforced_like_django(rf, tenant_config, settings):
    settings.ALLOWED_HOSTS = [".example.com"]
    tenant_config(TENANT_MAIN_DOMAIN="example.com")
    request = rf.get("/", HTTP_HOST="acme.evil.org")
    with pytest.raises(DisallowedHost) as ours:
        resolve_tenant(request)
    with pytest.raises(DisallowedHost) as django:
        request.get_host()
    assert str(ours.value) == str(django.value)
    with pytest.raises(DisallowedHost):
        resolve_tenant(rf.get("/", HTTP_HOST="bad host"))


def test_allowed_hosts_changes_are_seen_without_a_signal(rf, tenant_config, settings):
    """Django's test runner assigns ALLOWED_HOSTS directly (no setting_changed)."""
    from django.conf import settings as live

    tenant_config(TENANT_MAIN_DOMAIN="example.com")
    live.ALLOWED_HOSTS = [".example.com"]
    assert tid(rf.get("/", HTTP_HOST="acme.example.com")) == "acme"
    live.ALLOWED_HOSTS = ["other.org"]
    with pytest.raises(DisallowedHost):
        resolve_tenant(rf.get("/", HTTP_HOST="acme.example.com"))
    live.ALLOWED_HOSTS.append(".example.com")
    assert tid(rf.get("/", HTTP_HOST="acme.example.com")) == "acme"


def test_debug_defaults_for_empty_allowed_hosts(rf, tenant_config, settings):
    settings.ALLOWED_HOSTS = []
    settings.DEBUG = True
    tenant_config(TENANT_MAIN_DOMAIN="localhost")
    assert tid(rf.get("/", HTTP_HOST="acme.localhost")) == "acme"
    with pytest.raises(DisallowedHost):
        resolve_tenant(rf.get("/", HTTP_HOST="acme.example.com"))


def test_x_forwarded_host_honoured_only_when_enabled(rf, tenant_config, settings):
    settings.ALLOWED_HOSTS = EVERYTHING
    tenant_config(TENANT_MAIN_DOMAIN="example.com")
    request = rf.get("/", HTTP_HOST="proxy.example.com", HTTP_X_FORWARDED_HOST="acme.example.com")
    assert tid(request) == "proxy"
    settings.USE_X_FORWARDED_HOST = True
    assert tid(request) == "acme"
    # Django does not split X-Forwarded-Host lists; neither do we.
    listed = rf.get("/", HTTP_X_FORWARDED_HOST="acme.example.com, b.example.com")
    with pytest.raises(DisallowedHost):
        resolve_tenant(listed)


def test_no_host_header_uses_server_name(rf, tenant_config, settings):
    settings.ALLOWED_HOSTS = EVERYTHING
    tenant_config(TENANT_MAIN_DOMAIN="example.com")
    request = rf.get("/")
    request.META.pop("HTTP_HOST", None)
    request.META["SERVER_NAME"] = "acme.example.com"
    request.META["SERVER_PORT"] = "80"
    assert tid(request) == "acme"


# --- path -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/acme/dashboard/", "acme"),
        ("/acme", "acme"),
        ("/", None),
        ("/admin/", None),
        ("/static/app.css", None),
        ("/acme%0A/x", None),
        ("/a%3Ab/x", None),
        ("/%20acme/x", None),
        ("/" + "a" * 129 + "/x", None),
    ],
)
def test_path(rf, tenant_config, path, expected):
    tenant_config(TENANT_RESOLVER="path")
    assert tid(rf.get(path)) == expected


def test_path_position(rf, tenant_config):
    tenant_config(TENANT_RESOLVER="path", TENANT_PATH_POSITION=2, TENANT_PATH_EXCLUDE=[])
    assert tid(rf.get("/v1/acme/items")) == "acme"
    assert tid(rf.get("/v1")) is None


# --- header -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("acme", "acme"),
        ("a:b", None),
        ("  acme ", None),
        ("x" * 10_000, None),
        ("", None),
        ("acme\r\n", None),
        ("{tenant:b}", None),
    ],
)
def test_header(rf, tenant_config, value, expected):
    tenant_config(TENANT_RESOLVER="header")
    assert tid(rf.get("/", HTTP_X_TENANT_ID=value)) == expected


def test_header_name_configurable(rf, tenant_config):
    tenant_config(TENANT_RESOLVER="header", TENANT_HEADER="X-Org")
    assert tid(rf.get("/", HTTP_X_ORG="globex", HTTP_X_TENANT_ID="acme")) == "globex"
    assert tid(rf.get("/", headers={"X-Org": "initech"})) == "initech"


# --- session ----------------------------------------------------------------


class FakeUser:
    is_authenticated = True

    def __init__(self, **attrs):
        self.__dict__.update(attrs)


def session_request(rf, session=None, user=None):
    request = rf.get("/")
    if session is not None:
        request.session = session
    if user is not None:
        request.user = user
    return request


@pytest.mark.parametrize(
    "value, expected",
    [
        ("acme", "acme"),
        (42, "42"),
        ({"x": 1}, None),
        (True, None),
        ("a:b", None),
        ("", None),
        (None, None),
        (["acme"], None),
    ],
)
def test_session_values(rf, tenant_config, value, expected):
    tenant_config(TENANT_RESOLVER="session", TENANT_USER_ATTRIBUTE=None)
    assert tid(session_request(rf, {"tenant_id": value})) == expected


def test_session_then_jwt_then_user_attribute(rf, tenant_config):
    tenant_config(TENANT_RESOLVER="session", TENANT_JWT_CLAIM="org")
    user = FakeUser(jwt_payload={"org": "from-jwt"}, tenant_id="from-user")
    assert tid(session_request(rf, {"tenant_id": "from-session"}, user)) == "from-session"
    assert tid(session_request(rf, {}, user)) == "from-jwt"
    assert tid(session_request(rf, {}, FakeUser(jwt_payload={}, tenant_id=7))) == "7"
    assert tid(session_request(rf, {}, FakeUser(jwt_payload=None, tenant_id="u"))) == "u"
    assert tid(session_request(rf, {}, FakeUser(jwt_payload=None))) is None
    assert tid(session_request(rf)) is None


def test_jwt_payload_none_does_not_raise(rf, tenant_config):
    tenant_config(TENANT_RESOLVER="session", TENANT_USER_ATTRIBUTE=None)
    assert tid(session_request(rf, {}, FakeUser(jwt_payload=None))) is None


def test_user_attribute_path(rf, tenant_config):
    tenant_config(TENANT_RESOLVER="session", TENANT_USER_ATTRIBUTE="profile.org_slug")
    user = FakeUser(profile=FakeUser(org_slug="acme"))
    assert tid(session_request(rf, {}, user)) == "acme"
    assert tid(session_request(rf, {}, FakeUser(profile=None))) is None


# --- custom and callables ---------------------------------------------------


def test_custom_resolver(rf, tenant_config):
    tenant_config(
        TENANT_RESOLVER="custom", TENANT_CUSTOM_RESOLVER="tests.sample_resolvers.from_query"
    )
    assert tid(rf.get("/?tenant=acme")) == "acme"
    assert tid(rf.get("/?tenant=a:b")) is None
    assert tid(rf.get("/")) is None


def test_custom_resolver_results(rf, tenant_config):
    tenant_config(
        TENANT_RESOLVER="custom", TENANT_CUSTOM_RESOLVER="tests.sample_resolvers.returns_int"
    )
    assert tid(rf.get("/")) == "42"
    tenant_config(
        TENANT_RESOLVER="custom",
        TENANT_CUSTOM_RESOLVER="tests.sample_resolvers.returns_tenant_info",
    )
    tenant = resolve_tenant(rf.get("/"))
    assert tenant.name == "Acme Corp" and tenant.get_setting("theme") == "dark"


def test_custom_resolver_wrong_type_names_the_resolver(rf, tenant_config):
    tenant_config(
        TENANT_RESOLVER="custom", TENANT_CUSTOM_RESOLVER="tests.sample_resolvers.returns_wrong_type"
    )
    with pytest.raises(TypeError) as exc:
        resolve_tenant(rf.get("/"))
    assert "tests.sample_resolvers.returns_wrong_type" in str(exc.value)
    assert "dict" in str(exc.value)


def test_callable_and_dotted_class_as_resolver(rf, tenant_config):
    tenant_config(TENANT_RESOLVER=lambda request: "from-lambda")
    assert tid(rf.get("/")) == "from-lambda"
    tenant_config(TENANT_RESOLVER="tests.sample_resolvers.QueryResolver")
    assert tid(rf.get("/?t=acme")) == "acme"
    assert isinstance(get_tenant_resolver(), sample_resolvers.QueryResolver)


def test_python_resolver_wrong_type_raises(rf, tenant_config):
    tenant_config(TENANT_RESOLVER="tests.sample_resolvers.BadResult")
    with pytest.raises(TypeError, match="BadResult"):
        resolve_tenant(rf.get("/"))


# --- chains -----------------------------------------------------------------


def test_chain_first_match_wins_and_stops(rf, tenant_config, settings):
    settings.ALLOWED_HOSTS = EVERYTHING
    RESOLVER_REGISTRY["query"] = sample_resolvers.QueryResolver
    RESOLVER_REGISTRY["never"] = sample_resolvers.NeverCalled
    try:
        tenant_config(
            TENANT_RESOLVER=["header", "query", "subdomain", "never"],
            TENANT_MAIN_DOMAIN="example.com",
        )
        sample_resolvers.calls.clear()
        assert tid(rf.get("/?t=q", HTTP_HOST="acme.example.com", HTTP_X_TENANT_ID="h")) == "h"
        assert sample_resolvers.calls == []
        assert tid(rf.get("/?t=q", HTTP_HOST="acme.example.com")) == "q"
        assert sample_resolvers.calls == ["QueryResolver"]
        sample_resolvers.calls.clear()
        assert tid(rf.get("/", HTTP_HOST="acme.example.com")) == "acme"
        assert sample_resolvers.calls == ["QueryResolver"]
        resolver = get_tenant_resolver()
        assert isinstance(resolver, ChainedResolver)
        assert [type(r).__name__ for r in resolver.resolvers] == [
            "HeaderResolver",
            "QueryResolver",
            "SubdomainResolver",
            "NeverCalled",
        ]
    finally:
        del RESOLVER_REGISTRY["query"], RESOLVER_REGISTRY["never"]


def test_chained_resolver_built_by_hand(rf, tenant_config, settings):
    settings.ALLOWED_HOSTS = EVERYTHING
    tenant_config(TENANT_MAIN_DOMAIN="example.com")
    chain = ChainedResolver([PathResolver(), sample_resolvers.QueryResolver(), SubdomainResolver()])
    assert chain.resolve(rf.get("/acme/x")).id == "acme"
    assert chain.resolve(rf.get("/", HTTP_HOST="globex.example.com")).id == "globex"
    with pytest.raises(TypeError):
        ChainedResolver([object()])


def test_subclassing_a_builtin_runs_the_override(rf, tenant_config):
    class Upper(HeaderResolver):
        def resolve(self, request):
            found = super().resolve(request)
            return None if found is None else found.id.upper()

    RESOLVER_REGISTRY["upper"] = Upper
    try:
        tenant_config(TENANT_RESOLVER=["upper"])
        assert tid(rf.get("/", HTTP_X_TENANT_ID="acme")) == "ACME"
    finally:
        del RESOLVER_REGISTRY["upper"]


def test_base_class_resolve_is_abstract(rf):
    with pytest.raises(NotImplementedError):
        tenantry.TenantResolver().resolve(rf.get("/"))


# --- default and config lifecycle -------------------------------------------


def test_default_tenant(rf, tenant_config):
    tenant_config(TENANT_RESOLVER="header", TENANT_DEFAULT="public")
    assert tid(rf.get("/")) == "public"
    assert tid(rf.get("/", HTTP_X_TENANT_ID="acme")) == "acme"
    tenant_config(TENANT_RESOLVER="header", TENANT_DEFAULT=5)
    assert tid(rf.get("/")) == "5"


def test_override_settings_rebuilds_the_resolver(rf):
    with override_settings(DJUST_CONFIG={"TENANT_RESOLVER": "path"}):
        assert tid(rf.get("/acme/")) == "acme"
        assert isinstance(get_tenant_resolver(), PathResolver)
        with override_settings(DJUST_CONFIG={"TENANT_RESOLVER": "header"}):
            assert tid(rf.get("/acme/")) is None
            assert isinstance(get_tenant_resolver(), HeaderResolver)
        assert tid(rf.get("/acme/")) == "acme"


def test_get_tenant_resolver_is_cached(tenant_config):
    tenant_config(TENANT_RESOLVER="path")
    assert get_tenant_resolver() is get_tenant_resolver()


def test_get_config_reads_djust_config(tenant_config):
    tenant_config(TENANT_RESOLVER="path", CUSTOM_THING=3)
    assert PathResolver().get_config("CUSTOM_THING") == 3
    assert PathResolver().get_config("MISSING", "dflt") == "dflt"


def test_resolvers_return_tenant_info(rf, tenant_config):
    tenant_config(TENANT_RESOLVER="header")
    tenant = resolve_tenant(rf.get("/", HTTP_X_TENANT_ID="acme"))
    assert isinstance(tenant, TenantInfo)
    assert tenant.name == "acme" and tenant.settings == {}


def test_unknown_resolver_name_is_an_error(tenant_config):
    tenant_config(TENANT_RESOLVER="subdomian")
    with pytest.raises(ImproperlyConfigured) as exc:
        get_tenant_resolver()
    assert "TENANT_RESOLVER" in str(exc.value) and "subdomian" in str(exc.value)
