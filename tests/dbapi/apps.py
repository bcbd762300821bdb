from django.apps import AppConfig


class DbapiConfig(AppConfig):
    """Models of the second wall's DB-API suite (tests/isolation/test_rls_dbapi.py): a
    multi-table inheritance chain whose tenant column lives on the root's
    table, every table behind row-level security."""

    name = "tests.dbapi"
    label = "dbapi"
    default_auto_field = "django.db.models.BigAutoField"
