"""Per-tenant usage: HTTP requests, live events, limited (refused on a
rate limit) requests, refusals of any kind (``tenantry.access.refuse`` of a
known tenant) — counts — and peak concurrent presences and state bytes —
peaks — by UTC hour and day.

Counted by tenantry itself: ``TenantMiddleware`` counts every request of a
tenant, the live-view event gate every event, and every refused rate-limit
check counts as limited; a join or track through any tenantry presence
backend (djust's ``track_presence()``, the manager's backends, the router,
ones you construct) raises ``peak_presences`` to the room's count, and a
state write (djust saving a view, ``set``) raises ``state_bytes`` to the
tenant's bytes, as the stores return them with the join or write. Your
code may add figures with :func:`record`.
Kept where ``STATE_BACKEND`` keeps state (the process, or Redis at
``STATE_REDIS_URL``); on Redis a tenant's figures are sent in one round trip
at most once a second. A request or event that no limit applied to is
counted without a call into the store: held in the process and handed over
within a second, and before any read here. See docs/ratelimits.md#usage.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from . import _core
from .naming import refuse_naming_another

__all__ = [
    "METRICS",
    "OTHER",
    "clear_tenant",
    "flush",
    "get_usage",
    "record",
    "tenants_with_usage",
]

logger = logging.getLogger("tenantry.usage")

#: The owner of figures no tenant's own slot could take: the memory store
#: (16,384 tenants) when it is full of tenants whose figures have not
#: expired, or the process's pending batches (Redis) when the oldest cannot
#: be sent. No tenant id can be it; ``get_usage(OTHER)`` reads it.
OTHER = "-other"

#: The figures kept per hour and day.
METRICS = (
    "http_requests",
    "live_events",
    "limited",
    "peak_presences",
    "state_bytes",
    "refused",
)

#: Seconds the request and event paths may hold counts before handing them to
#: the store (every read hands them over first).
FLUSH_AFTER = 1.0

#: ``(tenant, metric)`` of requests and events no limit applied to, held
#: by the core until handed over. Appending (atomic under the GIL) costs a
#: request far less than a call into the store, whose code is cold between
#: requests; every read and clear in the core hands them over first.
_held = _core.usage_held()
_next_hand_over = 0.0


def count(tenant: Any, metric: str) -> None:
    """Count one ``metric`` (``http_requests``, ``live_events``) of
    ``tenant``: held, and handed to the store within :data:`FLUSH_AFTER`
    seconds or at the next read, whichever comes first. Naming another
    tenant than the bound one is refused (``TenantMismatchError``)."""
    refuse_naming_another(tenant, "tenantry.usage.count")
    _held.append((tenant, metric))
    if time.monotonic() >= _next_hand_over:
        _hand_over()


def _hand_over() -> None:
    global _next_hand_over
    _next_hand_over = time.monotonic() + FLUSH_AFTER
    try:
        _core.usage_hand_over()
    except Exception:  # never fail the request that happens to hand over
        logger.exception("held usage counts dropped")


def _when(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def get_usage(tenant: Any, since: datetime | None = None) -> dict:
    """``tenant``'s figures from ``since`` (an aware datetime; default: the
    last 24 hours): ``{"tenant", "hours": [{"hour": datetime, <metric>:
    n}], "days": [{"day": date, ...}], "total": {<metric>: n}}`` — counts
    summed and peaks maxed over the days."""
    if since is not None and since.tzinfo is None:
        raise ValueError("since must be an aware datetime (e.g. datetime.now(UTC))")
    raw = _core.usage_get(tenant, None if since is None else since.timestamp())
    return {
        "tenant": raw["tenant"],
        "hours": [{"hour": _when(t), **figures} for t, figures in raw["hours"]],
        "days": [{"day": _when(t).date(), **figures} for t, figures in raw["days"]],
        "total": raw["total"],
    }


def record(tenant: Any, metric: str, value: int = 1) -> None:
    """Add ``value`` to a count, or raise a peak (``peak_presences``,
    ``state_bytes``), of ``tenant`` for the current hour and day."""
    _core.usage_record(tenant, metric, value)


def tenants_with_usage() -> list[str]:
    """Ids of the tenants with recorded usage (on Redis, a scan: reports only)."""
    return _core.usage_tenants()


def flush() -> None:
    """Send the process's pending figures now (Redis; a no-op in memory)."""
    _core.usage_flush()


def clear_tenant(tenant: Any) -> int:
    """Forget every figure of ``tenant`` (``manage.py tenantry delete`` calls
    it, so a tenant created later under the same id starts from nothing).
    Memory: this process's figures (1 if it had any); Redis: the number of
    hour and day hashes deleted."""
    return _core.usage_clear_tenant(tenant)
