"""Views of the operations tests (docs/operations.md): pages that show a
feature flag and the impersonation banner, flagged views and live-view
handlers, and the views that start and stop an impersonation."""

from __future__ import annotations

from django.contrib.auth import get_user_model, logout
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseForbidden
from django.template import RequestContext, Template
from django.urls import include, path
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from djust import LiveView
from djust.decorators import event_handler
from djust.sse import sse_urlpatterns

from tenantry import TenantMixin, impersonation
from tenantry.flags import tenant_flag
from tests.app.models import Item

PAGE = Template(
    "{% if impersonation %}{{ impersonation.banner }}{% endif %}"
    "<p id='flag'>{% if tenant.flags.beta %}beta-on{% else %}beta-off{% endif %}</p>"
    "<p id='user'>{{ request.user.username|default:'anonymous' }}</p>"
    "<p id='tenant'>{{ tenant.id }}</p>"
)

#: (user, tenant id) pairs the membership check accepts.
MEMBERS: set[tuple[str, str]] = set()


def member(user, tenant) -> bool:
    """``TENANT_MEMBERSHIP_CHECK`` of these tests."""
    return (user.get_username(), tenant.id) in MEMBERS


def page(request):
    return HttpResponse(PAGE.render(RequestContext(request)))


@tenant_flag("beta")
def beta_page(request):
    return HttpResponse("beta page")


@tenant_flag("beta")
async def abeta_page(request):
    return HttpResponse("async beta page")


@tenant_flag("beta")
class BetaClassView(View):
    def get(self, request):
        return HttpResponse("beta class view")


@csrf_exempt
def write(request):
    """Three writes of the tenant's rows: an insert, an update, a delete."""
    row = Item.objects.create(name=request.POST.get("name", "written"))
    Item.objects.filter(pk=row.pk).update(name=row.name + "!")
    Item.objects.filter(pk=row.pk).delete()
    Item.objects.create(name=request.POST.get("name", "written"))
    return HttpResponse("written")


@csrf_exempt
def start(request):
    user = get_user_model()._default_manager.filter(username=request.POST["as"]).first()
    minutes = float(request.POST.get("minutes", "15"))
    try:
        acting = impersonation.start(
            request, user, reason=request.POST.get("reason", ""), minutes=minutes
        )
    except (PermissionDenied, ValueError) as exc:
        return HttpResponseForbidden(str(exc))
    return HttpResponse(f"acting as {acting.user_name}")


@csrf_exempt
def stop(request):
    ended = impersonation.stop(request)
    return HttpResponse("stopped" if ended else "nothing to stop")


@csrf_exempt
def logout_view(request):
    logout(request)
    return HttpResponse("signed out")


class FlaggedLiveView(TenantMixin, LiveView):
    template = (
        '<div dj-root dj-id="0">{% if tenant.flags.beta %}beta-on{% else %}beta-off{% endif %}'
        " {{ count }}</div>"
    )

    def mount(self, request, **kwargs):
        self.count = 0

    @event_handler
    @tenant_flag("beta")
    def beta_action(self, **kwargs):
        self.count += 1
        Item.objects.create(name="beta action")

    @event_handler
    def peek(self, **kwargs):
        pass


urlpatterns = [
    path("page/", page),
    path("beta/", beta_page),
    path("abeta/", abeta_page),
    path("beta-class/", BetaClassView.as_view()),
    path("write/", write),
    path("impersonate/", start),
    path("impersonate/stop/", stop),
    path("logout/", logout_view),
    path("items/", page),
    path("djust/", include(sse_urlpatterns)),  # the SSE transport (test_impersonation)
]
