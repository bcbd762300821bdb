"""tenantry.admin.TenantAdminMixin through Django's test client: staff of two
tenants (acme, globex) on their tenants' hosts, and a superuser on a host
without a tenant (read-only, audited, cross-tenant)."""

from __future__ import annotations

import json
import logging

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import Client

from tenantry import tenant_context
from tenantry.admin import TenantAdminMixin
from tests.app.models import Item, Organization, Project
from tests.demo_pieces import demo_results
from tests.doc_blocks import block_defining
from tests.pieces.models import Article, Category, Comment, Keyword

pytestmark = pytest.mark.django_db

ACME = "acme.example.com"
GLOBEX = "globex.example.com"
NO_TENANT = "admin.example.com"  # "admin" is an excluded subdomain: no tenant
ARTICLES = "/admin/pieces/article/"


@pytest.fixture(autouse=True)
def admin_config(tenant_config):
    tenant_config(
        TENANT_RESOLVER="subdomain",
        TENANT_MAIN_DOMAIN="example.com",
        TENANT_EXEMPT_PATHS=["/public/", "/admin/"],
        TENANT_MEMBERSHIP_CHECK="tests.pieces.access.is_member",
    )


def staff(username: str) -> User:
    user = User.objects.create_user(username, password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=["pieces", "app"])
    )
    return user


def client_for(user: User, host: str) -> Client:
    client = Client(HTTP_HOST=host)
    client.force_login(user)
    return client


@pytest.fixture
def rows():
    made = {}
    for tenant in ("acme", "globex"):
        category = Category.all_tenants.create(tenant_id=tenant, name=f"{tenant}-category")
        keyword = Keyword.all_tenants.create(tenant_id=tenant, name=f"{tenant}-keyword")
        article = Article.all_tenants.create(
            tenant_id=tenant, title=f"{tenant}-article", category=category
        )
        made[tenant] = {"category": category, "keyword": keyword, "article": article}
    return made


@pytest.fixture
def acme(db):
    return client_for(staff("acme_staff"), ACME)


@pytest.fixture
def globex(db):
    return client_for(staff("globex_staff"), GLOBEX)


@pytest.fixture
def root_no_tenant(db):
    root = User.objects.create_superuser("root", password="x")
    return client_for(root, NO_TENANT)


def article_form(**fields):
    data = {
        "title": "new",
        "category": "",
        "comment_set-TOTAL_FORMS": "0",
        "comment_set-INITIAL_FORMS": "0",
        "comment_set-MIN_NUM_FORMS": "0",
        "comment_set-MAX_NUM_FORMS": "1000",
    }
    data.update(fields)
    return data


# -- staff of a tenant ------------------------------------------------------


def test_each_tenants_staff_see_only_their_rows(rows, acme, globex):
    page = acme.get(ARTICLES).content.decode()
    assert "acme-article" in page and "globex-article" not in page
    page = globex.get(ARTICLES).content.decode()
    assert "globex-article" in page and "acme-article" not in page


def test_staff_of_one_tenant_cannot_open_the_other_tenants_admin(rows):
    intruder = client_for(staff("acme_staff"), GLOBEX)
    assert intruder.get(ARTICLES).status_code == 404


def test_another_tenants_row_is_not_found_and_not_changed(rows, acme):
    other = rows["globex"]["article"]
    response = acme.get(f"{ARTICLES}{other.pk}/change/")
    assert response.status_code == 302  # Django's "doesn't exist" redirect
    response = acme.post(f"{ARTICLES}{other.pk}/change/", article_form(title="hijacked"))
    assert response.status_code == 302
    response = acme.post(f"{ARTICLES}{other.pk}/delete/", {"post": "yes"})
    other.refresh_from_db()
    assert other.title == "globex-article"


def test_the_tenant_field_is_not_in_the_form_and_is_filled_on_save(rows, acme):
    page = acme.get(f"{ARTICLES}add/").content.decode()
    assert 'name="tenant_id"' not in page and 'name="title"' in page
    response = acme.post(
        f"{ARTICLES}add/",
        article_form(
            title="made-by-acme",
            **{"comment_set-TOTAL_FORMS": "1", "comment_set-0-text": "first!"},
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    made = Article.all_tenants.get(title="made-by-acme")
    assert made.tenant_id == "acme"
    assert [(c.tenant_id, c.text) for c in Comment.all_tenants.filter(article=made)] == [
        ("acme", "first!")
    ]


@pytest.mark.parametrize(
    "forged",
    [
        {"tenant_id": "globex"},
        {
            "comment_set-TOTAL_FORMS": "1",
            "comment_set-0-text": "x",
            "comment_set-0-tenant_id": "globex",
        },
    ],
    ids=["field", "inline"],
)
def test_a_post_naming_another_tenant_is_refused_on_add(rows, acme, caplog, forged):
    """The bug reproduced on main: tenant_id=globex from acme's admin stored
    the row under globex."""
    before = Article.all_tenants.count()
    with caplog.at_level(logging.WARNING, logger="tenantry.audit"):
        response = acme.post(f"{ARTICLES}add/", article_form(title="forged", **forged))
    assert response.status_code == 403
    assert Article.all_tenants.count() == before
    assert not Comment.all_tenants.exists()
    events = [r.tenantry for r in caplog.records if hasattr(r, "tenantry")]
    assert any(e["event"] == "admin.refused" and e["value"] == "globex" for e in events)


def test_a_post_naming_another_tenant_is_refused_on_change(rows, acme):
    mine = rows["acme"]["article"]
    response = acme.post(
        f"{ARTICLES}{mine.pk}/change/", article_form(title="moved", tenant_id="globex")
    )
    assert response.status_code == 403
    mine.refresh_from_db()
    assert (mine.tenant_id, mine.title) == ("acme", "acme-article")


def test_related_choices_are_the_tenants_rows(rows, acme):
    page = acme.get(f"{ARTICLES}add/").content.decode()
    assert "acme-category" in page and "globex-category" not in page


@pytest.mark.parametrize("field", ["category", "keywords"])
def test_a_post_naming_another_tenants_related_row_saves_nothing(rows, acme, field):
    other = rows["globex"]["category" if field == "category" else "keyword"]
    response = acme.post(f"{ARTICLES}add/", article_form(title="sneaky", **{field: other.pk}))
    assert response.status_code == 200  # the form again, with the error
    assert "Select a valid choice" in response.content.decode()
    assert not Article.all_tenants.filter(title="sneaky").exists()


def test_autocomplete_lists_the_tenants_rows_only(rows, acme):
    response = acme.get(
        "/admin/autocomplete/",
        {"term": "", "app_label": "pieces", "model_name": "article", "field_name": "keywords"},
    )
    assert response.status_code == 200
    names = [r["text"] for r in json.loads(response.content)["results"]]
    assert names == ["acme-keyword"]


def test_actions_touch_the_tenants_rows_only(rows, acme):
    mine, other = rows["acme"]["article"], rows["globex"]["article"]
    acme.post(
        ARTICLES, {"action": "retitle", "_selected_action": [mine.pk, other.pk], "index": "0"}
    )
    mine.refresh_from_db()
    other.refresh_from_db()
    assert (mine.title, other.title) == ("retitled", "globex-article")
    acme.post(
        ARTICLES,
        {"action": "delete_selected", "_selected_action": [mine.pk, other.pk], "post": "yes"},
    )
    assert list(Article.all_tenants.values_list("tenant_id", flat=True)) == ["globex"]


def test_a_superuser_on_a_tenants_host_is_scoped_too(rows):
    root = User.objects.create_superuser("root", password="x")
    page = client_for(root, ACME).get(ARTICLES).content.decode()
    assert "acme-article" in page and "globex-article" not in page


def test_a_tenant_field_that_is_a_foreign_key_is_filled_and_refused(acme):
    for slug in ("acme", "globex"):
        Organization.objects.create(slug=slug, name=slug)
    page = acme.get("/admin/app/project/add/").content.decode()
    assert 'name="organization"' not in page
    assert acme.post("/admin/app/project/add/", {"title": "p1"}).status_code == 302
    assert Project.objects.model._base_manager.get(title="p1").organization_id == "acme"
    response = acme.post("/admin/app/project/add/", {"title": "p2", "organization": "globex"})
    assert response.status_code == 403
    assert not Project.objects.model._base_manager.filter(title="p2").exists()


# -- no tenant bound ----------------------------------------------------------


def test_a_superuser_without_a_tenant_gets_a_read_only_audited_cross_tenant_list(
    rows, root_no_tenant, caplog
):
    with caplog.at_level(logging.WARNING, logger="tenantry.audit"):
        response = root_no_tenant.get(ARTICLES)
    page = response.content.decode()
    assert response.status_code == 200
    assert "acme-article" in page and "globex-article" in page
    assert "column-tenant_id" in page  # the tenant column
    assert "?tenant_id=globex" in page  # the tenant filter
    assert f"{ARTICLES}add/" not in page  # no add button
    assert 'name="action"' not in page  # no actions
    audits = [r.tenantry for r in caplog.records if hasattr(r, "tenantry")]
    assert [(a["event"], a["model"], a["path"]) for a in audits] == [
        ("admin.cross_tenant", "pieces.Article", ARTICLES)
    ]
    filtered = root_no_tenant.get(ARTICLES, {"tenant_id": "globex"}).content.decode()
    assert "globex-article" in filtered and "acme-article" not in filtered


def test_a_superuser_without_a_tenant_cannot_write(rows, root_no_tenant):
    article = rows["acme"]["article"]
    Article.keywords.through.objects.create(article=article, keyword=rows["acme"]["keyword"])
    Comment.all_tenants.create(tenant_id="acme", article=article, text="a comment")
    assert root_no_tenant.get(f"{ARTICLES}add/").status_code == 403
    assert root_no_tenant.post(f"{ARTICLES}add/", article_form()).status_code == 403
    detail = root_no_tenant.get(f"{ARTICLES}{article.pk}/change/")
    page = detail.content.decode()
    assert detail.status_code == 200 and 'name="title"' not in page
    # Shown read-only, with the row's own tenant bound while it renders.
    assert "acme-keyword" in page and "a comment" in page and "acme" in page
    response = root_no_tenant.post(
        f"{ARTICLES}{article.pk}/change/", article_form(title="changed")
    )
    assert response.status_code == 403
    root_no_tenant.post(
        ARTICLES, {"action": "retitle", "_selected_action": [article.pk], "index": "0"}
    )
    response = root_no_tenant.post(f"{ARTICLES}{article.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    article.refresh_from_db()
    assert article.title == "acme-article"
    assert Article.all_tenants.count() == 2


def test_staff_without_a_tenant_are_refused(rows):
    client = client_for(staff("acme_staff"), NO_TENANT)
    assert client.get(ARTICLES).status_code == 403
    assert "pieces" not in client.get("/admin/").content.decode().lower().split("<body")[1]


# -- system checks ------------------------------------------------------------


def test_checks_refuse_unscoped_models_an_editable_tenant_field_and_unscoped_autocomplete():
    site = admin.AdminSite(name="checks")

    class ItemAdmin(TenantAdminMixin, admin.ModelAdmin):
        list_display = ["name", "tenant_id"]
        list_editable = ["tenant_id"]

    class OrganizationAdmin(TenantAdminMixin, admin.ModelAdmin):
        pass

    class ArticleAdmin(TenantAdminMixin, admin.ModelAdmin):
        autocomplete_fields = ["keywords"]

    class KeywordAdmin(admin.ModelAdmin):  # tenant-scoped model, plain admin
        search_fields = ["name"]

    for model, model_admin in [
        (Item, ItemAdmin),
        (Organization, OrganizationAdmin),
        (Article, ArticleAdmin),
        (Keyword, KeywordAdmin),
    ]:
        site.register(model, model_admin)
    ids = {
        model._meta.label: {m.id for m in site.get_model_admin(model).check()}
        for model in (Item, Organization, Article)
    }
    assert "tenantry.E301" in ids["app.Item"]
    assert "tenantry.E300" in ids["app.Organization"]
    assert "tenantry.E302" in ids["pieces.Article"]
    # The suite's own admin registrations pass.
    messages = [m for ma in admin.site._registry.values() for m in ma.check()]
    assert not [m for m in messages if m.id.startswith("tenantry")], messages


def test_the_example_of_the_docs(rows, monkeypatch, rf):
    """docs/admin.md's example, registered on a site of its own."""
    from django.contrib.admin import sites

    site = admin.AdminSite(name="docs")
    monkeypatch.setattr(sites, "site", site)
    code = block_defining("admin.md", "class ArticleAdmin").replace(
        "from .models import", "from tests.pieces.models import"
    )
    exec(code, {"__name__": "docs_admin"})
    assert set(site._registry) == {Article, Category}
    messages = [m for ma in site._registry.values() for m in ma.check()]
    assert messages == [], messages
    article_admin = site._registry[Article]
    request = rf.get("/admin/pieces/article/")
    request.user = User.objects.create_superuser("root", password="x")
    with tenant_context("acme"):
        assert [a.title for a in article_admin.get_queryset(request)] == ["acme-article"]
        form = article_admin.get_form(request)
        assert "tenant_id" not in form.base_fields
        assert list(form.base_fields["category"].queryset) == [rows["acme"]["category"]]


def test_the_demo_registers_its_items_with_the_mixin():
    results, _, _ = demo_results()
    assert results["admin_acme_rows"] == [True, False]  # acme's Anvil, not globex's Hammock
    assert results["admin_forged"] == 403
    assert results["admin_cross_tenant_rows"] == [True, True]
    assert results["admin_cross_tenant_add"] == 403
