"""Switching from djust.tenants is an import change (docs/migrating-from-djust.md): djust's own
tenant tests run against tenantry, the seams djust's tests (and the suites
users copied from them) rely on, and plain LiveViews beside tenant views."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from unittest.mock import Mock, patch

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.http import Http404
from djust import LiveView
from djust.presence import PresenceMixin
from djust.state_backends.memory import InMemoryStateBackend

from tenantry import (
    ChainedResolver,
    HeaderResolver,
    PathResolver,
    SessionResolver,
    SubdomainResolver,
    TenantAwareBackendMixin,
    TenantAwareMemoryBackend,
    TenantInfo,
    TenantMixin,
    TenantNotSetError,
    TenantScopedMixin,
    get_tenant_presence_backend,
    get_tenant_resolver,
    resolve_tenant,
    tenant_context,
)
from tenantry.djust_state import TenantDjustStateBackend
from tenantry.mixins import context_processor
from tenantry.state import get_djust_state_backend, get_state_router
from tests.app import views
from tests.app.models import Item

ROOT = Path(__file__).resolve().parents[2]


# --- djust's own tenant tests, imports rewritten ------------------------------


def test_djusts_own_tenant_tests_pass_against_tenantry():
    """The tests the djust wheel ships about tenancy, run against tenantry:
    at least FLOOR pass and every failure is a documented difference."""
    script = ROOT / "scripts" / "djust_compat.py"
    done = subprocess.run(
        [sys.executable, str(script), "--library", "tenantry", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode in (0, 1), done.stderr
    result = json.loads(done.stdout)["tenantry"]
    sys.path.insert(0, str(script.parent))
    try:
        import djust_compat
    finally:
        sys.path.remove(str(script.parent))
    assert result["total"] == 117, result["by_file"]
    assert result["unexplained"] == [], result["unexplained"]
    assert result["passed"] >= djust_compat.FLOOR, result["failed"]


def test_the_rewrite_keeps_djusts_audit_and_security_and_maps_the_rest():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from djust_compat import rewrite
    finally:
        sys.path.pop(0)
    source = (
        "from djust.tenants.middleware import (\n    _current_tenant,\n    tenant_context,\n)\n"
        "from djust.tenants.audit import emit_audit\n"
        'patch("djust.tenants.mixin.resolve_tenant")\n'
        'caplog.at_level(10, logger="djust.tenants.audit")\n'
    )
    assert rewrite(source) == (
        "from tenantry.context import _current as _current_tenant\n"
        "from tenantry.middleware import tenant_context\n"
        "from djust.tenants.audit import emit_audit\n"
        'patch("tenantry.mixins.resolve_tenant")\n'
        'caplog.at_level(10, logger="djust.tenants.audit")\n'
    )


# --- resolvers: an overridden get_config is honoured ---------------------------


class SecondSegment(PathResolver):
    """djust.tenants style: a subclass answering its own config."""

    def get_config(self, key, default=None):
        if key == "TENANT_PATH_POSITION":
            return 2
        return super().get_config(key, default)


class BadPosition(PathResolver):
    def get_config(self, key, default=None):
        return 0 if key == "TENANT_PATH_POSITION" else default


def test_a_subclass_get_config_is_honoured_everywhere(rf, tenant_config):
    tenant_config(TENANT_RESOLVER=f"{__name__}.SecondSegment")
    request = rf.get("/v1/acme/x")
    assert SecondSegment().resolve(request).id == "acme"
    assert resolve_tenant(request).id == "acme"  # compiled from TENANT_RESOLVER
    assert ChainedResolver([SecondSegment()]).resolve(request).id == "acme"
    # The plain built-in still reads the compiled config (position 1).
    assert PathResolver().resolve(request).id == "v1"
    assert ChainedResolver([PathResolver()]).resolve(request).id == "v1"


def test_an_instance_patched_get_config_is_honoured(rf, tenant_config):
    tenant_config(TENANT_RESOLVER="path")
    resolver = PathResolver()
    request = rf.get("/v1/acme/x")
    second = {"TENANT_PATH_POSITION": 2}
    with patch.object(resolver, "get_config", side_effect=lambda k, d=None: second.get(k, d)):
        assert resolver.resolve(request).id == "acme"
        assert ChainedResolver([resolver]).resolve(request).id == "acme"
    assert resolver.resolve(request).id == "v1"  # the patch is gone: compiled again


def test_get_config_answers_are_validated_and_named(rf):
    with pytest.raises(ValueError, match=r"TENANT_PATH_POSITION.*BadPosition\.get_config"):
        BadPosition().resolve(rf.get("/a/b"))
    header = HeaderResolver()
    with patch.object(header, "get_config", return_value="X-Org"):
        assert header.resolve(rf.get("/", HTTP_X_ORG="globex")).id == "globex"
        assert header.resolve(rf.get("/", HTTP_X_ORG="a:b")) is None  # still validated
    subdomain = SubdomainResolver()
    main = {"TENANT_MAIN_DOMAIN": "example.com"}
    with patch.object(subdomain, "get_config", side_effect=lambda k, d=None: main.get(k, d)):
        assert subdomain.resolve(rf.get("/", HTTP_HOST="a.b.example.com")) is None
        assert subdomain.resolve(rf.get("/", HTTP_HOST="acme.example.com")).id == "acme"


# --- resolvers: duck-typed requests ------------------------------------------


def test_duck_typed_requests_resolve_through_get_host_and_path():
    request = Mock()
    request.get_host.return_value = "Acme.Example.com:8000"
    request.path = "/globex/dashboard"
    assert SubdomainResolver().resolve(request).id == "acme"
    assert PathResolver().resolve(request).id == "globex"  # path_info is not a str

    class Bare:  # no META, no path_info, no session: nothing to read, no error
        path = "/initech/x"

        def get_host(self):
            return "example.com"

    assert PathResolver().resolve(Bare()).id == "initech"
    assert SubdomainResolver().resolve(Bare()) is None
    assert HeaderResolver().resolve(Bare()) is None
    assert SessionResolver().resolve(Bare()) is None


# --- settings stand-ins ---------------------------------------------------------


def test_a_settings_stand_in_is_honoured_then_dropped(rf, tenant_config):
    tenant_config(TENANT_RESOLVER="subdomain", TENANT_MAIN_DOMAIN="example.com")
    request = rf.get("/", HTTP_HOST="acme.example.com", HTTP_X_TENANT_ID="globex")
    with patch("django.conf.settings") as stand_in:
        stand_in.DJUST_CONFIG = {"TENANT_RESOLVER": "header", "TENANT_CONTEXT_NAME": "org"}
        assert isinstance(get_tenant_resolver(), HeaderResolver)
        assert resolve_tenant(request).id == "globex"
        assert list(context_processor(Mock(spec=[]))) == ["org"]
    assert isinstance(get_tenant_resolver(), SubdomainResolver)
    assert resolve_tenant(request).id == "acme"


def test_override_settings_is_the_django_way(rf, settings):
    settings.DJUST_CONFIG = {"TENANT_RESOLVER": "header"}
    assert resolve_tenant(rf.get("/", HTTP_X_TENANT_ID="globex")).id == "globex"
    settings.DJUST_CONFIG = {"TENANT_RESOLVER": ["header", "subdomain"]}
    assert len(get_tenant_resolver().resolvers) == 2


def test_a_stand_in_with_a_bad_config_fails_loudly():
    with patch("django.conf.settings") as stand_in:
        stand_in.DJUST_CONFIG = {"TENANT_RESOLVER": "nope"}
        with pytest.raises(ImproperlyConfigured, match="TENANT_RESOLVER"):
            get_tenant_resolver()
    assert isinstance(get_tenant_resolver(), SubdomainResolver)


# --- the mixins' patch point -----------------------------------------------------


class _View(TenantMixin):
    pass


def test_resolve_tenant_is_patchable_where_the_mixins_call_it():
    request = Mock()
    with patch("tenantry.mixins.resolve_tenant", return_value=TenantInfo("acme")) as resolve:
        view = _View()
        view._ensure_tenant(request)
        view._ensure_tenant(request)
        assert view.tenant.id == "acme" and resolve.call_count == 1
        assert context_processor(Mock())["tenant"].id == "acme"
    with patch("tenantry.mixins.resolve_tenant", return_value=None):
        with pytest.raises(Http404):
            _View()._ensure_tenant(Mock())
    with patch("tenantry.context_processors.resolve_tenant", return_value=TenantInfo("b")):
        from tenantry.context_processors import tenant

        assert tenant(Mock())["tenant"].id == "b"


# --- TenantScopedMixin uses model.objects ---------------------------------------


class _ActiveOnly(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(name__startswith="active")


class ActiveItem(Item):
    objects = _ActiveOnly()

    class Meta:
        proxy = True
        app_label = "app"


@pytest.mark.django_db
def test_tenant_queryset_goes_through_model_objects(settings):
    Item.all_tenants.create(tenant_id="acme", name="active one")
    Item.all_tenants.create(tenant_id="acme", name="archived")
    Item.all_tenants.create(tenant_id="globex", name="active other")

    class Active(TenantScopedMixin):
        model = ActiveItem

    view = Active()
    view.tenant = "acme"
    assert [i.name for i in view.get_tenant_queryset()] == ["active one"]
    assert view.get_tenant_object(Item.all_tenants.get(name="active one").pk).name == "active one"
    with pytest.raises(ActiveItem.DoesNotExist):  # another tenant's pk
        view.get_tenant_object(Item.all_tenants.get(name="active other").pk)

    class Scoped(TenantScopedMixin):
        model = Item

    scoped = Scoped()
    scoped.tenant = "globex"
    with tenant_context("acme"):  # the view's tenant, whatever is bound
        assert [i.name for i in scoped.get_tenant_queryset()] == ["active other"]

    scoped.tenant = None
    with pytest.raises(TenantNotSetError):
        scoped.get_tenant_queryset()
    with pytest.raises(ValueError):  # what djust.tenants code catches
        scoped.get_tenant_object(1)
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_STRICT": "empty"}
    assert list(scoped.get_tenant_queryset()) == []


def test_a_model_like_class_with_objects():
    class Rows:
        objects = Mock()

    class View(TenantScopedMixin):
        model = Rows

    view = View()
    view.tenant = "acme"
    assert view.get_tenant_queryset() is Rows.objects.filter.return_value
    Rows.objects.filter.assert_called_once_with(tenant_id="acme")

    class NoObjects(TenantScopedMixin):
        model = object

    view = NoObjects()
    view.tenant = "acme"
    with pytest.raises(TypeError, match="no `objects` manager"):
        view.get_tenant_queryset()


def test_tenant_not_set_is_also_a_value_error():
    assert issubclass(TenantNotSetError, ValueError)
    assert issubclass(TenantNotSetError, RuntimeError)

    class View(TenantScopedMixin):
        model = Item

    with pytest.raises(ValueError, match="tenant not resolved"):
        View().create_for_tenant(name="x")


# --- presence ---------------------------------------------------------------------


def test_memory_health_check_keeps_djusts_presence_count():
    TenantAwareMemoryBackend.clear_all()
    acme = get_tenant_presence_backend("acme")
    acme.join("room:1", "u1", {})
    acme.join("room:2", "u2", {})
    get_tenant_presence_backend("globex").join("room:1", "u9", {})
    health = acme.health_check()
    assert health["status"] == "healthy" and health["backend"] == "tenant_memory"
    assert health["tenant_id"] == "acme" and health["presence_count"] == 2
    assert get_tenant_presence_backend("initech").health_check()["presence_count"] == 0
    TenantAwareMemoryBackend.clear_all()


def test_tenant_aware_backend_mixin():
    class Audit(TenantAwareBackendMixin):
        pass

    backend = Audit("acme")
    assert backend.tenant_id == "acme" and backend._tenant_key("log") == "tenant:acme:log"
    with pytest.raises(ValueError):
        Audit("a:b")


def test_presence_mixin_first_keeps_the_tenant_prefix():
    """djust's open problem: PresenceMixin before TenantMixin dropped the prefix
    (its get_presence_key wins the MRO). tenantry wraps whatever wins."""

    class First(PresenceMixin, TenantMixin, LiveView):
        presence_key = "room:{doc}"
        template = "<div></div>"

    class Own(TenantMixin, PresenceMixin, LiveView):
        template = "<div></div>"

        def get_presence_key(self):
            return "doc:1"

    cases = ((First, "room:7"), (views.PresenceFirstRoomView, "room:lobby"), (Own, "doc:1"))
    for cls, base in cases:
        view = cls()
        view.doc = 7
        view.tenant = "acme"
        assert view.get_presence_key() == f"tenant:acme:{base}"
        view.tenant = None
        assert not view.get_presence_key().startswith("tenant:")
        view.tenant = "acme"
        view.presence_key = f"tenant:acme:{base}"  # never twice
        assert view.get_presence_key().count("tenant:acme:") == 1


# --- plain LiveViews beside tenant views ------------------------------------------


@pytest.fixture
def saved_keys(monkeypatch, settings):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    keys: list[str] = []
    real_set = TenantDjustStateBackend.set

    def spy(self, key, view, ttl=None):
        keys.append(key)
        return real_set(self, key, view, ttl)

    monkeypatch.setattr(TenantDjustStateBackend, "set", spy)
    return keys


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("host", ["example.com", "acme.example.com"])
def test_plain_liveview_over_http_keeps_state_in_djusts_own_store(client, saved_keys, host):
    """docs/state.md#djusts-saved-view-state: a view that is not a tenant
    view is djust's own in-memory backend's, exactly as without tenantry,
    whatever tenant the host resolves; no tenant's space holds it."""
    response = client.get("/plain-live/", HTTP_HOST=host)
    assert response.status_code == 200, response.content[:500]
    assert "plain count=0" in response.content.decode()
    assert saved_keys and not any(k.startswith("tenant:") for k in saved_keys)
    router = get_state_router()
    adapter = get_djust_state_backend()
    for key in saved_keys:
        assert InMemoryStateBackend.get(adapter, key) is not None  # djust's own store
        assert router.get(key) is None  # not the router's space of callers without a tenant
        with tenant_context("acme"):  # nor a tenant's
            assert router.get(f"tenant:acme:{key}") is None
            assert adapter.get(key) is not None  # the plain view's, on a tenant's host too


@pytest.mark.django_db(transaction=True)
def test_a_tenant_view_without_a_tenant_saves_nothing(client, saved_keys):
    response = client.get("/optional/", HTTP_HOST="example.com")
    assert response.status_code == 200 and "optional none" in response.content.decode()
    assert saved_keys == []
    assert client.get("/items/", HTTP_HOST="example.com").status_code == 404
    client.get("/items/", HTTP_HOST="acme.example.com")
    assert saved_keys and all(k.startswith("tenant:acme:") for k in saved_keys)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("host", ["example.com", "globex.example.com"])
async def test_plain_liveview_over_websocket(host):
    from tests.live.test_djust_integration import LiveClient

    tab = LiveClient(host)
    frame = await tab.mount("tests.app.views.PlainLiveView", "/plain-live/")
    assert frame["type"] == "mount", frame
    assert "plain count=0" in frame["html"]
    reply = await tab.event("bump")
    assert reply["type"] != "error", reply
    reply = await tab.event("bump")
    assert "2" in json.dumps(reply), reply
    await tab.close()
