"""Per-tenant rate limits and quotas (SPEC §12).

Limits come from ``DJUST_CONFIG["TENANT_RATE_LIMITS"]`` (and
``TENANT_QUOTAS``), overridden per tenant by its plan in the registry
(``TenantInfo.settings["rate_limits"]`` / ``["quotas"]``)::

    DJUST_CONFIG = {
        "TENANT_RATE_LIMITS": {
            "http": "100/s",                                   # TenantMiddleware
            "mounts": "30/m",                                  # live mounts (default: http's)
            "events": [                                         # live-view events
                "20/s burst 40",
                {"rate": "600/m", "key": "tenant+user"},
            ],
            "export": "10/h",                                   # check("export")
        },
        "TENANT_QUOTAS": {"events_per_day": 100_000},
    }

    from tenantry.ratelimit import check, tenant_ratelimit

    decision = check("export", key="tenant+user", request=request)
    if not decision.allowed:
        ...  # decision.retry_after seconds

The work is done by the Rust core (``tenantry._core.TenantRateLimiter``):
GCRA in a sharded memory store, or one ``EVALSHA`` on Redis
(``RATE_LIMIT_BACKEND = "tenant_redis"``). See docs/ratelimits.md.

The refusals tenantry makes itself (the middleware's 429, the decorator's,
a live event's and a live mount's error frames) are audited
(``ratelimit.refused``) and counted as ``rate_limit`` refusals
(``tenantry.access.refuse``). The djust side (where mounts and events are
checked) is ``tenantry.djust.live``; the 429 and 503 answers are
``tenantry.responses``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse

from . import conf, usage
from ._core import PLAN_KEYS, BackendUnavailable, Decision, TenantInfo, TenantRateLimiter
from ._tenant_backend import ProcessRouter
from .access import refuse
from .context import _current
from .naming import refuse_naming_another
from .responses import set_rate_limit_headers, too_many_requests, unavailable

__all__ = [
    "Decision",
    "TenantRateLimiter",
    "ahttp",
    "check",
    "get_rate_limiter",
    "http",
    "needs_user",
    "tenant_ratelimit",
    "too_many_requests",
]

logger = logging.getLogger("tenantry.ratelimit")

_limiter: ProcessRouter[TenantRateLimiter] = ProcessRouter(TenantRateLimiter)

#: Seconds a client is told to wait when the rate-limit store is down
#: (``TENANT_RATE_LIMIT_FAILURE = "closed"``).
UNAVAILABLE_RETRY_AFTER = 5

#: The scope of live mounts; a tenant with no ``mounts`` limit (in the
#: config or its plan) has its mounts counted against ``http``.
MOUNTS = "mounts"

#: The keys of a tenant's settings that make its plan (the Rust core's).
_PLAN_RATE_LIMITS, _PLAN_QUOTAS = PLAN_KEYS


def get_rate_limiter() -> TenantRateLimiter:
    """The process's limiter (follows ``DJUST_CONFIG``)."""
    return _limiter.get()


def check(scope: str, key: str | None = None, cost: int = 1, request: Any = None) -> Decision:
    """Check and consume ``cost`` from every limit of ``scope`` for the bound
    tenant: ``Decision(allowed, limit, remaining, retry_after, reset_after)``
    (seconds, floats). ``key`` names what is counted within the tenant
    (``"tenant"``, ``"tenant+user"``, ``"tenant+ip"``, ``"view"``, or any
    other string, counted as itself); ``None`` uses each limit's configured
    key. A refused check consumes nothing. No tenant bound:
    ``TenantNotSetError``. Redis down: ``BackendUnavailable`` (or an allowed
    decision with ``TENANT_RATE_LIMIT_FAILURE = "open"``)."""
    return _limiter.get().check(scope, key, cost, request)


def _refused(decision: Decision, scope: str, request: Any, tenant: Any = None) -> None:
    """Audit and count a refusal tenantry makes itself."""
    refuse(
        "rate_limit",
        "ratelimit.refused",
        tenant if tenant is not None else _current.get(),
        request,
        level=logging.INFO,
        scope=scope,
        limit=decision.limit,
        retry_after=decision.retry_after,
    )


def _unlimited(scope: str, tenant: Any) -> bool:
    """Nothing can limit ``scope`` (one of ``conf.GATED_SCOPES``) for ``tenant``:
    the config sets no rate or quota for it, and the tenant has no plan
    (``rate_limits`` / ``quotas`` in its settings, which may add some). The
    middleware and the event gate then only count usage, without a call into
    the store."""
    if scope in (conf.request_config or conf.request_settings()).limited_scopes:
        return False
    plan = getattr(tenant, "settings", None)
    return not plan or (_PLAN_RATE_LIMITS not in plan and _PLAN_QUOTAS not in plan)


def needs_user(scope: str, tenant: Any) -> bool:
    """Whether ``scope``'s limits for ``tenant`` (the bound one) count users,
    so an async caller loads ``request.user`` in a thread before checking.
    Without a plan of its own the config alone says, read here without a
    call into the core (docs/performance-design.md#crossings-per-request); a
    plan's rates are the core's to merge (``TenantRateLimiter.needs_user``)."""
    plan = getattr(tenant, "settings", None)
    if not plan or _PLAN_RATE_LIMITS not in plan:
        return scope in (conf.request_config or conf.request_settings()).user_scopes
    return _limiter.get().needs_user(scope)


def _http_decision(request: HttpRequest) -> Decision | HttpResponse | None:
    if getattr(request, "tenant", None) is None:
        return None
    try:
        return _limiter.get().check("http", None, 1, request, required=False, usage="http_requests")
    except BackendUnavailable as exc:
        return unavailable(request, exc)


def http(
    request: HttpRequest, get_response: Callable[[HttpRequest], Any], outcome: Any = None
) -> Any:
    """``TenantMiddleware``'s hook: the ``http`` limits of the request's
    tenant before the view (429 when refused), their headers after it.
    ``outcome``: what ``access.tenant_and_http_outcome`` already decided (a
    ``Decision``, or the ``BackendUnavailable`` of a store that is down);
    None: decide now."""
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        return get_response(request)
    refuse_naming_another(tenant, "tenantry.ratelimit.http")
    if outcome is not None:
        decision = outcome if isinstance(outcome, Decision) else unavailable(request, outcome)
    elif _unlimited("http", tenant):
        usage.count(tenant, "http_requests")
        return get_response(request)
    else:
        decision = _http_decision(request)
    if decision is None:
        return get_response(request)
    if not isinstance(decision, Decision):  # the 503 of a store that is down
        return decision
    if not decision.allowed:
        _refused(decision, "http", request, tenant)
        return too_many_requests(decision)
    response = get_response(request)
    if decision.limit is not None:  # no headers when no limit applies
        set_rate_limit_headers(response, decision)
    return response


async def ahttp(
    request: HttpRequest, get_response: Callable[[HttpRequest], Awaitable[Any]], outcome: Any = None
) -> Any:
    """:func:`http` for async middleware stacks."""
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        return await get_response(request)
    refuse_naming_another(tenant, "tenantry.ratelimit.ahttp")
    if outcome is not None:
        decision = outcome if isinstance(outcome, Decision) else unavailable(request, outcome)
    elif _unlimited("http", tenant):
        usage.count(tenant, "http_requests")
        return await get_response(request)
    elif needs_user("http", tenant):
        # request.user loads from the database: not on the event loop.
        decision = await sync_to_async(_http_decision)(request)
    else:
        decision = _http_decision(request)
    if decision is None:
        return await get_response(request)
    if not isinstance(decision, Decision):  # the 503 of a store that is down
        return decision
    if not decision.allowed:
        _refused(decision, "http", request, tenant)
        return too_many_requests(decision)
    response = await get_response(request)
    if decision.limit is not None:  # no headers when no limit applies
        set_rate_limit_headers(response, decision)
    return response


def tenant_ratelimit(
    rate: str, key: str = "tenant+user", scope: str | None = None, cost: int = 1
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Limit a view (sync or async function; ``method_decorator`` for class
    methods) per tenant: ``rate`` unless ``TENANT_RATE_LIMITS`` or the
    tenant's plan sets ``scope`` (default: the view's dotted name). Refused
    requests get a 429 with ``Retry-After`` and ``RateLimit-*`` headers."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        name = scope or f"{view.__module__}.{view.__qualname__}".replace("<", "").replace(">", "")
        limiter = get_rate_limiter

        def decide(request: Any) -> Decision:
            return limiter().check(name, key, cost, request, rate=rate)

        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
                decision = decide(request)
                if not decision.allowed:
                    _refused(decision, name, request)
                    return too_many_requests(decision)
                response = await view(request, *args, **kwargs)
                set_rate_limit_headers(response, decision)
                return response

            return async_wrapper

        @functools.wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            decision = decide(request)
            if not decision.allowed:
                _refused(decision, name, request)
                return too_many_requests(decision)
            response = view(request, *args, **kwargs)
            set_rate_limit_headers(response, decision)
            return response

        return wrapper

    return decorate


# -- live views: events and mounts ------------------------------------------------


def _refusal_frame(decision: Decision, what: str) -> dict:
    """The error frame's fields of a refused live event or mount."""
    wait = decision.retry_after
    return {
        "error": f"Rate limit exceeded, {what} dropped: retry in {wait:.3g} s",
        "rate_limited": True,
        "retry_after": wait,
        "reset_after": decision.reset_after,
        "limit": decision.limit,
        "remaining": decision.remaining,
    }


def _unavailable_frame(what: str, endpoint: str, exc: Exception) -> dict:
    logger.error("%s %s refused, rate limits unavailable: %s", what, endpoint, exc)
    return {
        "error": f"Service temporarily unavailable, {what} dropped",
        "retry_after": float(UNAVAILABLE_RETRY_AFTER),
    }


def event_refusal(owner: Any, event_name: str, root_view: Any = None) -> dict | None:
    """The error frame's fields when the bound tenant's ``events`` limits
    refuse ``event_name`` on ``owner`` (a view or component), else None."""
    view = root_view if root_view is not None else owner
    request = getattr(view, "request", None)
    endpoint = f"{type(owner).__name__}.{event_name}"
    try:
        decision = _limiter.get().check(
            "events", None, 1, request, endpoint=endpoint, required=False, usage="live_events"
        )
    except BackendUnavailable as exc:
        return _unavailable_frame("event", endpoint, exc)
    if decision is None or decision.allowed:
        return None
    _refused(decision, "events", request)
    return _refusal_frame(decision, "event")


def frame_refusal(view: Any, tenant: TenantInfo, frame: str, scope: str) -> dict | None:
    """The error frame's fields when ``tenant``'s ``scope`` limits refuse a
    client frame of type ``frame`` (``cursor_move``, ``request_html``, an
    upload chunk, a URL change, ...) on ``view``, else None. Counted as a
    live event when ``scope`` is ``events``."""
    refuse_naming_another(tenant, "tenantry.ratelimit.frame_refusal")
    request = getattr(view, "request", None)
    endpoint = f"{type(view).__name__}.{frame}"
    token = _current.set(tenant)  # the plan and the key are the view's tenant's
    try:
        decision = _limiter.get().check(
            scope,
            None,
            1,
            request,
            endpoint=endpoint,
            tenant=tenant,
            required=False,
            usage="live_events" if scope == "events" else None,
        )
    except BackendUnavailable as exc:
        return _unavailable_frame(frame, endpoint, exc)
    finally:
        _current.reset(token)
    if decision is None or decision.allowed:
        return None
    _refused(decision, scope, request, tenant)
    return _refusal_frame(decision, frame)


def mount_unlimited(tenant: TenantInfo) -> bool:
    """Nothing can limit a live mount of ``tenant`` (no ``mounts`` and no
    ``http`` limit in the config or its plan): the mount gate then makes no
    call into the store."""
    return _unlimited(MOUNTS, tenant) and _unlimited("http", tenant)


def mount_refusal(view: Any, tenant: TenantInfo) -> dict | None:
    """The error frame's fields when ``tenant``'s ``mounts`` limits (its
    ``http`` limits when neither the config nor its plan sets ``mounts``)
    refuse a live mount of ``view``, else None. Synchronous: a ``user`` key
    may load the user from the database."""
    refuse_naming_another(tenant, "tenantry.ratelimit.mount_refusal")
    request = getattr(view, "request", None)
    endpoint = type(view).__name__
    token = _current.set(tenant)  # the plan and the key are the mounted tenant's
    try:
        limiter = _limiter.get()
        scope = MOUNTS if limiter.has_limits(MOUNTS) else "http"
        decision = limiter.check(scope, None, 1, request, endpoint=endpoint, tenant=tenant)
    except BackendUnavailable as exc:
        return _unavailable_frame("mount", endpoint, exc)
    finally:
        _current.reset(token)
    if decision is None or decision.allowed:
        return None
    _refused(decision, scope, request, tenant)
    return _refusal_frame(decision, "mount")
