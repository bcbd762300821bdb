from django.http import HttpResponse
from django.urls import path

from board.views import BoardView


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
]
