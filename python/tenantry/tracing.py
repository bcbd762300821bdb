"""OpenTelemetry: ``tenant.id`` on the current span of requests, live events
and jobs (docs/observability.md#opentelemetry).

When ``opentelemetry-api`` is installed, tenantry watches those paths
(``tenantry.observe``) and sets the attribute on whatever span is current
there (your instrumentation's: Django's, ASGI's, Celery's) when it is
recording, that is, when a tracer provider is configured and sampled it. It
starts no span of its own. Without the package nothing is watched.
"""

from __future__ import annotations

from typing import Any

from . import observe
from ._core import TenantInfo

try:
    from opentelemetry import trace
except ImportError:  # the API is optional
    trace = None  # type: ignore[assignment]

__all__ = ["ATTRIBUTE", "install", "tag_current_span", "uninstall"]

#: The span attribute naming the tenant.
ATTRIBUTE = "tenant.id"


def tag_current_span(tenant: Any) -> None:
    """Set :data:`ATTRIBUTE` on the current span when it records and
    ``tenant`` is a known tenant."""
    if not isinstance(tenant, TenantInfo):
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(ATTRIBUTE, tenant.id)


def _on_request(tenant: Any, seconds: float) -> None:
    tag_current_span(tenant)


_WATCHERS = (("request", _on_request), ("event", tag_current_span), ("job", tag_current_span))


def install() -> bool:
    """Watch requests, events and jobs when the OpenTelemetry API is
    installed (``AppConfig.ready`` calls it); whether it is."""
    if trace is None:
        return False
    for hook, function in _WATCHERS:
        observe.watch(hook, function)
    return True


def uninstall() -> None:
    for hook, function in _WATCHERS:
        observe.unwatch(hook, function)
