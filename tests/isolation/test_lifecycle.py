"""Deleting a tenant leaves nothing behind, by every route, and an id that
comes back inherits nothing (docs/registry.md#deleting-a-tenant).

Each test plants a full tenant (acme) and a bystander (globex) with real
parts: rows of every kind of tenant-owned model (scoped, a membership keyed
by a plain column, a declared column of another name, multi-table
inheritance, a protecting and a clearing foreign key to the registry, a
custom domain), a file in the tenant storage, Django cache entries on two
aliases, presence, saved state, rate-limit counts and usage in memory, on
Redis or on a Redis Cluster. On the PostgreSQL pass several of those tables
are behind row-level security (tests/lifecycle/migrations/0003). Then it
deletes acme, creates acme again, and checks that the new tenant sees
nothing of the old one and that globex kept everything.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.cache import caches
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.test import Client

import tenantry.cache
from tenantry import (
    DeletionIncomplete,
    RegistryRowProtected,
    TenantMismatchError,
    TenantNotFound,
    get_tenant_presence_backend,
    get_tenant_state_backend,
    lifecycle,
    ownership,
    tenant_context,
    usage,
)
from tenantry.db import rls_bypass
from tenantry.ratelimit import check, get_rate_limiter
from tenantry.registry import invalidate_tenant
from tests.app.models import (
    Document,
    Domain,
    Folder,
    Item,
    Note,
    RlsFolder,
    Summary,
    Tag,
    Tenant,
)
from tests.lifecycle.models import (
    Alias,
    Board,
    Bookmark,
    HostName,
    Invoice,
    Membership,
    Seat,
    Workspace,
)

pytestmark = pytest.mark.django_db

BASE = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "app.Tenant",
    "TENANT_DOMAIN_MODEL": "app.Domain",
    "TENANT_RATE_LIMITS": {"api": "2/h"},
}
TENANTS = ("acme", "globex")


def with_rls(settings) -> dict:
    """``TENANT_RLS`` as the run has it (on for the PostgreSQL pass)."""
    return {k: v for k, v in settings.DJUST_CONFIG.items() if k == "TENANT_RLS"}


@pytest.fixture(params=["memory"])
def stores(request, settings, tmp_path):
    """The config, a tenant file storage, two tenant-keyed caches, and the
    per-tenant stores in memory (or on Redis / a Redis Cluster where a test
    parametrizes ``stores`` indirectly)."""
    config = {**BASE, **with_rls(settings)}
    if request.param != "memory":
        target = request.getfixturevalue(
            "redis_server" if request.param == "redis" else "redis_cluster"
        )
        config.update(
            PRESENCE_BACKEND="tenant_redis",
            PRESENCE_REDIS_URL=target.url,
            STATE_BACKEND="tenant_redis",
            STATE_REDIS_URL=target.url,
            RATE_LIMIT_BACKEND="tenant_redis",
            RATE_LIMIT_REDIS_URL=target.url,
            TENANT_KEY_PREFIX=f"life-{uuid.uuid4().hex[:8]}",
        )
    settings.DJUST_CONFIG = config
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "tenantry.storage.TenantFileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    prefix = uuid.uuid4().hex[:8]
    settings.CACHES = {
        alias: {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"{alias}-{prefix}",
            "KEY_FUNCTION": "tenantry.cache.make_key",
        }
        for alias in ("default", "second")
    }
    get_rate_limiter().forget_plans()
    yield request.param
    from tenantry._core import TenantRateLimiter

    TenantRateLimiter.clear_all()
    usage._core.usage_clear()


def plant(tenant_id: str, *, protected: bool = True) -> Tenant:
    """Everything a tenant can own, through ordinary code (the tenant bound,
    as a request would have it). ``protected``: an invoice whose foreign key
    PROTECTs the registry row (the ORM routes then refuse, as Django does)."""
    row = Tenant.objects.create(slug=tenant_id, name=tenant_id.title())
    invalidate_tenant(tenant_id)
    user = User.objects.create_user(f"{tenant_id}-user")
    with tenant_context(tenant_id):
        Item.objects.create(name="item")
        tag = Tag.objects.create(name="tag")
        folder = Folder.objects.create(name="folder")
        doc = Document.objects.create(title="doc", folder=folder)
        doc.tags.add(tag)
        Note.objects.create(text="note")
        RlsFolder.objects.create(name="walled")
        Membership.objects.create(tenant_id=tenant_id, user=user, role="owner")
        Seat.objects.create(org_slug=tenant_id, label="seat")
        Workspace.objects.create(name="plain workspace")
        Board.objects.create(name="board", columns=4)
        if protected:
            Invoice.objects.create(tenant=row, total=100)
        Bookmark.objects.create(tenant=row, url="https://example.com/")
        Domain.objects.create(domain=f"shop.{tenant_id}-corp.com", tenant_id=tenant_id)
        storages["default"].save("logos/logo.png", ContentFile(f"{tenant_id} logo".encode()))
        for alias in ("default", "second"):
            caches[alias].set("page", f"{tenant_id}'s page")
        get_tenant_presence_backend(tenant_id).join("room", "u1")
        get_tenant_state_backend(tenant_id).set("draft", "secret")
        assert [check("api").allowed for _ in range(3)] == [True, True, False]
        usage.record(tenant_id, "live_events", 7)
        usage.flush()
    return row


def traces(tenant_id: str) -> dict:
    """What the store hold of ``tenant_id`` (read past row-level security)."""
    found: dict = {}
    with rls_bypass(reason="test: counting what a tenant left"):
        for model, field in [
            (Item, "tenant_id"),
            (Tag, "tenant_id"),
            (Folder, "tenant_id"),
            (Document, "tenant_id"),
            (Note, "org__slug"),
            (RlsFolder, "tenant_id"),
            (Membership, "tenant_id"),
            (Seat, "org_slug"),
            (Workspace, "tenant_id"),
            (Board, "tenant_id"),
            (Invoice, "tenant__slug"),
            (Bookmark, "tenant__slug"),
            (Domain, "tenant_id"),
        ]:
            found[model._meta.label] = model._base_manager.filter(**{field: tenant_id}).count()
        found["through"] = Document.tags.through.objects.filter(
            document__tenant_id=tenant_id
        ).count()
    with tenant_context(tenant_id, must_exist=False):
        storage = storages["default"]
        found["files"] = sorted(storage.tenant_files())
        found["cache"] = [caches[a].get("page") for a in ("default", "second")]
        found["presence"] = get_tenant_presence_backend(tenant_id).count("room")
        found["state"] = get_tenant_state_backend(tenant_id).get("draft")
        found["limited"] = not check("api").allowed
        found["usage"] = usage.get_usage(tenant_id)["total"]["live_events"]
    return found


NOTHING = {
    "app.Item": 0,
    "app.Tag": 0,
    "app.Folder": 0,
    "app.Document": 0,
    "app.Note": 0,
    "app.RlsFolder": 0,
    "lifecycle.Membership": 0,
    "lifecycle.Seat": 0,
    "lifecycle.Workspace": 0,
    "lifecycle.Board": 0,
    "lifecycle.Invoice": 0,
    "lifecycle.Bookmark": 0,
    "app.Domain": 0,
    "through": 0,
    "files": [],
    "cache": [None, None],
    "presence": 0,
    "state": None,
    "limited": False,
    "usage": 0,
}


def expected_full(tenant_id: str, *, protected: bool = True) -> dict:
    """What :func:`plant` leaves."""
    return {
        **dict.fromkeys(NOTHING, 1),
        "lifecycle.Workspace": 2,  # the plain one and the board's parent row
        "lifecycle.Invoice": int(protected),
        "files": ["logos/logo.png"],
        "cache": [f"{tenant_id}'s page"] * 2,
        "presence": 1,
        "state": "secret",
        "limited": True,
        "usage": 7,
    }


def run(*args: str) -> str:
    out = StringIO()
    call_command("tenantry", *args, stdout=out)
    return out.getvalue()


def delete_by(route: str, tenant_id: str) -> None:
    """Delete the tenant through ``route``: the command, the function, the
    registry row's ``delete()``, a queryset's ``delete()``, the admin."""
    if route == "command":
        assert f"deleted tenant {tenant_id!r}" in run("delete", tenant_id)
    elif route == "function":
        certificate = lifecycle.delete_tenant(tenant_id)
        assert certificate.count("database", "lifecycle.Membership") == 1
    else:
        # The ORM routes. The test's transaction never commits: nothing may
        # wait for a commit, the files, cache and keys go with the rows.
        if route == "instance":
            Tenant.objects.get(slug=tenant_id).delete()
        elif route == "queryset":
            with transaction.atomic():
                Tenant.objects.filter(slug=tenant_id).delete()
        elif route == "async":
            row = Tenant.objects.get(slug=tenant_id)
            # async_to_sync: the ORM call runs on this thread, in the test's transaction.
            async_to_sync(row.adelete)()
        elif route.startswith("admin"):
            admin = User.objects.create_superuser("root", password="x")
            client = Client(HTTP_HOST="admin.example.com")
            client.force_login(admin)
            pk = Tenant.objects.get(slug=tenant_id).pk
            if route == "admin":
                response = client.post(f"/admin/app/tenant/{pk}/delete/", {"post": "yes"})
            else:  # the changelist's "delete selected" action, confirmed
                response = client.post(
                    "/admin/app/tenant/",
                    {"action": "delete_selected", "_selected_action": [pk], "post": "yes"},
                )
            assert response.status_code == 302, response.content[:500]


ROUTES = ["command", "function", "instance", "queryset", "async", "admin", "admin action"]


@pytest.mark.parametrize("route", ROUTES)
def test_a_recreated_id_inherits_nothing(route, stores, settings):
    """docs/registry.md#deleting-a-tenant: every route, every store."""
    if route.startswith("admin"):
        settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_EXEMPT_PATHS": ["/admin/"]}
    protected = route in ("command", "function")
    old = {t: plant(t, protected=protected) for t in TENANTS}
    assert traces("acme") == expected_full("acme", protected=protected)
    delete_by(route, "acme")
    assert not Tenant.objects.filter(slug="acme").exists()
    # A SET_NULL reference to the registry row is cleared, not the row deleted.
    assert Bookmark.objects.filter(tenant=None, url="https://example.com/").count() == 1
    new = Tenant.objects.create(slug="acme", name="A new customer")
    invalidate_tenant("acme")
    assert new.incarnation != old["acme"].incarnation
    assert traces("acme") == NOTHING
    assert traces("globex") == expected_full("globex", protected=protected)


def test_the_orm_routes_respect_a_protecting_foreign_key(stores):
    """An invoice whose foreign key PROTECTs the registry row: Django refuses
    the ORM deletion before anything happens; the command erases it."""
    from django.db.models import ProtectedError

    plant("acme")
    with pytest.raises(ProtectedError):
        Tenant.objects.get(slug="acme").delete()
    with pytest.raises(ProtectedError):
        Tenant.objects.filter(slug="acme").delete()
    assert traces("acme") == expected_full("acme")
    run("delete", "acme")
    assert traces("acme") == NOTHING


def test_a_queryset_delete_of_many_tenants_deletes_each(stores):
    for tenant in TENANTS:
        plant(tenant, protected=False)
    Tenant.objects.all().delete()
    for tenant in TENANTS:
        Tenant.objects.create(slug=tenant, name="new")
        invalidate_tenant(tenant)
        assert traces(tenant) == NOTHING


@pytest.mark.parametrize("stores", ["redis", "cluster"], indirect=True)
@pytest.mark.parametrize("route", ["command", "instance"])
def test_redis_keys_of_every_kind_go_and_no_other_tenants(route, stores, settings):
    """Presence, state, rate limits and usage on Redis and on a Redis Cluster:
    one SCAN of the tenant's hash tag finds every key, whatever kind wrote it."""
    import redis as redis_py

    from tenantry import conf

    for tenant in TENANTS:
        plant(tenant, protected=route == "command")
    config = conf.current()
    # Counts and usage live in the test's own key space under the test kit
    # (docs/testing.md#between-tests); the deletion scans both prefixes.
    prefixes = sorted({config.key_prefix, config.counts_key_prefix})
    assert len(prefixes) == 2

    def keys(tenant):
        url = config.presence_backend[2]
        found = []
        for prefix in prefixes:
            if url.startswith("redis+cluster://"):
                nodes = url[len("redis+cluster://") :].split("/")[0].split(",")
                host, port = nodes[0].rsplit(":", 1)
                client = redis_py.RedisCluster(host=host, port=int(port))
                found += client.keys(f"{prefix}:{{tenant:{tenant}}}:*", target_nodes="all")
                client.close()
            else:
                client = redis_py.Redis.from_url(url)
                found += client.keys(f"{prefix}:{{tenant:{tenant}}}:*")
                client.close()
        return sorted(k.decode() for k in found)

    acme_keys = keys("acme")
    kinds = {key.split("}:")[1].split(":")[0] for key in acme_keys}
    assert {"presence-users", "state", "ratelimit", "usage"} <= kinds, acme_keys
    globex_keys = keys("globex")
    text = run("delete", "acme", "--dry-run")
    assert f"would delete {len(acme_keys)}\tredis keys" in text, text
    assert keys("acme") == acme_keys
    delete_by(route, "acme")
    assert keys("acme") == []
    assert keys("globex") == globex_keys
    Tenant.objects.create(slug="acme", name="A new customer")
    invalidate_tenant("acme")
    assert traces("acme") == NOTHING
    assert traces("globex") == expected_full("globex", protected=route == "command")


def test_the_dry_run_prints_the_same_certificate_and_changes_nothing(stores):
    for tenant in TENANTS:
        plant(tenant)
    before = traces("acme")
    dry = lifecycle.delete_tenant("acme", dry_run=True)
    assert traces("acme") == before
    assert Tenant.objects.filter(slug="acme").exists()
    real = lifecycle.delete_tenant("acme")
    assert [(line.store, line.what, line.count) for line in dry.lines] == [
        (line.store, line.what, line.count) for line in real.lines
    ]
    assert dry.incarnation == real.incarnation is not None
    counts = {line.what: line.count for line in real.lines if line.store == "database"}
    assert counts["lifecycle.Membership"] == 1
    assert counts["lifecycle.Board"] == 1 and counts["lifecycle.Workspace"] == 2
    assert counts["app.Domain"] == 1 and counts["app.Tenant"] == 1
    assert counts["app.Document_tags"] == 1  # the m2m link goes by cascade
    assert "lifecycle.Bookmark" not in counts  # cleared, not deleted
    assert real.count("files") == 1
    assert real.count("cache", "generation (every entry of the tenant unreadable)") == 1
    # Two entries (two aliases) and the generation, out of local memory too.
    assert real.count("cache", "entries (local-memory and Redis caches)") == 3
    assert tenantry.cache.purge_tenant("acme", dry_run=True) == 0
    assert real.count("presence") == 1 and real.count("state") == 1
    assert real.count("rate limits") == 1 and real.count("usage") == 1
    text = str(real)
    assert "deleted 1\tlifecycle.Membership" in text
    assert "deleted 1\tfiles (tenants/acme/ in " in text


def test_the_command_prints_the_certificate_and_refuses_unknown_ids(stores):
    plant("acme")
    text = run("delete", "acme", "--dry-run")
    assert "would delete 1\tlifecycle.Seat" in text
    assert "dry run: nothing changed for tenant 'acme'" in text
    text = run("delete", "acme")
    assert "certificate: tenant 'acme' (incarnation 2" in text
    assert "deleted 1\tlifecycle.Seat" in text and "deleted tenant 'acme'" in text
    with pytest.raises(CommandError, match=r"no tenant 'acme' in app\.Tenant"):
        run("delete", "acme")
    with pytest.raises(TenantNotFound, match="leftovers"):
        lifecycle.delete_tenant("acme")


@pytest.mark.parametrize(
    ("domain_model", "fields", "make"),
    [
        (
            "app.Domain",
            ("domain", "tenant_id"),
            lambda t, row: Domain(domain="shop.x.com", tenant_id=t),
        ),
        (
            "lifecycle.HostName",
            ("host", "tenant"),
            lambda t, row: HostName(host="shop.x.com", tenant=row),
        ),
        (
            "lifecycle.Alias",
            ("domain", "owner"),
            lambda t, row: Alias(domain="shop.x.com", owner=t),
        ),
    ],
)
def test_domains_go_whatever_the_type_of_their_tenant_field(
    stores, settings, rf, domain_model, fields, make
):
    """A CharField of ids, a foreign key, a column only the config names; the
    registry's ``__str__`` is the tenant's name (filtering a CharField by
    the row would match nothing)."""
    settings.DJUST_CONFIG = {
        **settings.DJUST_CONFIG,
        "TENANT_RESOLVER": ["domain", "subdomain"],
        "TENANT_DOMAIN_MODEL": domain_model,
        "TENANT_DOMAIN_FIELD": fields[0],
        "TENANT_DOMAIN_TENANT_FIELD": fields[1],
    }
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "shop.x.com"]
    from tenantry import resolve_tenant

    shop = rf.get("/", HTTP_HOST="shop.x.com")
    row = Tenant.objects.create(slug="acme", name="Acme Corporation")
    assert str(row) == "Acme Corporation"
    make("acme", row).save()
    model = type(make("acme", row))
    assert model._base_manager.count() == 1
    assert resolve_tenant(shop).id == "acme"
    certificate = lifecycle.delete_tenant("acme")
    assert certificate.count("database", model._meta.label) == 1
    assert model._base_manager.count() == 0
    Tenant.objects.create(slug="acme", name="Someone else")
    invalidate_tenant(None)
    assert resolve_tenant(shop) is None  # the new acme did not inherit the domain


def test_a_cascade_into_another_tenants_row_is_refused_and_nothing_goes(stores):
    """A reference planted across tenants that cannot be cleared (globex's
    summary of acme's document: a non-nullable OneToOne): deleting acme must
    not delete globex's row, so it is refused."""
    for tenant in TENANTS:
        plant(tenant)
    from django.db import connection

    with rls_bypass(reason="test: planting a cross-tenant reference"):
        acme_doc = Document.all_tenants.get(tenant_id="acme")
        with connection.cursor() as cursor:  # around every ORM rule, as SQL would
            cursor.execute(
                "INSERT INTO app_summary (tenant_id, document_id, text) VALUES ('globex', %s, '')",
                [acme_doc.pk],
            )
    before = traces("acme")
    with pytest.raises(TenantMismatchError, match=r"app\.Summary .*another tenant"):
        lifecycle.delete_tenant("acme")
    assert traces("acme") == before
    with rls_bypass(reason="test: globex's rows as stored"):
        assert Summary.all_tenants.filter(tenant_id="globex").count() == 1


def test_a_clearable_reference_across_tenants_is_cleared_not_followed(stores):
    """A nullable key of globex's document naming acme's folder (made through
    a write grant, or planted): deleting acme clears it and deletes nothing
    of globex's (docs/collaboration.md#when-the-owner-deletes-the-row)."""
    for tenant in TENANTS:
        plant(tenant)
    from django.db import connection

    with rls_bypass(reason="test: planting a cross-tenant reference"):
        acme_folder = Folder.all_tenants.get(tenant_id="acme")
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE app_document SET folder_id = %s WHERE tenant_id = 'globex'",
                [acme_folder.pk],
            )
    lifecycle.delete_tenant("acme")
    assert traces("globex")["app.Document"] == 1
    with rls_bypass(reason="test: globex's rows as stored"):
        assert Document.all_tenants.get(tenant_id="globex").folder_id is None
    connection.check_constraints()


def test_a_tenant_bound_may_delete_only_itself(stores):
    for tenant in TENANTS:
        plant(tenant, protected=False)
    with tenant_context("globex"):
        with pytest.raises(TenantMismatchError), transaction.atomic():
            Tenant.objects.get(slug="acme").delete()
        with pytest.raises(TenantMismatchError, match=r"delete_tenant.*tenant .globex. is bound"):
            lifecycle.delete_tenant("acme")
    assert traces("acme") == expected_full("acme", protected=False)
    # A tenant closing its own account (its request bound) is fine.
    with tenant_context("acme"):
        Tenant.objects.get(slug="acme").delete()
    assert traces("acme") == NOTHING


def test_leftovers_of_a_registry_row_deleted_by_sql_can_be_removed(stores):
    plant("acme")
    with rls_bypass(reason="test"):
        Invoice.objects.all().delete()  # PROTECT: the raw delete needs them gone
        Note.all_tenants.all().delete()
        Bookmark.objects.update(tenant=None)
        Domain.objects.all()._raw_delete("default")
        Tenant.objects.filter(slug="acme")._raw_delete("default")
    assert traces("acme")["lifecycle.Membership"] == 1
    with pytest.raises(CommandError, match="no tenant 'acme'"):
        run("delete", "acme")
    text = run("delete", "acme", "--leftovers")
    assert "deleted 1\tlifecycle.Membership" in text and "app.Tenant" not in text
    assert traces("acme") == NOTHING


# -- renaming a tenant is refused (docs/registry.md#deleting-a-tenant) -------------


@contextmanager
def refused(match: str):
    """A write refused with RegistryRowProtected (in a savepoint: Django
    marks the transaction a failed save() ran in for rollback)."""
    with pytest.raises(RegistryRowProtected, match=match), transaction.atomic():
        yield


def test_renaming_a_saved_tenant_is_refused_by_every_write(stores):
    row = plant("acme")
    other = Tenant.objects.get(pk=row.pk)
    other.slug = "acme2"
    with refused(r"app\.Tenant\.save\(\) would change slug"):
        other.save()
    with refused("slug"):
        other.save(update_fields=["slug"])
    with refused("slug"):
        Tenant(pk=row.pk, slug="acme3", name="x").save()  # made in code with the pk
    with refused(r"update\(\) would change slug"):
        Tenant.objects.filter(pk=row.pk).update(slug="acme4")
    with refused(r"bulk_create\(update_conflicts=True\) would change slug"):
        Tenant.objects.bulk_create(  # an upsert is an update of the conflicting row
            [Tenant(pk=row.pk, slug="acme6", name="x")],
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=["slug", "name"],
        )
    with refused("slug"):
        Tenant.objects.bulk_update([other], ["slug"])
    with refused("slug"):
        async_to_sync(Tenant.objects.filter(pk=row.pk).aupdate)(slug="acme5")
    with refused("incarnation"):
        Tenant.objects.filter(pk=row.pk).update(incarnation="20200101T000000000000Z-0")
    again = Tenant.objects.get(pk=row.pk)
    again.incarnation = "20200101T000000000000Z-0"
    with refused("incarnation"):
        again.save()
    assert list(Tenant.objects.values_list("slug", "incarnation")) == [("acme", row.incarnation)]
    # Everything else of the row may change.
    again = Tenant.objects.get(pk=row.pk)
    again.name, again.settings = "Acme Corp", {"theme": "dark"}
    again.save()
    Tenant.objects.filter(pk=row.pk).update(name="Acme Inc")
    assert Tenant.objects.get(pk=row.pk).name == "Acme Inc"
    # A refusal is also Django's PermissionDenied (the admin answers 403).
    from django.core.exceptions import PermissionDenied

    assert issubclass(RegistryRowProtected, PermissionDenied)


def test_the_admin_refuses_a_rename_with_403(stores, settings):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_EXEMPT_PATHS": ["/admin/"]}
    row = plant("acme")
    admin = User.objects.create_superuser("root", password="x")
    client = Client(HTTP_HOST="admin.example.com")
    client.force_login(admin)
    response = client.post(
        f"/admin/app/tenant/{row.pk}/change/",
        {"slug": "acme2", "name": "Acme", "settings": "{}"},
    )
    assert response.status_code == 403
    assert Tenant.objects.get(pk=row.pk).slug == "acme"
    assert traces("acme") == expected_full("acme")


# -- incarnations ---------------------------------------------------------------------


def test_a_new_row_gets_a_new_incarnation_whatever_the_code_passes(stores):
    """Copying an old row (an import, the admin's "save as new") must not
    continue the old incarnation."""
    old = Tenant.objects.create(slug="acme", name="Acme")
    copy = Tenant.objects.create(slug="acme2", name="Copy", incarnation=old.incarnation)
    assert copy.incarnation != old.incarnation
    old.pk, old.slug = None, "acme3"
    old.save()
    assert old.incarnation != copy.incarnation
    assert len(set(Tenant.objects.values_list("incarnation", flat=True))) == 3


def test_each_incarnation_is_new_and_reachable_from_the_bound_tenant(stores):
    first = Tenant.objects.create(slug="acme", name="Acme")
    with tenant_context("acme") as bound:
        assert lifecycle.incarnation(bound) == first.incarnation
        assert lifecycle.incarnation(bound.raw) == first.incarnation
    lifecycle.delete_tenant("acme")
    second = Tenant.objects.create(slug="acme", name="Acme again")
    invalidate_tenant("acme")
    assert second.incarnation != first.incarnation
    assert second.incarnation > first.incarnation  # time-ordered
    with tenant_context("acme") as bound:
        assert lifecycle.incarnation(bound) == second.incarnation


def test_a_tenant_held_since_before_its_deletion_is_no_longer_current(stores):
    """A socket or job that bound acme before acme was deleted and created
    again asks ``is_current`` before acting: the new acme is not its tenant."""
    Tenant.objects.create(slug="acme", name="Acme")
    with tenant_context("acme") as held:
        assert lifecycle.is_current(held)
    lifecycle.delete_tenant("acme")
    assert not lifecycle.is_current(held)
    Tenant.objects.create(slug="acme", name="Another customer")
    invalidate_tenant("acme")
    assert not lifecycle.is_current(held)
    with tenant_context("acme") as fresh:
        assert lifecycle.is_current(fresh)


def test_without_a_registry_model_the_incarnation_is_unknown(settings):
    from tenantry import TenantInfo

    settings.DJUST_CONFIG = {"TENANT_RESOLVER": "header", **with_rls(settings)}
    assert lifecycle.incarnation(TenantInfo("solo")) is None
    assert lifecycle.incarnation(TenantInfo("solo", metadata={"incarnation": "7"})) == "7"
    with tenant_context("solo"):
        Membership.objects.create(tenant_id="solo", user=User.objects.create_user("u"))
    certificate = lifecycle.delete_tenant("solo")
    assert certificate.incarnation is None
    assert certificate.count("database", "lifecycle.Membership") == 1


# -- the tenant-owned-model registry ----------------------------------------------------


def test_the_registry_lists_every_model_that_holds_a_tenant_id(settings):
    settings.DJUST_CONFIG = {**BASE, **with_rls(settings)}
    owned = {entry.label: entry for entry in ownership.owned_models()}
    assert owned["app.Item"].source == "manager"
    assert owned["app.Note"].fields[0].name == "org"
    assert owned["lifecycle.Membership"].source == "detected"
    assert owned["lifecycle.Seat"].source == "declared"
    assert owned["app.Domain"].source == "domain"
    assert owned["lifecycle.Invoice"].fields[0].name == "tenant"  # PROTECT: owned
    assert "lifecycle.Bookmark" not in owned  # SET_NULL: a reference, cleared
    assert "lifecycle.Board" in owned and "lifecycle.Workspace" in owned
    order = [entry.label for entry in ownership.owned_models()]
    assert order[-1] == "app.Tenant"  # the registry last
    assert order.index("lifecycle.Board") < order.index("lifecycle.Workspace")
    assert order.index("app.Document") < order.index("app.Folder")
    # One rule for "a tenant field", reusable by a check.
    fields = ownership.detected_tenant_fields(Membership)
    assert [f.name for f in fields] == ["tenant_id"]
    assert ownership.detected_tenant_fields(Bookmark) == ()


def test_an_excluded_model_outlives_a_deletion(stores, monkeypatch):
    plant("acme")
    ownership._cache.clear()
    monkeypatch.setitem(ownership._excluded, "lifecycle.membership", "test: an audit-like table")
    try:
        assert "lifecycle.Membership" not in {e.label for e in ownership.owned_models()}
        lifecycle.delete_tenant("acme")
    finally:
        ownership._cache.clear()
    with rls_bypass(reason="test"):
        assert Membership.objects.filter(tenant_id="acme").count() == 1


def test_create_removes_what_an_id_still_holds_and_says_so(stores):
    """A registry row deleted by SQL (or a request of the deleted tenant
    that kept writing): ``tenantry create`` removes it before the new row,
    and prints what it removed (docs/registry.md#creating-a-tenant-again)."""
    with tenant_context("acme", must_exist=False):
        Membership.objects.create(tenant_id="acme", user=User.objects.create_user("old"))
        storages["default"].save("old.txt", ContentFile(b"old"))
    assert lifecycle.leftovers("acme").count("database", "lifecycle.Membership") == 1
    text = run("create", "acme")
    assert "removed what the id 'acme' still held" in text
    assert "deleted 1\tlifecycle.Membership" in text and "deleted 1\tfiles (tenants/acme/" in text
    assert Tenant.objects.filter(slug="acme").exists()
    assert traces("acme") == NOTHING
    assert lifecycle.leftovers("acme").lines == []
    assert "removed" not in run("create", "globex")  # an id never used: nothing to say


def test_a_new_registry_row_starts_with_a_fresh_cache(stores):
    """Entries written under an id while it had no registry row (a request
    of the deleted tenant still running) are not the new tenant's."""
    with tenant_context("acme", must_exist=False):
        caches["default"].set("page", "written after the deletion")
    with tenant_context("globex", must_exist=False):  # whoever creates it
        Tenant.objects.create(slug="acme", name="A new customer")
    with tenant_context("acme", must_exist=False):
        assert caches["default"].get("page") is None


def test_a_store_that_is_down_makes_the_deletion_incomplete_not_silent(settings, stores):
    """Redis unreachable while deleting: the rows go, the certificate names
    the failed store, the command exits non-zero, and ``--leftovers`` once
    Redis is back finishes the job (here: with Redis configured away)."""
    from tests.redis_servers import free_port

    plant("acme")
    settings.DJUST_CONFIG = {
        **settings.DJUST_CONFIG,
        "STATE_BACKEND": "tenant_redis",
        "STATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens
        "REDIS_CONNECT_TIMEOUT": 0.2,
    }
    out = StringIO()
    with pytest.raises(CommandError, match=r"redis: BackendUnavailable.*--leftovers"):
        call_command("tenantry", "delete", "acme", stdout=out)
    text = out.getvalue()
    assert "FAILED: redis: BackendUnavailable" in text
    assert "deleted 1\tlifecycle.Membership" in text  # the rows went
    assert "deleted 1\tfiles" in text and "deleted 1\tpresence (memory" in text
    with pytest.raises(DeletionIncomplete) as caught:
        lifecycle.delete_tenant("acme", leftovers=True)
    assert caught.value.certificate.failures == [
        line for line in caught.value.certificate.failures if line.startswith("redis:")
    ]
    with rls_bypass(reason="test"):
        assert not Membership.objects.filter(tenant_id="acme").exists()
    settings.DJUST_CONFIG = {**BASE, **with_rls(settings)}  # Redis "back"
    assert not lifecycle.delete_tenant("acme", leftovers=True).failures


def test_a_tenant_bound_may_change_only_its_own_registry_row(stores):
    """docs/registry.md: the sibling of deleting another tenant's row. Every
    write route reaches the UPDATE compiler, so each is refused with
    another tenant's row in reach, and the rows are unchanged."""

    def routes():
        globex = Tenant.objects.get(slug="globex")
        yield "filter().update()", lambda: Tenant.objects.filter(slug="globex").update(
            name="taken"
        )
        yield "update() of all", lambda: Tenant.objects.update(name="taken")
        yield "save()", lambda: Tenant(**{**_fields(globex), "name": "taken"}).save()
        yield "save(update_fields)", lambda: _renamed(globex).save(update_fields=["name"])
        yield "bulk_update()", lambda: Tenant.objects.bulk_update([_renamed(globex)], ["name"])
        yield "update_or_create()", lambda: Tenant.objects.update_or_create(
            slug="globex", defaults={"name": "taken"}
        )
        yield "aupdate()", lambda: async_to_sync(
            Tenant.objects.filter(slug="globex").aupdate
        )(name="taken")

    for tenant in TENANTS:
        plant(tenant, protected=False)
    names_before = dict(Tenant.objects.values_list("slug", "name"))
    with tenant_context("acme"):
        for route, write in routes():
            with pytest.raises(TenantMismatchError), transaction.atomic():
                write()
            assert dict(Tenant.objects.values_list("slug", "name")) == names_before, route
        # Its own row is its own: a settings page renaming the account.
        Tenant.objects.filter(slug="acme").update(name="Acme 2")
    assert Tenant.objects.get(slug="acme").name == "Acme 2"
    assert Tenant.objects.get(slug="globex").name == names_before["globex"]


def _fields(tenant):
    return {f.attname: getattr(tenant, f.attname) for f in Tenant._meta.concrete_fields}


def _renamed(tenant):
    copy = Tenant(**_fields(tenant))
    copy.name = "taken"
    return copy
