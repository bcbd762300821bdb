# The row-level security suite's models, behind the second wall on
# PostgreSQL (EnableTenantRLS does nothing on SQLite).

import django.db.models.deletion
from django.db import migrations, models

from tenantry.db import EnableTenantRLS


class Migration(migrations.Migration):

    dependencies = [
        ("app", "0002_registry"),
    ]

    operations = [
        migrations.CreateModel(
            name="Folder",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("tenant_id", models.CharField(db_index=True, max_length=128)),
                ("name", models.CharField(max_length=100)),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.CreateModel(
            name="Note",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("tenant_id", models.CharField(db_index=True, max_length=128)),
                ("title", models.CharField(max_length=100)),
                ("folder", models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name="notes", to="app.folder")),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.CreateModel(
            name="Meter",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("tenant_number", models.IntegerField(db_index=True)),
                ("reading", models.IntegerField()),
            ],
            options={"ordering": ["id"]},
        ),
        EnableTenantRLS("app.Folder", field="tenant_id"),
        EnableTenantRLS("app.Note", field="tenant_id"),
        EnableTenantRLS("app.Meter", field="tenant_number"),
    ]
