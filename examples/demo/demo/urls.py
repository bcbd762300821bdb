from django.contrib import admin
from django.http import HttpResponse
from django.urls import path

from board.views import BoardView, logo_file, logo_page


def index(request):
    links = "".join(
        f'<li><a href="http://{t}.localhost:{request.get_port()}/board/">{t}</a></li>'
        for t in ("acme", "globex")
    )
    return HttpResponse(f"<h1>tenantry demo</h1><ul>{links}</ul>")


index.tenant_required = False

urlpatterns = [
    path("", index),
    path("board/", BoardView.as_view(), name="board"),
    path("logo/", logo_page, name="logo"),
    path("logo/file/", logo_file, name="logo-file"),
    path("admin/", admin.site.urls),
]
