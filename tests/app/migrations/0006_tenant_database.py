# The registry's database alias (tests/fleet_data/test_dedicated.py:
# DJUST_CONFIG["TENANT_DATABASE_FIELD"] = "database").

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("app", "0005_tenant_incarnation")]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="database",
            field=models.CharField(blank=True, db_default="", default="", max_length=64),
        ),
    ]
