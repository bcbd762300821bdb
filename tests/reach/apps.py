from django.apps import AppConfig


class ReachConfig(AppConfig):
    """Models for what a tenant may reach through the ORM beyond its own
    table (tests/isolation/test_isolation_reach.py): joins through shared models and
    multi-table parents, references by ``to_field``, querysets built while
    another tenant was bound, and tenant-owned models without a
    TenantManager."""

    name = "tests.reach"
    label = "reach"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tenantry import ownership

        # docs/registry.md#which-models-hold-a-tenants-data: a column of another name.
        ownership.declare("reach.Seat", field="org_slug")
