"""A URLconf Django imports on the first request (tests/isolation/test_isolation_reach.py)."""

from django.urls import path

from . import lazy_views
from .models import Item

urlpatterns = [
    path("items/", lazy_views.ItemList.as_view()),
    # as_view(queryset=...) in the URLconf itself
    path("items-inline/", lazy_views.ItemList.as_view(queryset=Item.objects.order_by("name"))),
    path("folders/", lazy_views.folder_choices),
    path("folders-hand/", lazy_views.folder_choices_hand),
    path("folders-multiple/", lazy_views.folder_multiple),
    path("limited/", lazy_views.limited_choices),
    path("folder-names/", lazy_views.folder_names),
    path("folder-names-all/", lazy_views.folder_names_all),
    path("prefetched/", lazy_views.prefetched),
    path("sitemap/", lazy_views.sitemap_items),
    path("api/", lazy_views.api_items),
]
