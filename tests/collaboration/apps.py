from django.apps import AppConfig


class CollaborationConfig(AppConfig):
    """Models of the cross-tenant grant suite (docs/collaboration.md): a
    board, its cards (a foreign key and a many-to-many to labels) and pins
    (a generic foreign key), behind row-level security on PostgreSQL."""

    name = "tests.collaboration"
    label = "collaboration"
    default_auto_field = "django.db.models.BigAutoField"
