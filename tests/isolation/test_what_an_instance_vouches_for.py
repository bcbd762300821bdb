"""What an instance vouches for (docs/querysets.md#what-an-instance-vouches-for):
only a row Django's own queryset iteration read from the database vouches for
the keys it was loaded with. An instance built by ``from_db`` called from
anywhere else (the app's code, ``raw()``, whose columns the SQL computes) is
looked up when its keys matter, so it can neither plant a reference to
globex's rows nor pass globex's row off as acme's. And the code Django runs
while a read escape builds its instances runs under the bound tenant, not the
escape's bypass; a read escape never locks rows; a form over ``unscoped()``
offers the tenant's rows; a link row's empty extra reference links nothing.
Round 5's red team (docs and public API only).
"""

from __future__ import annotations

import pytest
from django import forms
from django.db import connection, transaction
from django.db.models.signals import post_init

from tenantry import TenantError, TenantMismatchError, tenant_context
from tenantry.db import rls_bypass
from tests.reach.models import Doc, Folder, Item, Mark, Tag

pytestmark = pytest.mark.django_db

ITEM_FIELDS = ["id", "tenant_id", "name", "secret", "ref", "category_id", "folder_id"]


def acme():
    return tenant_context("acme", must_exist=False)


def globex():
    return tenant_context("globex", must_exist=False)


@pytest.fixture
def world():
    with globex():
        theirs = Folder.objects.create(name="GLOBEX-FOLDER", code="GCODE")
    with acme():
        ours = Folder.objects.create(name="acme-folder", code="ACODE")
        item = Item.objects.create(name="acme-item", folder=ours)
    return {"theirs": theirs, "ours": ours, "item": item}


def forged_item(world, folder_id):
    """acme's own item, rebuilt by hand as if it had been loaded with ``folder_id``."""
    item = world["item"]
    values = [item.pk, "acme", item.name, "", None, None, folder_id]
    return Item.from_db(connection.alias, ITEM_FIELDS, values)


def stored_folder_id(item_pk):
    with rls_bypass():
        return Item._base_manager.filter(pk=item_pk).values_list("folder_id", flat=True).get()


WRITES = {
    "save": lambda obj: obj.save(),
    "save(update_fields)": lambda obj: obj.save(update_fields=["folder"]),
    "bulk_update": lambda obj: Item.objects.bulk_update([obj], ["folder"]),
}


@pytest.mark.parametrize("write", list(WRITES.values()), ids=list(WRITES))
def test_a_hand_made_load_vouches_for_no_reference(world, write):
    theirs = world["theirs"]
    with acme(), transaction.atomic():
        with pytest.raises(TenantMismatchError):
            write(forged_item(world, theirs.pk))
    assert stored_folder_id(world["item"].pk) == world["ours"].pk


def test_a_raw_read_vouches_for_no_reference(world):
    """raw() through a plain manager reads acme's own row but computes its key."""
    theirs = world["theirs"]
    table = Item._meta.db_table
    with acme(), transaction.atomic():
        [item] = Item._base_manager.raw(
            f"SELECT id, tenant_id, name, %s AS folder_id FROM {table} WHERE id = %s",
            [theirs.pk, world["item"].pk],
        )
        assert item.folder_id == theirs.pk
        with pytest.raises(TenantMismatchError):
            item.save()
    assert stored_folder_id(world["item"].pk) == world["ours"].pk


def test_a_hand_made_related_instance_vouches_for_nothing(world):
    theirs = world["theirs"]
    fake = Folder.from_db(connection.alias, ["id", "tenant_id", "name", "code"],
                          [theirs.pk, "acme", "looks like ours", None])  # fmt: skip
    with acme():
        item = Item.objects.get(pk=world["item"].pk)
        item.folder = fake
        with pytest.raises(TenantMismatchError), transaction.atomic():
            item.save()
        with pytest.raises(TenantError), transaction.atomic():
            fake.item_set.add(item, bulk=True)
    assert stored_folder_id(world["item"].pk) == world["ours"].pk


def test_a_hand_made_instance_of_globexs_row_is_refused_naming_it(world):
    theirs = world["theirs"]
    fake = Folder.from_db(connection.alias, ["id", "tenant_id", "name", "code"],
                          [theirs.pk, "acme", "renamed", "GCODE"])  # fmt: skip
    with acme(), transaction.atomic():
        with pytest.raises(TenantMismatchError, match="another tenant"):
            fake.save()
    with globex():
        assert Folder.objects.get(pk=theirs.pk).name == "GLOBEX-FOLDER"


def test_rows_read_by_a_query_still_vouch_without_a_query(world, django_assert_num_queries):
    with acme():
        item = Item.objects.select_related("folder").get(pk=world["item"].pk)
        item.name = "renamed"
        with django_assert_num_queries(1):  # the UPDATE: the loaded keys need no look-up
            item.save()


def test_code_run_while_a_read_escape_builds_instances_runs_under_the_bound_tenant(world):
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(sorted(Folder.all_tenants.values_list("name", flat=True)))

    post_init.connect(receiver, sender=Folder)
    try:
        with acme():
            everything = list(Folder.objects.unscoped(reason="a report").order_by("name"))
    finally:
        post_init.disconnect(receiver, sender=Folder)
    assert [f.name for f in everything] == ["GLOBEX-FOLDER", "acme-folder"]  # the escape reads
    if connection.vendor == "postgresql":  # the receiver's own query is under acme's wall
        assert seen and all(names == ["acme-folder"] for names in seen), seen


ESCAPES = {
    "unscoped": lambda: Folder.objects.unscoped(reason="lock"),
    "for_tenant": lambda: Folder.objects.for_tenant("globex"),
}


@pytest.mark.parametrize("escape", list(ESCAPES.values()), ids=list(ESCAPES))
def test_a_read_escape_never_locks_rows(world, escape):
    with acme(), transaction.atomic():
        with pytest.raises(TenantMismatchError, match="select_for_update"):
            escape().select_for_update()
        # the tenant's own rows, and trusted code, may lock
        assert [f.name for f in Folder.objects.select_for_update()] == ["acme-folder"]
    with rls_bypass(), transaction.atomic():
        assert len(Folder.objects.unscoped(reason="maintenance").select_for_update()) == 2


def test_a_form_over_unscoped_offers_only_the_tenants_rows(world):
    class Move(forms.Form):
        folder = forms.ModelChoiceField(queryset=Folder.objects.unscoped(reason="all folders"))

    with acme():
        form = Move(data={"folder": world["theirs"].pk})
        assert [f.name for f in form.fields["folder"].queryset] == ["acme-folder"]
        assert not form.is_valid()
        assert Move(data={"folder": world["ours"].pk}).is_valid()


def test_a_link_rows_empty_extra_reference_links_nothing(world):
    """docs/postgresql.md#many-to-many-link-tables: an explicit through
    model's nullable extra end, left empty, asks nothing of the link."""
    tag = Tag.objects.create(name="t")
    with acme():
        doc = Doc.objects.create(title="acme-doc")
        Mark.objects.create(doc=doc, tag=tag, note="empty")
        Mark.objects.create(doc=doc, tag=tag, note="own", backup=world["ours"])
        with pytest.raises(TenantError), transaction.atomic():
            Mark.objects.create(doc=doc, tag=tag, note="theirs", backup_id=world["theirs"].pk)
        assert sorted(doc.mark_set.values_list("note", flat=True)) == ["empty", "own"]
    with rls_bypass():  # trusted code writes such rows too
        Mark.objects.create(doc=doc, tag=tag, note="trusted")
    with acme():
        assert sorted(doc.mark_set.values_list("note", flat=True)) == ["empty", "own", "trusted"]
    if connection.vendor == "postgresql":
        with globex():  # behind the wall, another tenant sees none of them
            assert not Mark.objects.filter(doc_id=doc.pk).exists()


def test_a_read_escapes_aggregates_see_every_row_and_run_no_code_in_its_scope(world):
    """An aggregate of unscoped() counts every tenant's rows, a plain one and
    one Django runs over a subquery (a sliced queryset)."""
    from django.db.models import Count, Max

    with acme():
        everything = Folder.objects.unscoped(reason="totals")
        assert everything.aggregate(n=Count("id"))["n"] == 2
        assert everything.order_by("name")[:5].aggregate(top=Max("name"))["top"] == "acme-folder"
        assert everything.order_by("name")[:5].aggregate(n=Count("id"))["n"] == 2
        assert Folder.objects.aggregate(n=Count("id"))["n"] == 1
