"""The test kit leaves nothing of one test to the next, and the ``tenant``
fixture's binding never answers for a request (docs/testing.md#between-tests,
docs/testing.md#each-request-resolves-its-own-tenant).

The ``twice`` tests run one body two times in a row (parametrized: two
tests, the same module config, as when DJUST_CONFIG lives in settings.py).
Each asserts from a clean slate, so the second fails when anything the first
counted carries over.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.http import HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from tenantry import conf, get_current_tenant, tenant_context, usage
from tenantry.ratelimit import check
from tests.app import views
from tests.app.models import Item

LIMITED = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_RATE_LIMITS": {"http": "3/m", "export": "2/h"},
}

TWICE = pytest.mark.parametrize("run", ["first", "second"])


@pytest.fixture(autouse=True, scope="module")
def limited():
    with override_settings(DJUST_CONFIG=LIMITED):
        yield


def _three_then_refused(client: Client) -> None:
    codes = [client.get("/public/", HTTP_HOST="acme.example.com").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert usage.get_usage("acme")["total"]["http_requests"] == 4
    assert usage.get_usage("acme")["total"]["limited"] == 1


@TWICE
def test_memory_rate_limits_and_usage_start_afresh_in_each_test(client, run):
    """Two identical tests: the second gets its three requests too, and
    counts its own usage (before the kit reset them, it got 429s)."""
    _three_then_refused(client)
    with tenant_context("acme", must_exist=False):
        assert [check("export").allowed for _ in range(3)] == [True, True, False]


@TWICE
def test_redis_rate_limits_and_usage_start_afresh_in_each_test(settings, redis_server, run):
    """The same on Redis, under a fixed TENANT_KEY_PREFIX shared by both
    tests (as a settings.py would have it): each test counts in its own key
    space ``<TENANT_KEY_PREFIX>:<namespace>``."""
    settings.DJUST_CONFIG = {
        **LIMITED,
        "RATE_LIMIT_BACKEND": "tenant_redis",
        "RATE_LIMIT_REDIS_URL": redis_server.url,
        "STATE_BACKEND": "tenant_redis",
        "STATE_REDIS_URL": redis_server.url,
        "TENANT_KEY_PREFIX": "kit-fixed",
    }
    _three_then_refused(Client())
    usage.flush()
    space = conf.current().counts_key_prefix
    assert space.startswith("kit-fixed:t") and space != "kit-fixed:"
    mine = [k for k in redis_server.client().keys("kit-fixed:*") if k.startswith(f"{space}:")]
    assert mine and all(key.startswith(f"{space}:{{tenant:acme}}:") for key in mine), mine


def test_each_test_gets_another_key_space():
    first = conf.current().counts_key_prefix
    from tenantry.testing import new_key_space

    new_key_space()
    second = conf.current().counts_key_prefix
    assert first != second and first.startswith("djust:t") and second.startswith("djust:t")
    new_key_space("")
    assert conf.current().counts_key_prefix == "djust"


# -- each request resolves its own tenant ----------------------------------------


def who(request):
    bound = get_current_tenant()
    rows = sorted(Item.objects.values_list("name", flat=True)) if bound is not None else []
    return HttpResponse(f"bound={bound.id if bound else None} rows={','.join(rows)}")


urlpatterns = [path("who/", who), path("items/", views.ItemsView.as_view())]

WITHOUT_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


def _rows() -> None:
    with tenant_context("acme", must_exist=False):
        Item.objects.create(name="anvil")
    with tenant_context("globex", must_exist=False):
        Item.objects.create(name="globe")


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=WITHOUT_MIDDLEWARE)
def test_the_tenant_fixture_binding_does_not_reach_a_sync_request(tenant, client):
    """acme is bound by the fixture; a request (without TenantMiddleware,
    so nothing resolves it) runs with no tenant bound, as on a server: it
    never sees acme's rows (before, it did, and such a test passed)."""
    _rows()
    assert get_current_tenant().id == "acme"
    body = client.get("/who/", HTTP_HOST="globex.example.com").content.decode()
    assert body == "bound=None rows="
    assert get_current_tenant().id == "acme"  # the test's own binding is back


@pytest.mark.django_db
def test_a_request_to_globex_resolves_globex_while_acme_is_bound(tenant, client):
    _rows()
    html = client.get("/items/", HTTP_HOST="globex.example.com").content.decode()
    assert "<li>globe</li>" in html and "anvil" not in html


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=WITHOUT_MIDDLEWARE)
async def test_the_tenant_fixture_binding_does_not_reach_an_async_request(tenant):
    await sync_to_async(_rows)()
    response = await AsyncClient().get("/who/", HTTP_HOST="globex.example.com")
    assert response.content.decode() == "bound=None rows="
    assert get_current_tenant().id == "acme"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_live_view_of_globex_resolves_globex_while_acme_is_bound(tenant):
    """The live_view client's socket is made with no tenant bound (its task
    copies the context it is made in), and resolves globex by itself. (The
    WebSocket path binds what it resolves, None included, so this holds with
    or without the kit's unbinding: a guard, not a regression test.)"""
    from tenantry.testing import LiveView

    await sync_to_async(_rows)()
    live = await LiveView("globex", "tests.app.views.ItemsView", "/items/").mount()
    try:
        assert 'id="tenant-id">globex</p>' in live.html
        assert ">globe</li>" in live.html and "anvil" not in live.html
    finally:
        await live.close()
    assert get_current_tenant().id == "acme"


RUN = '''
import os

from django.test import Client


def test_two_requests_then_a_refusal(settings):
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_RATE_LIMITS": {"http": "2/h"},
        "RATE_LIMIT_BACKEND": "tenant_redis",
        "RATE_LIMIT_REDIS_URL": os.environ["KIT_REDIS_URL"],
        "TENANT_KEY_PREFIX": "kit-runs",
    }
    client = Client()
    codes = [client.get("/public/", HTTP_HOST="acme.example.com").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
'''


def test_two_runs_on_one_redis_each_count_from_nothing(tmp_path, redis_server):
    """Two whole pytest runs of an app's suite, one after the other, on one
    Redis and one TENANT_KEY_PREFIX: the second run's test gets its two
    requests too (its counts are not the first run's: an hourly limit would
    otherwise refuse it for an hour)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "test_app.py").write_text(RUN)
    env = {
        **os.environ,
        "PYTHONPATH": f"{root / 'python'}:{root}",
        "KIT_REDIS_URL": redis_server.url,
        "TENANTRY_TEST_DB": "sqlite",
    }
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["--ds=tests.settings", "-p", "tenantry.testing", "test_app.py"]
    for run in ("first", "second"):
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{run} run:\n{done.stdout}\n{done.stderr}"
    assert redis_server.client().keys("kit-runs:t*:{tenant:acme}:ratelimit:*")
