"""Views the integration tests drive over HTTP and WebSocket."""

from django.http import HttpResponse
from django.views.generic import TemplateView, View
from djust import LiveView
from djust.decorators import event_handler

from tenantry import TenantMixin, TenantScopedMixin, get_current_tenant

from .models import Item

#: What handlers saw, for the tests to inspect: (view, phase, tenant id, item tenants).
observed: list[tuple[str, str, str | None, list[str]]] = []


def _snapshot(view: str, phase: str) -> None:
    bound = get_current_tenant()
    rows = sorted({i.tenant_id for i in Item.objects.all()}) if bound is not None else []
    observed.append((view, phase, None if bound is None else bound.id, rows))


class ItemsView(TenantMixin, LiveView):
    template_name = "app/items.html"

    def mount(self, request, **kwargs):
        _snapshot("ItemsView", "mount")
        self.mounted_for = self.tenant.id
        self.items = [i.name for i in Item.objects.all()]

    @event_handler
    def add_item(self, name: str = "", **kwargs):
        _snapshot("ItemsView", "add_item")
        Item.objects.create(name=name)
        self.items = [i.name for i in Item.objects.all()]

    @event_handler
    def peek(self, **kwargs):
        _snapshot("ItemsView", "peek")


class OptionalTenantView(TenantMixin, LiveView):
    tenant_required = False
    template = '<div dj-root dj-id="0">optional {{ tenant.id|default:"none" }}</div>'

    def mount(self, request, **kwargs):
        self.seen = True


class ScopedView(TenantScopedMixin, LiveView):
    model = Item
    template = '<div dj-root dj-id="0">{% for i in items %}{{ i }};{% endfor %}</div>'

    def mount(self, request, **kwargs):
        self.items = [i.name for i in self.get_tenant_queryset()]


class PlainTenantView(TenantMixin, TemplateView):
    """A plain Django class-based view."""

    template_name = "app/plain.html"


class BoundTenantView(View):
    """A function of the middleware only: reports the bound tenant."""

    tenant_required = False

    def get(self, request):
        bound = get_current_tenant()
        return HttpResponse(f"bound={bound} request={request.tenant}")


def public_view(request):
    return HttpResponse(f"public tenant={getattr(request, 'tenant', None)}")


class SavedStateView(TenantMixin, LiveView):
    """The saved-view-state tests mount this with one session id under two
    tenants (djust saves and restores it through tenantry's state adapter)."""

    template = '<div dj-root dj-id="0">saved state of {{ owner }}</div>'

    def mount(self, request, **kwargs):
        self.owner = self.tenant.id
