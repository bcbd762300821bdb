"""The test project's URLs plus the metrics view (docs/observability.md)."""

from django.urls import include, path

from tenantry.metrics import metrics_view

urlpatterns = [
    path("metrics/", metrics_view),
    path("", include("tests.app.urls")),
]
