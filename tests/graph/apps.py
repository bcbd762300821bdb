from django.apps import AppConfig


class GraphConfig(AppConfig):
    """Models of every relation kind that reaches a tenant-scoped model, for
    the ORM wall's tests (tests/isolation/test_isolation_graph.py): multi-table
    inheritance, generic foreign keys, proxies, foreign keys without a
    database constraint, explicit and auto-created through tables, a plain
    default manager."""

    name = "tests.graph"
    label = "graph"
    default_auto_field = "django.db.models.BigAutoField"
