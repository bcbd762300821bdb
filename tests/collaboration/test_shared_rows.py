"""Reading and writing through grants with the scoped managers
(docs/collaboration.md#reading-granted-rows,
docs/collaboration.md#writing-through-a-grant): ``with_shared()`` adds the
granted rows and nothing else; a read grant refuses every write path; a
write grant allows updates of the row's own fields, never a move or a
delete; a reference to another tenant's row needs a write grant."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Count, Prefetch

from tenantry import TenantMismatchError, sharing, tenant_context
from tests.app.models import Note
from tests.collaboration.conftest import titles
from tests.collaboration.models import Board, Card, Label, Pin

pytestmark = pytest.mark.django_db


@pytest.fixture
def read_grant(rows):
    with tenant_context("acme"):
        return sharing.grant(rows.shared, "globex")


@pytest.fixture
def write_grant(rows):
    with tenant_context("acme"):
        return sharing.grant(rows.shared, "globex", write=True)


def _shared(pk):
    return Board.objects.with_shared().get(pk=pk)


# -- reads -------------------------------------------------------------------------


def test_with_shared_adds_the_granted_row_and_nothing_else(rows, read_grant):
    with tenant_context("globex"):
        shared = Board.objects.with_shared()
        assert titles(shared) == ["acme-shared", "globex-own"]
        assert shared.count() == 2
        assert shared.filter(title__startswith="acme").count() == 1
        with pytest.raises(Board.DoesNotExist):
            shared.get(pk=rows.secret.pk)
        assert not shared.filter(pk=rows.secret.pk).exists()
        assert sorted(shared.values_list("title", flat=True)) == ["acme-shared", "globex-own"]
        assert sorted(shared.values_list("tenant_id", flat=True)) == ["acme", "globex"]
        assert shared.aggregate(n=Count("id"))["n"] == 2
        # The default stays the tenant's own rows; other models gain nothing.
        assert titles(Board.objects.all()) == ["globex-own"]
        assert Card.objects.with_shared().count() == 0
        assert Label.objects.with_shared().count() == 0


def test_the_owners_other_rows_never_appear_through_related_lookups(rows, read_grant):
    """The granted board's cards are acme's rows, not granted: no join,
    prefetch, related manager or descriptor reaches them."""
    with tenant_context("globex"):
        board = _shared(rows.shared.pk)
        assert list(board.card_set.all()) == []
        assert list(Board.objects.with_shared().filter(card__text__contains="acme")) == []
        assert list(
            Board.objects.with_shared()
            .exclude(card__text="nothing")
            .values_list("card__text", flat=True)
        ) == [None, None]
        counted = Board.objects.with_shared().annotate(n=Count("card"))
        assert sorted(b.n for b in counted) == [0, 0]
        prefetched = Board.objects.with_shared().prefetch_related(
            Prefetch("card_set", queryset=Card.objects.all())
        )
        assert [list(b.card_set.all()) for b in prefetched] == [[], []]
        plain = Board.objects.with_shared().prefetch_related("card_set")
        assert [list(b.card_set.all()) for b in plain] == [[], []]
        assert Card.objects.with_shared().filter(board=rows.shared).count() == 0


def test_a_granted_row_is_not_reachable_through_another_row_that_points_at_it(rows):
    """Grant the card, not the board: the card's board stays acme's."""
    with tenant_context("acme"):
        sharing.grant(rows.shared_card, "globex")
    with tenant_context("globex"):
        card = Card.objects.with_shared().get()
        assert card.text == "acme-shared-card"
        with pytest.raises(Board.DoesNotExist):
            card.board  # noqa: B018  (the descriptor reads through the base manager)
        assert list(Card.objects.with_shared().select_related("board")) == [card]
        assert Card.objects.with_shared().select_related("board").get().board is None
        assert list(Card.objects.with_shared().values_list("board__title", flat=True)) == [None]
        assert titles(Board.objects.with_shared()) == ["globex-own"]


def test_a_generic_foreign_key_reaches_no_row_of_another_tenant(rows, read_grant):
    board_type = ContentType.objects.get_for_model(Board)
    with tenant_context("acme"):
        pin = Pin.objects.create(target=rows.secret)
        sharing.grant(pin, "globex")
    with tenant_context("globex"):
        shared_pin = Pin.objects.with_shared().get()
        assert shared_pin.pk == pin.pk and shared_pin.content_type == board_type
        assert shared_pin.target is None  # acme's secret board is not granted
        assert [p.target for p in Pin.objects.with_shared().prefetch_related("target")] == [None]


def test_with_shared_is_only_for_the_bound_tenants_queryset(rows):
    with tenant_context("globex"):
        for queryset in (
            Board.objects.unscoped(reason="test"),
            Board.objects.for_tenant("globex"),
        ):
            with pytest.raises(ValueError, match="with_shared"):
                queryset.with_shared()


def test_the_attacker_sees_nothing_of_a_grant_to_another(rows, write_grant):
    with tenant_context("initech"):
        assert titles(Board.objects.with_shared()) == ["initech-own"]
        assert Board.objects.with_shared().filter(pk=rows.shared.pk).update(title="x") == 0
        with pytest.raises(TenantMismatchError), transaction.atomic():
            Card.objects.create(text="mine", board=rows.shared)
    with tenant_context("globex"):
        assert _shared(rows.shared.pk).title == "acme-shared"


# -- writes through a read grant: every path refused --------------------------------


@pytest.mark.parametrize("grant", ["read", "write"])
def test_a_locking_read_locks_only_what_the_tenant_may_write(rows, grant):
    """select_for_update() is a write's (it makes the owner wait): through
    with_shared() it locks the tenant's rows and write-granted ones only,
    whichever of the two is called first."""
    with tenant_context("acme"):
        sharing.grant(rows.shared, "globex", write=grant == "write")
    expected = ["acme-shared", "globex-own"] if grant == "write" else ["globex-own"]
    with tenant_context("globex"), transaction.atomic():
        assert titles(Board.objects.with_shared()) == ["acme-shared", "globex-own"]
        assert titles(Board.objects.with_shared().select_for_update()) == expected
        assert titles(Board.objects.select_for_update().with_shared()) == expected


def _write_paths(rows):
    pk = rows.shared.pk

    def save():
        board = _shared(pk)
        board.title = "stolen"
        board.save()

    def save_update_fields():
        board = _shared(pk)
        board.title = "stolen"
        board.save(update_fields=["title"])

    def asave():
        board = _shared(pk)
        board.title = "stolen"
        async_to_sync(board.asave)()

    def delete():
        _shared(pk).delete()

    def adelete():
        async_to_sync(_shared(pk).adelete)()

    def update():
        Board.objects.with_shared().filter(pk=pk).update(title="stolen")

    def update_all():
        Board.objects.with_shared().update(title="stolen")

    def aupdate():
        async_to_sync(Board.objects.with_shared().filter(pk=pk).aupdate)(title="stolen")

    def queryset_delete():
        Board.objects.with_shared().filter(pk=pk).delete()

    def bulk_update():
        board = _shared(pk)
        board.title = "stolen"
        Board.objects.with_shared().bulk_update([board], ["title"])

    def plain_bulk_update():
        board = _shared(pk)
        board.title = "stolen"
        Board.all_tenants.bulk_update([board], ["title"])

    def update_or_create():
        Board.objects.with_shared().update_or_create(pk=pk, defaults={"title": "stolen"})

    def aupdate_or_create():
        async_to_sync(Board.objects.with_shared().aupdate_or_create)(
            pk=pk, defaults={"title": "stolen"}
        )

    return {
        name: fn for name, fn in locals().items() if callable(fn) and name not in ("rows", "pk")
    }


WRITE_PATHS = [
    "save",
    "save_update_fields",
    "asave",
    "delete",
    "adelete",
    "update",
    "update_all",
    "aupdate",
    "queryset_delete",
    "bulk_update",
    "update_or_create",
    "aupdate_or_create",
]


@pytest.mark.parametrize("path", WRITE_PATHS)
def test_a_read_grant_refuses_every_write_path(rows, read_grant, path):
    with tenant_context("globex"):
        with pytest.raises(TenantMismatchError), transaction.atomic():
            _write_paths(rows)[path]()
    with tenant_context("acme"):
        assert Board.objects.get(pk=rows.shared.pk).title == "acme-shared"
    with tenant_context("globex"):
        assert titles(Board.objects.all()) == ["globex-own"]


@pytest.mark.parametrize("grant", ["read", "write"])
def test_a_plain_manager_writes_no_granted_row(rows, grant):
    """``all_tenants`` lifts the read filter, never the write rules: its
    UPDATE keeps to the bound tenant's rows, grant or not."""
    with tenant_context("acme"):
        sharing.grant(rows.shared, "globex", write=grant == "write")
    with tenant_context("globex"):
        board = _shared(rows.shared.pk)
        board.title = "stolen"
        assert Board.all_tenants.bulk_update([board], ["title"]) == 0
        assert Board.all_tenants.filter(pk=rows.shared.pk).update(title="stolen") == 0
    with tenant_context("acme"):
        assert Board.objects.get(pk=rows.shared.pk).title == "acme-shared"


# -- writes through a write grant ------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "save",
        "save_update_fields",
        "asave",
        "update",
        "aupdate",
        "update_or_create",
        "aupdate_or_create",
    ],
)
def test_a_write_grant_allows_updating_the_rows_fields(rows, write_grant, path):
    with tenant_context("globex"):
        _write_paths(rows)[path]()
    with tenant_context("acme"):
        board = Board.objects.get(pk=rows.shared.pk)
        assert (board.title, board.tenant_id) == ("stolen", "acme")
        # Nothing else of acme's changed.
        assert Board.objects.get(pk=rows.secret.pk).title == "acme-secret"
    with tenant_context("globex"):
        assert Board.objects.get().title == "globex-own"


@pytest.mark.parametrize(
    "path",
    ["delete", "adelete", "queryset_delete", "bulk_update", "update_all"],
)
def test_a_write_grant_never_deletes_and_never_writes_in_bulk(rows, write_grant, path):
    """update_all touches globex's own row and the granted one: allowed
    (the grant is a write grant), so it is checked to change only those."""
    with tenant_context("globex"):
        if path == "update_all":
            assert Board.objects.with_shared().update(title="stolen") == 2
        else:
            with pytest.raises(TenantMismatchError), transaction.atomic():
                _write_paths(rows)[path]()
    with tenant_context("acme"):
        assert Board.objects.get(pk=rows.secret.pk).title == "acme-secret"
        assert Board.objects.filter(pk=rows.shared.pk).exists()


def test_a_write_grant_never_moves_the_row(rows, write_grant):
    with tenant_context("globex"):
        board = _shared(rows.shared.pk)
        board.tenant_id = "globex"
        with pytest.raises(TenantMismatchError), transaction.atomic():
            board.save()
        for values in (
            {"tenant_id": "globex"},
            {"tenant_id": "initech"},
            {"pk": rows.secret.pk + 1000},
            {"id": rows.secret.pk + 1000},
        ):
            with pytest.raises(TenantMismatchError), transaction.atomic():
                Board.objects.with_shared().filter(pk=rows.shared.pk).update(**values)
        board = _shared(rows.shared.pk)
        board.pk = rows.secret.pk  # another row of acme's, not granted
        board.title = "stolen"
        with pytest.raises(TenantMismatchError), transaction.atomic():
            board.save()
    with tenant_context("acme"):
        assert titles(Board.objects.all()) == ["acme-secret", "acme-shared"]


def test_a_revoked_write_grant_writes_nothing_more(rows, write_grant):
    with tenant_context("globex"):
        board = _shared(rows.shared.pk)
    with tenant_context("acme"):
        sharing.revoke(write_grant)
    with tenant_context("globex"):
        board.title = "late"
        with pytest.raises(TenantMismatchError), transaction.atomic():
            board.save()
        assert Board.objects.with_shared().filter(pk=rows.shared.pk).update(title="late") == 0
    with tenant_context("acme"):
        assert Board.objects.get(pk=rows.shared.pk).title == "acme-shared"


# -- references: only through a write grant ---------------------------------------------


def _references(rows):
    def fk_create():
        Card.objects.create(text="globex-card", board=rows.shared)

    def fk_create_id():
        Card.objects.create(text="globex-card", board_id=rows.shared.pk)

    def fk_save():
        card = Card.objects.create(text="globex-card")
        card.board_id = rows.shared.pk
        card.save()

    def fk_update():
        Card.objects.create(text="globex-card")
        Card.objects.update(board=rows.shared.pk)

    def fk_bulk_create():
        Card.objects.bulk_create([Card(text="globex-card", board_id=rows.shared.pk)])

    def fk_bulk_update():
        card = Card.objects.create(text="globex-card")
        card.board_id = rows.shared.pk
        Card.objects.bulk_update([card], ["board"])

    def fk_update_or_create():
        Card.objects.update_or_create(text="globex-card", defaults={"board": rows.shared})

    def fk_async_create():
        async def create():
            await Card.objects.acreate(text="globex-card", board=rows.shared)

        async_to_sync(create)()

    def m2m_add():
        Card.objects.create(text="globex-card").labels.add(rows.label)

    def m2m_set():
        Card.objects.create(text="globex-card").labels.set([rows.label.pk])

    def m2m_through():
        card = Card.objects.create(text="globex-card")
        Card.labels.through.objects.create(card=card, label_id=rows.label.pk)

    def gfk_create():
        Pin.objects.create(target=rows.shared)

    def gfk_columns():
        Pin.objects.create(
            content_type=ContentType.objects.get_for_model(Board), object_id=str(rows.shared.pk)
        )

    return {name: fn for name, fn in locals().items() if name != "rows"}


REFERENCES = [
    "fk_create",
    "fk_create_id",
    "fk_save",
    "fk_update",
    "fk_bulk_create",
    "fk_bulk_update",
    "fk_update_or_create",
    "fk_async_create",
    "m2m_add",
    "m2m_set",
    "m2m_through",
    "gfk_create",
    "gfk_columns",
]


@pytest.mark.parametrize("path", REFERENCES)
@pytest.mark.parametrize("grant", [None, "read", "write"])
def test_a_reference_to_another_tenants_row_needs_a_write_grant(rows, path, grant):
    if grant is not None:
        with tenant_context("acme"):
            sharing.grant(rows.shared, "globex", write=grant == "write")
            sharing.grant(rows.label, "globex", write=grant == "write")
    with tenant_context("globex"):
        if grant == "write":
            _references(rows)[path]()
        else:
            with pytest.raises(TenantMismatchError), transaction.atomic():
                _references(rows)[path]()
    # The attacker never: no grant names it.
    with tenant_context("initech"):
        with pytest.raises(TenantMismatchError), transaction.atomic():
            _references(rows)[path]()


@pytest.mark.parametrize("path", REFERENCES)
def test_a_write_grant_of_one_row_lets_no_reference_to_another(rows, write_grant, path):
    secret = type(rows)(**vars(rows))
    secret.shared, secret.label = rows.secret, rows.secret_label
    with tenant_context("globex"), pytest.raises(TenantMismatchError), transaction.atomic():
        _references(secret)[path]()


def test_a_tenant_field_that_is_a_foreign_key_to_the_registry(tenants):
    """app.Note is scoped by ``org``, a foreign key to the registry row: the
    grant's owner key is the column's value (the row's key), not the id."""
    with tenant_context("acme"):
        shared = Note.objects.create(text="acme-shared-note")
        Note.objects.create(text="acme-secret-note")
        sharing.grant(shared, "globex", write=True)
    with tenant_context("globex"):
        Note.objects.create(text="globex-note")
        notes = Note.objects.with_shared()
        assert sorted(n.text for n in notes) == ["acme-shared-note", "globex-note"]
        assert Note.objects.count() == 1
        note = notes.get(pk=shared.pk)
        note.text = "edited"
        note.save()
        note.org = tenants["globex"]
        with pytest.raises(TenantMismatchError), transaction.atomic():
            note.save()
    with tenant_context("acme"):
        assert Note.objects.get(pk=shared.pk).text == "edited"
