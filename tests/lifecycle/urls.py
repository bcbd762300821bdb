"""The URLconf of tests/lifecycle/views.py (tests/isolation/test_lifecycle_routes.py)."""

from django.urls import path

from . import views

urlpatterns = [path("logo/", views.logo_file)]
