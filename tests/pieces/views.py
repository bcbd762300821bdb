"""Views the cache and logging tests drive over HTTP and WebSocket."""

import itertools
import logging

from django.core.cache import cache
from django.http import HttpResponse
from django.views.decorators.cache import cache_page
from djust import LiveView
from djust.decorators import event_handler

from tenantry import TenantMixin, get_current_tenant

_renders = itertools.count(1)


@cache_page(60)
def cached_page(request):
    """Says which tenant rendered it, and how many renders there were."""
    return HttpResponse(f"tenant={get_current_tenant()} render={next(_renders)}")


def logged_page(request):
    logging.getLogger("tests.pieces").info("rendering the page")
    return HttpResponse("logged")


class RememberView(TenantMixin, LiveView):
    """Keeps a value in Django's cache from WebSocket events."""

    template = '<div dj-root dj-id="0">recalled={{ recalled }}</div>'

    def mount(self, request, **kwargs):
        self.recalled = cache.get("remembered", "nothing")

    @event_handler
    def remember(self, value: str = "", **kwargs):
        cache.set("remembered", value)

    @event_handler
    def recall(self, **kwargs):
        self.recalled = cache.get("remembered", "nothing")
