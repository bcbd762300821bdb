# The grant suite's models (tests/collaboration), behind row-level security
# on PostgreSQL with the grant policies (the grant table exists first).

import django.db.models.deletion
from django.db import migrations, models

from tenantry.db import EnableTenantRLS


def _id():
    return models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("tenantry", "0004_grant"),
    ]

    operations = [
        migrations.CreateModel(
            name="Board",
            fields=[
                ("id", _id()),
                ("tenant_id", models.CharField(db_index=True, max_length=128)),
                ("title", models.CharField(max_length=100)),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.CreateModel(
            name="Label",
            fields=[
                ("id", _id()),
                ("tenant_id", models.CharField(db_index=True, max_length=128)),
                ("name", models.CharField(max_length=100)),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.CreateModel(
            name="Card",
            fields=[
                ("id", _id()),
                ("tenant_id", models.CharField(db_index=True, max_length=128)),
                ("text", models.CharField(max_length=100)),
                (
                    "board",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        to="collaboration.board",
                    ),
                ),
                ("labels", models.ManyToManyField(blank=True, to="collaboration.label")),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.CreateModel(
            name="Pin",
            fields=[
                ("id", _id()),
                ("tenant_id", models.CharField(db_index=True, max_length=128)),
                ("object_id", models.CharField(max_length=64, null=True)),
                (
                    "content_type",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        to="contenttypes.contenttype",
                    ),
                ),
            ],
            options={"ordering": ["id"]},
        ),
        EnableTenantRLS("collaboration.Board", field="tenant_id"),
        EnableTenantRLS("collaboration.Label", field="tenant_id"),
        EnableTenantRLS("collaboration.Card", field="tenant_id"),
        EnableTenantRLS("collaboration.Pin", field="tenant_id"),
    ]
