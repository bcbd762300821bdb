from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.http import HttpResponse
from django.urls import path

from board.views import (
    BoardView,
    LobbyView,
    SharedBoardView,
    SiteLobbyView,
    export_items,
    items_api,
    logo_file,
    logo_page,
    support,
)


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
    # A board acme shares with globex: one live room for both tenants.
    path("shared/", SharedBoardView.as_view(), name="shared"),
    path("logo/", logo_page, name="logo"),
    path("logo/file/", logo_file, name="logo-file"),
    path("api/items/", items_api, name="items-api"),
    # Rooms named by the link: on a tenant's host and on the main domain.
    path("lobby/", LobbyView.as_view(), name="lobby"),
    path("site-lobby/", SiteLobbyView.as_view(), name="site-lobby"),
    path("admin/", admin.site.urls),
    # Feature flags and staff impersonation (docs/operations.md).
    path("export/", export_items, name="export"),
    path("support/", support, name="support"),
    path(
        "support/login/",
        LoginView.as_view(template_name="board/support_login.html", next_page="support"),
        name="support-login",
    ),
]
