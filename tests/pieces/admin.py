from django.contrib import admin

from tenantry.admin import TenantAdminMixin
from tests.app.models import Project

from .models import Article, Category, Comment, Keyword


@admin.register(Category)
class CategoryAdmin(TenantAdminMixin, admin.ModelAdmin):
    search_fields = ["name"]


@admin.register(Keyword)
class KeywordAdmin(TenantAdminMixin, admin.ModelAdmin):
    search_fields = ["name"]


class CommentInline(TenantAdminMixin, admin.TabularInline):
    model = Comment
    extra = 1


@admin.register(Article)
class ArticleAdmin(TenantAdminMixin, admin.ModelAdmin):
    list_display = ["title", "category"]
    search_fields = ["title"]
    autocomplete_fields = ["keywords"]
    inlines = [CommentInline]
    actions = ["retitle"]

    @admin.action(description="Retitle as 'retitled'")
    def retitle(self, request, queryset):
        queryset.update(title="retitled")


@admin.register(Project)
class ProjectAdmin(TenantAdminMixin, admin.ModelAdmin):
    """Scoped by a ForeignKey to the tenant's row (to_field="slug")."""

    fields = ["title", "organization"]  # tenantry drops the tenant field
