"""Every route into and out of the registry table keeps a tenant's data to
its own incarnation (docs/registry.md#creating-a-tenant-again,
docs/registry.md#deleting-a-tenant, docs/storage.md#deleting-a-tenant).

A straggler — a request, socket or job that bound a tenant before it was
deleted — keeps writing under the id. Whatever route then creates a
registry row under that id (the ORM's save, create, get_or_create,
update_or_create, bulk_create with or without conflicts, a bare
``_insert``, their async forms, a ModelForm, the admin's "add", the
command), the new customer must not inherit those rows, files, Redis keys,
cache entries or memory entries; each new row is a new incarnation. A
storage the app builds in code is emptied like a ``STORAGES`` one, and a
store that fails while the registry row is deleted by the ORM or the admin
is reported, never a silent success.
"""

from __future__ import annotations

import gc
import json
import sys
from contextlib import contextmanager

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.cache import caches
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction
from django.db.models import Value
from django.db.models.functions import Lower
from django.test import Client
from django.urls import clear_url_caches

from tenantry import (
    BackendUnavailable,
    DeletionIncomplete,
    RegistryRowProtected,
    get_tenant_presence_backend,
    get_tenant_state_backend,
    lifecycle,
    reset_current_tenant,
    set_current_tenant,
    storage,
    tenant_context,
)
from tenantry.db import rls_bypass
from tenantry.storage import TenantFileSystemStorage
from tests.app.models import Item, Tenant
from tests.isolation import test_lifecycle
from tests.isolation.test_lifecycle import NOTHING, expected_full, plant, run, traces
from tests.lifecycle.models import (
    ATTACHMENTS,
    Attachment,
    Customer,
    Membership,
    Receipt,
    Voucher,
)
from tests.redis_servers import free_port

#: The fixture of tests/isolation/test_lifecycle.py: the config, a tenant file storage,
#: two tenant-keyed caches, the per-tenant stores (memory or Redis).
stores = test_lifecycle.stores


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Storages built on ``MEDIA_ROOT`` (the attachments' is beside it)."""
    settings.MEDIA_ROOT = str(tmp_path / "media-root")

pytestmark = pytest.mark.django_db


def _fields(*names):
    return [Tenant._meta.get_field(name) for name in names]


def create_by(route: str, tenant_id: str, **extra) -> None:
    """Create the registry row of ``tenant_id`` through ``route`` (``extra``:
    more field values, e.g. an old incarnation)."""
    name = {"name": "A new customer", **extra}
    manager = Tenant.objects
    if route == "save":
        Tenant(slug=tenant_id, **name).save()
    elif route == "save(force_insert)":
        Tenant(slug=tenant_id, **name).save(force_insert=True)
    elif route == "create":
        manager.create(slug=tenant_id, **name)
    elif route == "get_or_create":
        manager.get_or_create(slug=tenant_id, defaults=name)
    elif route == "update_or_create":
        manager.update_or_create(slug=tenant_id, defaults=name)
    elif route == "bulk_create":
        manager.bulk_create([Tenant(slug=tenant_id, **name)])
    elif route == "bulk_create(ignore_conflicts)":
        manager.bulk_create([Tenant(slug=tenant_id, **name)], ignore_conflicts=True)
    elif route == "bulk_create(update_conflicts)":
        manager.bulk_create(
            [Tenant(slug=tenant_id, **name)],
            update_conflicts=True,
            unique_fields=["slug"],
            update_fields=["name"],
        )
    elif route == "_insert":  # the manager's own insert, fields named by the caller
        manager._insert(
            [Tenant(slug=tenant_id, **name)], fields=_fields("slug", "name", "settings")
        )
    elif route == "_insert(raw=True)":  # values taken as they are, no pre_save
        manager._insert(
            [Tenant(slug=tenant_id, **name)],
            fields=_fields("slug", "name", "settings", "incarnation"),
            raw=True,
        )
    elif route == "proxy create":  # an app's own proxy of the registry model
        Customer.objects.create(slug=tenant_id, **name)
    elif route == "proxy bulk_create":
        Customer.objects.bulk_create([Customer(slug=tenant_id, **name)])
    elif route.startswith("a"):  # the async forms, awaited
        async_to_sync(_create_async)(route, tenant_id, name)
    else:
        raise AssertionError(route)


async def _create_async(route: str, tenant_id: str, name: dict) -> None:
    manager = Tenant.objects
    if route == "asave":
        await Tenant(slug=tenant_id, **name).asave()
    elif route == "acreate":
        await manager.acreate(slug=tenant_id, **name)
    elif route == "aget_or_create":
        await manager.aget_or_create(slug=tenant_id, defaults=name)
    elif route == "aupdate_or_create":
        await manager.aupdate_or_create(slug=tenant_id, defaults=name)
    elif route == "abulk_create":
        await manager.abulk_create([Tenant(slug=tenant_id, **name)])
    else:
        raise AssertionError(route)


CREATE_ROUTES = [
    "save",
    "save(force_insert)",
    "create",
    "get_or_create",
    "update_or_create",
    "bulk_create",
    "bulk_create(ignore_conflicts)",
    "bulk_create(update_conflicts)",
    "_insert",
    "_insert(raw=True)",
    "proxy create",
    "proxy bulk_create",
    "asave",
    "acreate",
    "aget_or_create",
    "aupdate_or_create",
    "abulk_create",
]


def held_then_deleted(tenant_id: str):
    """The ``TenantInfo`` a request bound before ``tenant_id`` was deleted."""
    with tenant_context(tenant_id) as held:
        pass
    lifecycle.delete_tenant(tenant_id)
    return held


@contextmanager
def straggler(held):
    """Code still running with the deleted tenant bound."""
    token = set_current_tenant(held)
    try:
        yield
    finally:
        reset_current_tenant(token)


@contextmanager
def refused(exc, match):
    with pytest.raises(exc, match=match), transaction.atomic():
        yield


# -- what an id still holds is removed before a registry row is created under it -------


def removed_events(caplog) -> list:
    return [r for r in caplog.records if r.getMessage().startswith("tenant.leftovers_removed")]


@pytest.mark.parametrize("route", CREATE_ROUTES)
def test_a_stragglers_rows_never_reach_the_next_customer_by_any_creation_route(
    route, stores, caplog
):
    """docs/registry.md#creating-a-tenant-again: the new globex would read
    the rows a request of the deleted globex wrote after the deletion."""
    plant("acme", protected=False)
    Tenant.objects.create(slug="globex", name="Globex")
    held = held_then_deleted("globex")
    with straggler(held):
        Item.objects.create(name="OLD-CUSTOMER-ROW")
        Membership.objects.create(tenant_id="globex", user=User.objects.create_user("old"))
    assert lifecycle.leftovers("globex").count("database") == 2
    caplog.clear()
    create_by(route, "globex")
    assert Tenant.objects.filter(slug="globex").count() == 1
    assert traces("globex") == NOTHING
    with tenant_context("globex"):
        assert list(Item.objects.values_list("name", flat=True)) == []
    [event] = removed_events(caplog)
    assert "'app.Item', 'count': 1" in event.getMessage()
    assert traces("acme") == expected_full("acme", protected=False)


@pytest.mark.parametrize("stores", ["memory", "redis"], indirect=True)
@pytest.mark.parametrize("route", ["create", "bulk_create", "aget_or_create"])
def test_a_stragglers_files_and_redis_keys_never_reach_the_next_customer(route, stores):
    """Files in a tenant storage of its own, and (on Redis) saved state,
    presence and rate-limit counts: what lasts."""
    plant("acme", protected=False)
    Tenant.objects.create(slug="globex", name="Globex")
    held = held_then_deleted("globex")
    with straggler(held):
        ATTACHMENTS.save("report.pdf", ContentFile(b"old customer's report"))
        get_tenant_state_backend("globex").set("draft", "old customer's draft")
        get_tenant_presence_backend("globex").join("room", "old-user")
    left = lifecycle.leftovers("globex")
    assert left.count("files") == 1
    assert (left.count("redis keys") > 0) is (stores == "redis")
    create_by(route, "globex")
    with tenant_context("globex"):
        assert ATTACHMENTS.listdir("") == ([], [])
        assert get_tenant_state_backend("globex").get("draft") is None
        assert get_tenant_presence_backend("globex").count("room") == 0
    assert lifecycle.leftovers("globex").lines == []
    assert traces("acme") == expected_full("acme", protected=False)


@pytest.mark.parametrize("key", ["chosen by the database", "the old one", "another id's"])
def test_references_to_the_registry_a_straggler_left_never_reach_the_next_row(key, stores):
    """Foreign keys to the registry without a database constraint outlive
    their row: by the id (``to_field="slug"``) they name the next tenant with
    the id; by primary key, the next row given that key (any id)."""
    old = Tenant.objects.create(slug="globex", name="Globex")
    held = held_then_deleted("globex")
    with straggler(held):  # held.raw is the deleted row
        Receipt.objects.create(tenant=held.raw, total=5)
        Voucher.objects.create(tenant=held.raw, code="OLD-CUSTOMER")
    if key == "chosen by the database":
        new = Tenant.objects.create(slug="globex", name="New customer")
    elif key == "the old one":
        new = Tenant(pk=old.pk, slug="globex", name="New customer")
        new.save()
    else:
        new = Tenant(pk=old.pk, slug="initech", name="Another customer")
        new.save()
    with rls_bypass(reason="test"):
        assert not Voucher.objects.filter(tenant_id=new.pk).exists()
        assert not Receipt.objects.filter(tenant_id=new.slug).exists()


@pytest.mark.parametrize("how", ["save(force_insert)", "create", "bulk_create upsert"])
def test_a_new_row_given_a_live_tenants_key_never_clears_that_tenants_rows(how, stores):
    """A key that belongs to a live tenant's row is not a new row's: the
    rows pointing at it are that tenant's, and stay."""
    acme = plant("acme", protected=False)
    Voucher.objects.create(tenant=acme, code="ACME'S")
    try:
        with transaction.atomic():
            if how == "save(force_insert)":
                Tenant(pk=acme.pk, slug="evil", name="x").save(force_insert=True)
            elif how == "create":
                Tenant.objects.create(pk=acme.pk, slug="evil", name="x")
            else:  # the conflict on the key updates acme's name only
                Tenant.objects.bulk_create(
                    [Tenant(pk=acme.pk, slug="evil", name="Acme, renamed")],
                    update_conflicts=True,
                    unique_fields=["id"],
                    update_fields=["name"],
                )
    except (IntegrityError, RegistryRowProtected):  # save()'s check sees a rename
        assert how != "bulk_create upsert"
    with rls_bypass(reason="test"):
        assert Voucher.objects.filter(tenant_id=acme.pk).count() == 1
    assert traces("acme") == expected_full("acme", protected=False)
    assert Tenant.objects.get(pk=acme.pk).slug == "acme"


def test_the_admin_add_and_the_command_remove_what_the_id_held(stores, settings):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_EXEMPT_PATHS": ["/admin/"]}
    for tenant_id in ("globex", "initech"):
        Tenant.objects.create(slug=tenant_id, name=tenant_id)
        held = held_then_deleted(tenant_id)
        with straggler(held):
            Item.objects.create(name="OLD-CUSTOMER-ROW")
    # The admin's "add".
    client = Client(HTTP_HOST="admin.example.com")
    client.force_login(User.objects.create_superuser("root", password="x"))
    response = client.post(
        "/admin/app/tenant/add/", {"slug": "globex", "name": "New", "settings": "{}"}
    )
    assert response.status_code == 302, response.content[:300]
    # The command says what it removed.
    text = run("create", "initech")
    assert "removed what the id 'initech' still held" in text
    assert "deleted 1\tapp.Item" in text and "created tenant 'initech'" in text
    for tenant_id in ("globex", "initech"):
        assert Tenant.objects.filter(slug=tenant_id).exists()
        assert traces(tenant_id) == NOTHING


def test_creating_a_tenant_while_redis_is_down_is_refused_not_guessed(stores, settings):
    """What the id holds on Redis cannot be checked: the row is not created
    (fail closed; a view answers 503), and is once Redis is back."""
    config = settings.DJUST_CONFIG
    settings.DJUST_CONFIG = {
        **config,
        "STATE_BACKEND": "tenant_redis",
        "STATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens
        "REDIS_CONNECT_TIMEOUT": 0.2,
        "TENANT_EXEMPT_PATHS": ["/admin/"],
    }
    for route in ("create", "bulk_create", "acreate"):
        with refused(BackendUnavailable, match="unavailable"):
            create_by(route, "initech")
    with pytest.raises(CommandError, match=r"was not created: .*try again"):
        run("create", "initech")
    client = Client(HTTP_HOST="admin.example.com")
    client.force_login(User.objects.create_superuser("root", password="x"))
    response = client.post(
        "/admin/app/tenant/add/", {"slug": "initech", "name": "I", "settings": "{}"}
    )
    assert response.status_code == 503
    assert not Tenant.objects.filter(slug="initech").exists()
    settings.DJUST_CONFIG = config
    create_by("create", "initech")


def test_an_id_the_database_would_compute_is_refused(stores):
    with refused(RegistryRowProtected, match="expression"):
        Tenant.objects.create(slug=Lower(Value("GLOBEX")), name="x")
    with refused(RegistryRowProtected, match="expression"):
        Tenant.objects.bulk_create([Tenant(slug=Lower(Value("GLOBEX")), name="x")])
    with refused(RegistryRowProtected, match="without slug"):
        Tenant.objects._insert([Tenant(name="x")], fields=_fields("name", "settings"))
    assert not Tenant.objects.exists()


# -- every insert is a new incarnation with a fresh start ---------------------------


@pytest.mark.parametrize("route", CREATE_ROUTES)
def test_every_insert_route_gives_a_new_incarnation_and_a_fresh_start(route, stores):
    """An old incarnation passed in (an import, a copied row) is replaced;
    the cache generation and this process's memory stores start empty; the
    straggler is not current again."""
    old = Tenant.objects.create(slug="globex", name="Globex").incarnation
    held = held_then_deleted("globex")
    with straggler(held):
        caches["default"].set("dashboard", "OLD-CUSTOMER-CACHE")
        get_tenant_presence_backend("globex").join("room", "old-user")
        get_tenant_state_backend("globex").set("draft", "OLD-CUSTOMER-STATE")
    assert not lifecycle.is_current(held)
    create_by(route, "globex", incarnation=old)
    new = Tenant.objects.get(slug="globex").incarnation
    assert new != old and new > old
    with tenant_context("globex") as fresh:
        assert lifecycle.incarnation(fresh) == new
        assert caches["default"].get("dashboard") is None
        assert get_tenant_presence_backend("globex").count("room") == 0
        assert get_tenant_state_backend("globex").get("draft") is None
    assert not lifecycle.is_current(held), "the deleted tenant's socket or job is current again"
    assert lifecycle.is_current(fresh)


@pytest.mark.parametrize(
    "route", ["bulk_create(ignore_conflicts)", "bulk_create(update_conflicts)", "get_or_create"]
)
def test_an_insert_that_meets_an_existing_tenant_leaves_it_as_it_is(route, stores):
    """An upsert or an ignored conflict on a live tenant creates nothing: its
    incarnation, cache and stores stay (no check, no fresh start)."""
    row = Tenant.objects.create(slug="acme", name="Acme")
    with tenant_context("acme"):
        caches["default"].set("dashboard", "acme's")
        get_tenant_state_backend("acme").set("draft", "acme's")
    create_by(route, "acme", incarnation="20000101T000000000000Z-000000000000")
    assert Tenant.objects.get(slug="acme").incarnation == row.incarnation
    with tenant_context("acme"):
        assert caches["default"].get("dashboard") == "acme's"
        assert get_tenant_state_backend("acme").get("draft") == "acme's"


def test_loaddata_keeps_the_fixtures_incarnation(stores, tmp_path):
    """Fixtures are trusted (a restore keeps the audit trail's incarnation)."""
    fixture = tmp_path / "tenants.json"
    incarnation = "20200101T000000000000Z-0123456789ab"
    fixture.write_text(
        json.dumps(
            [
                {
                    "model": "app.tenant",
                    "pk": 99,
                    "fields": {
                        "slug": "restored",
                        "name": "Restored",
                        "settings": {},
                        "incarnation": incarnation,
                    },
                }
            ]
        )
    )
    call_command("loaddata", str(fixture), verbosity=0)
    assert Tenant.objects.get(slug="restored").incarnation == incarnation


# -- files of every tenant storage, wherever it is ---------------------------------


@pytest.mark.parametrize("route", ["function", "instance"])
@pytest.mark.parametrize("where", ["media root", "own location", "file field"])
def test_files_of_a_storage_built_in_code_go_with_the_tenant(
    route, where, stores, settings, tmp_path
):
    """docs/storage.md#serving-the-files builds ``logos = TenantFileSystemStorage()``
    in a views module; a FileField's storage can live anywhere."""
    settings.MEDIA_ROOT = str(tmp_path / "media-root")
    if where == "media root":
        files = TenantFileSystemStorage()
    elif where == "own location":
        files = TenantFileSystemStorage(location=str(tmp_path / "private"))
    else:
        files = ATTACHMENTS
    for tenant_id in ("acme", "globex"):
        Tenant.objects.create(slug=tenant_id, name=tenant_id)
        with tenant_context(tenant_id):
            files.save("logo.png", ContentFile(tenant_id.encode()))
            if where == "file field":
                Attachment.objects.create(file="logo.png")
    if route == "function":
        certificate = lifecycle.delete_tenant("globex")
        assert certificate.count("files") == 1
    else:
        Tenant.objects.get(slug="globex").delete()
    Tenant.objects.create(slug="globex", name="New customer")
    with tenant_context("globex"):
        assert files.listdir("") == ([], [])
    with tenant_context("acme"):
        assert files.listdir("")[1] == ["logo.png"]


def test_a_storage_built_per_request_and_dropped_is_still_found(stores, settings, tmp_path):
    def view():  # builds its storage on each call, as some views do
        with tenant_context("globex"):
            TenantFileSystemStorage(location=str(tmp_path / "per-request")).save(
                "upload.bin", ContentFile(b"x")
            )

    Tenant.objects.create(slug="globex", name="Globex")
    view()
    gc.collect()
    certificate = lifecycle.delete_tenant("globex")
    assert certificate.count("files") == 1
    assert not (tmp_path / "per-request" / "tenants" / "globex").exists()


def forget_views_module() -> None:
    """As if this process had never imported tests/lifecycle/views.py."""
    import tests.lifecycle

    for module in ("tests.lifecycle.urls", "tests.lifecycle.views"):
        sys.modules.pop(module, None)
        if hasattr(tests.lifecycle, module.rsplit(".", 1)[1]):
            delattr(tests.lifecycle, module.rsplit(".", 1)[1])
    clear_url_caches()


def test_a_storage_a_views_module_builds_is_found_by_a_process_that_never_imported_it(
    stores, settings, tmp_path, monkeypatch
):
    """``manage.py tenantry delete`` or a worker: the deletion loads the
    URLconf, so the views module's storage exists there too."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.ROOT_URLCONF = "tests.lifecycle.urls"
    forget_views_module()
    from tests.lifecycle import views

    Tenant.objects.create(slug="globex", name="Globex")
    with tenant_context("globex"):
        views.logos.save("logo.png", ContentFile(b"globex"))
    folder = tmp_path / "media-logos" / "tenants" / "globex"
    assert (folder / "logo.png").exists()
    # A fresh process: the module was never imported, no instance was built.
    monkeypatch.setattr(storage, "_alive", type(storage._alive)())
    monkeypatch.setattr(storage, "_kept", {})
    forget_views_module()
    del views
    gc.collect()
    assert "tests.lifecycle.views" not in sys.modules
    assert "deleted 1\tfiles (tenants/globex/ in " + str(tmp_path / "media-logos") in run(
        "delete", "globex"
    )
    assert not folder.exists()
    clear_url_caches()


# -- a store that fails while the registry row is deleted by the ORM ---------------


def dead_redis(settings) -> dict:
    config = settings.DJUST_CONFIG
    settings.DJUST_CONFIG = {
        **config,
        "STATE_BACKEND": "tenant_redis",
        "STATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens
        "REDIS_CONNECT_TIMEOUT": 0.2,
    }
    return config


def admin_client(settings) -> Client:
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_EXEMPT_PATHS": ["/admin/"]}
    client = Client(HTTP_HOST="admin.example.com")
    client.force_login(User.objects.create_superuser("root", password="x"))
    return client


@pytest.mark.parametrize(
    "route",
    ["instance", "queryset", "async instance", "async queryset", "admin", "admin action"],
)
def test_a_failed_store_is_reported_by_every_orm_route(route, stores, settings):
    """docs/registry.md#deleting-a-tenant: Redis down while the registry row
    is deleted by the ORM or the admin: the rows go, the failure is raised
    (``DeletionIncomplete`` with the certificate) or shown (the admin), and
    the id is not free until ``--leftovers`` ran with Redis back."""
    plant("acme", protected=False)
    plant("globex", protected=False)
    client = admin_client(settings) if route.startswith("admin") else None
    config = dead_redis(settings)
    row = Tenant.objects.get(slug="acme")
    caught = None
    try:
        if route == "instance":
            row.delete()
        elif route == "queryset":
            Tenant.objects.filter(slug="acme").delete()
        elif route == "async instance":
            async_to_sync(row.adelete)()
        elif route == "async queryset":
            async_to_sync(Tenant.objects.filter(slug="acme").adelete)()
        elif route == "admin":
            response = client.post(
                f"/admin/app/tenant/{row.pk}/delete/", {"post": "yes"}, follow=True
            )
        else:
            response = client.post(
                "/admin/app/tenant/",
                {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
                follow=True,
            )
    except DeletionIncomplete as exc:
        caught = exc
    if route.startswith("admin"):
        assert response.status_code == 200
        shown = [str(m) for m in response.context["messages"]]
        assert any(
            "deletion is incomplete" in m
            and "redis: BackendUnavailable" in m
            and "--leftovers" in m
            for m in shown
        ), shown
    else:
        assert caught is not None, "the deletion left Redis keys and said nothing"
        certificate = caught.certificate
        assert certificate.tenant_id == "acme" and certificate.route == "orm"
        assert any(f.startswith("redis: BackendUnavailable") for f in certificate.failures)
        assert certificate.count("database", "lifecycle.Membership") == 1
        assert "tenantry delete acme --leftovers" in str(caught)
    # The rows went (and the files, cache, memory stores); globex kept everything.
    assert not Tenant.objects.filter(slug="acme").exists()
    with rls_bypass(reason="test"):
        assert not Membership.objects.filter(tenant_id="acme").exists()
    # The id is not free while Redis cannot be checked.
    with refused(BackendUnavailable, match="unavailable"):
        Tenant.objects.create(slug="acme", name="New customer")
    settings.DJUST_CONFIG = config  # Redis "back"
    assert not lifecycle.delete_tenant("acme", leftovers=True).failures
    Tenant.objects.create(slug="acme", name="New customer")
    assert traces("acme") == NOTHING
    assert traces("globex") == expected_full("globex", protected=False)


def test_a_queryset_of_many_tenants_reports_each_incomplete_deletion(stores, settings):
    for tenant_id in ("acme", "globex"):
        plant(tenant_id, protected=False)
    dead_redis(settings)
    with pytest.raises(DeletionIncomplete) as caught:
        Tenant.objects.all().delete()
    assert sorted(c.tenant_id for c in caught.value.certificates) == ["acme", "globex"]
    assert caught.value.certificate is caught.value.certificates[0]
    assert "'acme'" in str(caught.value) and "'globex'" in str(caught.value)
    assert not Tenant.objects.exists()
