"""The URLs of tests/fleet_data/test_dedicated.py: ``notes/`` adds a note of
the request's tenant (POST) and counts its notes (GET)."""

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from tenantry import get_current_tenant
from tests.app.models import RlsNote


@csrf_exempt
def notes(request):
    if request.method == "POST":
        note = RlsNote.objects.create(
            tenant_id=get_current_tenant().id, title=request.POST.get("title", "")
        )
        return HttpResponse(str(note.pk), status=201)
    return HttpResponse(str(RlsNote.objects.count()))


urlpatterns = [path("notes/", notes)]
