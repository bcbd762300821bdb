"""Many-to-many link tables behind the second wall
(docs/postgresql.md#many-to-many-link-tables): ``EnableTenantRLS`` of a
walled model puts its auto-created ``through`` tables behind row-level
security too. A link row is visible when every walled row it links is
visible (a read grant shows it), and written only when every walled row it
links is the bound tenant's or write-granted to it. Raw SQL of one tenant
neither reads, changes, deletes nor forges another tenant's links, in the
session and the transaction modes; the ORM's own links keep working.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.migrations.state import ProjectState

from tenantry import TenantMismatchError, sharing, tenant_context
from tenantry.db import POLICY, UpgradeTenantRLS, rls_bypass
from tenantry.db.operations import LINK_WRITE_POLICIES
from tests.app.models import Tenant
from tests.collaboration.models import Card, Label

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

LINKS = "collaboration_card_labels"


@pytest.fixture(params=["session", "transaction"])
def mode(request, settings):
    value = {"session": True, "transaction": "transaction"}[request.param]
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_MODEL": "app.Tenant",
        "TENANT_RLS": value,
    }
    return request.param


@pytest.fixture
def links(mode) -> SimpleNamespace:
    """acme's card linked to acme's label, globex's card to globex's label
    (made through the ORM)."""
    for slug in ("acme", "globex"):
        Tenant.objects.create(slug=slug, name=slug.title())
    with tenant_context("acme"):
        acme_card = Card.objects.create(text="acme-card")
        acme_label = Label.objects.create(name="acme-label")
        acme_card.labels.add(acme_label)
    with tenant_context("globex"):
        globex_card = Card.objects.create(text="globex-card")
        globex_label = Label.objects.create(name="globex-label")
        globex_card.labels.add(globex_label)
    return SimpleNamespace(
        acme_card=acme_card,
        acme_label=acme_label,
        globex_card=globex_card,
        globex_label=globex_label,
    )


def sql(statement: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else [(cursor.rowcount,)]


def raw_links() -> list[tuple[int, int]]:
    return sorted(sql(f"SELECT card_id, label_id FROM {LINKS}"))


def stored_links() -> list[tuple[int, int]]:
    with rls_bypass(reason="test: the links as stored"):
        return raw_links()


def pair(card, label) -> tuple[int, int]:
    return (card.pk, label.pk)


def test_raw_sql_reads_only_the_bound_tenants_links(links):
    with tenant_context("globex"):
        assert raw_links() == [pair(links.globex_card, links.globex_label)]
        assert sql(f"SELECT count(*) FROM {LINKS} WHERE card_id = %s", [links.acme_card.pk]) == [
            (0,)
        ]
    with tenant_context("acme"):
        assert raw_links() == [pair(links.acme_card, links.acme_label)]
    assert raw_links() == []  # no tenant bound: no link
    assert len(stored_links()) == 2


def test_raw_sql_changes_and_deletes_no_other_tenants_link(links):
    before = stored_links()
    with tenant_context("globex"):
        assert sql(f"DELETE FROM {LINKS} WHERE card_id = %s", [links.acme_card.pk]) == [(0,)]
        assert sql(
            f"UPDATE {LINKS} SET label_id = %s WHERE card_id = %s",
            [links.globex_label.pk, links.acme_card.pk],
        ) == [(0,)]
        # Its own link, moved onto another tenant's label: refused.
        with pytest.raises(TenantMismatchError, match=LINKS), transaction.atomic():
            sql(
                f"UPDATE {LINKS} SET label_id = %s WHERE card_id = %s",
                [links.acme_label.pk, links.globex_card.pk],
            )
        assert sql(f"DELETE FROM {LINKS}") == [(1,)]  # its own only
    assert stored_links() == [pair(links.acme_card, links.acme_label)]
    assert len(before) == 2


@pytest.mark.parametrize("ends", ["card", "label", "both"])
def test_raw_sql_inserts_no_link_to_another_tenants_row(links, ends):
    with tenant_context("acme"):
        unlinked = Label.objects.create(name="acme-unlinked")
    card = links.acme_card if ends in ("card", "both") else links.globex_card
    label = unlinked if ends in ("label", "both") else links.globex_label
    before = stored_links()
    with tenant_context("globex"):
        with pytest.raises(TenantMismatchError, match=LINKS), transaction.atomic():
            sql(f"INSERT INTO {LINKS} (card_id, label_id) VALUES (%s, %s)", [card.pk, label.pk])
    assert stored_links() == before


def test_raw_sql_links_its_own_rows(links):
    with tenant_context("globex"):
        other = Label.objects.create(name="globex-other")
        sql(
            f"INSERT INTO {LINKS} (card_id, label_id) VALUES (%s, %s)",
            [links.globex_card.pk, other.pk],
        )
        assert pair(links.globex_card, other) in raw_links()


def test_a_read_grant_shows_the_links_and_lets_none_be_written(links):
    with tenant_context("acme"):
        sharing.grant(links.acme_card, "globex")
        sharing.grant(links.acme_label, "globex")
    acme_link = pair(links.acme_card, links.acme_label)
    with tenant_context("globex"):
        assert acme_link in raw_links()
        assert sql(f"DELETE FROM {LINKS} WHERE card_id = %s", [links.acme_card.pk]) == [(0,)]
        assert sql(
            f"UPDATE {LINKS} SET label_id = label_id WHERE card_id = %s", [links.acme_card.pk]
        ) == [(0,)]
        with pytest.raises(TenantMismatchError, match=LINKS), transaction.atomic():
            sql(
                f"INSERT INTO {LINKS} (card_id, label_id) VALUES (%s, %s)",
                [links.globex_card.pk, links.acme_label.pk],
            )
    assert acme_link in stored_links()


def test_a_link_shows_only_when_every_walled_end_does(links):
    with tenant_context("acme"):
        sharing.grant(links.acme_card, "globex")  # the card, not its label
    with tenant_context("globex"):
        assert pair(links.acme_card, links.acme_label) not in raw_links()


def test_a_write_grant_admits_a_link_to_the_granted_row(links):
    """As the ORM does (docs/collaboration.md#references): a write grant
    lets the grantee link its row to the granted one."""
    with tenant_context("acme"):
        sharing.grant(links.acme_label, "globex", write=True)
    with tenant_context("globex"):
        sql(
            f"INSERT INTO {LINKS} (card_id, label_id) VALUES (%s, %s)",
            [links.globex_card.pk, links.acme_label.pk],
        )
        assert pair(links.globex_card, links.acme_label) in raw_links()
    with tenant_context("acme"):  # globex's card is not acme's to see
        assert pair(links.globex_card, links.acme_label) not in raw_links()


def test_the_orm_links_of_the_own_tenant_still_work(links):
    with tenant_context("globex"):
        card = Card.objects.get(pk=links.globex_card.pk)
        second = Label.objects.create(name="globex-second")
        card.labels.add(second)
        assert sorted(label.name for label in card.labels.all()) == [
            "globex-label",
            "globex-second",
        ]
        card.labels.remove(links.globex_label)
        assert [label.name for label in card.labels.all()] == ["globex-second"]
        card.labels.set([links.globex_label, second])
        assert card.labels.count() == 2
        (prefetched,) = Card.objects.prefetch_related("labels").filter(pk=card.pk)
        assert sorted(label.name for label in prefetched.labels.all()) == [
            "globex-label",
            "globex-second",
        ]
        assert [c.text for c in second.card_set.all()] == ["globex-card"]
        card.labels.clear()
        assert card.labels.count() == 0
        card.delete()
    assert stored_links() == [pair(links.acme_card, links.acme_label)]


def _drop_link_wall() -> None:
    """An old project's link table. ALTER TABLE refuses a table with foreign
    key checks pending in this transaction: run them first."""
    for statement in (
        "SET CONSTRAINTS ALL IMMEDIATE",
        *(f"DROP POLICY {name} ON {LINKS}" for name in (POLICY, *LINK_WRITE_POLICIES.values())),
        f"ALTER TABLE {LINKS} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {LINKS} DISABLE ROW LEVEL SECURITY",
        "SET CONSTRAINTS ALL DEFERRED",
    ):
        sql(statement)


def test_rls_check_names_a_link_table_without_policy(links, capsys):
    call_command("tenantry", "rls")
    assert f"ok       link table {LINKS}" in capsys.readouterr().out
    _drop_link_wall()
    with pytest.raises(CommandError):
        call_command("tenantry", "rls", "--check")
    out = capsys.readouterr().out
    assert f"ok       link table {LINKS}" not in out
    assert f"MISSING  link table {LINKS}" in out
    assert "UpgradeTenantRLS" in out


def test_upgrade_puts_an_existing_link_table_behind_the_wall(links):
    """A project walled before link tables were: UpgradeTenantRLS of a
    walled end adds the link policies (without them, the control, the other
    tenant's link shows)."""
    _drop_link_wall()
    with tenant_context("globex"):
        assert pair(links.acme_card, links.acme_label) in raw_links()  # the hole
    state = ProjectState.from_apps(django_apps)
    sql("SET CONSTRAINTS ALL IMMEDIATE")
    with connection.schema_editor() as editor:
        UpgradeTenantRLS("collaboration.Card").database_forwards(
            "collaboration", editor, state, state
        )
    sql("SET CONSTRAINTS ALL DEFERRED")
    with tenant_context("globex"):
        assert raw_links() == [pair(links.globex_card, links.globex_label)]
