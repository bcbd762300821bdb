from django.contrib import admin

from tenantry.admin import TenantAdminMixin

from .models import Card, Label


@admin.register(Label)
class LabelAdmin(TenantAdminMixin, admin.ModelAdmin):
    search_fields = ["name"]
    list_filter = ["cards"]  # a reverse relation


@admin.register(Card)
class CardAdmin(TenantAdminMixin, admin.ModelAdmin):
    """A model whose related model's default manager is plain: raw-id,
    list filter and autocomplete still show only the tenant's labels."""

    list_filter = ["label", "label__name"]
    raw_id_fields = ["label"]
    autocomplete_fields = ["labels"]
