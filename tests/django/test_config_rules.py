"""One config reader and each rule in one place (docs/architecture.md#configuration-and-rules).

``DJUST_CONFIG`` is parsed once, in the Rust core; Python reads the parsed
fields of ``tenantry.conf.current()`` and never a key of the dict itself.
The rules Python and Rust both apply (the ``tenant:<id>:`` scope, the
``{tenant:<id>}`` hash tag, custom-domain normalisation, header → META
names, the plan keys) are written once in the core and called from Python.
"""

from __future__ import annotations

import ast
from io import StringIO
from pathlib import Path

import pytest
from django.core import checks
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError

import tenantry
from tenantry import TenantMismatchError, TenantMixin, _core, cache, conf, tenant_context
from tenantry.checks import check_id
from tenantry.management import subcommands
from tenantry.presence import TenantAwareBackendMixin, get_presence_router
from tests.app.models import Domain, Tenant

PACKAGE = Path(tenantry.__file__).parent


# -- one reader -----------------------------------------------------------------


def test_every_field_python_reads_is_parsed_and_typed_by_the_core(tenant_config):
    tenant_config(
        TENANT_MAIN_DOMAIN="Example.COM.",
        TENANT_SUBDOMAIN_EXCLUDE=["WWW", "Status"],
        TENANT_SUBDOMAIN_DEPTH=2,
        TENANT_PATH_POSITION=3,
        TENANT_PATH_EXCLUDE=["Static"],
        TENANT_HEADER="X-Org",
        TENANT_SESSION_KEY="org",
        TENANT_JWT_CLAIM="org_claim",
        TENANT_USER_ATTRIBUTE="profile.org",
        TENANT_MODEL="app.Tenant",
        TENANT_MODEL_ID_FIELD="slug",
        TENANT_MODEL_NAME_FIELD=None,
        TENANT_MODEL_SETTINGS_FIELD="settings",
        TENANT_DOMAIN_MODEL="app.Domain",
        TENANT_DOMAIN_FIELD="domain",
        TENANT_DOMAIN_TENANT_FIELD="tenant_id",
        TENANT_CACHE_TTL=5,
        TENANT_CACHE_SIZE=7,
        SESSION_TTL=90.9,
    )
    config = conf.current()
    assert config.main_domain == "example.com"
    assert config.subdomain_exclude == ["www", "status"]
    assert config.subdomain_depth == 2
    assert config.path_position == 3
    assert config.path_exclude == ["static"]
    assert (config.header, config.header_meta_key) == ("X-Org", "HTTP_X_ORG")
    assert (config.session_key, config.jwt_claim) == ("org", "org_claim")
    assert config.user_attribute == "profile.org"
    assert config.tenant_model_label == "app.Tenant"
    assert config.tenant_model == ("app.Tenant", "slug")
    assert config.tenant_id_field == "slug"
    assert config.tenant_name_field is None
    assert config.tenant_settings_field == "settings"
    assert config.domain_model == "app.Domain"
    assert (config.domain_field, config.domain_tenant_field) == ("domain", "tenant_id")
    assert (config.cache_ttl, config.cache_size) == (5.0, 7)
    assert config.session_ttl == 90
    assert not hasattr(config, "source")  # no raw dict to read keys from


def test_defaults_live_in_the_core_only(tenant_config):
    tenant_config()
    config = conf.current()
    assert config.main_domain is None
    assert config.subdomain_exclude == ["www", "api", "admin"]
    assert config.subdomain_depth == 1
    assert config.path_position == 1
    assert config.path_exclude == ["admin", "api", "static", "media"]
    assert (config.header, config.header_meta_key) == ("X-Tenant-ID", "HTTP_X_TENANT_ID")
    assert config.user_attribute == "tenant_id"
    assert config.tenant_model_label is None
    assert (config.tenant_id_field, config.tenant_name_field) == ("slug", "name")
    assert config.tenant_settings_field == "settings"
    assert config.domain_model is None
    assert (config.domain_field, config.domain_tenant_field) == ("domain", "tenant_id")
    assert config.session_ttl == 3600


@pytest.mark.parametrize("value", ["3600", True, [60]])
def test_a_bad_session_ttl_names_the_key(tenant_config, value):
    tenant_config(SESSION_TTL=value)
    with pytest.raises(ImproperlyConfigured, match=r"SESSION_TTL.*number of seconds"):
        conf.reload()
    found = [m for m in checks.run_checks(tags=["tenantry"]) if m.id == check_id("SESSION_TTL")]
    assert found and "SESSION_TTL" in found[0].msg


def _raw_config_reads(source: str, name: str) -> list[str]:
    """Places in ``source`` that read a DJUST_CONFIG key themselves: a
    ``.get("<config key>")`` or ``[<config key>]``, the compiled config's raw
    dict (``.source``), or the dict itself (``settings.DJUST_CONFIG``,
    ``getattr(settings, "DJUST_CONFIG")``, ``get_djust_config()``)."""
    keys = set(_core.CONFIG_KEYS)
    found = []
    for node in ast.walk(ast.parse(source, name)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            constants = [a.value for a in node.args if isinstance(a, ast.Constant)]
            if called == "get_djust_config":
                found.append(f"{where} get_djust_config()")
            if called == "get" and constants[:1] and constants[0] in keys:
                found.append(f"{where} .get({constants[0]!r})")
            if called == "getattr" and "DJUST_CONFIG" in constants:
                found.append(f"{where} getattr(..., 'DJUST_CONFIG')")
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and node.slice.value in keys
        ):
            found.append(f"{where} [{node.slice.value!r}]")
        if isinstance(node, ast.Attribute) and (
            node.attr == "DJUST_CONFIG"
            or (node.attr == "source" and isinstance(node.value, ast.Call))
        ):
            found.append(f"{where} .{node.attr}")
    return found


def test_only_conf_hands_the_dict_to_the_core_and_no_module_reads_a_key():
    reads = [
        read
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "conf.py"
        for read in _raw_config_reads(path.read_text(), str(path.relative_to(PACKAGE)))
    ]
    assert reads == []
    # The scan sees every form of a raw read.
    assert len(_raw_config_reads((PACKAGE / "conf.py").read_text(), "conf.py")) >= 3
    sample = (
        "conf.current().source.get('TENANT_HEADER', 'X-Tenant-ID')\n"
        "settings.DJUST_CONFIG['TENANT_MODEL']\n"
        "conf.get_djust_config().get('SESSION_TTL')\n"
    )
    assert len(_raw_config_reads(sample, "sample")) == 6


# -- each rule in one place -------------------------------------------------------


def test_the_tenant_scope_is_the_routers_rule(tenant_config):
    tenant_config(TENANT_RESOLVER="header")
    scope = _core.tenant_scope("acme")
    assert scope == f"{_core.TENANT_SCOPE}acme:"
    assert _core.split_tenant_scope(scope + "board") == ("acme", "board")
    assert _core.split_tenant_scope("TENANT:acme:board") is None
    assert _core.split_tenant_scope("tenant:acme") is None
    # A key built with the scope is routed to that tenant, and to no other.
    router = get_presence_router()
    with tenant_context("acme"):
        assert router.resolve(scope + "board") == ("acme", "board")
    with tenant_context("globex"), pytest.raises(TenantMismatchError):
        router.resolve(scope + "board")
    # djust's saved-state prefix of a TenantMixin view is the scope too.
    view = TenantMixin()
    view._tenant = tenantry.TenantInfo("acme")
    assert view.get_state_key_prefix() + ":" == scope
    backend = TenantAwareBackendMixin("acme")
    assert backend._tenant_key("x") == scope + "x"


def test_the_cache_hash_tag_is_built_and_recognised_by_one_rule(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "config-rules",
            "KEY_FUNCTION": "tenantry.cache.make_key",
        }
    }
    tag = _core.tenant_hash_tag("acme")
    assert tag == "{tenant:acme}"
    with tenant_context("acme"):
        key = caches["default"].make_key("k")
    assert f":{tag}:" in key
    assert _core.has_tenant_hash_tag(key) and cache.made_by_make_key(key)
    with cache.shared():
        shared_key = caches["default"].make_key("k")
    assert not _core.has_tenant_hash_tag(shared_key) and cache.made_by_make_key(shared_key)
    assert not cache.made_by_make_key(":1:k")
    assert not _core.has_tenant_hash_tag("{tenant:acme}:k")  # not a part of the key


@pytest.mark.django_db
def test_custom_domains_are_normalised_by_one_rule(settings):
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": ["domain", "subdomain"],
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_MODEL": "app.Tenant",
        "TENANT_DOMAIN_MODEL": "app.Domain",
    }
    Tenant.objects.create(slug="acme", name="Acme")
    assert _core.normalize_domain("  Shop.ACME.com.. ") == "shop.acme.com"
    row = Domain(domain=" Shop.ACME.com. ", tenant_id="acme")
    row.save()
    assert row.domain == "shop.acme.com"
    call_command("tenantry", "domain", " Blog.ACME.com.", "acme", stdout=StringIO())
    assert Domain.objects.filter(domain="blog.acme.com").exists()
    # The platform-domain check normalises the same way.
    assert _core.custom_domain_conflict(" Example.COM. ", "acme") is not None


def test_header_meta_names_come_from_one_rule(tenant_config):
    assert _core.header_meta_key("X-Tenant-ID") == "HTTP_X_TENANT_ID"
    assert _core.header_meta_key("HTTP_X_ORG") == "HTTP_X_ORG"
    with pytest.raises(ValueError, match="letters, digits and '-'"):
        _core.header_meta_key("X_Org")
    tenant_config(TENANT_RESOLVER="header", TENANT_HEADER="X-Org")
    assert conf.current().header_meta_key == _core.header_meta_key("X-Org")
    out = StringIO()
    call_command("tenantry", "check", "example.com", "-H", "X-Org: acme", stdout=out)
    assert "result: 'acme'" in out.getvalue()
    with pytest.raises(CommandError, match="--header header name must be an HTTP header"):
        call_command("tenantry", "check", "example.com", "-H", "X_Org: acme", stdout=StringIO())


def test_plan_keys_come_from_the_core(tenant_config):
    tenant_config(TENANT_RESOLVER="header")
    assert _core.PLAN_KEYS == ("rate_limits", "quotas")
    from tenantry import ratelimit

    for key in _core.PLAN_KEYS:
        planned = _core.TenantInfo("acme", settings={key: {}})
        assert not ratelimit._unlimited("http", planned), key
    assert ratelimit._unlimited("http", _core.TenantInfo("acme", settings={"other": 1}))


# -- the management command, one module per subcommand ------------------------------


def test_the_command_dispatches_to_one_module_per_subcommand():
    names = [module.NAME for module in subcommands.SUBCOMMANDS]
    assert names == [
        "list",
        "create",
        "delete",
        "deactivate",
        "suspend",
        "resume",
        "adopt",
        "domain",
        "check",
        "rls",
        "usage",
        "audit",
        "export",
        "import",
        "migrate",
        "move",
    ]
    for module in subcommands.SUBCOMMANDS:
        assert module.__name__ == f"tenantry.management.subcommands.{module.NAME}"
        assert callable(module.add_arguments) and callable(module.handle)
    command = PACKAGE / "management" / "commands" / "tenantry.py"
    assert len(command.read_text().splitlines()) < 60
