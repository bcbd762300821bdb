"""docs/querysets.md, ORM writes and relations: every attack class of the adversarial
review, with its sibling forms (each write method, the tenant field as name,
attname or instance, sync and async ORM calls, instance save/delete).

Rows are made with the plain ``all_tenants`` managers and no tenant bound
(trusted setup code); each attack runs with acme bound and checks that
globex's rows are exactly as they were.
"""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.views.generic import TemplateView

from tenantry import TenantInfo, TenantMismatchError, TenantScopedMixin, tenant_context
from tests.app.models import Document, Folder, Item, Note, Summary, Tag, Tenant

pytestmark = pytest.mark.django_db

ACME = TenantInfo("acme")


def run(coroutine_function, *args, **kwargs):
    """Run an async ORM call the way an async view does (its sync part runs
    on this thread, inside the test's transaction, with this context)."""

    async def call():
        return await coroutine_function(*args, **kwargs)

    return async_to_sync(call)()


@pytest.fixture
def world():
    """Two tenants with the same shape of data."""
    rows = {}
    for t in ("acme", "globex"):
        folder = Folder.all_tenants.create(tenant_id=t, name=f"{t}-folder")
        tag = Tag.all_tenants.create(tenant_id=t, name=f"{t}-tag")
        doc = Document.all_tenants.create(tenant_id=t, title="plan", folder=folder)
        item = Item.all_tenants.create(tenant_id=t, name=f"{t}-item")
        rows[t] = {"folder": folder, "tag": tag, "doc": doc, "item": item}
    return rows


def snapshot():
    """Everything globex owns, as plain values (to compare before/after)."""
    docs = Document.all_tenants.filter(tenant_id="globex")
    return {
        "items": sorted(Item.all_tenants.filter(tenant_id="globex").values_list("id", "name")),
        "docs": sorted(docs.values_list("id", "title", "folder_id")),
        "folders": sorted(Folder.all_tenants.filter(tenant_id="globex").values_list("id", "name")),
        "tags": sorted(Tag.all_tenants.filter(tenant_id="globex").values_list("id", "name")),
        "links": sorted(
            Document.tags.through.objects.filter(
                Q(document__tenant_id="globex") | Q(tag__tenant_id="globex")
            ).values_list("document_id", "tag_id")
        ),
    }


@pytest.fixture
def untouched(world):
    """Asserts after the test that globex's rows did not change."""
    before = snapshot()
    yield world
    assert snapshot() == before


def refused(fn, *args, match=None, **kwargs):
    """``fn`` raises TenantMismatchError. Inside its own atomic block, as a
    view under ATOMIC_REQUESTS would be: a refusal inside Django's atomic
    write (delete, m2m add) marks the enclosing transaction for rollback."""
    with pytest.raises(TenantMismatchError, match=match) as info:
        with transaction.atomic():
            fn(*args, **kwargs)
    return str(info.value)


# -- 1. bulk_create(update_conflicts=True) -----------------------------------------


@pytest.mark.parametrize("unique", [["id"], ["pk"], ["name", "id"]])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_upsert_on_a_key_without_the_tenant_is_refused(untouched, unique, is_async):
    target = untouched["globex"]["item"]
    objs = [Item(id=target.id, name="pwned")]
    options = dict(update_conflicts=True, unique_fields=unique, update_fields=["name"])
    with tenant_context("acme"):
        if is_async:
            message = refused(run, Item.objects.abulk_create, objs, **options)
        else:
            message = refused(Item.objects.bulk_create, objs, **options)
    assert "app.Item" in message and "unique_fields" in message and "'acme'" in message
    assert "include 'tenant_id'" in message


def test_upsert_that_moves_the_tenant_column_is_refused(untouched):
    target = untouched["globex"]["item"]
    with tenant_context("acme"):
        refused(
            Item.objects.bulk_create,
            [Item(id=target.id, name="pwned", tenant_id="globex")],
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=["name", "tenant_id"],
        )


@pytest.mark.parametrize("unique", [["tenant_id", "title"], ["title", "tenant_id"]])
def test_upsert_keyed_by_the_tenant_stays_in_the_tenant(untouched, unique):
    acme_doc = untouched["acme"]["doc"]
    with tenant_context("acme"):
        Document.objects.bulk_create(
            [Document(title="plan", folder=untouched["acme"]["folder"])],
            update_conflicts=True,
            unique_fields=unique,
            update_fields=["folder"],
        )
        assert Document.objects.get(title="plan").pk == acme_doc.pk
        # ignore_conflicts cannot rewrite anything: allowed whatever the key.
        Document.objects.bulk_create([Document(title="plan")], ignore_conflicts=True)
        assert Document.objects.count() == 1


@pytest.mark.parametrize("form", ["org", "org_id"])
def test_upsert_key_may_name_the_tenant_field_in_any_form(registry_tenants, form):
    acme, globex = registry_tenants["acme"], registry_tenants["globex"]
    mine = Note.all_tenants.create(org=acme, text="n")
    theirs = Note.all_tenants.create(org=globex, text="n")
    with tenant_context(TenantInfo("acme", raw=acme)):
        refused(
            Note.objects.bulk_create,
            [Note(id=theirs.id, text="pwned")],
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=["text"],
        )
        Note.objects.bulk_create(
            [Note(text="n")],
            update_conflicts=True,
            unique_fields=[form, "text"],
            update_fields=["text"],
        )
    assert sorted(Note.all_tenants.values_list("id", "org__slug", "text")) == [
        (mine.id, "acme", "n"),
        (theirs.id, "globex", "n"),
    ]


# -- 2. get_or_create / update_or_create -------------------------------------------

MOVES = {
    "defaults": lambda f, v: ({"defaults": {f: v}}),
    "callable default": lambda f, v: ({"defaults": {f: lambda: v}}),
    "create_defaults": lambda f, v: ({"create_defaults": {f: v}, "title": "new"}),
    "lookup": lambda f, v: ({f: v}),
}


@pytest.mark.parametrize("how", list(MOVES))
@pytest.mark.parametrize("method", ["update_or_create", "aupdate_or_create"])
def test_update_or_create_cannot_move_or_plant_a_row(untouched, how, method):
    kwargs = {"title": "plan", **MOVES[how]("tenant_id", "globex")}
    with tenant_context("acme"):
        call = getattr(Document.objects, method)
        message = refused(run, call, **kwargs) if method[0] == "a" else refused(call, **kwargs)
    assert "globex" in message and "app.Document" in message
    assert Document.all_tenants.get(pk=untouched["acme"]["doc"].pk).tenant_id == "acme"


@pytest.mark.parametrize("how", ["defaults", "callable default", "lookup"])
@pytest.mark.parametrize("method", ["get_or_create", "aget_or_create"])
def test_get_or_create_cannot_plant_a_row(untouched, how, method):
    kwargs = {"title": "fresh", **MOVES[how]("tenant_id", "globex")}
    with tenant_context("acme"):
        call = getattr(Document.objects, method)
        refused(run, call, **kwargs) if method[0] == "a" else refused(call, **kwargs)
    assert not Document.all_tenants.filter(title="fresh").exists()


@pytest.fixture
def registry_tenants():
    return {t: Tenant.objects.create(slug=t, name=t.title()) for t in ("acme", "globex")}


def registry_forms(rows):
    """The tenant field of Note in every form, naming globex."""
    return {"name": ("org", rows["globex"]), "attname": ("org_id", rows["globex"].pk)}


@pytest.mark.parametrize("form", ["name", "attname"])
def test_update_or_create_defaults_in_every_form_of_a_foreign_key(registry_tenants, form):
    acme = TenantInfo("acme", raw=registry_tenants["acme"])
    note = Note.all_tenants.create(org=registry_tenants["acme"], text="n")
    key, value = registry_forms(registry_tenants)[form]
    with tenant_context(acme):
        refused(Note.objects.update_or_create, text="n", defaults={key: value})
        refused(Note.objects.update_or_create, text="m", create_defaults={key: value})
        refused(Note.objects.get_or_create, text="m", defaults={key: value})
        refused(Note.objects.create, text="m", **{key: value})
        # The tenant's own row, in either form, is fine.
        own = registry_tenants["acme"] if form == "name" else registry_tenants["acme"].pk
        assert Note.objects.update_or_create(text="n", defaults={key: own})[0] == note
    assert list(Note.all_tenants.values_list("org__slug", flat=True)) == ["acme"]


# -- 3. create_for_tenant and the forms of the tenant field -----------------------


class NoteView(TenantScopedMixin, TemplateView):
    model = Note
    tenant_field = "org"


class ItemView(TenantScopedMixin, TemplateView):
    model = Item


@pytest.mark.parametrize("form", ["name", "attname"])
def test_create_for_tenant_refuses_a_client_sent_tenant(registry_tenants, form):
    view = NoteView()
    view.tenant = TenantInfo("acme", raw=registry_tenants["acme"])
    key, value = registry_forms(registry_tenants)[form]
    with tenant_context(view.tenant):
        message = refused(view.create_for_tenant, text="x", **{key: value})
        assert key in message and "app.Note" in message and "'acme'" in message
        made = view.create_for_tenant(text="ok")
    assert made.org == registry_tenants["acme"]
    assert list(Note.all_tenants.values_list("org__slug", flat=True)) == ["acme"]


def test_create_for_tenant_refuses_another_id(untouched):
    view = ItemView()
    view.tenant = ACME
    with tenant_context(ACME):
        refused(view.create_for_tenant, name="x", tenant_id="globex")
        assert view.create_for_tenant(name="y", tenant_id="acme").tenant_id == "acme"


@pytest.mark.parametrize("form", ["name", "attname"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_create_refuses_the_tenant_in_any_form(registry_tenants, form, is_async):
    key, value = registry_forms(registry_tenants)[form]
    with tenant_context(TenantInfo("acme", raw=registry_tenants["acme"])):
        if is_async:
            refused(run, Note.objects.acreate, text="x", **{key: value})
        else:
            refused(Note.objects.create, text="x", **{key: value})
        # Both forms at once: one naming acme does not launder the other.
        both = {"org": registry_tenants["acme"], "org_id": registry_tenants["globex"].pk}
        refused(Note.objects.create, text="y", **both)
    assert not Note.all_tenants.exists()


# -- 4. relations to another tenant's rows ----------------------------------------


@pytest.mark.parametrize("form", ["instance", "attname"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_create_cannot_point_at_another_tenants_row(untouched, form, is_async):
    theirs = untouched["globex"]["folder"]
    kwargs = {"folder": theirs} if form == "instance" else {"folder_id": theirs.pk}
    with tenant_context("acme"):
        if is_async:
            message = refused(run, Document.objects.acreate, title="spy", **kwargs)
        else:
            message = refused(Document.objects.create, title="spy", **kwargs)
        assert "app.Document" in message and "folder" in message and "'acme'" in message
        # The read that would have leaked: nothing of globex through the relation.
        assert "globex-folder" not in set(Document.objects.values_list("folder__name", flat=True))
    assert not Document.all_tenants.filter(title="spy").exists()


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_save_cannot_point_at_another_tenants_row(untouched, is_async):
    with tenant_context("acme"):
        doc = Document.objects.get(title="plan")
        doc.folder_id = untouched["globex"]["folder"].pk
        refused(run, doc.asave) if is_async else refused(doc.save)
        doc = Document.objects.get(title="plan")
        doc.folder = untouched["globex"]["folder"]
        refused(doc.save, update_fields=["folder"])
        folder = Folder.objects.get(name="acme-folder")
        folder.parent_id = untouched["globex"]["folder"].pk  # a self-reference
        refused(folder.save)
    assert Document.all_tenants.get(pk=untouched["acme"]["doc"].pk).folder_id == (
        untouched["acme"]["folder"].pk
    )


def test_one_to_one_cannot_point_at_another_tenants_row(untouched):
    with tenant_context("acme"):
        refused(Summary.objects.create, document=untouched["globex"]["doc"])
        refused(Summary.objects.create, document_id=untouched["globex"]["doc"].pk)
        assert Summary.objects.create(document=untouched["acme"]["doc"]).tenant_id == "acme"


@pytest.mark.parametrize("form", ["instance", "attname"])
def test_bulk_writes_cannot_point_at_another_tenants_row(untouched, form):
    theirs = untouched["globex"]["folder"]
    value = {"folder": theirs} if form == "instance" else {"folder_id": theirs.pk}
    with tenant_context("acme"):
        ours = [Document(title=f"d{i}") for i in range(3)] + [Document(title="bad", **value)]
        refused(Document.objects.bulk_create, ours)
        refused(run, Document.objects.abulk_create, [Document(title="bad2", **value)])
        doc = Document.objects.get(title="plan")
        for key, v in value.items():
            setattr(doc, key, v)
        refused(Document.objects.bulk_update, [doc], ["folder"])
        refused(run, Document.objects.abulk_update, [doc], ["folder"])
        refused(Document.objects.update, **value)
        refused(run, Document.objects.filter(title="plan").aupdate, **value)
    assert not Document.all_tenants.filter(title__startswith="d").exists()


def test_update_refuses_expressions_on_guarded_fields(untouched):
    from django.db.models import F, OuterRef, Subquery

    with tenant_context("acme"):
        theirs = Folder.all_tenants.filter(tenant_id="globex", pk=OuterRef("folder_id"))
        refused(Document.objects.update, folder_id=Subquery(theirs.values("pk")[:1]))
        refused(Item.objects.update, tenant_id=F("name"))


@pytest.mark.parametrize(
    "link",
    [
        lambda w: w["acme"]["doc"].tags.add(w["globex"]["tag"]),
        lambda w: w["acme"]["doc"].tags.add(w["globex"]["tag"].pk),
        lambda w: w["acme"]["doc"].tags.set([w["acme"]["tag"], w["globex"]["tag"]]),
        lambda w: w["acme"]["tag"].document_set.add(w["globex"]["doc"]),
        lambda w: w["acme"]["tag"].document_set.set([w["globex"]["doc"].pk]),
        lambda w: w["acme"]["doc"].tags.create(name="new", tenant_id="globex"),
        lambda w: run(w["acme"]["doc"].tags.aadd, w["globex"]["tag"]),
        lambda w: w["globex"]["doc"].tags.add(w["acme"]["tag"]),
        lambda w: w["globex"]["doc"].tags.clear(),
    ],
    ids=[
        "add",
        "add-pk",
        "set",
        "reverse-add",
        "reverse-set",
        "create",
        "aadd",
        "their-row-add",
        "their-row-clear",
    ],
)
def test_many_to_many_links_stay_in_the_tenant(world, link):
    Document.tags.through.objects.create(
        document=world["globex"]["doc"], tag=world["globex"]["tag"]
    )
    before = snapshot()
    with tenant_context("acme"):
        refused(link, world)
    assert snapshot() == before


def test_many_to_many_within_the_tenant_works(untouched):
    with tenant_context("acme"):
        doc = Document.objects.get(title="plan")
        doc.tags.add(Tag.objects.get())
        doc.tags.set([Tag.objects.create(name="t2")])
        assert [t.name for t in doc.tags.all()] == ["t2"]


@pytest.mark.parametrize("bulk", [True, False])
def test_reverse_foreign_key_add_stays_in_the_tenant(untouched, bulk):
    with tenant_context("acme"):
        folder = Folder.objects.get()
        refused(folder.document_set.add, untouched["globex"]["doc"], bulk=bulk)
        mine = Document.objects.create(title="mine")
        folder.document_set.add(mine, bulk=bulk)
        assert Document.objects.get(title="mine").folder == folder


# -- query counts: reads get no query, writes one per relation field -----------------


def queries(fn):
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return [q["sql"] for q in ctx.captured_queries]


def test_reads_send_no_extra_query(world):
    with tenant_context("acme"):
        assert len(queries(lambda: list(Document.objects.select_related("folder")))) == 1
        assert len(queries(lambda: list(Document.objects.values("folder__name")))) == 1
        doc = Document.objects.get()
        assert len(queries(lambda: doc.folder)) == 1  # Django's own lazy load only


def test_writes_send_at_most_one_query_per_relation_field(world):
    with tenant_context("acme"):
        folder = Folder.objects.get()
        tag = Tag.objects.get()
        # A loaded related instance tells its tenant: just the INSERT.
        assert len(queries(lambda: Document.objects.create(title="a", folder=folder))) == 1
        # A bare id needs one look-up.
        sql = queries(lambda: Document.objects.create(title="b", folder_id=folder.pk))
        assert len(sql) == 2 and "app_folder" in sql[0]
        # 200 rows, one batched look-up for the relation field.
        docs = [Document(title=f"bulk{i}", folder_id=folder.pk) for i in range(200)]
        sql = queries(lambda: Document.objects.bulk_create(docs))
        assert sum("app_folder" in q for q in sql) == 1
        # bulk_update of loaded rows: one look-up for the relation, none for the rows.
        other = Folder.objects.create(name="other")
        loaded = list(Document.objects.filter(title__startswith="bulk"))
        for d in loaded:
            d.folder_id = other.pk
        sql = queries(lambda: Document.objects.bulk_update(loaded, ["folder"]))
        assert sum("app_folder" in q for q in sql) == 1
        assert not any('FROM "app_document"' in q and "SELECT" in q for q in sql)
        # A loaded instance saved again: no check query at all.
        doc = Document.objects.get(title="a")
        doc.title = "a2"
        assert len(queries(doc.save)) == 1
        # m2m add: one look-up of the targets.
        sql = queries(lambda: doc.tags.add(tag))
        assert sum('"app_tag"' in q and "SELECT" in q for q in sql) == 1


# -- 5. raw() ----------------------------------------------------------------------


def test_raw_through_a_scoped_manager_is_refused(world, caplog):
    sql = "SELECT * FROM app_item"
    with tenant_context("acme"):
        with caplog.at_level(logging.WARNING, logger="tenantry.audit"):
            message = refused(Item.objects.raw, sql)
        assert "unscoped(reason=...).raw" in message
        refused(Item.objects.filter(name="x").raw, sql)
        refused(world["acme"]["folder"].document_set.raw, "SELECT * FROM app_document")
        rows = list(Item.objects.unscoped(reason="report").raw(sql))
        assert {r.tenant_id for r in rows} == {"acme", "globex"}
    events = [r.tenantry for r in caplog.records if r.name == "tenantry.audit"]
    assert events[0]["event"] == "isolation.refused" and events[0]["model"] == "app.Item"


def test_raw_with_no_tenant_in_empty_mode_sends_no_sql(world, settings):
    settings.DJUST_CONFIG = {"TENANT_STRICT": "empty"}
    with CaptureQueriesContext(connection) as ctx:
        with pytest.raises(TenantMismatchError):
            list(Item.objects.raw("SELECT * FROM app_item"))
        with pytest.raises(TenantMismatchError):
            list(Document.objects.all().raw("SELECT * FROM app_document"))
    assert ctx.captured_queries == []


# -- 6. instances: save() and delete() while a tenant is bound ---------------------


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_saving_a_changed_tenant_field_is_refused(untouched, is_async):
    with tenant_context("acme"):
        item = Item.objects.get()
        item.tenant_id = "globex"  # e.g. a ModelForm with the field exposed
        message = refused(run, item.asave) if is_async else refused(item.save)
        assert "tenant_id='globex'" in message and "app.Item" in message
    assert Item.all_tenants.get(pk=item.pk).tenant_id == "acme"


@pytest.mark.parametrize("form", ["name", "attname"])
def test_saving_a_changed_foreign_key_tenant_is_refused(registry_tenants, form):
    note = Note.all_tenants.create(org=registry_tenants["acme"], text="n")
    key, value = registry_forms(registry_tenants)[form]
    with tenant_context(TenantInfo("acme", raw=registry_tenants["acme"])):
        note = Note.objects.get(pk=note.pk)
        setattr(note, key, value)
        refused(note.save)
        refused(Note.objects.update, **{key: value})
        refused(Note.objects.filter(pk=note.pk).update, **{key: value})
    assert Note.all_tenants.get(pk=note.pk).org == registry_tenants["acme"]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_another_tenants_instance_cannot_be_saved_or_deleted(untouched, is_async):
    theirs = Item.all_tenants.get(pk=untouched["globex"]["item"].pk)
    theirs.name = "pwned"
    with tenant_context("acme"):
        if is_async:
            refused(run, theirs.asave)
            refused(run, theirs.adelete)
        else:
            refused(theirs.save)
            refused(theirs.delete)
            refused(theirs.save, update_fields=["name"])


def test_another_tenants_row_cannot_be_pulled_in(untouched):
    """The instance says acme, the row it writes over is globex's."""
    target = untouched["globex"]["item"]
    with tenant_context("acme"):
        loaded = Item.all_tenants.get(pk=target.pk)
        loaded.tenant_id = "acme"
        refused(loaded.save)  # known from its load: no query needed
        refused(loaded.delete)
        mine = Item.objects.get()
        mine.pk = target.pk  # same instance, another row
        refused(mine.save)
        refused(Item(pk=target.pk, name="forged", tenant_id="acme").save)
        refused(Item(pk=target.pk, name="forged").save)
        deferred = Item.all_tenants.only("name").get(pk=target.pk)
        deferred.name = "pwned"
        refused(deferred.save)


def test_bulk_update_and_update_of_the_tenant_field(untouched):
    with tenant_context("acme"):
        mine = list(Item.objects.all())
        for item in mine:
            item.tenant_id = "globex"
        refused(Item.objects.bulk_update, mine, ["tenant_id"])
        refused(run, Item.objects.abulk_update, mine, ["tenant_id"])
        refused(Item.objects.update, tenant_id="globex")
        refused(run, Item.objects.aupdate, tenant_id="globex")
        theirs = list(Item.all_tenants.filter(tenant_id="globex"))
        for item in theirs:
            item.name = "pwned"
        # Through unscoped(), rows of another tenant are still not writable.
        refused(Item.objects.unscoped(reason="t").bulk_update, theirs, ["name"])
        # The scoped bulk_update of the tenant's own rows works.
        mine = list(Item.objects.all())
        for item in mine:
            item.name = "renamed"
        assert Item.objects.bulk_update(mine, ["name", "tenant_id"]) == 1


def test_a_queryset_of_another_tenant_cannot_write_while_one_is_bound(untouched):
    with tenant_context("acme"):
        refused(Item.objects.for_tenant("globex").delete)
        refused(Item.objects.for_tenant("globex").update, name="pwned")
        refused(Item.objects.for_tenant("globex").create, name="planted")


def test_deleting_a_scoped_queryset_never_cascades_into_another_tenant(world):
    """A cascade that would reach another tenant's row (legacy data written
    with no tenant bound, or a reference made through a write grant): the
    collector reads through the tenant's rows only, so globex's document is
    neither collected nor deleted; its nullable key to acme's folder is
    cleared in the same transaction (docs/querysets.md#how-the-wall-is-built,
    docs/collaboration.md#when-the-owner-deletes-the-row)."""
    globex_doc = world["globex"]["doc"]
    Document.all_tenants.filter(pk=globex_doc.pk).update(folder=world["acme"]["folder"])
    with tenant_context("acme"):
        with transaction.atomic():
            Folder.objects.all().delete()
            connection.check_constraints()
    assert not Folder.all_tenants.filter(pk=world["acme"]["folder"].pk).exists()
    stored = Document.all_tenants.get(pk=globex_doc.pk)
    assert (stored.tenant_id, stored.title, stored.folder_id) == ("globex", globex_doc.title, None)


def test_the_tenants_own_writes_still_work(world):
    with tenant_context("acme"):
        item = Item(name="plain")
        item.save()  # filled on insert
        assert item.tenant_id == "acme"
        item.name = "renamed"
        item.save()
        run(item.asave)
        Item.objects.filter(pk=item.pk).update(name="again", tenant_id="acme")
        obj, created = run(Item.objects.aupdate_or_create, name="again", defaults={"name": "x"})
        assert not created and obj.pk == item.pk
        doc = Document.objects.create(title="t", folder=Folder.objects.get())
        Summary.objects.create(document=doc)
        doc.delete()
        item.delete()
        assert Item.objects.count() == 1


def test_without_a_tenant_bound_setup_code_is_trusted(world):
    """Migrations, fixtures and commands run with no tenant: nothing to compare to."""
    item = Item.all_tenants.get(tenant_id="globex")
    item.tenant_id = "acme"
    item.save()
    Document.all_tenants.create(
        tenant_id="globex", title="x", folder=world["acme"]["folder"]
    ).delete()
    item.delete()


def test_refusals_are_audited(untouched, caplog):
    with caplog.at_level(logging.WARNING, logger="tenantry.audit"):
        with tenant_context("acme"):
            refused(Document.objects.create, title="x", folder=untouched["globex"]["folder"])
    record = next(r.tenantry for r in caplog.records if r.name == "tenantry.audit")
    assert record["event"] == "isolation.refused"
    assert record["model"] == "app.Document" and record["field"] == "folder"
    assert "<app.Folder pk=" in record["value"]
    assert record["tenant_id"] == "acme" and record["action"] == "objects.create()"
