from django.contrib import admin

from tests.app.models import Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    """The registry in a plain admin: deleting a row there deletes the
    tenant (tests/isolation/test_lifecycle.py)."""

    list_display = ["slug", "name"]
