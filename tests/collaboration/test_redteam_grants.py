"""Red team of cross-tenant grants (docs/collaboration.md): an attacker who
knows only the docs and the public API tries to reach rows nobody granted,
to write through a read grant, to move or delete a row through a write
grant, and to forge, widen, read or drop grants it is no party to. Each
test passes when the attack is refused. acme owns, globex is the grantee,
initech the third tenant (tests/collaboration/conftest.py)."""

from __future__ import annotations

import pickle
from datetime import timedelta
from datetime import timezone as dt_timezone

import pytest
from asgiref.sync import async_to_sync
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    FilteredRelation,
    Max,
    OuterRef,
    Prefetch,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Lower
from django.utils import timezone

from tenantry import GrantRefused, TenantError, TenantMismatchError, sharing, tenant_context
from tenantry.db import rls_bypass
from tenantry.models import AuditEvent, Grant
from tests.collaboration.conftest import titles
from tests.collaboration.models import Board, Card, Label
from tests.graph import models as graph

pytestmark = pytest.mark.django_db

REFUSED = (TenantError, GrantRefused, ValueError, TypeError, PermissionError, DatabaseError)


@pytest.fixture
def read_grant(rows):
    with tenant_context("acme"):
        return sharing.grant(rows.shared, "globex")


@pytest.fixture
def write_grant(rows):
    with tenant_context("acme"):
        return sharing.grant(rows.shared, "globex", write=True)


def stored_grants() -> list[tuple]:
    with rls_bypass(reason="test: the grants as stored"):
        return sorted(
            Grant.objects.values_list(
                "owner_tenant", "grantee_tenant", "object_pk", "can_write", "target_table"
            )
        )


def stored_board(pk) -> tuple | None:
    with rls_bypass(reason="test: the board as stored"):
        row = Board.all_tenants.filter(pk=pk).values_list("tenant_id", "title").first()
    return row


def refused(attempt) -> bool:
    """True when the attempt raised one of the refusals (in its own atomic
    block, so a refused write rolls back and the test goes on)."""
    try:
        with transaction.atomic():
            attempt()
    except REFUSED:
        return True
    return False


# -- the grant table and the sharing API: a non-party learns and changes nothing -----


@pytest.mark.parametrize("who", ["globex", "initech"])
def test_a_non_owner_cannot_revoke_by_primary_key(rows, read_grant, who):
    with tenant_context(who), pytest.raises(GrantRefused):
        sharing.revoke(read_grant.pk)
    assert len(stored_grants()) == 1


def test_a_forged_grant_instance_revokes_nothing(rows, read_grant):
    forged = Grant(
        pk=read_grant.pk,
        owner_tenant="initech",
        grantee_tenant="globex",
        target_model="collaboration.Board",
        target_table="collaboration_board",
        object_pk=str(rows.attacker.pk),
        owner_key="initech",
        created_at=timezone.now(),
    )
    with tenant_context("initech"):
        with pytest.raises(REFUSED):
            sharing.revoke(forged)
    # The grantee edits its copy in memory to look like the owner.
    with tenant_context("globex"):
        mine = sharing.grants_received()[0]
        mine.owner_tenant = "globex"
        with pytest.raises(REFUSED):
            sharing.revoke(mine)
    assert len(stored_grants()) == 1
    with tenant_context("acme"):
        events = list(
            AuditEvent.objects.filter(tenant_id="acme", event="grant.revoked").values_list(
                "event", flat=True
            )
        )
    assert events == []


# -- granting what is not yours -------------------------------------------------------------


def test_the_grantee_cannot_pass_a_granted_row_on(rows, write_grant):
    with tenant_context("globex"):
        granted = Board.objects.with_shared().get(pk=rows.shared.pk)
        for attempt in (
            lambda: sharing.grant(granted, "initech"),
            lambda: sharing.grant(Board.objects.with_shared(), "initech"),
            lambda: sharing.grant(Board.objects.with_shared().filter(pk=rows.shared.pk), "initech"),
        ):
            assert refused(attempt)
    assert [g[1] for g in stored_grants()] == ["globex"]
    with tenant_context("initech"):
        assert titles(Board.objects.with_shared()) == ["initech-own"]


def test_the_owner_cannot_grant_a_queryset_mixing_tenants(rows):
    """Each is refused, or (PostgreSQL: row-level security hides the other
    tenants' rows from a plain manager) grants acme's own rows only."""
    with tenant_context("acme"):
        for queryset in (
            lambda: Board.objects.unscoped(reason="test: red team"),
            lambda: Board.all_tenants.all(),
            lambda: Board.all_tenants.filter(pk=rows.attacker.pk),
            lambda: Board.objects.for_tenant("initech"),
            lambda: Board.objects.all().union(Board.all_tenants.filter(pk=rows.attacker.pk)),
            lambda: Board.all_tenants.filter(pk__in=[rows.secret.pk, rows.own.pk]),
            lambda: [rows.shared, rows.attacker],
        ):
            try:
                with transaction.atomic():
                    sharing.grant(queryset(), "globex")
            except REFUSED:
                pass
    acme_rows = {str(rows.shared.pk), str(rows.secret.pk)}
    assert all(g[0] == "acme" and g[2] in acme_rows for g in stored_grants())
    with tenant_context("globex"):
        assert "initech-own" not in titles(Board.objects.with_shared())


def test_the_owner_cannot_grant_an_instance_whose_key_names_another_tenants_row(rows):
    with tenant_context("acme"):
        board = Board.objects.get(pk=rows.shared.pk)
        board.pk = rows.attacker.pk
        assert refused(lambda: sharing.grant(board, "globex"))
        board = Board.objects.get(pk=rows.shared.pk)
        board.id = rows.own.pk
        assert refused(lambda: sharing.grant(board, "initech"))
    assert stored_grants() == []


def test_tenantrys_own_rows_cannot_be_granted(rows, read_grant):
    with tenant_context("acme"):
        event = AuditEvent.objects.filter(tenant_id="acme").first()
        assert event is not None
        assert refused(lambda: sharing.grant(event, "globex"))
        assert refused(lambda: sharing.grant(read_grant, "initech"))
        assert refused(lambda: sharing.grant(AuditEvent.objects.filter(tenant_id="acme"), "globex"))
    assert len(stored_grants()) == 1


def test_a_proxy_of_another_tenants_row_cannot_be_granted(tenants):
    with tenant_context("initech"):
        theirs = graph.Place.objects.create(name="initech-place")
    with tenant_context("acme"):
        with rls_bypass(reason="test: another tenant's row in hand"):
            proxy = graph.SamePlace.objects.unscoped(reason="test: red team").get(pk=theirs.pk)
            plain = graph.PlainPlace.objects.get(pk=theirs.pk)
        assert refused(lambda: sharing.grant(proxy, "globex"))
        assert refused(lambda: sharing.grant(plain, "globex"))
        try:  # refused, or (row-level security) an empty queryset: no grant either way
            sharing.grant(graph.PlainPlace.objects.all(), "globex")
        except REFUSED:
            pass
    assert stored_grants() == []


def test_a_multi_table_child_cannot_be_granted(tenants):
    with tenant_context("acme"):
        shop = graph.Shop.objects.create(name="acme-shop")
        assert refused(lambda: sharing.grant(shop, "globex"))
    assert stored_grants() == []


@pytest.mark.parametrize("expires", [timedelta(0), timedelta(microseconds=-1)])
def test_an_expiry_that_is_not_in_the_future_is_refused(rows, expires):
    with tenant_context("acme"), pytest.raises(GrantRefused):
        sharing.grant(rows.shared, "globex", expires=expires)
    assert stored_grants() == []


def test_a_past_expiry_given_in_a_far_east_timezone_is_refused(rows):
    """One hour ago, written in UTC+14: its wall-clock reads 13 hours ahead."""
    far_east = dt_timezone(timedelta(hours=14))
    past = (timezone.now() - timedelta(hours=1)).astimezone(far_east)
    with tenant_context("acme"), pytest.raises(GrantRefused, match="past"):
        sharing.grant(rows.shared, "globex", expires=past)
    assert stored_grants() == []


def test_a_future_expiry_in_a_far_west_timezone_stays_live_only_until_then(rows):
    """An hour from now, written in UTC-12: stored and compared as the same
    instant (not as its wall-clock, which reads 11 hours ago)."""
    far_west = dt_timezone(timedelta(hours=-12))
    later = (timezone.now() + timedelta(hours=1)).astimezone(far_west)
    with tenant_context("acme"):
        sharing.grant(rows.shared, "globex", expires=later)
    with tenant_context("globex"):
        assert titles(Board.objects.with_shared()) == ["acme-shared", "globex-own"]


# -- reads: with_shared() opens the granted row and nothing else -----------------------------


def test_filters_combined_with_the_grant_condition_keep_its_bounds(rows, read_grant):
    with tenant_context("globex"):
        shared = Board.objects.with_shared()
        assert titles(shared.filter(title="globex-own")) == ["globex-own"]
        assert titles(shared.filter(title="acme-secret")) == []
        assert titles(shared.exclude(title="acme-shared")) == ["globex-own"]
        assert titles(shared.filter(Q(title="acme-secret") | Q(tenant_id="acme"))) == [
            "acme-shared"
        ]
        assert titles(shared.filter(~Q(tenant_id="globex"))) == ["acme-shared"]
        assert titles(shared.filter(pk__in=[rows.secret.pk, rows.attacker.pk])) == []
        assert set(shared.in_bulk([rows.shared.pk, rows.secret.pk, rows.attacker.pk])) == {
            rows.shared.pk
        }
        assert titles(Board.objects.all() | shared) == ["acme-shared", "globex-own"]
        assert titles(shared & Board.objects.filter(tenant_id="acme")) == []


def test_combinators_of_with_shared_add_no_row(rows, read_grant):
    with tenant_context("globex"):
        shared = Board.objects.with_shared().order_by()
        union = shared.union(shared.filter(tenant_id="acme"), all=True)
        assert sorted(b.title for b in union) == ["acme-shared", "acme-shared", "globex-own"]
        assert sorted(
            shared.values_list("title", flat=True).union(
                Board.objects.order_by().values_list("title", flat=True)
            )
        ) == ["acme-shared", "globex-own"]
        assert titles(shared.difference(Board.objects.order_by())) == ["acme-shared"]
        assert titles(shared.intersection(Board.all_tenants.order_by())) == [
            "acme-shared",
            "globex-own",
        ]


def test_joins_subqueries_and_aggregates_of_a_granted_row_reach_none_of_its_cards(rows, read_grant):
    with tenant_context("globex"):
        shared = Board.objects.with_shared()
        filtered = shared.annotate(
            acme_cards=FilteredRelation("card", condition=Q(card__text__startswith="acme"))
        ).values_list("acme_cards__text", flat=True)
        assert list(filtered) == [None, None]
        for cards in (Card.objects.all(), Card.objects.with_shared()):
            first = cards.filter(board=OuterRef("pk")).values("text")[:1]
            assert list(shared.annotate(t=Subquery(first)).values_list("t", flat=True)) == [
                None,
                None,
            ]
            assert list(
                shared.annotate(has=Exists(cards.filter(board=OuterRef("pk")))).values_list(
                    "has", flat=True
                )
            ) == [False, False]
        assert shared.aggregate(m=Max("card__text"), n=Count("card"))["n"] == 0
        assert shared.aggregate(m=Max("card__text"))["m"] is None
        assert list(shared.annotate(t=F("card__text")).values_list("t", flat=True)) == [None, None]
        assert set(shared.values_list("card__labels__name", flat=True)) == {None}
        assert Label.objects.with_shared().filter(card__board=rows.shared).count() == 0


def test_a_prefetch_through_with_shared_adds_no_ungranted_row(rows, read_grant):
    with tenant_context("globex"):
        boards = Board.objects.with_shared().prefetch_related(
            Prefetch("card_set", queryset=Card.objects.with_shared()),
            Prefetch("card_set__labels", queryset=Label.objects.with_shared()),
        )
        assert [list(b.card_set.all()) for b in boards] == [[], []]
        board = Board.objects.with_shared().get(pk=rows.shared.pk)
        assert list(board.card_set.with_shared()) == []
        with pytest.raises(Board.DoesNotExist):
            board.refresh_from_db()


def test_with_shared_on_a_raw_query_is_refused(rows, read_grant):
    with tenant_context("globex"):
        with pytest.raises(TenantMismatchError):
            list(Board.objects.with_shared().raw("SELECT * FROM collaboration_board"))


def test_a_with_shared_queryset_binds_when_it_runs(rows, read_grant):
    """Made (and its cache filled) by the grantee, run by the third tenant;
    pickled by the grantee, read back by the third tenant."""
    with tenant_context("globex"):
        made = Board.objects.with_shared()
        assert titles(made) == ["acme-shared", "globex-own"]
        pickled = pickle.dumps(Board.objects.with_shared().filter(tenant_id="acme"))
        query_only = Board.objects.with_shared().query
    with tenant_context("initech"):
        assert titles(made) == ["initech-own"] or titles(made.all()) == ["initech-own"]
        assert titles(made.all()) == ["initech-own"]
        assert titles(pickle.loads(pickled)) == []
        replay = Board.objects.all()
        replay.query = query_only
        assert titles(replay) == ["initech-own"]


def test_async_reads_through_with_shared_add_no_ungranted_row(rows, read_grant):
    async def reads():
        shared = Board.objects.with_shared()
        titles_seen = sorted([b.title async for b in shared])
        count = await shared.acount()
        try:
            await shared.aget(pk=rows.secret.pk)
            secret = True
        except Board.DoesNotExist:
            secret = False
        return titles_seen, count, secret

    with tenant_context("globex"):
        assert async_to_sync(reads)() == (["acme-shared", "globex-own"], 2, False)


def test_a_proxy_or_child_sees_only_granted_rows(tenants):
    with tenant_context("acme"):
        open_place = graph.Place.objects.create(name="acme-open")
        secret_shop = graph.Shop.objects.create(name="acme-secret-shop")
        graph.Outlet.objects.create(name="acme-secret-outlet")
        sharing.grant(open_place, "globex")
    with tenant_context("globex"):
        assert sorted(p.name for p in graph.Place.objects.with_shared()) == ["acme-open"]
        assert sorted(p.name for p in graph.SamePlace.objects.with_shared()) == ["acme-open"]
        # A child keeps its tenant column on the parent: nothing to add, said so.
        for child in (graph.Shop, graph.Outlet):
            with pytest.raises(ValueError, match="parent table"):
                child.objects.with_shared()
        assert not graph.Place.objects.with_shared().filter(pk=secret_shop.pk).exists()
        assert list(graph.Shop.objects.all()) == []


def test_a_generic_relation_of_a_granted_row_reaches_none_of_the_owners_rows(tenants):
    with tenant_context("acme"):
        place = graph.Place.objects.create(name="acme-place")
        mark = graph.Bookmark.objects.create(note="acme-mark", target=place)
        sharing.grant(place, "globex")
    with tenant_context("globex"):
        granted = graph.Place.objects.with_shared().get(pk=place.pk)
        assert list(granted.bookmarks.all()) == []
        prefetched = graph.Place.objects.with_shared().prefetch_related("bookmarks")
        assert [list(p.bookmarks.all()) for p in prefetched] == [[]]
        assert list(
            graph.Place.objects.with_shared().values_list("bookmarks__note", flat=True)
        ) == [None]
        granted.bookmarks.clear()
        assert refused(lambda: granted.bookmarks.create(note="globex-mark"))
    with tenant_context("acme"):
        assert list(graph.Bookmark.objects.values_list("pk", flat=True)) == [mark.pk]


# -- writes through a read grant --------------------------------------------------------------


def test_a_read_grant_changes_no_many_to_many_link_of_the_granted_row(rows):
    with tenant_context("acme"):
        Card.objects.get(pk=rows.shared_card.pk).labels.add(rows.label)
        sharing.grant(rows.shared_card, "globex")
    with tenant_context("globex"):
        mine = Label.objects.create(name="globex-label")
        card = Card.objects.with_shared().get(pk=rows.shared_card.pk)
        attempts = [
            lambda: card.labels.add(mine),
            lambda: card.labels.remove(rows.label.pk),
            lambda: card.labels.set([mine]),
            lambda: card.labels.set([]),
            lambda: card.labels.clear(),
            lambda: card.labels.through.objects.filter(card_id=card.pk).delete(),
            lambda: card.labels.through.objects.filter(card_id=card.pk).update(label_id=mine.pk),
            lambda: async_to_sync(card.labels.aclear)(),
        ]
        for attempt in attempts:
            try:
                with transaction.atomic():
                    attempt()
            except REFUSED:
                pass
    with rls_bypass(reason="test: links as stored"):
        links = sorted(Card.labels.through.objects.values_list("card_id", "label_id"))
    assert links == [(rows.shared_card.pk, rows.label.pk)]


def test_a_read_grant_of_a_label_drops_none_of_the_owners_links(rows):
    with tenant_context("acme"):
        Card.objects.get(pk=rows.secret_card.pk).labels.add(rows.label)
        sharing.grant(rows.label, "globex")
    with tenant_context("globex"):
        mine = Card.objects.create(text="globex-card")
        label = Label.objects.with_shared().get(pk=rows.label.pk)
        for attempt in (
            lambda: label.card_set.clear(),
            lambda: label.card_set.remove(rows.secret_card.pk),
            lambda: label.card_set.set([mine]),
            lambda: label.card_set.add(mine),
        ):
            try:
                with transaction.atomic():
                    attempt()
            except REFUSED:
                pass
    with rls_bypass(reason="test: links as stored"):
        links = sorted(Card.labels.through.objects.values_list("card_id", "label_id"))
    assert links == [(rows.secret_card.pk, rows.label.pk)]


def test_a_read_grant_lets_no_related_manager_write(rows, read_grant):
    with tenant_context("globex"):
        board = Board.objects.with_shared().get(pk=rows.shared.pk)
        mine = Card.objects.create(text="globex-card")
        for attempt in (
            lambda: board.card_set.create(text="globex-on-acme"),
            lambda: board.card_set.add(mine),
            lambda: board.card_set.set([mine]),
            lambda: async_to_sync(board.card_set.acreate)(text="globex-on-acme"),
        ):
            assert refused(attempt)
        board.card_set.clear()
        board.card_set.all().delete()
        board.card_set.update(text="stolen")
    with tenant_context("acme"):
        assert sorted(Card.objects.values_list("text", flat=True)) == [
            "acme-secret-card",
            "acme-shared-card",
        ]
        assert Card.objects.get(pk=rows.shared_card.pk).board_id == rows.shared.pk
    with tenant_context("globex"):
        assert Card.objects.get().board_id is None


def test_a_granted_row_copied_as_a_new_row_stays_out_of_the_owners_tenant(rows, read_grant):
    with tenant_context("globex"):
        board = Board.objects.with_shared().get(pk=rows.shared.pk)
        board.pk = None
        board.id = None
        board.title = "forged"
        assert refused(board.save)
        copy = Board.objects.with_shared().get(pk=rows.shared.pk)
        copy.pk = copy.id = None
        assert refused(lambda: Board.objects.bulk_create([copy]))
    with tenant_context("acme"):
        assert titles(Board.objects.all()) == ["acme-secret", "acme-shared"]


@pytest.mark.parametrize("grant", ["read", "write", None])
def test_an_upsert_rewrites_no_granted_row(rows, grant):
    if grant:
        with tenant_context("acme"):
            sharing.grant(rows.shared, "globex", write=grant == "write")
    with tenant_context("globex"):
        for tenant in ("acme", None):
            for manager in (Board.objects, Board.all_tenants, Board.objects.with_shared()):
                forged = Board(pk=rows.shared.pk, title="stolen")
                if tenant:
                    forged.tenant_id = tenant

                def upsert(m=manager, forged=forged):
                    m.bulk_create(
                        [forged],
                        update_conflicts=True,
                        unique_fields=["id"],
                        update_fields=["title"],
                    )

                try:
                    with transaction.atomic():
                        upsert()
                except (*REFUSED, IntegrityError):
                    pass
    assert stored_board(rows.shared.pk) == ("acme", "acme-shared")


def test_a_read_grant_lets_no_get_or_create_or_update_or_create_write(rows, read_grant):
    with tenant_context("globex"):
        for attempt in (
            lambda: Board.objects.update_or_create(pk=rows.shared.pk, defaults={"title": "x"}),
            lambda: Board.objects.with_shared().update_or_create(
                title="acme-shared", defaults={"title": "stolen"}
            ),
            lambda: Board.objects.with_shared().update_or_create(
                tenant_id="acme", title="acme-shared", defaults={"title": "stolen"}
            ),
            lambda: Board.objects.with_shared().get_or_create(
                pk=rows.secret.pk, defaults={"title": "x"}
            ),
            lambda: async_to_sync(Board.objects.with_shared().abulk_update)(
                [Board(pk=rows.shared.pk, tenant_id="acme", title="stolen")], ["title"]
            ),
        ):
            try:
                with transaction.atomic():
                    attempt()
            except (*REFUSED, IntegrityError):
                pass
    assert stored_board(rows.shared.pk) == ("acme", "acme-shared")
    assert stored_board(rows.secret.pk) == ("acme", "acme-secret")


def test_a_write_grant_of_one_row_writes_no_row_granted_only_for_reading(rows):
    with tenant_context("acme"):
        sharing.grant(rows.shared, "globex", write=True)
        sharing.grant(rows.secret, "globex")
    with tenant_context("globex"):
        board = Board.objects.with_shared().get(pk=rows.shared.pk)
        board.pk = rows.secret.pk
        board.title = "stolen"
        assert refused(board.save)
        board = Board.objects.with_shared().get(pk=rows.shared.pk)
        board.id = rows.secret.pk
        board.title = "stolen"
        assert refused(lambda: board.save(update_fields=["title"]))
        assert refused(lambda: async_to_sync(board.asave)())
        try:
            with transaction.atomic():
                Board.objects.with_shared().filter(pk__in=[rows.shared.pk, rows.secret.pk]).update(
                    title="stolen"
                )
        except REFUSED:
            pass
    assert stored_board(rows.secret.pk) == ("acme", "acme-secret")


# -- a write grant never moves the row ---------------------------------------------------------


def test_a_write_grant_moves_no_row_through_an_expression(rows, write_grant):
    with tenant_context("globex"):
        shared = Board.objects.with_shared().filter(pk=rows.shared.pk)
        for value in (
            Value("globex"),
            Value("globex", output_field=CharField()),
            Case(When(pk=rows.shared.pk, then=Value("globex")), default=F("tenant_id")),
            F("title"),
            Lower(Value("GLOBEX")),
            Subquery(Board.objects.filter(pk=rows.own.pk).values("tenant_id")[:1]),
        ):
            assert refused(lambda v=value: shared.update(tenant_id=v))
        for attempt in (
            lambda: Board.objects.with_shared().update_or_create(
                pk=rows.shared.pk, defaults={"tenant_id": "globex"}
            ),
        ):
            assert refused(attempt)
    assert stored_board(rows.shared.pk)[0] == "acme"


def test_a_write_grant_of_a_registry_keyed_row_moves_it_by_no_form(tenants):
    from tests.app.models import Note

    with tenant_context("acme"):
        shared = Note.objects.create(text="acme-note")
        sharing.grant(shared, "globex", write=True)
    globex = tenants["globex"]
    with tenant_context("globex"):
        notes = Note.objects.with_shared().filter(pk=shared.pk)
        for values in (
            {"org": globex},
            {"org_id": globex.pk},
            {"org": globex.pk},
            {"org_id": F("org_id")},
        ):
            assert refused(lambda v=values: notes.update(**v))
        note = notes.get()
        note.org_id = globex.pk
        assert refused(lambda: note.save(update_fields=["org"]))
    with rls_bypass(reason="test: as stored"):
        assert Note.all_tenants.get(pk=shared.pk).org_id == tenants["acme"].pk


def test_a_write_grant_deletes_nothing_through_cascades_or_links(rows):
    with tenant_context("acme"):
        Card.objects.get(pk=rows.shared_card.pk).labels.add(rows.label)
        sharing.grant(rows.shared, "globex", write=True)
        sharing.grant(rows.shared_card, "globex", write=True)
    with tenant_context("globex"):
        board = Board.objects.with_shared().get(pk=rows.shared.pk)
        card = Card.objects.with_shared().get(pk=rows.shared_card.pk)
        for attempt in (
            board.delete,
            card.delete,
            lambda: Card.objects.with_shared().filter(board_id=rows.shared.pk).delete(),
            lambda: async_to_sync(Card.objects.with_shared().adelete)(),
        ):
            assert refused(attempt)
    with tenant_context("acme"):
        assert Card.objects.filter(pk=rows.shared_card.pk).exists()
        assert Board.objects.filter(pk=rows.shared.pk).exists()


# -- the third tenant: nothing of a grant to another ----------------------------------------


def test_the_third_tenant_writes_and_references_nothing_granted_to_another(rows, write_grant):
    with tenant_context("acme"):
        sharing.grant(rows.label, "globex", write=True)
    with tenant_context("initech"):
        assert Board.objects.with_shared().filter(pk=rows.shared.pk).count() == 0
        for attempt in (
            lambda: Card.objects.create(text="i", board_id=rows.shared.pk),
            lambda: Card.objects.create(text="i").labels.add(rows.label.pk),
            lambda: Board.objects.with_shared().update_or_create(
                pk=rows.shared.pk, defaults={"title": "stolen"}
            ),
        ):
            try:
                with transaction.atomic():
                    attempt()
            except (*REFUSED, IntegrityError):
                pass
    assert stored_board(rows.shared.pk) == ("acme", "acme-shared")
    with rls_bypass(reason="test: as stored"):
        assert not Card.all_tenants.filter(tenant_id="initech", board_id=rows.shared.pk).exists()
        assert not Card.labels.through.objects.filter(label_id=rows.label.pk).exists()


# -- PostgreSQL: raw SQL through the grant policies -----------------------------------------


@pytest.fixture(params=["session", "transaction"])
def mode(request, settings):
    """Both ways the connection carries the tenant (docs/postgresql.md)."""
    value = {"session": True, "transaction": "transaction"}[request.param]
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": value}
    return request.param


def sql(statement: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else [(cursor.rowcount,)]


def sql_refused(statement: str, params=()) -> list[tuple] | None:
    """The statement's rows, or None when the database or tenantry refused it."""
    try:
        with transaction.atomic():
            return sql(statement, params)
    except (TenantError, DatabaseError):
        return None


@pytest.mark.postgres
@pytest.mark.parametrize("write", [False, True])
def test_pg_an_upsert_neither_writes_through_a_read_grant_nor_moves_through_a_write_grant(
    mode, rows, write
):
    with tenant_context("acme"):
        sharing.grant(rows.shared, "globex", write=write)
    shared, secret = rows.shared.pk, rows.secret.pk
    with tenant_context("globex"):
        moves = [
            "INSERT INTO collaboration_board (id, tenant_id, title) VALUES (%s, 'globex', 'x')"
            " ON CONFLICT (id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id",
            "INSERT INTO collaboration_board (id, tenant_id, title) VALUES (%s, 'globex', 'x')"
            " ON CONFLICT (id) DO UPDATE SET tenant_id = 'globex', title = 'moved'",
            "INSERT INTO collaboration_board (id, tenant_id, title) VALUES (%s, 'acme', 'x')"
            " ON CONFLICT (id) DO UPDATE SET tenant_id = 'initech'",
        ]
        for statement in moves:
            assert sql_refused(statement, [shared]) in (None, [(0,)])
        title_only = (
            "INSERT INTO collaboration_board (id, tenant_id, title) VALUES (%s, 'globex', 'x')"
            " ON CONFLICT (id) DO UPDATE SET title = 'upserted' RETURNING tenant_id"
        )
        assert sql_refused(title_only, [secret]) in (None, [])
        result = sql_refused(title_only, [shared])
        if not write:
            assert result in (None, [])
    assert stored_board(secret) == ("acme", "acme-secret")
    assert stored_board(shared)[0] == "acme"
    if not write:
        assert stored_board(shared) == ("acme", "acme-shared")


@pytest.mark.postgres
def test_pg_returning_ctes_and_joins_write_no_ungranted_row(mode, rows):
    with tenant_context("acme"):
        sharing.grant(rows.shared, "globex", write=True)
    secret = rows.secret.pk
    with tenant_context("globex"):
        for statement, params in (
            ("UPDATE collaboration_board SET title = 'x' WHERE id = %s RETURNING title", [secret]),
            (
                "WITH u AS (UPDATE collaboration_board SET title = 'x' WHERE tenant_id = 'acme'"
                " AND id <> %s RETURNING id, title) SELECT id FROM u",
                [rows.shared.pk],
            ),
            (
                "WITH d AS (DELETE FROM collaboration_board WHERE tenant_id = 'acme' RETURNING id)"
                " SELECT id FROM d",
                [],
            ),
            (
                "DELETE FROM collaboration_card c USING collaboration_board b"
                " WHERE c.board_id = b.id RETURNING c.id",
                [],
            ),
            (
                "UPDATE collaboration_card c SET text = b.title FROM collaboration_board b"
                " WHERE c.board_id = b.id RETURNING c.id",
                [],
            ),
            (
                "UPDATE collaboration_board b SET title = c.text FROM collaboration_card c"
                " WHERE c.board_id = b.id RETURNING b.id",
                [],
            ),
            ("SELECT text FROM collaboration_card WHERE board_id = %s", [rows.shared.pk]),
        ):
            assert sql_refused(statement, params) in (None, []), statement
        # The granted row itself: updated, never deleted.
        assert sql_refused(
            "WITH d AS (DELETE FROM collaboration_board WHERE id = %s RETURNING id)"
            " SELECT id FROM d",
            [rows.shared.pk],
        ) in (None, [])
    with rls_bypass(reason="test: as stored"):
        assert sorted(Board.all_tenants.values_list("title", flat=True)) == [
            "acme-secret",
            "acme-shared",
            "globex-own",
            "initech-own",
        ]
        assert Card.all_tenants.count() == 2


@pytest.mark.postgres
def test_pg_a_write_grant_re_keys_no_row(mode, rows, write_grant):
    with tenant_context("globex"):
        for statement in (
            "UPDATE collaboration_board SET id = id + 100000 WHERE id = %s",
            "UPDATE collaboration_board SET id = -id WHERE id = %s RETURNING id",
        ):
            assert sql_refused(statement, [rows.shared.pk]) in (None, [(0,)], [])
    assert stored_board(rows.shared.pk) == ("acme", "acme-shared")


@pytest.mark.postgres
def test_pg_every_table_with_a_write_policy_keeps_its_tenant_column(rows):
    """Tables upgraded by tenantry's 0003 (walled before grants) too: a
    write grant's policy without the trigger would let raw SQL move the row."""
    unguarded = sql(
        "SELECT c.relname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid"
        " WHERE p.polname = 'tenantry_shared_write' AND NOT EXISTS ("
        "  SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal"
        "   AND t.tgenabled <> 'D')"
    )
    assert unguarded == []


@pytest.mark.postgres
def test_pg_a_write_grant_moves_no_row_of_a_table_walled_before_grants(tenants):
    from tests.app.models import RlsFolder

    with tenant_context("acme"):
        folder = RlsFolder.objects.create(name="acme-folder")
        sharing.grant(folder, "globex", write=True)
    with tenant_context("globex"):
        assert sql("SELECT name FROM app_rlsfolder WHERE id = %s", [folder.pk]) == [
            ("acme-folder",)
        ]
        assert sql_refused(
            "UPDATE app_rlsfolder SET tenant_id = 'globex' WHERE id = %s", [folder.pk]
        ) in (None, [(0,)])
    with rls_bypass(reason="test: as stored"):
        assert RlsFolder.all_tenants.get(pk=folder.pk).tenant_id == "acme"


@pytest.mark.postgres
def test_pg_raw_sql_inside_an_orm_query_reads_no_ungranted_row(rows, read_grant):
    from django.db.models.expressions import RawSQL

    with tenant_context("globex"):
        peek = RawSQL("SELECT title FROM collaboration_board WHERE id = %s", [rows.secret.pk])
        assert list(
            Board.objects.with_shared().annotate(peek=peek).values_list("peek", flat=True)
        ) == [None, None]
        assert list(
            Board.objects.with_shared().extra(
                where=["id IN (SELECT id FROM collaboration_board WHERE tenant_id = 'acme')"]
            )
        ) == [Board.objects.with_shared().get(pk=rows.shared.pk)]


@pytest.mark.postgres
def test_pg_the_grant_table_shows_a_party_only_its_own_grants(mode, rows, read_grant):
    with tenant_context("acme"):
        sharing.grant(rows.secret, "initech")
    with tenant_context("globex"):
        assert sql("SELECT grantee_tenant, object_pk FROM tenantry_grant") == [
            ("globex", str(rows.shared.pk))
        ]
    with tenant_context("initech"):
        assert sql("SELECT grantee_tenant FROM tenantry_grant") == [("initech",)]
        assert sql("SELECT title FROM collaboration_board ORDER BY title") == [
            ("acme-secret",),
            ("initech-own",),
        ]


@pytest.mark.postgres
def test_pg_the_grant_function_called_directly_answers_only_for_the_caller(rows, read_grant):
    call = "SELECT tenantry_granted('collaboration_board', %s, 'acme', %s)"
    with tenant_context("initech"):
        assert sql(call, [str(rows.shared.pk), False]) == [(False,)]
    with tenant_context("globex"):
        assert sql(call, [str(rows.shared.pk), False]) == [(True,)]
        assert sql(call, [str(rows.shared.pk), True]) == [(False,)]  # a read grant
        assert sql(call, [str(rows.secret.pk), False]) == [(False,)]


@pytest.mark.postgres
def test_pg_the_grant_table_refuses_raw_saves_and_deserialized_grants(rows, read_grant):
    from django.core import serializers

    forged = Grant(
        owner_tenant="acme",
        grantee_tenant="globex",
        target_model="collaboration.Board",
        target_table="collaboration_board",
        object_pk=str(rows.secret.pk),
        owner_key="acme",
        can_write=True,
        created_at=timezone.now(),
    )
    data = serializers.serialize("json", [forged])
    with tenant_context("globex"):
        mine = sharing.grants_received()[0]
        mine.can_write = True

        def deserialize():
            for obj in serializers.deserialize("json", data):
                obj.save()

        for attempt in (lambda: forged.save_base(raw=True), mine.save_base, deserialize):
            assert refused(attempt)
    with tenant_context("initech"):  # refused by the wall since grants-fix (RLS hid it before)
        assert refused(lambda: Grant.objects.filter(pk=read_grant.pk)._raw_delete(Grant.objects.db))
    assert stored_grants() == [
        ("acme", "globex", str(rows.shared.pk), False, "collaboration_board")
    ]


# -- more siblings: expiry, revoke, other models' keys, self-grants -------------------------


def _expire_every_grant() -> None:
    past = timezone.now() - timedelta(minutes=1)
    with rls_bypass(reason="test: time passes"), connection.cursor() as cursor:
        cursor.execute("UPDATE tenantry_grant SET expires_at = %s", [past])


def test_an_expired_write_grant_writes_and_references_nothing(rows):
    with tenant_context("acme"):
        sharing.grant(rows.shared, "globex", write=True, expires=timedelta(hours=1))
        sharing.grant(rows.label, "globex", write=True, expires=timedelta(hours=1))
    with tenant_context("globex"):
        board = Board.objects.with_shared().get(pk=rows.shared.pk)
    _expire_every_grant()
    with tenant_context("globex"):
        board.title = "late"
        for attempt in (
            board.save,
            lambda: board.save(update_fields=["title"]),
            lambda: Card.objects.create(text="g", board_id=rows.shared.pk),
            lambda: Card.objects.create(text="g").labels.add(rows.label.pk),
        ):
            assert refused(attempt)
        assert Board.objects.with_shared().filter(pk=rows.shared.pk).update(title="late") == 0
    assert stored_board(rows.shared.pk) == ("acme", "acme-shared")


def test_a_revoked_write_grant_admits_no_new_reference(rows, write_grant):
    with tenant_context("globex"):
        Card.objects.create(text="made-while-granted", board=rows.shared)
    with tenant_context("acme"):
        sharing.revoke(write_grant)
    with tenant_context("globex"):
        for attempt in (
            lambda: Card.objects.create(text="g", board_id=rows.shared.pk),
            lambda: Card.objects.update(board=rows.shared.pk),
            lambda: Card.objects.bulk_create([Card(text="g", board_id=rows.shared.pk)]),
        ):
            assert refused(attempt)
        assert Card.objects.filter(board_id=rows.shared.pk).count() == 1


def test_a_grant_of_another_model_with_the_same_key_opens_no_row(rows):
    """A label whose key equals acme's secret board's: granting the label
    grants no board (the grant names its table)."""
    with tenant_context("acme"):
        twin = Label.objects.create(pk=rows.secret.pk + 1000, name="acme-twin")
        Board.objects.create(pk=twin.pk, title="acme-twin-board")
        sharing.grant(twin, "globex", write=True)
    with tenant_context("globex"):
        assert titles(Board.objects.with_shared()) == ["globex-own"]
        assert refused(lambda: Card.objects.create(text="g", board_id=twin.pk))
        assert Board.objects.with_shared().filter(pk=twin.pk).update(title="stolen") == 0
        from django.contrib.contenttypes.models import ContentType

        from tests.collaboration.models import Pin

        board_type = ContentType.objects.get_for_model(Board)
        assert refused(lambda: Pin.objects.create(content_type=board_type, object_id=str(twin.pk)))
        assert [label.name for label in Label.objects.with_shared()] == ["acme-twin"]


def test_a_write_grant_of_a_card_points_it_at_no_ungranted_row_of_the_owner(rows):
    with tenant_context("acme"):
        sharing.grant(rows.shared_card, "globex", write=True)
    with tenant_context("globex"):
        cards = Card.objects.with_shared().filter(pk=rows.shared_card.pk)
        card = cards.get()
        for attempt in (
            lambda: cards.update(board=rows.secret.pk),
            lambda: cards.update(board_id=rows.secret.pk),
            lambda: card.labels.add(rows.secret_label.pk),
            lambda: card.labels.set([rows.secret_label.pk]),
        ):
            assert refused(attempt)
    with tenant_context("acme"):
        card = Card.objects.get(pk=rows.shared_card.pk)
        assert card.board_id == rows.shared.pk
        assert list(card.labels.all()) == []


def test_a_tenant_cannot_grant_to_itself_in_any_form(rows, tenants):
    from tenantry import TenantInfo

    with tenant_context("acme"):
        for to in (tenants["acme"], TenantInfo("acme"), "acme", "ACME", " acme"):
            assert refused(lambda t=to: sharing.grant(rows.shared, t))
        for kwargs in ({"write": 1}, {"write": None}, {"expires": timezone.now().date()}):
            assert refused(lambda k=kwargs: sharing.grant(rows.shared, "globex", **k))
    assert stored_grants() == []


def test_a_with_shared_iterator_and_an_unbound_query_fail_closed(rows, read_grant):
    from tenantry import TenantNotSetError

    with tenant_context("globex"):
        rows_iter = Board.objects.with_shared().iterator(chunk_size=1)
        assert next(rows_iter).title in ("acme-shared", "globex-own")
    with tenant_context("initech"):
        with pytest.raises(TenantMismatchError):
            list(rows_iter)
    with tenant_context(None, must_exist=False):
        with pytest.raises(TenantNotSetError):
            list(Board.objects.with_shared())


def test_a_write_grant_inserts_no_row_of_the_owner(rows, write_grant):
    with tenant_context("globex"):
        board = Board.objects.with_shared().get(pk=rows.shared.pk)
        board.title = "inserted"
        for attempt in (
            lambda: board.save(force_insert=True),
            lambda: Board.objects.create(tenant_id="acme", title="inserted"),
            lambda: Board.objects.with_shared().create(tenant_id="acme", title="inserted"),
            lambda: Board.objects.with_shared().get_or_create(
                title="inserted", defaults={"tenant_id": "acme"}
            ),
            lambda: async_to_sync(Board.objects.with_shared().acreate)(
                tenant_id="acme", title="inserted"
            ),
        ):
            try:
                with transaction.atomic():
                    attempt()
            except (*REFUSED, IntegrityError):
                pass
    with tenant_context("acme"):
        assert titles(Board.objects.all()) == ["acme-secret", "acme-shared"]


def test_a_read_grant_lets_no_generic_relation_write(tenants):
    with tenant_context("acme"):
        place = graph.Place.objects.create(name="acme-place")
        sharing.grant(place, "globex")
    with tenant_context("globex"):
        mine = graph.Bookmark.objects.create(note="globex-mark")
        granted = graph.Place.objects.with_shared().get(pk=place.pk)
        for attempt in (
            lambda: granted.bookmarks.add(mine),
            lambda: granted.bookmarks.set([mine]),
            lambda: graph.Bookmark.objects.filter(pk=mine.pk).update(
                object_id=place.pk,
                content_type=mine.content_type or _content_type(graph.Place),
            ),
        ):
            assert refused(attempt)
        assert graph.Bookmark.objects.get(pk=mine.pk).object_id is None


def _content_type(model):
    from django.contrib.contenttypes.models import ContentType

    return ContentType.objects.get_for_model(model)


def test_the_granted_rows_neighbours_are_not_written_through_a_join(rows, write_grant):
    with tenant_context("globex"):
        assert Card.objects.with_shared().filter(board__title="acme-shared").update(text="x") == 0
        assert Card.objects.with_shared().filter(board=rows.shared).update(text="x") == 0
        assert Label.objects.with_shared().filter(card__board=rows.shared).update(name="x") == 0
        try:
            with transaction.atomic():
                Card.objects.with_shared().filter(board=rows.shared).delete()
        except REFUSED:
            pass
    with tenant_context("acme"):
        assert sorted(Card.objects.values_list("text", flat=True)) == [
            "acme-secret-card",
            "acme-shared-card",
        ]


def test_async_upserts_and_bulk_writes_rewrite_no_granted_row(rows, write_grant):
    async def attempts():
        outcomes = []
        for call in (
            lambda: Board.objects.with_shared().abulk_create(
                [Board(pk=rows.secret.pk, title="stolen")],
                update_conflicts=True,
                unique_fields=["id"],
                update_fields=["title"],
            ),
            lambda: Board.objects.with_shared().abulk_update(
                [Board(pk=rows.secret.pk, tenant_id="acme", title="stolen")], ["title"]
            ),
            lambda: Board.objects.with_shared().filter(pk=rows.secret.pk).aupdate(title="stolen"),
            lambda: Board.objects.with_shared().aupdate_or_create(
                pk=rows.shared.pk, defaults={"tenant_id": "globex"}
            ),
        ):
            try:
                outcomes.append(await call())
            except (*REFUSED, IntegrityError):
                outcomes.append("refused")
        return outcomes

    with tenant_context("globex"):
        async_to_sync(attempts)()
    assert stored_board(rows.secret.pk) == ("acme", "acme-secret")
    assert stored_board(rows.shared.pk)[0] == "acme"


def test_a_to_field_reference_needs_a_write_grant_of_the_row_it_names(tenants):
    """A code equal to a granted row's key names another row: refused."""
    from tests.reach import models as reach

    with tenant_context("acme"):
        granted = reach.Folder.objects.create(name="acme-granted", code="granted-code")
        secret = reach.Folder.objects.create(name="acme-secret", code=str(granted.pk))
        sharing.grant(granted, "globex", write=True)
        shared_item = reach.Item.objects.create(name="acme-granted-item", ref="granted-ref")
        reach.Item.objects.create(name="acme-secret-item", ref=str(shared_item.pk))
        sharing.grant(shared_item, "globex", write=True)
    with tenant_context("globex"):
        for attempt in (
            lambda: reach.Item.objects.create(name="g", folder_code_id=str(granted.pk)),
            lambda: reach.Item.objects.create(name="g", folder_code=secret),
            lambda: reach.Item.objects.create(name="g", folder_id=secret.pk),
            lambda: reach.Item.objects.create(name="g", parent_id=str(shared_item.pk)),
        ):
            assert refused(attempt)
    with rls_bypass(reason="test: as stored"):
        assert not reach.Item.all_tenants.filter(tenant_id="globex").exists()


def test_granting_a_key_of_another_tenant_tells_nothing_of_that_row(rows):
    """An existing row of another tenant and a key no row has are refused
    with the same message (no existence oracle)."""
    messages = []
    with tenant_context("globex"):
        for pk in (rows.secret.pk, rows.secret.pk + 100000):
            board = Board(pk=pk, title="x")
            board._state.adding = False
            with pytest.raises(GrantRefused) as refusal:
                sharing.grant(board, "initech")
            messages.append(str(refusal.value).replace(str(pk), "<pk>"))
            assert sharing.grant(Board.objects.filter(pk=pk), "initech") == []
    assert messages[0] == messages[1]
    assert stored_grants() == []


def test_another_spelling_of_an_ungranted_key_is_no_reference(rows, write_grant):
    """A write grant of one row: the other row's key written with spaces,
    zeros, a sign or a fraction is refused like the plain key."""
    from django.contrib.contenttypes.models import ContentType

    from tests.collaboration.models import Pin

    with tenant_context("acme"):
        sharing.grant(rows.label, "globex", write=True)
    board_type = ContentType.objects.get_for_model(Board)
    secret = rows.secret.pk
    with tenant_context("globex"):
        for spelled in (f" {secret}", f"0{secret}", f"+{secret}", f"{secret} ", f"{secret}.0"):
            assert refused(
                lambda s=spelled: Pin.objects.create(content_type=board_type, object_id=s)
            )
        assert refused(lambda: Card.objects.create(text="g", board_id=f"0{secret}"))
        assert refused(lambda: Card.objects.create(text="g").labels.add(f"0{rows.secret_label.pk}"))
    with rls_bypass(reason="test: as stored"):
        assert not Pin.all_tenants.filter(tenant_id="globex").exists()
        assert not Card.all_tenants.filter(tenant_id="globex").exists()
