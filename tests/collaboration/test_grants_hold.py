"""What a grant holds to over time: a grantee that is deactivated or
suspended reads nothing through its grants while it is
(docs/collaboration.md#a-grantee-deactivated-or-suspended); a deleted row
takes its grants with it, by every ORM deletion path
(docs/collaboration.md#deleting-a-granted-row); a grant read from a job and
from async querysets (docs/collaboration.md#reading-granted-rows)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from celery import shared_task
from django.db import connection, transaction

from tenantry import (
    GrantRefused,
    TenantMismatchError,
    TenantSuspended,
    delete_tenant,
    get_current_tenant,
    sharing,
    suspension,
    tenant_context,
)
from tenantry.celery import HEADER
from tenantry.db import rls_bypass
from tenantry.models import Grant
from tests.app.models import Document, Summary
from tests.collaboration.conftest import titles
from tests.collaboration.models import Board, Card, Label, Pin
from tests.lifecycle.models import Account

pytestmark = pytest.mark.django_db

ACCOUNTS = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "lifecycle.Account",  # a registry model with is_active
}


@pytest.fixture
def accounts(settings):
    config = dict(ACCOUNTS)
    config.update({k: v for k, v in settings.DJUST_CONFIG.items() if k == "TENANT_RLS"})
    settings.DJUST_CONFIG = config
    made = {
        slug: Account.objects.create(slug=slug, name=slug.title())
        for slug in ("acme", "globex", "initech")
    }
    with tenant_context("acme"):
        shared = Board.objects.create(title="acme-shared")
        Board.objects.create(title="acme-secret")
        label = Label.objects.create(name="acme-label")
    with tenant_context("globex"):
        Board.objects.create(title="globex-own")
    return made, shared, label


def _set_active(account: Account, active: bool) -> None:
    account.is_active = active
    account.save()  # the registry forgets its cached answer (tenantry.registry)


# -- a grantee deactivated or suspended ------------------------------------------


def test_granting_to_an_inactive_tenant_is_refused(accounts):
    made, shared, _ = accounts
    _set_active(made["globex"], False)
    with tenant_context("acme"), pytest.raises(GrantRefused, match="unknown or inactive"):
        sharing.grant(shared, "globex")
    assert _all_grants() == []


def test_granting_to_a_suspended_tenant_is_refused(accounts):
    _, shared, _ = accounts
    suspension.suspend("globex")
    with tenant_context("acme"), pytest.raises(GrantRefused, match="suspended"):
        sharing.grant(shared, "globex", write=True)
    assert _all_grants() == []


def _reads_and_writes(shared: Board, label: Label) -> dict:
    """What globex (bound) reaches through its write grants now."""
    seen = titles(Board.objects.with_shared())
    outcome = {"seen": seen}
    try:
        with transaction.atomic():
            outcome["updated"] = (
                Board.objects.with_shared().filter(pk=shared.pk).update(title="by globex")
            )
    except TenantMismatchError:
        outcome["updated"] = "refused"
    try:
        with transaction.atomic():
            card = Card.objects.create(text="globex card", board_id=shared.pk)
            card.labels.add(label)
            Pin.objects.create(target=shared)
        outcome["reference"] = "allowed"
    except TenantMismatchError:
        outcome["reference"] = "refused"
    return outcome


@pytest.mark.parametrize("how", ["deactivated", "suspended"])
def test_an_existing_grant_admits_nothing_while_the_grantee_is_out(accounts, how):
    made, shared, label = accounts
    with tenant_context("acme"):
        sharing.grant(shared, "globex", write=True)
        sharing.grant(label, "globex", write=True)
    # Bound while it was served (a request, a job already running), then
    # taken out of service: the next query admits nothing through grants.
    with tenant_context("globex"):
        assert titles(Board.objects.with_shared()) == ["acme-shared", "globex-own"]
        if how == "deactivated":
            _set_active(made["globex"], False)
        else:
            suspension.suspend("globex")
        assert _reads_and_writes(shared, label) == {
            "seen": ["globex-own"],
            "updated": 0,
            "reference": "refused",
        }
        with pytest.raises(Board.DoesNotExist):
            Board.objects.with_shared().get(pk=shared.pk)
        granted = Board.objects.with_shared().filter(pk=shared.pk).first()
        assert granted is None
    with tenant_context("acme"):
        assert Board.objects.get(pk=shared.pk).title == "acme-shared"  # nothing written
    # Back in service: the grant (never removed) admits again.
    if how == "deactivated":
        _set_active(made["globex"], True)
    else:
        suspension.resume("globex")
    with tenant_context("globex"):
        assert _reads_and_writes(shared, label) == {
            "seen": ["acme-shared", "globex-own"],
            "updated": 1,
            "reference": "allowed",
        }
    with tenant_context("acme"):
        assert Board.objects.get(pk=shared.pk).title == "by globex"


def test_a_grantee_out_of_service_cannot_save_the_granted_row(accounts):
    _, shared, _ = accounts
    with tenant_context("acme"):
        sharing.grant(shared, "globex", write=True)
    with tenant_context("globex"):
        row = Board.objects.with_shared().get(pk=shared.pk)
        suspension.suspend("globex")
        row.title = "written while suspended"
        with pytest.raises(TenantMismatchError), transaction.atomic():
            row.save()
    with tenant_context("acme"):
        assert Board.objects.get(pk=shared.pk).title == "acme-shared"


# -- a deleted row takes its grants -----------------------------------------------


@pytest.fixture
def granted(rows):
    """acme's two boards and the shared card, each granted to globex."""
    with tenant_context("acme"):
        sharing.grant(Board.objects.all(), "globex", write=True)
        sharing.grant(rows.shared_card, "globex")
        sharing.grant(rows.shared, "initech")
    assert len(_all_grants()) == 4
    return rows


def _all_grants() -> list[Grant]:
    with rls_bypass(reason="test: the grants as stored"):
        return list(Grant.objects.all())


def _grants_on(model, pk) -> list[str]:
    with rls_bypass(reason="test: the grants as stored"):
        return _grantees(model, pk)


def _grantees(model, pk) -> list[str]:
    return sorted(
        Grant.objects.filter(target_table=model._meta.db_table, object_pk=str(pk)).values_list(
            "grantee_tenant", flat=True
        )
    )


def test_instance_delete_removes_the_rows_grants(granted):
    with tenant_context("acme"):
        Board.objects.get(pk=granted.secret.pk).delete()
    assert _grants_on(Board, granted.secret.pk) == []
    assert _grants_on(Board, granted.shared.pk) == ["globex", "initech"]
    # Its card (cascade) had no grant; the shared card keeps its own.
    assert _grants_on(Card, granted.shared_card.pk) == ["globex"]


def test_queryset_delete_and_cascade_remove_the_grants(granted):
    with tenant_context("acme"):
        deleted, _ = Board.objects.filter(title="acme-shared").delete()
    assert deleted == 2  # the board and, by cascade, its card
    assert _grants_on(Board, granted.shared.pk) == []
    assert _grants_on(Card, granted.shared_card.pk) == []  # the cascaded row's grant too
    assert _grants_on(Board, granted.secret.pk) == ["globex"]


def test_async_deletes_remove_the_grants(granted):
    with tenant_context("acme"):
        row = Board.objects.get(pk=granted.secret.pk)

        async def delete():
            await row.adelete()
            await Card.objects.filter(pk=granted.shared_card.pk).adelete()

        async_to_sync(delete)()
    assert _grants_on(Board, granted.secret.pk) == []
    assert _grants_on(Card, granted.shared_card.pk) == []
    assert _grants_on(Board, granted.shared.pk) == ["globex", "initech"]


def test_a_refused_deletion_keeps_the_grants(granted):
    """globex may not delete acme's row: the refusal rolls the grant
    removal back with it (one transaction)."""
    with tenant_context("globex"):
        row = Board.objects.with_shared().get(pk=granted.shared.pk)
        with pytest.raises(TenantMismatchError), transaction.atomic():
            row.delete()
        with pytest.raises(TenantMismatchError), transaction.atomic():
            Board.objects.with_shared().filter(pk=granted.shared.pk).delete()
    assert _grants_on(Board, granted.shared.pk) == ["globex", "initech"]


def test_a_row_that_takes_a_deleted_rows_key_is_not_granted(granted):
    """The hole the removal closes: a grant left on a deleted row's key
    would admit the owner's next row with that key (an explicit key here;
    SQLite also reuses the highest key by itself)."""
    key = granted.shared.pk
    with tenant_context("acme"):
        Board.objects.filter(pk=key).delete()
        Board.objects.create(pk=key, title="acme-new-secret")
    with tenant_context("globex"):
        assert "acme-new-secret" not in titles(Board.objects.with_shared())
    with tenant_context("initech"):
        assert titles(Board.objects.with_shared()) == ["initech-own"]


# -- a job and async querysets ------------------------------------------------------


@shared_task(name="tests.collaboration.shared_titles")
def shared_titles() -> dict:
    tenant = get_current_tenant()
    return {
        "bound": None if tenant is None else tenant.id,
        "shared": titles(Board.objects.with_shared()),
        "own": titles(Board.objects.all()),
    }


def test_a_job_bound_to_the_grantee_reads_only_its_grants(rows):
    with tenant_context("acme"):
        given = sharing.grant(rows.shared, "globex")
    # Celery's own tracer runs the task, bound from the header (docs/jobs.md).
    assert shared_titles.apply(headers={HEADER: "globex"}).get() == {
        "bound": "globex",
        "shared": ["acme-shared", "globex-own"],
        "own": ["globex-own"],
    }
    assert shared_titles.apply(headers={HEADER: "initech"}).get()["shared"] == ["initech-own"]
    with tenant_context("globex"):  # published by globex itself
        assert shared_titles.apply().get()["shared"] == ["acme-shared", "globex-own"]
    with tenant_context("acme"):
        sharing.revoke(given)
    assert shared_titles.apply(headers={HEADER: "globex"}).get()["shared"] == ["globex-own"]
    suspension.suspend("globex")
    refused = shared_titles.apply(headers={HEADER: "globex"})
    assert isinstance(refused.result, TenantSuspended)


def _refused(coroutine_function) -> None:
    """Run it in a savepoint of its own (a refused save marks the transaction)."""
    with pytest.raises(TenantMismatchError), transaction.atomic():
        async_to_sync(coroutine_function)()


def test_async_querysets_read_and_write_through_grants(rows):
    with tenant_context("acme"):
        read = sharing.grant(rows.shared, "globex")

    async def reads():
        seen = sorted([b.title async for b in Board.objects.with_shared()])
        assert seen == ["acme-shared", "globex-own"]
        assert await Board.objects.with_shared().acount() == 2
        assert await Board.objects.filter(pk=rows.shared.pk).aexists() is False
        assert await Board.objects.with_shared().filter(pk=rows.secret.pk).aexists() is False
        return await Board.objects.with_shared().aget(pk=rows.shared.pk)

    async def asave():
        row.title = "async write"
        await row.asave()

    async def aupdate():
        await Board.objects.with_shared().filter(pk=rows.shared.pk).aupdate(title="y")

    async def acreate_reference():
        await Card.objects.acreate(text="ref", board_id=rows.shared.pk)

    async def adelete():
        await row.adelete()

    with tenant_context("globex"):
        row = async_to_sync(reads)()
        for write in (asave, aupdate, acreate_reference, adelete):
            _refused(write)
    with tenant_context("acme"):
        assert Board.objects.get(pk=rows.shared.pk).title == "acme-shared"
        sharing.revoke(read)
        sharing.grant(rows.shared, "globex", write=True)
    with tenant_context("globex"):
        row = async_to_sync(reads)()
        async_to_sync(asave)()
        async_to_sync(aupdate)()
        async_to_sync(acreate_reference)()
        _refused(adelete)  # no grant deletes
        assert Card.objects.get(text="ref").board_id == rows.shared.pk
    with tenant_context("acme"):
        assert Board.objects.get(pk=rows.shared.pk).title == "y"


# -- a grantee's reference never blocks, nor is deleted by, the owner's deletion ---------


@pytest.fixture
def referenced(rows):
    """globex's card points at acme's shared board and carries acme's label
    (made through write grants); the grants are then revoked."""
    with tenant_context("acme"):
        board_grant = sharing.grant(rows.shared, "globex", write=True)
        label_grant = sharing.grant(rows.label, "globex", write=True)
    with tenant_context("globex"):
        card = Card.objects.create(text="globex-on-acme", board=rows.shared)
        card.labels.add(rows.label)
    with tenant_context("acme"):
        sharing.revoke(board_grant)
        sharing.revoke(label_grant)
    return card


def _stored_card(card) -> tuple:
    with rls_bypass(reason="test: the card as stored"):
        stored = Card.all_tenants.get(pk=card.pk)
        links = Card.labels.through.objects.filter(card_id=card.pk)
        return stored.tenant_id, stored.board_id, list(links.values_list("label_id", flat=True))


@pytest.mark.parametrize("route", ["instance", "queryset", "adelete"])
def test_the_owner_deletes_a_row_another_tenant_refers_to(rows, referenced, route):
    with tenant_context("acme"):
        if route == "instance":
            Board.objects.get(pk=rows.shared.pk).delete()
        elif route == "queryset":
            Board.objects.filter(pk=rows.shared.pk).delete()
        else:
            async_to_sync(Board.objects.filter(pk=rows.shared.pk).adelete)()
        Label.objects.filter(pk=rows.label.pk).delete()
    # globex's card stays globex's, its references to acme's rows cleared.
    assert _stored_card(referenced) == ("globex", None, [])
    with tenant_context("globex"):
        assert Card.objects.get(pk=referenced.pk).text == "globex-on-acme"
    # Nothing dangles: the database's own check passes.
    connection.check_constraints()


def test_the_owner_tenant_is_deleted_though_another_tenant_refers_to_its_row(rows, referenced):
    certificate = delete_tenant("acme")
    assert certificate.count("database", "collaboration.Board") == 2
    with rls_bypass(reason="test: as stored"):
        assert not Board.all_tenants.filter(tenant_id="acme").exists()
    assert _stored_card(referenced) == ("globex", None, [])
    connection.check_constraints()


def test_a_reference_the_owner_could_not_clear_is_refused_through_a_grant(tenants):
    """A non-nullable ForeignKey/OneToOne (app.Summary.document) would let
    the grantee block the owner's deletion: no grant admits it."""
    with tenant_context("acme"):
        document = Document.objects.create(title="acme-doc")
        sharing.grant(document, "globex", write=True)
    with tenant_context("globex"):
        with pytest.raises(TenantMismatchError), transaction.atomic():
            Summary.objects.create(document=document, text="globex summary")
        # A nullable one is admitted (the owner's deletion clears it).
        assert Document.objects.with_shared().get(pk=document.pk).title == "acme-doc"
