"""Only the two parties see or end a grant, and no session forges one
(docs/collaboration.md#the-grant-table, docs/collaboration.md#postgresql):
the red team's findings on grants, each as the attack it was."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import serializers
from django.db import connection, transaction
from django.utils import timezone

from tenantry import GrantProtected, GrantRefused, TenantMismatchError, sharing, tenant_context
from tenantry.db import rls_bypass
from tenantry.models import Grant
from tests.collaboration.conftest import titles
from tests.collaboration.models import Board

pytestmark = pytest.mark.django_db


@pytest.fixture
def read_grant(rows):
    with tenant_context("acme"):
        return sharing.grant(rows.shared, "globex")


def _stored() -> list[tuple[str, str]]:
    with rls_bypass(reason="test: the grants as stored"):
        return sorted(Grant.objects.values_list("owner_tenant", "grantee_tenant"))


# -- sharing.clear is the lifecycle's, never a tenant's ------------------------------


@pytest.mark.parametrize("who", ["acme", "globex", "initech"])
def test_no_bound_tenant_clears_grants(rows, read_grant, who):
    with tenant_context(who), pytest.raises(GrantRefused, match="refused while tenant"):
        sharing.clear("acme")
    assert _stored() == [("acme", "globex")]
    # Trusted code (none bound) still does; the lifecycle calls it so.
    assert sharing.clear("acme") == 1
    assert _stored() == []


# -- listing: a tenant lists only its own grants -------------------------------------


def test_a_third_tenant_cannot_list_grants_between_two_others(rows, read_grant):
    with tenant_context("initech"):
        with pytest.raises(GrantRefused, match="lists only its own grants"):
            sharing.grants_given("acme")
        with pytest.raises(GrantRefused, match="lists only its own grants"):
            sharing.grants_received("globex")
        assert sharing.grants_received("initech") == sharing.grants_received() == []
    with tenant_context("globex"):
        assert sharing.grants_received("globex") == [read_grant]
    assert sharing.grants_given("acme") == [read_grant]  # trusted code


def test_the_grant_table_shows_a_bound_tenant_only_its_own_grants(rows, read_grant):
    """Every database, not only behind PostgreSQL's policy: the manager
    (``Grant.objects``, also the base manager) keeps to the parties."""
    with tenant_context("acme"):
        sharing.grant(rows.secret, "initech")
    seen = {}
    for who in ("acme", "globex", "initech"):
        with tenant_context(who):
            seen[who] = sorted(Grant.objects.values_list("owner_tenant", "grantee_tenant"))
            assert Grant.objects.count() == len(seen[who])
            assert Grant._base_manager.count() == len(seen[who])
            unbound_then_read = Grant.objects.all()  # made now, read below: still scoped
    assert seen == {
        "acme": [("acme", "globex"), ("acme", "initech")],
        "globex": [("acme", "globex")],
        "initech": [("acme", "initech")],
    }
    with tenant_context("globex"):
        assert [g.grantee_tenant for g in unbound_then_read] == ["globex"]


# -- sharing.grant of a values() queryset ----------------------------------------------


@pytest.mark.parametrize("shape", ["values", "values_list", "flat"])
def test_grant_of_a_values_queryset_is_refused_clearly(rows, shape):
    with tenant_context("acme"):
        queryset = {
            "values": lambda: Board.objects.values("pk"),
            "values_list": lambda: Board.objects.values_list("pk", "title"),
            "flat": lambda: Board.objects.values_list("pk", flat=True),
        }[shape]()
        with pytest.raises(GrantRefused, match="not one of values"):
            sharing.grant(queryset, "globex")
    assert _stored() == []


# -- PostgreSQL: a temporary table forges no grant -----------------------------------


@pytest.fixture
def rls_on(settings):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}


@pytest.mark.postgres
def test_pg_a_temporary_table_named_like_the_grant_table_forges_no_grant(rls_on, rows, read_grant):
    """pg_temp is searched first for relations: the policies' function names
    the grant table with its schema and pins its search_path."""
    with tenant_context("globex"):
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE tenantry_grant (grantee_tenant text, target_table text,"
                " object_pk text, owner_key text, can_write boolean, expires_at timestamptz)"
            )
            cursor.execute(
                "INSERT INTO tenantry_grant VALUES ('globex', 'collaboration_board', %s,"
                " 'acme', true, NULL)",
                [str(rows.secret.pk)],
            )
            cursor.execute("SELECT title FROM collaboration_board ORDER BY title")
            seen = [title for (title,) in cursor.fetchall()]
            cursor.execute(
                "UPDATE collaboration_board SET title = 'pwned' WHERE id = %s", [rows.secret.pk]
            )
            updated = cursor.rowcount
        orm = titles(Board.objects.with_shared())
        secret = Board.objects.with_shared().filter(pk=rows.secret.pk)
        try:
            with transaction.atomic():
                written = secret.update(title="pwned")
        except TenantMismatchError:
            written = 0
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE pg_temp.tenantry_grant")
    assert seen == ["acme-shared", "globex-own"]
    assert updated == 0 and written == 0
    # The ORM's own condition names the table bare (it reads the session's
    # table: the forged row, and not the real grant); the policies bound it.
    assert "acme-secret" not in orm and "pwned" not in orm
    with tenant_context("acme"):
        assert Board.objects.get(pk=rows.secret.pk).title == "acme-secret"


# -- the grant table's wall is the SQL compilers, not the manager's methods ---------------


def test_a_deserialized_grant_is_refused(rows):
    """Django's deserializer saves through ``save_base(raw=True)``, past
    ``Grant.save()`` and the manager: the compilers refuse it."""
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
    for who in ("globex", None):
        with tenant_context(who, must_exist=False):
            with pytest.raises(GrantProtected, match="INSERT"), transaction.atomic():
                for obj in serializers.deserialize("json", data):
                    obj.save()
    assert _stored() == []
    with tenant_context("globex"):
        assert titles(Board.objects.with_shared()) == ["globex-own"]


@pytest.mark.parametrize("who", ["globex", "initech", None])
def test_no_save_base_or_raw_delete_changes_a_grant(rows, read_grant, who):
    with tenant_context(who, must_exist=False):
        mine = Grant.objects.get(pk=read_grant.pk) if who == "globex" else read_grant
        mine.can_write = True
        with pytest.raises(GrantProtected, match="UPDATE"), transaction.atomic():
            mine.save_base()
        with pytest.raises(GrantProtected, match="UPDATE"), transaction.atomic():
            mine.save_base(raw=True)
        with pytest.raises(GrantProtected, match="DELETE"), transaction.atomic():
            Grant.objects.filter(pk=read_grant.pk)._raw_delete(Grant.objects.db)
    with rls_bypass(reason="test: as stored"):
        stored = Grant.objects.get(pk=read_grant.pk)
    assert stored.can_write is False
    # sharing itself still revokes.
    with tenant_context("acme"):
        sharing.revoke(read_grant)
    assert _stored() == []


@pytest.mark.postgres
def test_pg_an_expired_grant_admits_nothing_inside_an_older_transaction(rls_on, rows):
    """The test's transaction began before the grant expires: the policies
    compare the statement's time, not the transaction's."""
    with tenant_context("acme"):
        sharing.grant(rows.shared, "globex", write=True, expires=timedelta(hours=1))
    with rls_bypass(reason="test: time passes"), connection.cursor() as cursor:
        cursor.execute("UPDATE tenantry_grant SET expires_at = clock_timestamp()")
        cursor.execute("SELECT pg_sleep(0.05)")
    with tenant_context("globex"):
        assert titles(Board.objects.with_shared()) == ["globex-own"]
        with connection.cursor() as cursor:
            cursor.execute("SELECT title FROM collaboration_board ORDER BY title")
            assert cursor.fetchall() == [("globex-own",)]
            cursor.execute(
                "UPDATE collaboration_board SET title = 'late' WHERE id = %s", [rows.shared.pk]
            )
            assert cursor.rowcount == 0
