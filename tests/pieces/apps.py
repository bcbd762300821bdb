from django.apps import AppConfig


class PiecesConfig(AppConfig):
    """Models, admin and views of the cache, admin and storage tests."""

    name = "tests.pieces"
    label = "pieces"
    default_auto_field = "django.db.models.BigAutoField"
