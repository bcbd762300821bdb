from django.urls import path

from . import views

urlpatterns = [
    path("cached/", views.cached_page),
    path("logged/", views.logged_page),
    path("remember/", views.RememberView.as_view()),
]
