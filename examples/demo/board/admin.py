from django.contrib import admin

from tenantry.admin import TenantAdminMixin

from .models import Item


@admin.register(Item)
class ItemAdmin(TenantAdminMixin, admin.ModelAdmin):
    """acme.localhost:8000/admin/ shows and changes acme's items only."""

    list_display = ["name", "created"]
    search_fields = ["name"]
