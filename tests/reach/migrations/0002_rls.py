# The tenant-held tables behind the second wall on PostgreSQL (EnableTenantRLS
# does nothing on SQLite). reach.Crate and reach.Kiosk are multi-table children
# whose table has no tenant column: their policy joins their parent's row.
# reach.Place (an unscoped parent), Category and Tag (shared) and the through
# tables have no policy: the first wall alone guards what reaches them.

from django.db import migrations

from tenantry.db import EnableTenantRLS


class Migration(migrations.Migration):
    dependencies = [("reach", "0001_initial")]

    operations = [
        *(
            EnableTenantRLS(f"reach.{model}", field="tenant_id")
            for model in (
                "Folder",
                "Item",
                "Badge",
                "Doc",
                "Box",
                "Crate",
                "Shop",
                "Kiosk",
                "Note",
                "Pin",
                "Member",
                "Pass",
            )
        ),
        EnableTenantRLS("reach.Seat", field="org_slug"),
    ]
