"""TenantMixin / TenantScopedMixin: resolution, djust's hook names, scoping."""

import logging

import pytest
from django.core import checks
from django.views.generic import TemplateView

from tenantry import InvalidTenantId, TenantInfo, TenantMixin, TenantNotSetError, TenantScopedMixin
from tests.app.models import Item
from tests.app.views import ItemsView, OptionalTenantView, ScopedView

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def config(settings):
    settings.DJUST_CONFIG = {"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"}


def test_resolves_once_and_reuses_request_tenant(rf):
    view = ItemsView()
    request = rf.get("/", HTTP_HOST="acme.example.com")
    request.tenant = TenantInfo("from-middleware")
    view._ensure_tenant(request)
    assert view.tenant == "from-middleware" and view._tenant == "from-middleware"
    view._ensure_tenant(rf.get("/", HTTP_HOST="globex.example.com"))
    assert view.tenant == "from-middleware"


def test_optional_view_has_no_tenant(rf):
    view = OptionalTenantView()
    view._ensure_tenant(rf.get("/", HTTP_HOST="example.com"))
    assert view.tenant is None


def test_tenant_required_class_attribute_overrides_config(rf, settings):
    settings.DJUST_CONFIG = {"TENANT_MAIN_DOMAIN": "example.com", "TENANT_REQUIRED": False}
    ItemsView()._ensure_tenant(rf.get("/", HTTP_HOST="example.com"))  # follows config: fine

    class Strict(ItemsView):
        tenant_required = True

    from django.http import Http404

    with pytest.raises(Http404):
        Strict()._ensure_tenant(rf.get("/", HTTP_HOST="example.com"))


def test_set_tenant_validates_and_audits(rf, caplog):
    view = ItemsView()
    view._ensure_tenant(rf.get("/", HTTP_HOST="acme.example.com"))
    with pytest.raises(InvalidTenantId):
        view.set_tenant("a:b")
    assert view.tenant == "acme"
    with caplog.at_level(logging.INFO, logger="tenantry.audit"):
        assert view.set_tenant("globex") == "globex"
    assert view.tenant == "globex" and view._tenant == "globex"
    switched = [r.tenantry for r in caplog.records if r.name == "tenantry.audit"]
    assert switched[0]["event"] == "tenant.switched" and switched[0]["previous"] == "acme"


def test_set_tenant_mirrors_into_session_only_for_the_session_resolver(rf, settings):
    view = ItemsView()
    view.request = rf.get("/")
    view.request.session = {}
    view.set_tenant("acme")
    assert view.request.session == {}
    settings.DJUST_CONFIG = {"TENANT_RESOLVER": ["header", "session"]}
    view.set_tenant("globex")
    assert view.request.session == {"tenant_id": "globex"}


def test_djust_hook_names(rf):
    view = ItemsView()
    assert view.get_state_key_prefix() == ""  # no tenant: djust saves nothing
    view._ensure_tenant(rf.get("/", HTTP_HOST="acme.example.com"))
    assert view.get_state_key_prefix() == "tenant:acme"
    key = view.get_presence_key()
    assert key == "tenant:acme:ItemsView"  # djust.tenants: the class name
    view.presence_key = key  # prefix applied exactly once
    assert view.get_presence_key().count("tenant:acme:") == 1
    assert "tenant" in view._djust_render_only_context_keys()


def test_context_name(rf, settings):
    class Named(TenantMixin, TemplateView):
        tenant_context_name = "org"

    view = Named()
    view.request = rf.get("/", HTTP_HOST="acme.example.com")
    assert view.get_context_data()["org"] == "acme"
    settings.DJUST_CONFIG = {"TENANT_MAIN_DOMAIN": "example.com", "TENANT_CONTEXT_NAME": "company"}
    view2 = ItemsView()
    view2.request = rf.get("/", HTTP_HOST="acme.example.com")
    context = view2.get_context_data()
    assert context["company"] == "acme" and "tenant" not in context
    assert view2._djust_render_only_context_keys() == {"company"}


def test_djust_checks_do_not_flag_the_mixin():
    messages = checks.run_checks()
    flagged = [m for m in messages if m.id == "djust.V013" and "tenantry" in m.msg]
    assert flagged == []
    from djust.auth.core import is_non_access_mixin

    assert is_non_access_mixin(TenantMixin) and is_non_access_mixin(TenantScopedMixin)


def test_scoped_mixin(rf):
    a = Item.all_tenants.create(tenant_id="acme", name="a")
    g = Item.all_tenants.create(tenant_id="globex", name="g")
    view = ScopedView()
    view._ensure_tenant(rf.get("/", HTTP_HOST="acme.example.com"))
    assert [i.name for i in view.get_tenant_queryset()] == ["a"]
    assert view.get_tenant_object(a.pk) == a
    with pytest.raises(Item.DoesNotExist):
        view.get_tenant_object(g.pk)
    made = view.create_for_tenant(name="new")
    assert made.tenant_id == "acme"


def test_scoped_mixin_without_tenant(rf, settings):
    Item.all_tenants.create(tenant_id="acme", name="a")
    view = ScopedView()
    view.tenant_required = False
    view._ensure_tenant(rf.get("/", HTTP_HOST="example.com"))
    with pytest.raises(TenantNotSetError):
        view.get_tenant_queryset()
    with pytest.raises(TenantNotSetError):
        view.create_for_tenant(name="x")
    settings.DJUST_CONFIG = {"TENANT_MAIN_DOMAIN": "example.com", "TENANT_STRICT": "empty"}
    assert list(view.get_tenant_queryset()) == []


def test_an_overridden_resolve_tenant_wins_over_the_middlewares_tenant(rf):
    """The view keeps one attribute for its tenant and takes the middleware's
    answer directly only when ``resolve_tenant`` is the default: an override
    on the class or on the instance is asked, and what it picks admitted."""
    request = rf.get("/", HTTP_HOST="acme.example.com")
    request.tenant = TenantInfo("acme")

    class Pinned(ItemsView):
        def resolve_tenant(self, request):
            return "globex"

    assert Pinned().tenant is None  # no request yet: nothing resolved
    view = Pinned()
    view._ensure_tenant(request)
    assert view.tenant == "globex"
    patched = ItemsView()
    patched.resolve_tenant = lambda request: "initech"
    patched._ensure_tenant(request)
    assert patched.tenant == "initech"
    default = ItemsView()
    default._ensure_tenant(request)
    assert default.tenant is request.tenant


def test_a_refusal_stays_a_refusal_on_every_hook(rf, settings):
    from django.http import Http404

    settings.DJUST_CONFIG = {"TENANT_MAIN_DOMAIN": "example.com", "TENANT_REQUIRED": True}
    view = ItemsView()
    request = rf.get("/", HTTP_HOST="example.com")
    view.request = request
    with pytest.raises(Http404):
        view._ensure_tenant(request)
    with pytest.raises(Http404):  # again, without resolving again
        view._ensure_tenant(rf.get("/", HTTP_HOST="acme.example.com"))
    assert view.tenant is None and view._tenant is None
    assert view._tenant_resolved is False
    assert view.get_state_key_prefix() == ""  # nothing saved under any key
    view._tenant_resolved = False  # djust.tenants' flag cannot lift a refusal
    with pytest.raises(Http404):
        view._ensure_tenant(rf.get("/", HTTP_HOST="acme.example.com"))


def test_the_resolved_flag_reads_and_resets_like_djust_tenants(rf):
    view = ItemsView()
    assert view._tenant_resolved is False
    view._ensure_tenant(rf.get("/", HTTP_HOST="acme.example.com"))
    assert view._tenant_resolved is True and view.tenant == "acme"
    view._tenant_resolved = False  # resolve again on next use
    view._ensure_tenant(rf.get("/", HTTP_HOST="globex.example.com"))
    assert view.tenant == "globex"
    # djust never saves the tenant as view state: its one attribute is set
    # before djust's snapshot of the framework's own attributes.
    assert "_tenantry_tenant" in view._framework_attrs
    assert view._get_private_state() == {}
