"""``TenantMiddleware``: resolves the tenant of every request, sets
``request.tenant``, and binds it as the current tenant while the view runs
(restored afterwards, also on exceptions).

Place it after ``SessionMiddleware`` and ``AuthenticationMiddleware`` (the
session resolver and the membership check read them; ``manage.py check``
reports the wrong order). It works in sync and async stacks.

A required tenant that did not resolve answers 404, unless the path starts
with one of ``TENANT_EXEMPT_PATHS`` or the view says ``tenant_required =
False`` (checked in ``process_view``, once the URL has picked the view).

A streaming or file response's body is produced with the request's tenant
bound (it runs after the view returned, in the server's loop).

A view that raises ``BackendUnavailable`` (Redis behind presence or state is
down) or ``QuotaExceeded`` (the memory state store or the tenant's share of
it is full) answers 503 with ``Retry-After``, logged with the error (which
names the URL, password hidden): an outage is not a bug in the view.

While something watches requests (``tenantry.observe``: the metrics of
``TENANT_METRICS``, OpenTelemetry), each request's tenant and duration are
reported to it when the response is returned; otherwise the check is one
attribute read.

A suspended tenant (``manage.py tenantry suspend``) answers 503 with a page
saying it is suspended, on every path (docs/operations.md#suspending-a-tenant).

The tenant's ``http`` rate limits (``TENANT_RATE_LIMITS``) are checked
before the view runs: 429 with ``Retry-After`` and ``RateLimit-*`` headers
(see tenantry.ratelimit).
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse

from . import conf, observe, ratelimit
from .access import missing, tenant_and_http_outcome, tenant_for_request
from .context import (
    _current,
    get_current_tenant,
    keep_bound,
    reset_current_tenant,
    set_current_tenant,
    tenant_context,
)
from .exceptions import (
    BackendUnavailable,
    QuotaExceeded,
    TenantDatabaseMissing,
    TenantSuspended,
)
from .responses import RETRY_AFTER as RETRY_AFTER  # the public name it had here
from .responses import suspended, unavailable

__all__ = [
    "TenantMiddleware",
    "get_current_tenant",
    "set_current_tenant",
    "tenant_context",
    "unavailable",
    "view_requires_tenant",
]


def view_requires_tenant(view_func: Callable[..., Any]) -> bool:
    """A view's own ``tenant_required`` (on the function or its class), else
    ``TENANT_REQUIRED``."""
    for owner in (view_func, getattr(view_func, "view_class", None)):
        required = getattr(owner, "tenant_required", None)
        if required is not None:
            return bool(required)
    return conf.current().required


class TenantMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
            # Django adapts process_view by its own kind; an async one avoids
            # a thread hop per request in async stacks.
            self.process_view = self._aprocess_view
        # Without the app its checks, the ORM wall and the djust gates never
        # installed: fail at start-up, not silently.
        conf.require_installed(f"{type(self).__module__}.{type(self).__qualname__}")
        # Compile the config now: a bad DJUST_CONFIG fails at start-up.
        conf.current()

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        if observe.request is not None:
            return self._watched(request)
        return self._serve(request)

    def _watched(self, request: HttpRequest) -> Any:
        started = perf_counter()
        try:
            return self._serve(request)
        finally:
            _report(request, started)

    def _serve(self, request: HttpRequest) -> Any:
        config = conf.request_config or conf.request_settings()
        try:
            if "http" in config.limited_scopes and config.membership_check is None:
                tenant, outcome = tenant_and_http_outcome(request, ratelimit.get_rate_limiter)
            else:  # nothing to fold into resolution's call: as directly as it goes
                tenant, outcome = tenant_for_request(request), None
        except TenantSuspended as exc:
            return suspended(request, exc)
        except TenantDatabaseMissing as exc:
            return unavailable(request, exc)
        token = set_current_tenant(tenant)
        try:
            response = ratelimit.http(request, self.get_response, outcome)
        finally:
            _current.reset(token)
        return keep_bound(response, tenant)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        if observe.request is not None:
            started = perf_counter()
            try:
                return await self._aserve(request)
            finally:
                _report(request, started)
        return await self._aserve(request)

    async def _aserve(self, request: HttpRequest) -> HttpResponse:
        outcome = None
        try:
            if conf.current().resolution_needs_sync:
                # The session, the user and user code may touch the database;
                # in that thread, the http limits too (one call into the core).
                tenant, outcome = await sync_to_async(tenant_and_http_outcome)(
                    request, ratelimit.get_rate_limiter
                )
            else:
                tenant = tenant_for_request(request)
        except TenantSuspended as exc:
            return suspended(request, exc)
        except TenantDatabaseMissing as exc:
            return unavailable(request, exc)
        token = set_current_tenant(tenant)
        try:
            return keep_bound(await ratelimit.ahttp(request, self.get_response, outcome), tenant)
        finally:
            reset_current_tenant(token)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> None:
        if request.tenant is None:
            _require_tenant(request, view_func)

    async def _aprocess_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> None:
        _require_tenant(request, view_func)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, TenantSuspended):  # a view's own admission (a mixin)
            return suspended(request, exception)
        if not isinstance(exception, (BackendUnavailable, QuotaExceeded)):
            return None
        return unavailable(request, exception)


def _report(request: HttpRequest, started: float) -> None:
    """Tell the request's watchers (``tenantry.observe``) its tenant and
    duration; a request refused before its tenant was bound has none."""
    watching = observe.request
    if watching is not None:
        watching(getattr(request, "__dict__", _NO_DICT).get("tenant"), perf_counter() - started)


_NO_DICT: dict = {}


def _require_tenant(request: HttpRequest, view_func: Callable[..., Any]) -> None:
    if request.tenant is None and view_requires_tenant(view_func):
        if not conf.current().is_exempt(request.path_info):
            raise missing(request, source="middleware")
