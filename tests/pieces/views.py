"""Views the cache tests drive over HTTP."""

import itertools
import logging

from django.http import HttpResponse
from django.views.decorators.cache import cache_page

from tenantry import get_current_tenant

_renders = itertools.count(1)


@cache_page(60)
def cached_page(request):
    """Says which tenant rendered it, and how many renders there were."""
    return HttpResponse(f"tenant={get_current_tenant()} render={next(_renders)}")


def logged_page(request):
    logging.getLogger("tests.pieces").info("rendering the page")
    return HttpResponse("logged")
