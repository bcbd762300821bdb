# tenantry's suspension table (docs/operations.md#suspending-a-tenant) and
# its ``impersonate`` permission (docs/operations.md#impersonation).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tenantry", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="TenantSuspension",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("suspended_tenant", models.CharField(max_length=128, unique=True)),
                ("reason", models.TextField(blank=True, default="")),
                ("suspended_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "db_table": "tenantry_suspension",
                "permissions": [
                    ("impersonate", "Can act as a member of a tenant (impersonation)")
                ],
            },
        ),
    ]
