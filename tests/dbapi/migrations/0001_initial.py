# The DB-API suite's inheritance chain (tests/isolation/test_rls_dbapi.py), every table behind
# the second wall on PostgreSQL (EnableTenantRLS does nothing on SQLite).

import django.db.models.deletion
from django.db import migrations, models

from tenantry.db import EnableTenantRLS


class Migration(migrations.Migration):

    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Place",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("tenant_id", models.CharField(db_index=True, max_length=128)),
                ("name", models.CharField(max_length=100)),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.CreateModel(
            name="Shop",
            fields=[
                ("place_ptr", models.OneToOneField(auto_created=True, on_delete=django.db.models.deletion.CASCADE, parent_link=True, primary_key=True, serialize=False, to="dbapi.place")),
                ("licence", models.CharField(max_length=100)),
            ],
            bases=("dbapi.place",),
        ),
        migrations.CreateModel(
            name="Kiosk",
            fields=[
                ("shop_ptr", models.OneToOneField(auto_created=True, on_delete=django.db.models.deletion.CASCADE, parent_link=True, primary_key=True, serialize=False, to="dbapi.shop")),
                ("stall", models.CharField(max_length=100)),
            ],
            bases=("dbapi.shop",),
        ),
        EnableTenantRLS("dbapi.Place", field="tenant_id"),
        EnableTenantRLS("dbapi.Shop", field="tenant_id"),
        EnableTenantRLS("dbapi.Kiosk", field="tenant_id"),
    ]
