# The scoped tables behind the second wall on PostgreSQL (EnableTenantRLS does
# nothing on SQLite). graph.Shop and graph.Outlet are multi-table children whose
# table has no tenant column: their policy joins graph.Place's row.

from django.db import migrations

from tenantry.db import EnableTenantRLS


class Migration(migrations.Migration):
    dependencies = [("graph", "0001_initial")]

    operations = [
        EnableTenantRLS(f"graph.{model}", field="tenant_id")
        for model in (
            "Bookmark",
            "Place",
            "Vehicle",
            "Machine",
            "Ticket",
            "Person",
            "Team",
            "Label",
            "Card",
            "Shop",
            "Outlet",
        )
    ]
