"""The usage dashboard in Django's admin (docs/observability.md#the-usage-dashboard).

Two pages, added to every ``AdminSite`` and linked from its index as
"Tenant usage":

``<admin>/tenantry-usage/``           "noisy neighbours": every tenant with
                                      usage, ranked by its share of the last
                                      24 hours' requests, events, refusals
                                      and (with ``TENANT_METRICS``) request
                                      time in this process
``<admin>/tenantry-usage/<tenant>/``  one tenant's requests, events,
                                      refusals, peak presences and state
                                      bytes by hour (48 h) and day (30 days)

as server-rendered SVG bar charts (no JavaScript). Superusers only, on a
host with no tenant: with a tenant bound the pages are a 404 and are not
linked (one tenant's admin never shows another's figures); a staff user who
is not a superuser gets a 403. The figures are tenantry's usage counters
(``tenantry.usage``), where ``STATE_BACKEND`` keeps them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template import engines
from django.urls import path, reverse
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from . import usage
from ._core import InvalidTenantId, validate_tenant_id
from .context import get_current_tenant

try:
    from . import metrics
except ImportError:  # prometheus_client is optional: no latency column then
    metrics = None  # type: ignore[assignment]

__all__ = ["CHARTED", "bar_chart", "install", "noisy_neighbours", "tenant_series"]

#: The figures charted per tenant: (usage metric, title).
CHARTED = (
    ("http_requests", "Requests"),
    ("live_events", "Live events"),
    ("refused", "Refusals"),
    ("peak_presences", "Peak presences"),
    ("state_bytes", "State bytes"),
)
HOURS_SHOWN = 48
DAYS_SHOWN = 30
#: The window the noisy-neighbours page ranks over.
RANKED_HOURS = 24


# -- charts -----------------------------------------------------------------------


def bar_chart(
    title: str, points: list[tuple[str, int]], *, width: int = 640, height: int = 160
) -> SafeString:
    """An SVG bar chart of ``points`` (label, value): one ``<rect>`` per
    point, its label and value in a ``<title>`` (shown on hover), the
    largest value on the axis. Labels are escaped."""
    top = max((value for _, value in points), default=0)
    pad_left, pad_bottom, pad_top = 48, 18, 20
    plot_w, plot_h = width - pad_left - 4, height - pad_bottom - pad_top
    step = plot_w / max(len(points), 1)
    bars = []
    for i, (label, value) in enumerate(points):
        h = 0.0 if top == 0 else plot_h * value / top
        x = pad_left + i * step
        bars.append(
            f'<rect class="bar" x="{x:.1f}" y="{pad_top + plot_h - h:.1f}" '
            f'width="{max(step - 1, 1):.1f}" height="{h:.1f}" fill="#417690">'
            f"<title>{escape(label)}: {value}</title></rect>"
        )
    first = escape(points[0][0]) if points else ""
    last = escape(points[-1][0]) if points else ""
    svg = (
        f'<svg class="tenantry-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">'
        f'<text x="{pad_left}" y="14" font-size="13" font-weight="bold">{escape(title)}</text>'
        f'<line x1="{pad_left}" y1="{pad_top + plot_h}" x2="{width - 4}" '
        f'y2="{pad_top + plot_h}" stroke="#999"/>'
        f'<text x="{pad_left - 4}" y="{pad_top + 10}" font-size="10" '
        f'text-anchor="end">{top}</text>'
        f'<text x="{pad_left - 4}" y="{pad_top + plot_h}" font-size="10" '
        f'text-anchor="end">0</text>'
        f'<text x="{pad_left}" y="{height - 4}" font-size="10">{first}</text>'
        f'<text x="{width - 4}" y="{height - 4}" font-size="10" text-anchor="end">{last}</text>'
        + "".join(bars)
        + "</svg>"
    )
    return mark_safe(svg)  # every interpolated text is escaped above


def tenant_series(tenant_id: str, now: datetime | None = None) -> dict[str, Any]:
    """``tenant_id``'s figures, gaps filled with 0: ``{"hours": {metric:
    [(label, n)] * HOURS_SHOWN}, "days": {metric: [(label, n)] * DAYS_SHOWN},
    "total": {...}}`` (the total over the days shown)."""
    now = now or datetime.now(UTC)
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    since = datetime.combine(
        (this_hour - timedelta(days=DAYS_SHOWN - 1)).date(), datetime.min.time(), UTC
    )
    figures = usage.get_usage(tenant_id, since=since)
    by_hour = {h["hour"]: h for h in figures["hours"]}
    by_day = {d["day"]: d for d in figures["days"]}
    hours = [this_hour - timedelta(hours=n) for n in range(HOURS_SHOWN - 1, -1, -1)]
    days: list[date] = [this_hour.date() - timedelta(days=n) for n in range(DAYS_SHOWN - 1, -1, -1)]
    out: dict[str, Any] = {"hours": {}, "days": {}, "total": figures["total"]}
    for metric, _ in CHARTED:
        out["hours"][metric] = [
            (h.strftime("%d %H:00"), by_hour.get(h, {}).get(metric, 0)) for h in hours
        ]
        out["days"][metric] = [(d.isoformat(), by_day.get(d, {}).get(metric, 0)) for d in days]
    return out


# -- noisy neighbours ---------------------------------------------------------------


def _latency_by_tenant() -> dict[str, tuple[float, float]] | None:
    """``{label: (requests, seconds)}`` from this process's
    ``tenantry_request_seconds`` (every process's in multiprocess mode), or
    None without ``TENANT_METRICS``."""
    if metrics is None or not metrics.enabled():
        return None
    return metrics.request_seconds_by_label()


def noisy_neighbours(now: datetime | None = None) -> list[dict[str, Any]]:
    """Every tenant with usage in the last :data:`RANKED_HOURS` hours, with
    its ``requests``, ``events``, ``refusals`` and their ``*_share`` of all
    tenants' (0..1), and ``seconds`` / ``seconds_share`` / ``mean_ms`` of
    request time where the metrics know it; the noisiest first (by the
    largest of its shares)."""
    now = now or datetime.now(UTC)
    since = (now - timedelta(hours=RANKED_HOURS - 1)).replace(minute=0, second=0, microsecond=0)
    rows = []
    for tenant_id in sorted(usage.tenants_with_usage()):
        hours = usage.get_usage(tenant_id, since=since)["hours"]
        row = {
            "tenant": tenant_id,
            "requests": sum(h["http_requests"] for h in hours),
            "events": sum(h["live_events"] for h in hours),
            "refusals": sum(h["refused"] for h in hours),
            "seconds": None,
            "mean_ms": None,
        }
        if row["requests"] or row["events"] or row["refusals"]:
            rows.append(row)
    latency = _latency_by_tenant()
    if latency is not None:
        for row in rows:
            count, seconds = latency.get(row["tenant"], (0.0, 0.0))
            row["seconds"] = seconds
            row["mean_ms"] = 1000 * seconds / count if count else None
    for key in ("requests", "events", "refusals", "seconds"):
        total = sum(row[key] or 0 for row in rows)
        for row in rows:
            row[f"{key}_share"] = (row[key] or 0) / total if total else 0.0
    rows.sort(
        key=lambda r: (
            -max(r["requests_share"], r["events_share"], r["refusals_share"], r["seconds_share"]),
            r["tenant"],
        )
    )
    return rows


# -- admin pages --------------------------------------------------------------------

# The pages' templates, kept here (a page of markup each) so they ship with
# the module whatever the packaging.
NOISY_TEMPLATE = """{% extends "admin/base_site.html" %}
{% block content %}<div id="content-main" class="tenantry-usage">
<p>Each tenant's share of the last {{ hours }} hours' figures{% if not latency_known %}
(request time needs <code>TENANT_METRICS</code>){% endif %}, the noisiest first.</p>
<figure class="tenantry-figure">{{ chart }}</figure>
<table id="noisy-neighbours"><thead><tr><th>Tenant</th><th>Requests</th><th>Share</th>
<th>Events</th><th>Share</th><th>Refusals</th><th>Share</th>
<th>Mean request ms</th><th>Share of request time</th></tr></thead><tbody>
{% for row in rows %}<tr class="tenant-row" data-tenant="{{ row.tenant }}">
<td>{% if row.url %}<a href="{{ row.url }}">{{ row.tenant }}</a>
{% else %}{{ row.tenant }}{% endif %}</td>
<td>{{ row.requests }}</td><td>{{ row.requests_bar }}</td>
<td>{{ row.events }}</td><td>{{ row.events_bar }}</td>
<td>{{ row.refusals }}</td><td>{{ row.refusals_bar }}</td>
<td>{% if row.mean_ms is not None %}{{ row.mean_ms|floatformat:1 }}{% else %}-{% endif %}</td>
<td>{% if row.seconds is not None %}{{ row.seconds_bar }}{% else %}-{% endif %}</td></tr>
{% empty %}<tr><td colspan="9">No tenant has usage yet.</td></tr>{% endfor %}
</tbody></table></div>{% endblock %}"""

TENANT_TEMPLATE = """{% extends "admin/base_site.html" %}
{% block content %}<div id="content-main" class="tenantry-usage">
<p><a href="{{ index_url }}">All tenants</a></p>
<table id="usage-total"><tr>{% for key, value in total.items %}<th>{{ key }}</th>
{% endfor %}</tr><tr>{% for key, value in total.items %}<td>{{ value }}</td>{% endfor %}</tr>
</table>
{% for chart in charts %}<section class="tenantry-metric" data-metric="{{ chart.metric }}">
<figure>{{ chart.hourly }}</figure><figure>{{ chart.daily }}</figure></section>
{% endfor %}</div>{% endblock %}"""


def _page(request: HttpRequest, source: str, context: dict[str, Any]) -> HttpResponse:
    return HttpResponse(engines["django"].from_string(source).render(context, request))


def _allowed(request: HttpRequest) -> None:
    if get_current_tenant() is not None or getattr(request, "tenant", None) is not None:
        raise Http404("Not found")
    if not request.user.is_superuser:
        raise PermissionDenied("The usage dashboard is for superusers.")


def _share_bar(share: float) -> SafeString:
    return format_html(
        '<svg class="tenantry-share" width="120" height="12" role="img" aria-label="{}%">'
        '<rect width="120" height="12" fill="#eee"/><rect width="{}" height="12" '
        'fill="#ba2121"/></svg> {}%',
        f"{100 * share:.1f}",
        f"{120 * share:.1f}",
        f"{100 * share:.1f}",
    )


def noisy_view(site: AdminSite, request: HttpRequest) -> HttpResponse:
    _allowed(request)
    rows = noisy_neighbours()
    for row in rows:
        # usage.OTHER (figures no tenant's own slot could take) has no page.
        row["url"] = (
            None
            if row["tenant"] == usage.OTHER
            else reverse(f"{site.name}:tenantry_usage_tenant", args=[row["tenant"]])
        )
        for key in ("requests", "events", "refusals", "seconds"):
            row[f"{key}_bar"] = _share_bar(row[f"{key}_share"])
    chart = bar_chart(
        "Requests, last 24 hours, by tenant",
        [(row["tenant"], row["requests"]) for row in rows[:50]],
    )
    context = {
        **site.each_context(request),
        "title": "Noisy neighbours",
        "rows": rows,
        "chart": chart,
        "latency_known": rows and rows[0]["seconds"] is not None,
        "hours": RANKED_HOURS,
    }
    return _page(request, NOISY_TEMPLATE, context)


def tenant_view(site: AdminSite, request: HttpRequest, tenant_id: str) -> HttpResponse:
    _allowed(request)
    try:
        tenant_id = validate_tenant_id(tenant_id)
    except InvalidTenantId as exc:
        raise Http404("Not found") from exc
    series = tenant_series(tenant_id)
    charts = []
    for metric, title in CHARTED:
        charts.append(
            {
                "metric": metric,
                "hourly": bar_chart(f"{title} by hour", series["hours"][metric]),
                "daily": bar_chart(f"{title} by day", series["days"][metric]),
            }
        )
    context = {
        **site.each_context(request),
        "title": f"Usage of {tenant_id}",
        "tenant_id": tenant_id,
        "charts": charts,
        "total": series["total"],
        "index_url": reverse(f"{site.name}:tenantry_usage"),
    }
    return _page(request, TENANT_TEMPLATE, context)


# -- wiring into every AdminSite -------------------------------------------------------

_original_get_urls = AdminSite.get_urls
_original_get_app_list = AdminSite.get_app_list


def _get_urls(self: AdminSite) -> list[Any]:
    return [
        path(
            "tenantry-usage/",
            self.admin_view(lambda request: noisy_view(self, request)),
            name="tenantry_usage",
        ),
        path(
            "tenantry-usage/<str:tenant_id>/",
            self.admin_view(lambda request, tenant_id: tenant_view(self, request, tenant_id)),
            name="tenantry_usage_tenant",
        ),
        *_original_get_urls(self),
    ]


def _get_app_list(self: AdminSite, request: HttpRequest, app_label: str | None = None) -> Any:
    app_list = _original_get_app_list(self, request, app_label)
    if app_label is not None or not _may_see(request):
        return app_list
    url = reverse(f"{self.name}:tenantry_usage")
    return [
        *app_list,
        {
            "name": "Tenant usage",
            "app_label": "tenantry_usage",
            "app_url": url,
            "has_module_perms": True,
            "models": [
                {
                    "name": "Noisy neighbours",
                    "object_name": "NoisyNeighbours",
                    "admin_url": url,
                    "add_url": None,
                    "view_only": True,
                    "perms": {"view": True},
                }
            ],
        },
    ]


def _may_see(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return (
        get_current_tenant() is None
        and getattr(request, "tenant", None) is None
        and bool(getattr(user, "is_superuser", False))
    )


def install() -> None:
    """Add the pages to every ``AdminSite`` and the link to its index
    (``AppConfig.ready``, when ``django.contrib.admin`` is installed)."""
    AdminSite.get_urls = _get_urls  # type: ignore[method-assign]
    AdminSite.get_app_list = _get_app_list  # type: ignore[method-assign]
