# A board acme shares with globex (docs/collaboration.md#live-rooms), behind
# PostgreSQL row-level security with the grant policies (DEMO_DATABASE=postgres;
# on SQLite the RLS operation does nothing).

from django.db import migrations, models

from tenantry.db import EnableTenantRLS


class Migration(migrations.Migration):
    dependencies = [
        ("board", "0004_tenant_incarnation"),
        ("tenantry", "0004_grant"),
    ]

    operations = [
        migrations.CreateModel(
            name="SharedBoard",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tenant_id", models.CharField(db_index=True, max_length=128)),
                ("title", models.CharField(max_length=80)),
                ("notes", models.TextField(blank=True, default="")),
            ],
            options={"ordering": ["id"]},
        ),
        EnableTenantRLS("board.SharedBoard", field="tenant_id"),
    ]
