"""Wiring mistakes a new user makes fail loudly, each message naming its fix
(docs/configuration.md, docs/middleware.md#wiring-mistakes-the-system-checks-name,
docs/mixins.md): a missing or misplaced middleware, tenantry missing from
INSTALLED_APPS, TenantMixin after LiveView, a misspelt key or resolver name,
every config problem at once, a tenant model without a TenantManager, and
the DEBUG page of a request that resolved no tenant."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from io import StringIO
from pathlib import Path

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.http import HttpResponse
from django.views import View

from tenantry import conf
from tenantry.checks import check_id
from tenantry.middleware import TenantMiddleware
from tenantry.mixins import TenantMixin, TenantScopedMixin

ROOT = Path(__file__).resolve().parents[2]
TENANT_MIDDLEWARE = "tenantry.middleware.TenantMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"


def ids(messages) -> list[str]:
    return [m.id for m in messages]


def check_output() -> str:
    """What ``manage.py check`` prints (warnings go to stderr; an error
    raises SystemCheckError with the same text)."""
    out, err = StringIO(), StringIO()
    try:
        call_command("check", stdout=out, stderr=err)
    except Exception as exc:  # SystemCheckError: the errors, printed
        return f"{out.getvalue()}{err.getvalue()}{exc}"
    return out.getvalue() + err.getvalue()


# -- 2. the middleware missing ---------------------------------------------------


def test_check_names_the_missing_middleware(settings):
    """docs/middleware.md: without TenantMiddleware no request resolves a tenant."""
    settings.MIDDLEWARE = [SESSION, AUTH]
    found = [m for m in checks.run_checks(tags=["tenantry"]) if m.id == "tenantry.W004"]
    assert len(found) == 1 and found[0].level == checks.WARNING
    assert TENANT_MIDDLEWARE in found[0].msg and TENANT_MIDDLEWARE in found[0].hint
    assert "tenantry.W004" in check_output()


class ProjectMiddleware(TenantMiddleware):
    """A project's own subclass is the middleware too."""


def test_a_subclass_of_the_middleware_counts(settings):
    settings.MIDDLEWARE = [SESSION, AUTH, f"{__name__}.ProjectMiddleware"]
    assert "tenantry.W004" not in ids(checks.run_checks(tags=["tenantry"]))


def test_the_missing_middleware_warning_can_be_silenced(settings):
    settings.MIDDLEWARE = [SESSION, AUTH]
    settings.SILENCED_SYSTEM_CHECKS = ["tenantry.W004"]
    assert "tenantry.W004" not in check_output()


# -- 3. the middleware before what it needs --------------------------------------


def _order_errors() -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks(tags=["tenantry"]) if m.id == "tenantry.E101"]


def test_a_per_user_http_limit_needs_auth_before_the_middleware(settings, tenant_config):
    """docs/ratelimits.md#keys-what-is-counted: never silently anonymous."""
    tenant_config(TENANT_RATE_LIMITS={"http": {"rate": "100/m", "key": "tenant+user"}})
    settings.MIDDLEWARE = [SESSION, TENANT_MIDDLEWARE, AUTH]
    [error] = _order_errors()
    assert error.level == checks.ERROR
    assert f"{TENANT_MIDDLEWARE} must come after {AUTH}" in error.msg
    assert "TENANT_RATE_LIMITS['http']" in error.msg and "anonymous" in error.msg
    assert f"Put {AUTH} above {TENANT_MIDDLEWARE}" in error.hint
    # In the right order: nothing.
    settings.MIDDLEWARE = [SESSION, AUTH, TENANT_MIDDLEWARE]
    assert _order_errors() == []


@pytest.mark.parametrize("key", ["tenant+user", "user", "user+view", "ip+user"])
def test_every_user_key_counts(settings, tenant_config, key):
    tenant_config(TENANT_RATE_LIMITS={"http": [{"rate": "100/m", "key": key}]})
    settings.MIDDLEWARE = [TENANT_MIDDLEWARE, SESSION, AUTH]
    assert len(_order_errors()) == 1


def test_a_per_tenant_limit_needs_no_user(settings, tenant_config):
    tenant_config(TENANT_RATE_LIMITS={"http": "100/m", "api": {"rate": "5/m", "key": "tenant+ip"}})
    settings.MIDDLEWARE = [TENANT_MIDDLEWARE]
    assert _order_errors() == []


def test_a_per_user_limit_of_a_view_scope_needs_auth_at_all(settings, tenant_config):
    """A scope checked in a view (``tenant_ratelimit``, ``check()``) runs
    after every middleware: it needs AuthenticationMiddleware, anywhere."""
    tenant_config(TENANT_RATE_LIMITS={"export": {"rate": "5/m", "key": "tenant+user"}})
    settings.MIDDLEWARE = [SESSION, TENANT_MIDDLEWARE]
    [error] = _order_errors()
    assert f"{AUTH} is not in MIDDLEWARE" in error.msg and "'export'" in error.msg
    settings.MIDDLEWARE = [SESSION, TENANT_MIDDLEWARE, AUTH]
    assert _order_errors() == []


def test_live_scopes_take_the_user_from_the_socket(settings, tenant_config):
    """events/mounts/uploads are checked over the WebSocket, whose user the
    ASGI stack sets (docs/ratelimits.md#live-view-events)."""
    tenant_config(TENANT_RATE_LIMITS={"events": {"rate": "5/m", "key": "tenant+user"}})
    settings.MIDDLEWARE = [TENANT_MIDDLEWARE]
    assert _order_errors() == []


def test_the_session_resolver_and_membership_check_need_their_middleware(settings, tenant_config):
    tenant_config(
        TENANT_RESOLVER="session",
        TENANT_MEMBERSHIP_CHECK="tests.pieces.access.is_member",
    )
    settings.MIDDLEWARE = [TENANT_MIDDLEWARE, SESSION, AUTH]
    messages = [m.msg for m in _order_errors()]
    assert any(SESSION in m and "session resolver" in m for m in messages), messages
    assert any(AUTH in m and "TENANT_MEMBERSHIP_CHECK" in m for m in messages), messages
    # Missing altogether is named as missing.
    settings.MIDDLEWARE = [TENANT_MIDDLEWARE]
    messages = [m.msg for m in _order_errors()]
    assert any(f"{SESSION} is not in MIDDLEWARE" in m for m in messages), messages


# -- 5. TenantMixin after the view base ------------------------------------------


def test_tenant_mixin_after_live_view_fails_at_class_creation():
    """docs/mixins.md: TenantMixin goes first in the bases."""
    from djust import LiveView

    with pytest.raises(ImproperlyConfigured) as exc:

        class Board(LiveView, TenantMixin):
            template = "<div dj-root></div>"

    message = str(exc.value)
    assert "Board" in message and "TenantMixin must come before LiveView" in message
    assert "class Board(TenantMixin, LiveView)" in message


@pytest.mark.parametrize("mixin", [TenantMixin, TenantScopedMixin])
def test_after_any_view_class_fails_too(mixin):
    class Base(View):
        pass

    with pytest.raises(ImproperlyConfigured, match=r"Report: TenantMixin must come before Base"):
        type("Report", (Base, mixin), {})
    with pytest.raises(ImproperlyConfigured, match=r"before View"):
        type("Plain", (View, mixin), {})


def test_the_right_order_and_its_subclasses_are_fine():
    from djust import LiveView

    class Board(TenantMixin, LiveView):
        template = "<div dj-root></div>"

    class Mine(Board):
        pass

    class Both(TenantScopedMixin, Mine):
        pass

    assert Mine.__mro__.index(TenantMixin) < Mine.__mro__.index(LiveView)
    assert Both.__mro__.index(TenantMixin) < Both.__mro__.index(LiveView)


# -- 6 and 7. misspelt keys, misspelt resolver names, every problem at once ----


def _w001(tenant_config, **config) -> list[str]:
    tenant_config(**config)
    return [m.msg for m in checks.run_checks(tags=["tenantry"]) if m.id == "tenantry.W001"]


def test_a_misspelt_key_gets_did_you_mean(tenant_config):
    """docs/configuration.md: W001 names the key tenantry reads."""
    assert _w001(tenant_config, TENANT_MAIN_DOMIAN="example.com") == [
        "DJUST_CONFIG['TENANT_MAIN_DOMIAN'] is not a tenantry setting and is ignored; "
        "did you mean 'TENANT_MAIN_DOMAIN'?"
    ]
    assert "did you mean" in check_output()


@pytest.mark.parametrize(
    "typo, meant",
    [
        ("tenant_main_domain", "TENANT_MAIN_DOMAIN"),  # lowercase
        ("TENANT_REQURED", "TENANT_REQUIRED"),  # a letter missing
        ("PRESENCE_BAKEND", "PRESENCE_BACKEND"),  # no TENANT_ prefix
        ("RATE_LIMIT_BACKNED", "RATE_LIMIT_BACKEND"),
        ("TENANT_RATE_LIMIT", "TENANT_RATE_LIMITS"),
    ],
)
def test_misspellings_of_every_kind(tenant_config, typo, meant):
    [message] = _w001(tenant_config, **{typo: "x"})
    assert f"did you mean '{meant}'?" in message


def test_djust_own_keys_are_not_reported(tenant_config):
    assert _w001(tenant_config, rate_limit={"rate": 10}, use_websocket=True, extensions=[]) == []


def test_a_misspelt_resolver_name_gets_did_you_mean(tenant_config):
    tenant_config(TENANT_RESOLVER="subdomian")
    resolver_id = check_id("TENANT_RESOLVER")
    [error] = [m for m in checks.run_checks(tags=["tenantry"]) if m.id == resolver_id]
    assert "did you mean \"subdomain\"?" in error.msg


def test_every_config_problem_in_one_run(tenant_config):
    """docs/configuration.md: a misspelt resolver name no longer waits for
    the plain values to be fixed."""
    tenant_config(TENANT_RESOLVER="subdomian", TENANT_STRICT="maybe", PRESENCE_TIMEOUT=0)
    found = set(ids(checks.run_checks(tags=["tenantry"])))
    keys = ("TENANT_RESOLVER", "TENANT_STRICT", "PRESENCE_TIMEOUT")
    assert {check_id(key) for key in keys} <= found
    # The error raised at first use lists them all too.
    with pytest.raises(ImproperlyConfigured) as exc:
        conf.load()
    message = str(exc.value)
    assert "3 problems" in message
    assert "subdomian" in message and "TENANT_STRICT" in message and "PRESENCE_TIMEOUT" in message


def test_a_bad_value_does_not_hide_a_bad_callable(tenant_config):
    tenant_config(TENANT_STRICT="maybe", TENANT_MEMBERSHIP_CHECK="no.such.check")
    found = set(ids(checks.run_checks(tags=["tenantry"])))
    assert {check_id("TENANT_STRICT"), check_id("TENANT_MEMBERSHIP_CHECK")} <= found


# -- 9. a tenant model without a TenantManager ---------------------------------


def _w203() -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks() if m.id == "tenantry.W203"]


def test_a_tenant_model_without_a_tenant_manager_warns(settings):
    """docs/querysets.md#system-checks: lifecycle.Legacy has a tenant_id
    column and only Django's manager."""
    found = {m.obj._meta.label: m for m in _w203()}
    legacy = found["lifecycle.Legacy"]
    assert legacy.level == checks.WARNING
    assert "'tenant_id'" in legacy.msg and "no TenantManager" in legacy.msg
    assert "TenantManager(tenant_field='tenant_id')" in legacy.hint
    # Scoped models are not reported, nor custom-domain models (read across
    # tenants by the domain resolver).
    assert "app.Item" not in found and "app.Domain" not in found
    settings.SILENCED_SYSTEM_CHECKS = ["tenantry.W203"]
    assert "tenantry.W203" not in check_output()


def test_any_tenant_manager_silences_it():
    from tests.app.models import Item

    assert any(getattr(m, "scopes_by_tenant", False) for m in Item._meta.managers)
    assert all(m.obj is not Item for m in _w203())


# -- 6. the DEBUG page of a request with no tenant -------------------------------


@pytest.fixture
def subdomains(tenant_config, settings):
    settings.ALLOWED_HOSTS = [".example.com", "example.com"]
    return tenant_config(TENANT_RESOLVER="subdomain", TENANT_MAIN_DOMAIN="example.com")


def test_debug_404_says_why_and_points_to_the_command(client, settings, subdomains):
    """docs/middleware.md#tenant-not-found-while-debugging."""
    settings.DEBUG = True
    response = client.get("/items/", HTTP_HOST="www.example.com")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Tenant not found" in page
    assert "SubdomainResolver read the host &#x27;www.example.com&#x27;" in page
    assert "main domain &#x27;example.com&#x27;" in page and "excluded" in page
    assert "manage.py tenantry check http://www.example.com/items/" in page


def test_without_debug_the_404_says_nothing_more(client, settings, subdomains):
    settings.DEBUG = False
    response = client.get("/items/", HTTP_HOST="www.example.com")
    assert response.status_code == 404
    page = response.content.decode()
    for leak in ("SubdomainResolver", "example.com", "manage.py", "excluded"):
        assert leak not in page


def test_debug_404_of_a_tenant_mixin_view_without_the_middleware(client, settings, subdomains):
    """The mixin's refusal (no middleware: the view resolves itself) says the same."""
    settings.DEBUG = True
    settings.MIDDLEWARE = [SESSION, AUTH]
    response = client.get("/items/", HTTP_HOST="example.com")
    assert response.status_code == 404
    page = response.content.decode()
    assert "SubdomainResolver read the host &#x27;example.com&#x27;" in page
    assert "manage.py tenantry check" in page


def test_debug_404_names_each_step_of_a_chain(client, settings, tenant_config):
    settings.DEBUG = True
    settings.ALLOWED_HOSTS = ["*"]
    tenant_config(TENANT_RESOLVER=["header", "path"], TENANT_PATH_POSITION=2)
    response = client.get("/items/", HTTP_HOST="example.com")
    page = response.content.decode()
    assert response.status_code == 404
    assert "HeaderResolver read the header X-Tenant-ID: None" in page
    assert "PathResolver read the path &#x27;/items/&#x27;, segment 2" in page


# -- 4. tenantry missing from INSTALLED_APPS: a generated project ----------------


def _project(tmp_path: Path, installed: bool, urls: str = "") -> subprocess.CompletedProcess:
    """``python -m django check`` in a fresh project using tenantry's
    middleware and a TenantMixin view, with or without the app."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "__init__.py").write_text("")
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "models.py").write_text(
        textwrap.dedent(
            """
            from django.db import models
            from tenantry import TenantManager

            class Order(models.Model):
                tenant_id = models.CharField(max_length=64)
                objects = TenantManager(tenant_field="tenant_id")
            """
        )
    )
    apps = (
        '"django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions", '
        '"shop"'
    )
    if installed:
        apps += ', "tenantry"'
    (tmp_path / "proj" / "settings.py").write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = "x"
            INSTALLED_APPS = [{apps}]
            MIDDLEWARE = [
                "{SESSION}",
                "{AUTH}",
                "{TENANT_MIDDLEWARE}",
            ]
            ROOT_URLCONF = "proj.urls"
            DATABASES = {{
                "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
            }}
            DJUST_CONFIG = {{"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"}}
            """
        )
    )
    (tmp_path / "proj" / "urls.py").write_text(
        urls
        or textwrap.dedent(
            """
            from django.urls import path
            from django.views import View
            from django.http import HttpResponse
            from tenantry import TenantMixin

            class Page(TenantMixin, View):
                def get(self, request):
                    return HttpResponse("ok")

            urlpatterns = [path("", Page.as_view())]
            """
        )
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "proj.settings",
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT / 'python'}",
    }
    return subprocess.run(
        [sys.executable, "-m", "django", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tenantry_missing_from_installed_apps_fails_check(tmp_path):
    """docs/quickstart.md: the view's as_view() (run when check loads the
    URLconf) raises ImproperlyConfigured naming INSTALLED_APPS."""
    result = _project(tmp_path, installed=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "ImproperlyConfigured" in output
    assert "'tenantry' is not in INSTALLED_APPS" in output and "proj.urls.Page" in output


def test_tenantry_missing_is_a_check_error_once_imported(tmp_path):
    """A project whose models use tenantry (a TenantManager) but whose
    URLconf does not gets tenantry.E102 from ``check``."""
    urls = "urlpatterns = []\n"
    result = _project(tmp_path, installed=False, urls=urls)
    assert result.returncode != 0
    assert "tenantry.E102" in result.stderr and "INSTALLED_APPS" in result.stderr


def test_with_tenantry_installed_the_project_checks_clean(tmp_path):
    result = _project(tmp_path, installed=True)
    assert result.returncode == 0, result.stderr
    assert "tenantry.E102" not in result.stderr


def test_the_middleware_refuses_to_start_without_the_app(monkeypatch):
    """Django builds the middleware when the server starts: it fails there.
    (The app registry is told tenantry is not installed; the generated
    projects above show the whole path.)"""
    from django.apps import apps

    installed = apps.is_installed
    with monkeypatch.context() as patched:
        patched.setattr(apps, "is_installed", lambda name: name != "tenantry" and installed(name))
        with pytest.raises(ImproperlyConfigured, match="'tenantry' is not in INSTALLED_APPS"):
            TenantMiddleware(lambda request: HttpResponse())
        assert "tenantry.E102" in ids(checks.run_checks(tags=["tenantry"]))
    assert "tenantry.E102" not in ids(checks.run_checks(tags=["tenantry"]))
