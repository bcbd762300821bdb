"""Per-tenant Prometheus metrics (docs/observability.md).

With ``DJUST_CONFIG["TENANT_METRICS"] = True`` (and ``prometheus_client``
installed: ``pip install tenantry[metrics]``), tenantry feeds, each with a
``tenant`` label:

``tenantry_requests_total``          requests through ``TenantMiddleware``
``tenantry_request_seconds``         their duration (a histogram)
``tenantry_events_total``            live events and work-causing frames
``tenantry_refusals_total``          refusals, with ``reason``: ``rate_limit``,
                                     ``isolation``, ``origin``, ``admission``
``tenantry_jobs_total``              Celery tasks started with a tenant bound
``tenantry_presences``               peak concurrent presences this hour
``tenantry_state_bytes``             state bytes this hour (peak)

into prometheus_client's default registry (an existing exporter serves
them), or through :func:`metrics_view`. Off, the request, event, job and
refusal paths pay one attribute read each (``tenantry.observe``).

Cardinality: the first ``TENANT_METRICS_TOP`` tenants (default 100) active
in a process are labelled by their id, every later one as ``other``; a
tenant keeps its label until the process restarts, so no counter ever goes
down and the sum over labels is the true total. What no known tenant did
(a request on a host with no tenant, the metrics request itself, a refusal
of an id nobody registered) is labelled ``""``.

Several processes (gunicorn workers, uvicorn ``--workers``): set
``PROMETHEUS_MULTIPROC_DIR`` before the processes start; :func:`metrics_view`
then serves the sum over every process's files. A Celery worker exports
through its own registry: :func:`serve` in the worker process.
"""

from __future__ import annotations

import atexit
import hmac
import logging
import os
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily

from . import conf, observe, usage
from ._core import TenantInfo
from .context import get_current_tenant

__all__ = [
    "NO_TENANT",
    "OTHER",
    "collect_usage",
    "enabled",
    "flush",
    "label_of",
    "metrics_view",
    "request_seconds_by_label",
    "serve",
    "sync",
]

logger = logging.getLogger("tenantry.metrics")

#: The label of every tenant past the first ``TENANT_METRICS_TOP``.
OTHER = "other"
#: The label of what no known tenant did.
NO_TENANT = ""


class _CountFirst:
    """Registered before the counters: a scrape of the default registry
    (by :func:`metrics_view` or any exporter) counts what is waiting first."""

    def describe(self) -> Any:
        return iter(())  # no names of its own (and no collect() at register)

    def collect(self) -> Any:
        flush()
        return iter(())


REGISTRY.register(_CountFirst())

REQUESTS = Counter(
    "tenantry_requests_total", "Requests answered through TenantMiddleware.", ["tenant"]
)
REQUEST_SECONDS = Histogram(
    "tenantry_request_seconds", "Seconds TenantMiddleware took to answer a request.", ["tenant"]
)
EVENTS = Counter(
    "tenantry_events_total", "Live events and work-causing frames let through.", ["tenant"]
)
REFUSALS = Counter(
    "tenantry_refusals_total", "Refusals tenantry made, by reason.", ["tenant", "reason"]
)
JOBS = Counter("tenantry_jobs_total", "Celery tasks started with a tenant bound.", ["tenant"])


class _Labels:
    """Tenant id → label: its id while fewer than ``top`` tenants have one,
    :data:`OTHER` after that; a label once given is kept."""

    def __init__(self, top: int) -> None:
        self.top = top
        self.named: dict[str, str] = {}
        self.lock = threading.Lock()

    def of(self, tenant_id: str) -> str:
        label = self.named.get(tenant_id)
        if label is not None:
            return label
        with self.lock:
            label = self.named.get(tenant_id)
            if label is None:
                label = tenant_id if len(self.named) < self.top else OTHER
                self.named[tenant_id] = label
                if label is OTHER and len(self.named) > 4 * self.top:
                    # Remember only the named ones: the others stay OTHER
                    # whenever they come back (a bounded map, whatever the
                    # number of tenants).
                    self.named = {t: n for t, n in self.named.items() if n is not OTHER}
            return label


_labels = _Labels(100)


def label_of(tenant: Any) -> str:
    """The ``tenant`` label of ``tenant`` (a ``TenantInfo``, or anything
    else: no known tenant)."""
    if isinstance(tenant, TenantInfo):
        return _labels.of(tenant.id)
    return NO_TENANT


# Per label, the children of the per-request counters: ``labels()`` costs
# more than the increment itself.
_request_children: dict[str, tuple[Any, Any]] = {}
_event_children: dict[str, Any] = {}

#: Requests ``(tenant, seconds)`` and events ``(tenant,)`` seen and not yet
#: counted. The request and event paths only append (no call into the Rust
#: core: a tenant's id is read when they are counted), and count them at most
#: every :data:`COUNT_AFTER` seconds; every scrape counts them first.
_requests: deque[tuple[Any, float]] = deque()
_events: deque[Any] = deque()
#: Seconds requests and events may wait to be counted.
COUNT_AFTER = 1.0
_next_count = 0.0


def flush() -> None:
    """Count the requests and events seen so far (the scrapes, the
    dashboard and tests call it; the paths themselves at most every
    :data:`COUNT_AFTER` seconds)."""
    global _next_count
    _next_count = time.monotonic() + COUNT_AFTER
    while _requests:
        try:
            tenant, seconds = _requests.popleft()
        except IndexError:  # another thread took the last one
            break
        label = label_of(tenant)
        children = _request_children.get(label)
        if children is None:
            children = _request_children[label] = (
                REQUESTS.labels(label),
                REQUEST_SECONDS.labels(label),
            )
        children[0].inc()
        children[1].observe(seconds)
    while _events:
        try:
            tenant = _events.popleft()
        except IndexError:
            break
        label = label_of(tenant)
        child = _event_children.get(label)
        if child is None:
            child = _event_children[label] = EVENTS.labels(label)
        child.inc()


def _count_while_idle() -> None:
    """A daemon thread's loop: what waits is counted within
    :data:`COUNT_AFTER` seconds even when no request comes to count it (a
    process that went quiet still exports its last second)."""
    while True:
        time.sleep(COUNT_AFTER)
        if _requests or _events:
            try:
                flush()
            except Exception:  # never let the thread die
                logger.exception("counting requests and events failed")


_counter_thread: threading.Thread | None = None


def _start_counter_thread() -> None:
    global _counter_thread
    if _counter_thread is None or not _counter_thread.is_alive():
        _counter_thread = threading.Thread(
            target=_count_while_idle, name="tenantry-metrics", daemon=True
        )
        _counter_thread.start()


def _after_fork() -> None:
    global _counter_thread
    _counter_thread = None  # the parent's thread is not in the child
    _requests.clear()  # the parent's to count
    _events.clear()
    if _on_request in observe.watchers("request"):
        _start_counter_thread()


os.register_at_fork(after_in_child=_after_fork)
atexit.register(flush)  # a process that stops counts its last second


def _on_request(tenant: Any, seconds: float) -> None:
    _requests.append((tenant, seconds))
    if time.monotonic() >= _next_count:
        flush()


def _on_event(tenant: Any) -> None:
    _events.append(tenant)
    if time.monotonic() >= _next_count:
        flush()


def _on_job(tenant: Any) -> None:
    JOBS.labels(label_of(tenant)).inc()


def _on_refusal(why: str, tenant: Any) -> None:
    REFUSALS.labels(label_of(tenant), why).inc()


#: Whether :func:`sync` ran (``AppConfig.ready``): config changes only
#: matter after it.
_ever_synced = False

_WATCHERS = (
    ("request", _on_request),
    ("event", _on_event),
    ("job", _on_job),
    ("refusal", _on_refusal),
)


def sync() -> bool:
    """Feed the metrics when ``TENANT_METRICS`` says so, stop when it does
    not (``AppConfig.ready`` calls it, and the first observation after a
    config change); whether they are fed."""
    global _ever_synced
    _ever_synced = True
    config = conf.current()
    _labels.top = config.metrics_top
    for hook, function in _WATCHERS:
        observe.unwatch(hook, _RESYNC[hook])
        if config.metrics_enabled:
            observe.watch(hook, function)
        else:
            observe.unwatch(hook, function)
    if config.metrics_enabled:
        _start_counter_thread()
    return config.metrics_enabled


def _resyncing(handler: Any) -> Any:
    def resync(*args: Any) -> None:
        # Compiles the new config at the first observation after a change
        # (not inside the change's signal), then counts it if still on.
        try:
            enabled = sync()
        except Exception:  # a bad config fails loudly where it is used, not here
            logger.debug("metrics not re-synced: the config does not compile", exc_info=True)
            return
        if enabled:
            handler(*args)

    return resync


_RESYNC = {hook: _resyncing(function) for hook, function in _WATCHERS}


def _on_config_changed() -> None:
    """``DJUST_CONFIG`` changed: stand the resyncing watchers in for the
    counting ones until the first observation decides."""
    if not _ever_synced:
        return
    for hook, function in _WATCHERS:
        observe.unwatch(hook, function)
        observe.watch(hook, _RESYNC[hook])


conf._reset_hooks.append(_on_config_changed)


def enabled() -> bool:
    """Whether ``TENANT_METRICS`` is on."""
    return conf.current().metrics_enabled


def request_seconds_by_label() -> dict[str, tuple[float, float]]:
    """``{label: (requests, seconds)}`` of ``tenantry_request_seconds``:
    this process's, or every process's in multiprocess mode."""
    flush()
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    families = (
        multiprocess.MultiProcessCollector(None, path=path).collect()
        if path
        else REQUEST_SECONDS.collect()
    )
    out: dict[str, list[float]] = {}
    for family in families:
        if family.name != "tenantry_request_seconds":
            continue
        for sample in family.samples:
            figures = out.setdefault(sample.labels.get("tenant", NO_TENANT), [0.0, 0.0])
            if sample.name.endswith("_count"):
                figures[0] += sample.value
            elif sample.name.endswith("_sum"):
                figures[1] += sample.value
    return {label: (count, seconds) for label, (count, seconds) in out.items()}


# -- gauges read from the usage counters at scrape time ------------------------


def _hour_start() -> datetime:
    now = datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0)


class _UsageCollector:
    """``tenantry_presences`` and ``tenantry_state_bytes``: this hour's peaks
    of each tenant's usage (``tenantry.usage``), labelled as the counters
    are (the tenants past the top summed as ``other``)."""

    def describe(self) -> Any:
        # Named here so registering reads no usage (and no config) yet.
        yield GaugeMetricFamily("tenantry_presences", "", labels=["tenant"])
        yield GaugeMetricFamily("tenantry_state_bytes", "", labels=["tenant"])

    def collect(self) -> Any:
        presences = GaugeMetricFamily(
            "tenantry_presences", "Peak concurrent presences this hour.", labels=["tenant"]
        )
        state_bytes = GaugeMetricFamily(
            "tenantry_state_bytes", "State bytes this hour (peak).", labels=["tenant"]
        )
        if not conf.current().metrics_enabled:
            return
        figures = collect_usage()
        for label, (peak, size) in sorted(figures.items()):
            presences.add_metric([label], peak)
            state_bytes.add_metric([label], size)
        yield presences
        yield state_bytes


def collect_usage() -> dict[str, tuple[int, int]]:
    """``{label: (peak presences, state bytes)}`` of this hour, by label."""
    since = _hour_start()
    out: dict[str, tuple[int, int]] = {}
    for tenant_id in usage.tenants_with_usage():
        if tenant_id == usage.OTHER:
            label = OTHER
        else:
            label = _labels.of(tenant_id)
        hours = usage.get_usage(tenant_id, since=since)["hours"]
        if not hours:
            continue
        peak = max(h["peak_presences"] for h in hours)
        size = max(h["state_bytes"] for h in hours)
        old = out.get(label, (0, 0))
        out[label] = (old[0] + peak, old[1] + size)
    return out


_usage_collector = _UsageCollector()
REGISTRY.register(_usage_collector)


# -- serving ---------------------------------------------------------------------


def _registry() -> CollectorRegistry:
    """The default registry, or, in multiprocess mode, one that sums every
    process's files (and this process's usage gauges)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    registry.register(_usage_collector)
    return registry


def _token_matches(request: HttpRequest, token: str | None) -> bool:
    if token is None:
        return False
    given = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def _is_staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(
        user is not None
        and getattr(user, "is_authenticated", False)
        and getattr(user, "is_active", False)
        and getattr(user, "is_staff", False)
    )


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Every tenant's figures in Prometheus' text format, for a staff user
    or a scraper sending ``Authorization: Bearer <TENANT_METRICS_TOKEN>``;
    a 404 on a tenant's host (or with any tenant bound), so one tenant never
    sees another's figures. Route it on the main domain, e.g.
    ``path("metrics/", metrics_view)``."""
    if get_current_tenant() is not None or getattr(request, "tenant", None) is not None:
        raise Http404("Not found")
    if not (_token_matches(request, conf.current().metrics_token) or _is_staff(request)):
        response = HttpResponse(
            "The metrics need a staff user or a TENANT_METRICS_TOKEN bearer token.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="tenantry metrics"'
        return response
    flush()
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)


metrics_view.tenant_required = False  # type: ignore[attr-defined]


def serve(port: int, addr: str = "127.0.0.1") -> Any:
    """Serve :func:`metrics_view`'s figures without Django on ``addr:port``
    (a Celery worker's own exporter: call it in ``worker_process_init``);
    no token check, so bind it where only the scraper reaches. Returns
    prometheus_client's server and thread."""
    return start_http_server(port, addr=addr, registry=_registry())
