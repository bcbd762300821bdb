# The row-level security suite's models (tests/isolation/test_rls.py), behind the second wall on
# PostgreSQL (EnableTenantRLS does nothing on SQLite).

import django.db.models.deletion
from django.db import migrations, models

from tenantry.db import EnableTenantRLS


class Migration(migrations.Migration):

    dependencies = [
        ("app", "0003_isolation"),
    ]

    operations = [
        migrations.CreateModel(
            name="RlsFolder",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("tenant_id", models.CharField(db_index=True, max_length=128)),
                ("name", models.CharField(max_length=100)),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.CreateModel(
            name="RlsNote",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("tenant_id", models.CharField(db_index=True, max_length=128)),
                ("title", models.CharField(max_length=100)),
                ("folder", models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name="notes", to="app.rlsfolder")),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.CreateModel(
            name="RlsMeter",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("tenant_number", models.IntegerField(db_index=True)),
                ("reading", models.IntegerField()),
            ],
            options={"ordering": ["id"]},
        ),
        EnableTenantRLS("app.RlsFolder", field="tenant_id"),
        EnableTenantRLS("app.RlsNote", field="tenant_id"),
        EnableTenantRLS("app.RlsMeter", field="tenant_number"),
    ]
