"""Per-tenant Prometheus metrics (docs/observability.md#prometheus): counted on
the real request, live-event, job and refusal paths (Django's test client,
djust over channels' WebSocket communicator, Celery's tracer), served by
``metrics_view`` to staff or a bearer token and never on a tenant's host,
with bounded label cardinality."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from celery import Celery
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tenantry import TenantMismatchError, conf, metrics, observe, tenant_context, usage
from tenantry.metrics import NO_TENANT, OTHER
from tenantry.ratelimit import TenantRateLimiter
from tests.app.models import Item
from tests.demo_server import free_port
from tests.live_client import LiveClient

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-metrics-token-for-tests"
BASE = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    # /metrics/ is not exempt: the view says tenant_required = False itself.
    "TENANT_EXEMPT_PATHS": ["/public/"],
    "TENANT_METRICS": True,
    "TENANT_METRICS_TOKEN": TOKEN,
}


def never_member(user, tenant) -> bool:
    return False


@pytest.fixture(autouse=True)
def metrics_on(settings, monkeypatch):
    settings.DJUST_CONFIG = dict(BASE)
    settings.ROOT_URLCONF = "tests.observability.urls"
    # A fresh label table per test, as a fresh process has (labels are kept
    # for a process's life), once earlier tests' requests are counted.
    metrics.flush()
    monkeypatch.setattr(metrics, "_labels", metrics._Labels(100))
    monkeypatch.setattr(metrics, "_request_children", {})
    monkeypatch.setattr(metrics, "_event_children", {})
    TenantRateLimiter.clear_all()
    yield
    TenantRateLimiter.clear_all()


def value(name: str, **labels: str) -> float:
    metrics.flush()
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client: Client, host: str = "example.com", **headers) -> dict:
    response = client.get("/metrics/", HTTP_HOST=host, **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def bearer(token: str = TOKEN) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


# -- requests ------------------------------------------------------------------


def test_requests_are_counted_and_timed_per_tenant(client):
    before = (
        value("tenantry_requests_total", tenant="acme"),
        value("tenantry_request_seconds_count", tenant="acme"),
        value("tenantry_requests_total", tenant="globex"),
    )
    for host in ("acme", "acme", "globex"):
        assert client.get("/public/", HTTP_HOST=f"{host}.example.com").status_code == 200
    assert value("tenantry_requests_total", tenant="acme") == before[0] + 2
    assert value("tenantry_request_seconds_count", tenant="acme") == before[1] + 2
    assert value("tenantry_request_seconds_sum", tenant="acme") > 0
    assert value("tenantry_requests_total", tenant="globex") == before[2] + 1


@pytest.mark.asyncio
async def test_async_requests_are_counted_too(settings, async_client):
    settings.DJUST_CONFIG = {**BASE, "TENANT_RESOLVER": "header"}
    before = value("tenantry_requests_total", tenant="acme")
    response = await async_client.get("/public/", headers={"x-tenant-id": "acme"})
    assert response.status_code == 200
    assert value("tenantry_requests_total", tenant="acme") == before + 1


def test_the_metrics_request_itself_is_counted_for_no_tenant(client):
    first = scrape(client, **bearer())
    second = scrape(client, **bearer())
    key = ("tenantry_requests_total", (("tenant", NO_TENANT),))
    # A scrape answers before it is counted: the second sees the first.
    assert second[key] == first.get(key, 0) + 1


def test_off_the_paths_do_not_feed_the_metrics(settings, client):
    settings.DJUST_CONFIG = {**BASE, "TENANT_METRICS": False}
    before = value("tenantry_requests_total", tenant="acme")
    client.get("/public/", HTTP_HOST="acme.example.com")  # the first one re-syncs
    client.get("/public/", HTTP_HOST="acme.example.com")
    assert value("tenantry_requests_total", tenant="acme") == before
    for hook, function in metrics._WATCHERS:
        assert function not in observe.watchers(hook)
        assert metrics._RESYNC[hook] not in observe.watchers(hook)
    # On again: the first request after the change counts, once.
    settings.DJUST_CONFIG = dict(BASE)
    client.get("/public/", HTTP_HOST="acme.example.com")
    assert value("tenantry_requests_total", tenant="acme") == before + 1


# -- the view: who may read it ------------------------------------------------------


def test_the_view_needs_staff_or_the_token(client):
    assert client.get("/metrics/", HTTP_HOST="example.com").status_code == 401
    for wrong in (
        bearer("s3cret-metrics-token-for-test"),
        bearer(TOKEN + "x"),
        {"HTTP_AUTHORIZATION": f"Basic {TOKEN}"},
        {"HTTP_AUTHORIZATION": TOKEN},
        {"HTTP_AUTHORIZATION": "Bearer "},
    ):
        response = client.get("/metrics/", HTTP_HOST="example.com", **wrong)
        assert response.status_code == 401, wrong
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"tenantry_" not in response.content
    # Not in the query string (it would land in access logs).
    assert client.get(f"/metrics/?token={TOKEN}", HTTP_HOST="example.com").status_code == 401
    assert "tenantry_requests_total" in str(scrape(client, **bearer()))
    member = User.objects.create_user("member", password="pw")
    client.force_login(member)
    assert client.get("/metrics/", HTTP_HOST="example.com").status_code == 401
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert scrape(client)
    staff.is_active = False
    staff.save()
    assert client.get("/metrics/", HTTP_HOST="example.com").status_code in (401, 302)


def test_no_token_configured_means_staff_only(settings, client):
    settings.DJUST_CONFIG = {k: v for k, v in BASE.items() if k != "TENANT_METRICS_TOKEN"}
    assert client.get("/metrics/", HTTP_HOST="example.com", **bearer()).status_code == 401


@pytest.mark.parametrize("host", ["acme.example.com", "globex.example.com"])
def test_a_tenants_host_never_serves_the_figures(client, host):
    client.get("/public/", HTTP_HOST="globex.example.com")
    response = client.get("/metrics/", HTTP_HOST=host, **bearer())
    assert response.status_code == 404
    assert b"tenantry_" not in response.content and b"globex" not in response.content
    staff = User.objects.create_user("staff", password="pw", is_staff=True, is_superuser=True)
    client.force_login(staff)
    assert client.get("/metrics/", HTTP_HOST=host).status_code == 404


def test_the_view_refuses_while_a_tenant_is_bound(rf):
    request = rf.get("/metrics/", HTTP_HOST="example.com", **bearer())
    request.tenant = None
    with tenant_context("acme", must_exist=False):
        with pytest.raises(Exception) as refused:
            metrics.metrics_view(request)
    assert refused.type.__name__ == "Http404"


# -- cardinality ---------------------------------------------------------------------


def test_the_first_top_tenants_keep_their_labels_the_rest_are_other(settings, client):
    settings.DJUST_CONFIG = {**BASE, "TENANT_METRICS_TOP": 2}
    hosts = ["t1", "t2", "t3", "t4", "t1", "t3"]
    before = scrape(client, **bearer())
    for host in hosts:
        client.get("/public/", HTTP_HOST=f"{host}.example.com")
    after = scrape(client, **bearer())

    def delta(label):
        key = ("tenantry_requests_total", (("tenant", label),))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("t1") == 2 and delta("t2") == 1
    assert delta(OTHER) == 3  # t3 twice, t4 once
    labels = {dict(k[1]).get("tenant") for k in after if k[0] == "tenantry_requests_total"}
    assert "t3" not in labels and "t4" not in labels
    # The sum over labels is the true total (the scrape in between counts
    # for no tenant).
    total = sum(delta(label) for label in labels)
    assert total == len(hosts) + 1
    # A labelled tenant keeps its label even when later ones are busier.
    for _ in range(5):
        client.get("/public/", HTTP_HOST="t4.example.com")
    client.get("/public/", HTTP_HOST="t2.example.com")
    assert (
        value("tenantry_requests_total", tenant="t2")
        == after[("tenantry_requests_total", (("tenant", "t2"),))] + 1
    )


def test_the_label_table_is_bounded_whatever_the_number_of_tenants():
    labels = metrics._Labels(3)
    for n in range(1000):
        labels.of(f"tenant{n}")
    assert len(labels.named) <= 4 * 3 + 1
    assert [labels.of(f"tenant{n}") for n in range(3)] == ["tenant0", "tenant1", "tenant2"]
    assert labels.of("tenant999") == OTHER


# -- refusals: one counter, every reason, from the one refusal path -------------------


def refusals(reason: str, tenant: str) -> float:
    return value("tenantry_refusals_total", tenant=tenant, reason=reason)


def test_rate_limit_refusals(settings, client):
    settings.DJUST_CONFIG = {**BASE, "TENANT_RATE_LIMITS": {"http": "1/m"}}
    before = refusals("rate_limit", "acme")
    assert client.get("/public/", HTTP_HOST="acme.example.com").status_code == 200
    assert client.get("/public/", HTTP_HOST="acme.example.com").status_code == 429
    assert refusals("rate_limit", "acme") == before + 1
    usage.flush()
    assert usage.get_usage("acme")["total"]["refused"] >= 1


def test_admission_refusals(settings, client):
    settings.DJUST_CONFIG = {
        **BASE,
        "TENANT_MEMBERSHIP_CHECK": "tests.observability.test_metrics.never_member",
    }
    client.force_login(User.objects.create_user("someone", password="pw"))
    before = refusals("admission", "acme")
    assert client.get("/plain/", HTTP_HOST="acme.example.com").status_code == 404
    assert refusals("admission", "acme") == before + 1


def test_an_unknown_tenants_refusal_makes_no_label(settings, client):
    settings.DJUST_CONFIG = {**BASE, "TENANT_VALIDATOR": "tests.observability.test_metrics.nobody"}
    before = refusals("admission", NO_TENANT)
    for n in range(5):
        assert client.get("/plain/", HTTP_HOST=f"probe{n}.example.com").status_code == 404
    assert refusals("admission", NO_TENANT) == before + 5
    exposed = str(scrape(client, **bearer()))
    assert "probe" not in exposed
    assert not any(t.startswith("probe") for t in usage.tenants_with_usage())


def nobody(tenant_id):
    return None


def test_isolation_refusals():
    before = refusals("isolation", "acme")
    with tenant_context("acme", must_exist=False), pytest.raises(TenantMismatchError):
        Item.objects.create(tenant_id="globex", name="x")
    assert refusals("isolation", "acme") == before + 1


@pytest.mark.asyncio
async def test_origin_refusals():
    before = refusals("origin", NO_TENANT)
    tab = LiveClient("acme.example.com", origin="http://globex.example.com")
    assert not await tab.connect()
    assert refusals("origin", NO_TENANT) == before + 1


# -- live events and jobs ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_live_events_are_counted_per_tenant():
    before = value("tenantry_events_total", tenant="acme")
    other = value("tenantry_events_total", tenant="globex")
    tab = LiveClient("acme.example.com")
    assert (await tab.mount())["type"] == "mount"
    assert (await tab.event("peek"))["type"] != "error"
    assert (await tab.event("peek"))["type"] != "error"
    await tab.close()
    assert value("tenantry_events_total", tenant="acme") == before + 2
    assert value("tenantry_events_total", tenant="globex") == other


@pytest.mark.asyncio
async def test_refused_events_are_refusals_not_events(settings):
    settings.DJUST_CONFIG = {**BASE, "TENANT_RATE_LIMITS": {"events": "1/m"}}
    before = value("tenantry_events_total", tenant="acme")
    refused = refusals("rate_limit", "acme")
    tab = LiveClient("acme.example.com")
    assert (await tab.mount())["type"] == "mount"
    assert (await tab.event("peek"))["type"] != "error"
    assert (await tab.event("peek"))["type"] == "error"
    await tab.close()
    assert value("tenantry_events_total", tenant="acme") == before + 1
    assert refusals("rate_limit", "acme") == refused + 1


def test_jobs_are_counted_per_tenant():
    app = Celery("observability", broker="memory://", backend="cache+memory://")

    @app.task
    def work():
        return "done"

    before = value("tenantry_jobs_total", tenant="acme")
    unbound = value("tenantry_jobs_total", tenant=NO_TENANT)
    with tenant_context("acme", must_exist=False):
        assert work.apply().get() == "done"
    assert work.apply().get() == "done"  # no tenant: not a tenant's job
    assert value("tenantry_jobs_total", tenant="acme") == before + 1
    assert value("tenantry_jobs_total", tenant=NO_TENANT) == unbound


# -- gauges from the usage counters ---------------------------------------------------------


def test_presences_and_state_bytes_come_from_usage(client):
    usage.record("acme", "peak_presences", 3)
    usage.record("acme", "state_bytes", 2048)
    usage.record("globex", "peak_presences", 1)
    samples = scrape(client, **bearer())
    assert samples[("tenantry_presences", (("tenant", "acme"),))] == 3
    assert samples[("tenantry_state_bytes", (("tenant", "acme"),))] == 2048
    assert samples[("tenantry_presences", (("tenant", "globex"),))] == 1


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("TENANT_METRICS", "yes"),
        ("TENANT_METRICS_TOP", 0),
        ("TENANT_METRICS_TOP", "100"),
        ("TENANT_METRICS_TOKEN", "short"),
        ("TENANT_METRICS_TOKEN", "a token with spaces in it"),
    ],
)
def test_bad_values_name_the_key(settings, key, bad):
    settings.DJUST_CONFIG = {**BASE, key: bad}
    with pytest.raises(ImproperlyConfigured, match=key):
        conf.reload()


def test_the_config_exposes_the_parsed_keys(settings):
    settings.DJUST_CONFIG = {**BASE, "TENANT_METRICS_TOP": 7}
    config = conf.current()
    assert (config.metrics_enabled, config.metrics_top, config.metrics_token) == (True, 7, TOKEN)
    settings.DJUST_CONFIG = {}
    config = conf.current()
    assert (config.metrics_enabled, config.metrics_top, config.metrics_token) == (False, 100, None)


# -- other processes ---------------------------------------------------------------------------


def test_a_celery_worker_serves_its_own_registry(client):
    client.get("/public/", HTTP_HOST="acme.example.com")
    port = free_port()
    server, thread = metrics.serve(port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    finally:
        server.shutdown()
        thread.join(5)
    assert 'tenantry_requests_total{tenant="acme"}' in text


CHILD = textwrap.dedent(
    """
    import os, sys
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    from django.conf import settings
    django.setup()
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_METRICS": True}
    from tenantry import conf
    conf.reload()
    from django.test import Client
    client = Client()
    for _ in range(int(sys.argv[2])):
        assert client.get("/public/", HTTP_HOST=sys.argv[1] + ".example.com").status_code == 200
    """
)


def test_multiprocess_mode_sums_every_process(tmp_path, client, monkeypatch):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("TENANTRY_TEST_DB", None)  # the children need no database
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, tenant, str(n)], env=env, cwd=ROOT)
        for tenant, n in (("acme", 3), ("acme", 2))
    ]
    assert [child.wait(120) for child in children] == [0, 0]
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    samples = scrape(client, **bearer())
    assert samples[("tenantry_requests_total", (("tenant", "acme"),))] == 5
    assert samples[("tenantry_request_seconds_count", (("tenant", "acme"),))] == 5


MISSING_CLIENT = textwrap.dedent(
    """
    import os, sys
    sys.modules["prometheus_client"] = None  # as if it were not installed
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    from django.conf import settings
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_METRICS": sys.argv[1] == "on"}
    import django
    from django.core.exceptions import ImproperlyConfigured
    try:
        django.setup()
    except ImproperlyConfigured as exc:
        print("REFUSED", exc)
    else:
        print("STARTED")
    """
)


@pytest.mark.parametrize(("switch", "outcome"), [("on", "REFUSED"), ("off", "STARTED")])
def test_metrics_on_without_prometheus_client_fails_at_start_up(switch, outcome):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TENANTRY_TEST_DB", None)
    done = subprocess.run(
        [sys.executable, "-c", MISSING_CLIENT, switch],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.startswith(outcome), done.stdout + done.stderr
    if outcome == "REFUSED":
        assert "TENANT_METRICS" in done.stdout and "tenantry[metrics]" in done.stdout
