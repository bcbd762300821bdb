"""The metrics exporter's cost per request (docs/observability.md#cost):
the same tenantry LiveView GET as bench_liveview (Django's test client,
whole middleware stack, djust's mount and render) with nothing watching
requests, with the ``tenantry_*`` metrics fed (``TENANT_METRICS``), and with
the metrics and OpenTelemetry's ``tenant.id`` watcher (the API installed, no
SDK: no span records). Interleaved and shuffled per round like
bench_liveview; the cost is paired with the unwatched GET of the same round
and shown as a share of it. Goal: metrics ≤ 2% of the GET."""

from __future__ import annotations

import gc
import statistics

from django.test import override_settings

from benchmarks import bench_liveview
from tenantry import metrics, observe, tracing

ROUNDS = 1500
VARIANTS = ("unwatched", "metrics", "metrics + OpenTelemetry")
_METRICS = metrics._WATCHERS
_TRACING = tracing._WATCHERS


def _watch(variant: str) -> None:
    for hook in observe.HOOKS:
        for watcher in observe.watchers(hook):
            observe.unwatch(hook, watcher)
    if variant != "unwatched":
        for hook, function in _METRICS:
            observe.watch(hook, function)
    if variant == "metrics + OpenTelemetry" and tracing.trace is not None:
        for hook, function in _TRACING:
            observe.watch(hook, function)


def measure(rounds: int = ROUNDS) -> dict[str, list[float]]:
    """ns per GET, per variant, per round."""
    with override_settings(
        DJUST_CONFIG={**bench_liveview.CONFIG, "TENANT_METRICS": True},
        ROOT_URLCONF=bench_liveview.__name__,
        LIVEVIEW_ALLOWED_MODULES=[bench_liveview.__name__],
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
    ):
        client = bench_liveview._clients()["tenantry"]
        for variant in VARIANTS:  # warm up, labels made
            _watch(variant)
            for _ in range(50):
                bench_liveview._time_get(client)
        gc.collect()
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for r in range(rounds):
            for variant in bench_liveview._order(list(VARIANTS), r):
                _watch(variant)
                times[variant].append(bench_liveview._time_get(client))
        _watch("unwatched")
    return times


def _table(times: dict[str, list[float]]) -> str:
    base = times["unwatched"]
    lines = [
        "| what watches requests | median CPU time per GET | adds (paired, median) | share "
        "of the GET | goal |",
        "|---|---:|---:|---:|:---:|",
        f"| nothing (TENANT_METRICS off) | {statistics.median(base) / 1000:,.0f} µs | — | — | — |",
    ]
    for name in VARIANTS[1:]:
        added = [t - b for t, b in zip(times[name], base, strict=True)]
        share = statistics.median(a / b for a, b in zip(added, base, strict=True))
        goal = f"≤ 2%: {'yes' if share <= 0.02 else 'NO'}" if name == "metrics" else "—"
        lines.append(
            f"| {name} | {statistics.median(times[name]) / 1000:,.0f} µs "
            f"| {statistics.median(added) / 1000:+,.2f} µs | {share:+.2%} | {goal} |"
        )
    return "\n".join(lines) + "\n"


def run() -> str:
    times = measure()
    return (
        "## The metrics exporter's cost per request\n\n"
        f"A tenantry LiveView GET (as above), {ROUNDS} interleaved rounds in a "
        "shuffled order, CPU time of the process; the cost is paired with the "
        "unwatched GET of the same round.\n\n" + _table(times)
    )


if __name__ == "__main__":
    from benchmarks import setup

    setup()
    from benchmarks import bench_metrics

    print(bench_metrics.run())
