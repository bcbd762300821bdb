from django.apps import AppConfig


class PortingConfig(AppConfig):
    """Models for moving a tenant in (tests/operations/test_transfer_keys.py):
    generic foreign keys of every shape, values unique across tenants, and
    primary keys the database does not generate (docs/operations.md#export-and-import)."""

    name = "tests.porting"
    label = "porting"
    default_auto_field = "django.db.models.BigAutoField"
