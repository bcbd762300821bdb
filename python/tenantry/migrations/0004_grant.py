# Cross-tenant grants (docs/collaboration.md): the grant table, and on
# PostgreSQL with TENANT_RLS on, its own policy and the grant policies of
# every table already behind the wall (those made before this table existed).

from django.db import migrations, models

from tenantry.db.operations import ProtectGrantTable, UpgradeAllTenantRLS


class Migration(migrations.Migration):
    dependencies = [("tenantry", "0003_ended_impersonation")]

    operations = [
        migrations.CreateModel(
            name="Grant",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("owner_tenant", models.CharField(editable=False, max_length=128)),
                ("grantee_tenant", models.CharField(editable=False, max_length=128)),
                ("target_model", models.CharField(editable=False, max_length=200)),
                ("target_table", models.CharField(editable=False, max_length=200)),
                ("object_pk", models.CharField(editable=False, max_length=255)),
                ("owner_key", models.CharField(editable=False, max_length=255)),
                ("can_write", models.BooleanField(default=False, editable=False)),
                ("expires_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("created_at", models.DateTimeField(editable=False)),
            ],
            options={
                "db_table": "tenantry_grant",
                "ordering": ["id"],
                "default_permissions": ("view",),
                "base_manager_name": "objects",
                "indexes": [models.Index(fields=["owner_tenant"], name="tenantry_grant_owner")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("grantee_tenant", "target_table", "object_pk"),
                        name="tenantry_grant_one_per_row",
                    )
                ],
            },
        ),
        ProtectGrantTable(),
        UpgradeAllTenantRLS(),
    ]
