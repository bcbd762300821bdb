from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("items/", views.ItemsView.as_view(), name="items"),
    path("optional/", views.OptionalTenantView.as_view()),
    path("scoped/", views.ScopedView.as_view()),
    path("plain/", views.PlainTenantView.as_view()),
    path("bound/", views.BoundTenantView.as_view()),
    path("public/", views.public_view),
    path("saved/", views.SavedStateView.as_view()),
    path("visits/", views.visits_view),
    path("plain-live/", views.PlainLiveView.as_view()),
    path("url-room/", views.UrlRoomView.as_view()),
    path("plain-room/", views.PlainRoomView.as_view()),
    path("switch/", views.SwitchView.as_view()),
    path("stream/", views.stream_view),
    path("astream/", views.astream_view),
    path("stream-view/", views.StreamingTenantView.as_view()),
    path("admin/", admin.site.urls),
    path("pieces/", include("tests.pieces.urls")),
    path("report/", views.report_view, name="report"),
]
