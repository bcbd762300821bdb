"""The answers tenantry gives instead of a view's: 503 for a backend that is
down or full or for a suspended tenant, 429 for a refused rate limit. Both ``TenantMiddleware`` and
``tenantry.ratelimit`` answer with them, so they live here, below both.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.utils.html import escape

from ._core import Decision

__all__ = [
    "RETRY_AFTER",
    "SUSPENDED_TEMPLATE",
    "set_rate_limit_headers",
    "suspended",
    "too_many_requests",
    "unavailable",
]

# The middleware's logger, as before this module existed (deployments filter on it).
logger = logging.getLogger("tenantry.middleware")

#: Seconds a client is asked to wait after a 503 for an unreachable backend.
RETRY_AFTER = 5


def unavailable(request: HttpRequest, exception: Exception) -> HttpResponse:
    """503 with ``Retry-After`` for an unreachable backend, logged."""
    logger.error(
        "%s %s (tenant %s): %s",
        request.method,
        request.path,
        getattr(request, "tenant", None),
        exception,
        exc_info=exception,
    )
    response = HttpResponse(
        "Service temporarily unavailable: a backend this page needs is unreachable or full.\n",
        status=503,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(RETRY_AFTER)
    return response


#: The template of the page a suspended tenant's requests get, when the
#: project has one (context: ``tenant_id``); else a plain page.
SUSPENDED_TEMPLATE = "tenantry/suspended.html"


def suspended(request: HttpRequest, exception: Exception) -> HttpResponse:
    """503 for a request of a suspended tenant, saying so
    (docs/operations.md#suspending-a-tenant). No ``Retry-After``: a
    suspension lasts until an operator resumes the tenant."""
    tenant_id = getattr(exception, "tenant_id", None)
    if getattr(exception, "moving", False):
        # `manage.py tenantry move` switching its database: seconds, not an outage.
        response = HttpResponse(
            f"<!doctype html><title>Moving</title><h1>{escape(str(exception))}</h1>\n",
            status=503,
            content_type="text/html; charset=utf-8",
        )
        response["Retry-After"] = str(RETRY_AFTER)
        return response
    try:
        body = render_to_string(SUSPENDED_TEMPLATE, {"tenant_id": tenant_id}, request=None)
        content_type = "text/html; charset=utf-8"
    except TemplateDoesNotExist:
        body = (
            "<!doctype html><title>Suspended</title>"
            f"<h1>{escape(str(exception))}</h1>"
            "<p>This account is suspended. Contact the service's support.</p>\n"
        )
        content_type = "text/html; charset=utf-8"
    return HttpResponse(body, status=503, content_type=content_type)


def too_many_requests(decision: Decision) -> HttpResponse:
    """The 429 answer to a refused ``decision``, with ``Retry-After`` and the
    ``RateLimit-*`` headers."""
    wait = math.ceil(decision.retry_after)
    response = HttpResponse(
        f"Too many requests: retry in {wait} second{'s' if wait != 1 else ''}.\n",
        status=429,
        content_type="text/plain; charset=utf-8",
    )
    set_rate_limit_headers(response, decision)
    return response


def set_rate_limit_headers(response: Any, decision: Decision) -> None:
    """``decision``'s ``RateLimit-*`` (and ``Retry-After``) headers on ``response``."""
    for name, value in decision.headers().items():
        response[name] = value
