"""The usage dashboard in the admin (docs/observability.md#the-usage-dashboard):
superusers only, on a host with no tenant, linked from the admin index,
charts as server-rendered SVG; and the noisy-neighbours ranking."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from tenantry import dashboard, usage

pytestmark = pytest.mark.django_db(transaction=True)

BASE = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_EXEMPT_PATHS": ["/public/", "/admin/"],
}
MAIN = "example.com"
PAGE = "/admin/tenantry-usage/"


@pytest.fixture(autouse=True)
def config(settings):
    settings.DJUST_CONFIG = dict(BASE)


@pytest.fixture
def superuser(client):
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user


def busy(client, **requests: int) -> None:
    for tenant, n in requests.items():
        for _ in range(n):
            client.get("/public/", HTTP_HOST=f"{tenant}.example.com")


def test_the_noisy_neighbours_page_ranks_by_share(client, superuser):
    busy(client, acme=6, globex=2, initech=2)
    usage.record("initech", "refused", 9)
    response = client.get(PAGE, HTTP_HOST=MAIN)
    assert response.status_code == 200
    html = response.content.decode()
    order = re.findall(r'class="tenant-row" data-tenant="([^"]+)"', html)
    # initech leads on refusals (9 of 9), acme on requests (6 of 10).
    assert order[:2] == ["initech", "acme"] and set(order) == {"acme", "globex", "initech"}
    rows = {row["tenant"]: row for row in dashboard.noisy_neighbours()}
    assert rows["acme"]["requests_share"] == pytest.approx(0.6)
    assert rows["initech"]["refusals_share"] == 1.0
    assert "<svg" in html and html.count('class="bar"') == 3
    assert "<script" not in html.split('id="content-main"')[1]  # no JavaScript


def test_a_tenants_page_charts_each_figure_by_hour_and_day(client, superuser):
    busy(client, acme=3)
    usage.record("acme", "peak_presences", 4)
    usage.record("acme", "state_bytes", 1000)
    response = client.get(f"{PAGE}acme/", HTTP_HOST=MAIN)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<svg class="tenantry-chart"') == 10  # 5 figures x hour, day
    for metric, _ in dashboard.CHARTED:
        assert f'data-metric="{metric}"' in html
    assert "Requests by hour" in html and "State bytes by day" in html
    assert re.search(r"<title>[^<]*: 3</title>", html)  # this hour's 3 requests
    assert "<script" not in html.split('id="content-main"')[1]  # no JavaScript


def test_a_chart_escapes_its_labels():
    svg = dashboard.bar_chart("<b>x</b>", [("<script>", 1)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;" in svg


def test_the_admin_index_links_the_dashboard_for_superusers_only(client, superuser):
    index = client.get("/admin/", HTTP_HOST=MAIN).content.decode()
    assert f'href="{PAGE}"' in index and "Noisy neighbours" in index
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert PAGE not in client.get("/admin/", HTTP_HOST=MAIN).content.decode()


@pytest.mark.parametrize("path", [PAGE, f"{PAGE}acme/", f"{PAGE}globex/"])
def test_staff_who_are_not_superusers_are_refused(client, path):
    client.force_login(User.objects.create_user("staff", password="pw", is_staff=True))
    assert client.get(path, HTTP_HOST=MAIN).status_code == 403


@pytest.mark.parametrize("path", [PAGE, f"{PAGE}acme/"])
def test_anonymous_users_go_to_the_login_page(client, path):
    response = client.get(path, HTTP_HOST=MAIN)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.parametrize("host", ["acme.example.com", "globex.example.com"])
@pytest.mark.parametrize("path", [PAGE, f"{PAGE}acme/", f"{PAGE}globex/"])
def test_a_tenants_host_never_shows_the_figures(client, superuser, host, path):
    busy(client, acme=2, globex=2)
    response = client.get(path, HTTP_HOST=host)
    assert response.status_code == 404
    index = client.get("/admin/", HTTP_HOST=host).content.decode()
    assert PAGE not in index


def test_an_invalid_tenant_id_is_a_404(client, superuser):
    assert client.get(f"{PAGE}a:b/", HTTP_HOST=MAIN).status_code == 404


def test_with_metrics_on_the_ranking_knows_request_time(settings, client, superuser):
    settings.DJUST_CONFIG = {**BASE, "TENANT_METRICS": True}
    busy(client, acme=3, globex=1)
    rows = {row["tenant"]: row for row in dashboard.noisy_neighbours()}
    assert rows["acme"]["mean_ms"] > 0 and rows["acme"]["seconds"] > 0
    assert 0 < rows["globex"]["seconds_share"] < 1
    html = client.get(PAGE, HTTP_HOST=MAIN).content.decode()
    assert "request time needs" not in html
