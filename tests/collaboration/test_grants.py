"""Grants themselves (docs/collaboration.md#granting): who may grant what,
the audit on both trails, revoking, expiry, deletion of either tenant, and
the grant table that no ORM route can forge, widen or move."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tenantry import GrantProtected, GrantRefused, delete_tenant, sharing, tenant_context
from tenantry.db import rls_bypass
from tenantry.models import AuditEvent, Grant
from tenantry.suspension import suspend
from tests.app.models import Organization
from tests.collaboration.conftest import titles
from tests.collaboration.models import Board

pytestmark = pytest.mark.django_db


def test_grant_makes_one_grant_row_that_with_shared_reads(rows):
    with tenant_context("acme"):
        given = sharing.grant(rows.shared, "globex")
    assert isinstance(given, Grant)
    assert (given.owner_tenant, given.grantee_tenant) == ("acme", "globex")
    assert given.target_model == "collaboration.Board"
    assert given.object_pk == str(rows.shared.pk)
    assert given.can_write is False and given.expires_at is None
    with tenant_context("globex"):
        assert titles(Board.objects.with_shared()) == ["acme-shared", "globex-own"]
        # Never by default.
        assert titles(Board.objects.all()) == ["globex-own"]
    with tenant_context("initech"):
        assert titles(Board.objects.with_shared()) == ["initech-own"]
    with tenant_context("acme"):
        assert titles(Board.objects.with_shared()) == ["acme-secret", "acme-shared"]
        assert sharing.grants_given() == [given]
    with tenant_context("globex"):
        assert sharing.grants_received() == [given]


def test_a_queryset_grants_one_row_each_all_or_none(rows):
    with tenant_context("acme"):
        made = sharing.grant(Board.objects.all(), "globex", write=True)
        assert sorted(g.object_pk for g in made) == sorted(
            [str(rows.shared.pk), str(rows.secret.pk)]
        )
        assert all(g.can_write for g in made)
        sharing.revoke(made[1])
        third = Board.objects.create(title="acme-third")
        # One row of the queryset is granted already: nothing is granted.
        with pytest.raises(GrantRefused, match="already granted"):
            sharing.grant(Board.objects.all(), "globex")
    with tenant_context("globex"):
        shared = titles(Board.objects.with_shared())
    assert "acme-third" not in shared and third.pk


@pytest.mark.parametrize(
    "bound, target, to, kwargs, message",
    [
        (None, "shared", "globex", {}, "needs the owning tenant bound"),
        ("globex", "shared", "initech", {}, "is not a row of tenant 'globex'"),
        ("acme", "shared", "acme", {}, "cannot grant to itself"),
        ("acme", "shared", "nobody", {}, "unknown or inactive"),
        ("acme", "shared", "Not A Tenant!", {}, "not a valid tenant id"),
        ("acme", "shared", "globex", {"expires": timedelta(seconds=-1)}, "in the past"),
        ("acme", "shared", "globex", {"expires": datetime(2030, 1, 1)}, "aware datetime"),
        ("acme", "shared", "globex", {"expires": "tomorrow"}, "datetime or a timedelta"),
        ("acme", "shared", "globex", {"write": "yes"}, "True or False"),
        ("acme", "unsaved", "globex", {}, "not saved"),
        ("acme", "organization", "globex", {}, "not a tenant-scoped model"),
        ("acme", "registry", "globex", {}, "not a tenant-scoped model"),
        ("acme", "text", "globex", {}, "a model instance or a queryset"),
    ],
)
def test_grant_refuses_with_a_message_naming_what_was_wrong(
    rows, tenants, bound, target, to, kwargs, message
):
    objects = {
        "shared": rows.shared,
        "unsaved": Board(title="x"),
        "organization": Organization.objects.create(slug="org", name="Org"),
        "registry": tenants["acme"],
        "text": "a board",
    }
    with tenant_context(bound, must_exist=False):
        with pytest.raises(GrantRefused, match=message):
            sharing.grant(objects[target], to, **kwargs)
    with rls_bypass(reason="test: count every grant"):
        assert Grant.objects.count() == 0


def test_grant_to_a_suspended_tenant_is_refused(rows):
    suspend("globex", reason="unpaid")
    with tenant_context("acme"), pytest.raises(GrantRefused, match="suspended"):
        sharing.grant(rows.shared, "globex")


def test_grant_of_a_row_read_through_unscoped_is_still_only_the_owners(rows):
    """The owner is what the database holds now, not what the instance says."""
    with tenant_context("globex"):
        theirs = Board.objects.unscoped(reason="test").get(pk=rows.shared.pk)
        theirs.tenant_id = "globex"  # in memory only
        with pytest.raises(GrantRefused, match="not a row of tenant 'globex'"):
            sharing.grant(theirs, "initech")


def _trail(tenant_id: str) -> list[tuple[str, dict]]:
    with tenant_context(tenant_id):
        return [
            (e.event, e.data)
            for e in AuditEvent.objects.filter(tenant_id=tenant_id, event__startswith="grant.")
        ]


def test_granting_and_revoking_is_audited_on_both_trails(rows):
    with tenant_context("acme"):
        given = sharing.grant(rows.shared, "globex", write=True)
        sharing.revoke(given)
    acme, globex = _trail("acme"), _trail("globex")
    assert [event for event, _ in acme] == ["grant.given", "grant.revoked"]
    assert [event for event, _ in globex] == ["grant.received", "grant.revoked"]
    assert acme[0][1]["to"] == "globex" and acme[0][1]["write"] is True
    assert globex[0][1]["by"] == "acme"
    assert acme[0][1]["object_pk"] == str(rows.shared.pk)
    assert _trail("initech") == []


def test_only_the_owner_revokes(rows):
    with tenant_context("acme"):
        given = sharing.grant(rows.shared, "globex")
    for tenant in ("globex", "initech"):
        with tenant_context(tenant), pytest.raises(GrantRefused, match="only that tenant"):
            sharing.revoke(given)
    with tenant_context("acme"):
        sharing.revoke(given)
        with pytest.raises(GrantRefused, match="already revoked"):
            sharing.revoke(given)


def test_a_revoke_stops_at_the_next_query(rows):
    with tenant_context("acme"):
        given = sharing.grant(rows.shared, "globex")
    with tenant_context("globex"):
        made_before = Board.objects.with_shared()
        assert titles(made_before) == ["acme-shared", "globex-own"]
    with tenant_context("acme"):
        sharing.revoke(given)
    with tenant_context("globex"):
        assert titles(made_before.all()) == ["globex-own"]
        assert titles(Board.objects.with_shared()) == ["globex-own"]
        assert not Board.objects.with_shared().filter(pk=rows.shared.pk).exists()


def _expire_every_grant() -> None:
    """What time does to a grant: its expiry passes (written as the
    operator would, under the bypass: no ORM route may change a grant)."""
    past = timezone.now() - timedelta(minutes=1)
    with rls_bypass(reason="test: time passes"), connection.cursor() as cursor:
        cursor.execute("UPDATE tenantry_grant SET expires_at = %s", [past])


def test_an_expired_grant_admits_nothing(rows):
    with tenant_context("acme"):
        sharing.grant(rows.shared, "globex", expires=timedelta(days=1))
    with tenant_context("globex"):
        assert titles(Board.objects.with_shared()) == ["acme-shared", "globex-own"]
    _expire_every_grant()
    with tenant_context("globex"):
        assert titles(Board.objects.with_shared()) == ["globex-own"]
        assert sharing.grants_received() == []


def test_an_expired_grant_gives_way_to_a_new_one(rows):
    with tenant_context("acme"):
        sharing.grant(rows.shared, "globex", expires=timedelta(days=1))
        with pytest.raises(GrantRefused, match="already granted"):
            sharing.grant(rows.shared, "globex", write=True)
    _expire_every_grant()
    with tenant_context("acme"):
        renewed = sharing.grant(rows.shared, "globex", write=True)
    with rls_bypass(reason="test: every grant"):
        assert list(Grant.objects.values_list("pk", "can_write")) == [(renewed.pk, True)]


@pytest.mark.parametrize("deleted", ["acme", "globex"])
def test_deleting_either_tenant_deletes_its_grants(rows, deleted):
    with tenant_context("acme"):
        sharing.grant(rows.shared, "globex")
        sharing.grant(rows.secret, "initech")
    certificate = delete_tenant(deleted)
    assert certificate.count("database", "tenantry.Grant") == (2 if deleted == "acme" else 1)
    with rls_bypass(reason="test: every grant"):
        left = [(g.owner_tenant, g.grantee_tenant) for g in Grant.objects.all()]
    assert left == ([] if deleted == "acme" else [("acme", "initech")])


# -- the grant table: no ORM route forges, widens or moves a grant --------------------


def _widen(given: Grant):
    return [
        lambda: Grant.objects.filter(pk=given.pk).update(can_write=True),
        lambda: Grant.objects.update(expires_at=None),
        lambda: Grant.objects.bulk_update([given], ["can_write"]),
        lambda: Grant.objects.filter(pk=given.pk).update(grantee_tenant="initech"),
        lambda: Grant.objects.filter(pk=given.pk).update(object_pk=str(given.pk + 1000)),
        lambda: Grant.objects.create(
            owner_tenant="acme",
            grantee_tenant="initech",
            target_model="collaboration.Board",
            target_table="collaboration_board",
            object_pk=given.object_pk,
            owner_key="acme",
            can_write=True,
            created_at=timezone.now(),
        ),
        lambda: Grant.objects.bulk_create([Grant(**_fields(given, grantee_tenant="initech"))]),
        lambda: Grant(**_fields(given, grantee_tenant="initech")).save(),
        lambda: Grant.objects.get_or_create(**_fields(given, grantee_tenant="initech")),
        lambda: Grant.objects.update_or_create(pk=given.pk, defaults={"can_write": True}),
        lambda: Grant.objects.raw("UPDATE tenantry_grant SET can_write = true"),
        lambda: Grant.objects.filter(pk=given.pk).delete(),
        lambda: given.delete(),
        lambda: asyncio.run(Grant.objects.filter(pk=given.pk).aupdate(can_write=True)),
        lambda: asyncio.run(Grant.objects.abulk_update([given], ["can_write"])),
        lambda: asyncio.run(Grant.objects.filter(pk=given.pk).adelete()),
    ]


def _fields(given: Grant, **changes):
    names = [
        "owner_tenant",
        "grantee_tenant",
        "target_model",
        "target_table",
        "object_pk",
        "owner_key",
        "can_write",
        "expires_at",
        "created_at",
    ]
    values = {name: getattr(given, name) for name in names}
    values.update(changes)
    return values


@pytest.mark.parametrize("who", ["acme", "globex", "initech", None])
def test_no_orm_route_changes_a_grant(rows, who):
    with tenant_context("acme"):
        given = sharing.grant(rows.shared, "globex", expires=timedelta(days=1))
    with tenant_context(who, must_exist=False):
        for attempt in _widen(given):
            with pytest.raises(GrantProtected):
                attempt()
        loaded = given
        loaded.can_write = True
        loaded.expires_at = None
        with pytest.raises(GrantProtected):
            loaded.save()
    with rls_bypass(reason="test: the grant as stored"):
        stored = Grant.objects.get()
    assert (stored.can_write, stored.grantee_tenant, stored.object_pk) == (
        False,
        "globex",
        str(rows.shared.pk),
    )
    assert stored.expires_at is not None
