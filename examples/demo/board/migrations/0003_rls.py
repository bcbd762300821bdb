# Items behind PostgreSQL row-level security (DEMO_DATABASE=postgres); on
# SQLite this does nothing. See docs/postgresql.md.

from django.db import migrations

from tenantry.db import EnableTenantRLS


class Migration(migrations.Migration):

    dependencies = [
        ("board", "0002_tenant"),
    ]

    operations = [
        EnableTenantRLS("board.Item", field="tenant_id"),
    ]
