"""The second wall with grants (docs/collaboration.md#postgresql): the
row-level security policies admit a granted row (read; read+write for a
write grant) and nothing else, whatever SQL a tenant sends around the ORM;
the grant table is behind the wall too; ``rls --check`` names a table whose
policy predates grants, and ``UpgradeTenantRLS`` upgrades it. PostgreSQL
with ``TENANT_RLS`` on (session and transaction settings)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.db.migrations.state import ProjectState

from tenantry import TenantMismatchError, sharing, tenant_context
from tenantry.db import UpgradeTenantRLS, rls_bypass

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture(params=["session", "transaction"])
def mode(request, settings):
    value = {"session": True, "transaction": "transaction"}[request.param]
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": value}
    return request.param


def sql(statement: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else [(cursor.rowcount,)]


def raw_titles() -> list[str]:
    return sorted(row[0] for row in sql("SELECT title FROM collaboration_board"))


def grant(rows, *, write: bool, **kwargs):
    with tenant_context("acme"):
        return sharing.grant(rows.shared, "globex", write=write, **kwargs)


@pytest.mark.parametrize("write", [False, True])
def test_raw_reads_see_the_granted_row_and_nothing_else(mode, rows, tenants, write):
    grant(rows, write=write)
    with tenant_context("globex"):
        assert raw_titles() == ["acme-shared", "globex-own"]
        # acme's other rows: not through a join, a subquery, or another table.
        assert sql(
            "SELECT count(*) FROM collaboration_card c "
            "JOIN collaboration_board b ON b.id = c.board_id"
        ) == [(0,)]
        assert sql(
            "SELECT count(*) FROM collaboration_board WHERE id IN "
            "(SELECT board_id FROM collaboration_card)"
        ) == [(0,)]
        assert sql("SELECT count(*) FROM collaboration_label") == [(0,)]
        assert sql("SELECT count(*) FROM collaboration_board WHERE id = %s", [rows.secret.pk]) == [
            (0,)
        ]
    with tenant_context("initech"):
        assert raw_titles() == ["initech-own"]
    with tenant_context(None, must_exist=False):
        assert raw_titles() == []


def test_raw_writes_through_a_read_grant_touch_nothing(mode, rows, tenants):
    grant(rows, write=False)
    pk = rows.shared.pk
    with tenant_context("globex"):
        assert sql("UPDATE collaboration_board SET title = 'x' WHERE id = %s", [pk]) == [(0,)]
        assert sql("DELETE FROM collaboration_board WHERE id = %s", [pk]) == [(0,)]
        assert sql("UPDATE collaboration_board SET title = 'x'") == [(1,)]  # its own row
    with rls_bypass(reason="test: as stored"):
        assert sql("SELECT title, tenant_id FROM collaboration_board WHERE id = %s", [pk]) == [
            ("acme-shared", "acme")
        ]


def test_raw_writes_through_a_write_grant_update_but_never_move_or_delete(mode, rows, tenants):
    grant(rows, write=True)
    pk = rows.shared.pk
    with tenant_context("globex"):
        assert sql("UPDATE collaboration_board SET title = 'edited' WHERE id = %s", [pk]) == [(1,)]
        for moved in ("globex", "initech"):
            with pytest.raises(TenantMismatchError), transaction.atomic():
                sql("UPDATE collaboration_board SET tenant_id = %s WHERE id = %s", [moved, pk])
        with pytest.raises(TenantMismatchError), transaction.atomic():
            sql(  # the grant lets globex write no new row of acme's
                "INSERT INTO collaboration_board (tenant_id, title) VALUES ('acme', 'forged')"
            )
        assert sql("DELETE FROM collaboration_board WHERE id = %s", [pk]) == [(0,)]
        assert sql(  # acme's other rows: not through the grant
            "UPDATE collaboration_board SET title = 'x' WHERE id = %s", [rows.secret.pk]
        ) == [(0,)]
    with rls_bypass(reason="test: as stored"):
        assert sql("SELECT id, title, tenant_id FROM collaboration_board ORDER BY id") == [
            (rows.shared.pk, "edited", "acme"),
            (rows.secret.pk, "acme-secret", "acme"),
            (rows.own.pk, "globex-own", "globex"),
            (rows.attacker.pk, "initech-own", "initech"),
        ]


def test_an_expired_or_revoked_grant_admits_nothing_to_raw_sql(mode, rows, tenants):
    given = grant(rows, write=True, expires=timedelta(days=1))
    with tenant_context("globex"):
        assert "acme-shared" in raw_titles()
    with rls_bypass(reason="test: time passes"):
        sql("UPDATE tenantry_grant SET expires_at = now() - interval '1 second'")
    with tenant_context("globex"):
        assert raw_titles() == ["globex-own"]
        assert sql(
            "UPDATE collaboration_board SET title = 'x' WHERE id = %s", [rows.shared.pk]
        ) == [(0,)]
    with rls_bypass(reason="test: time goes back"):
        sql("UPDATE tenantry_grant SET expires_at = NULL")
    with tenant_context("globex"):
        assert "acme-shared" in raw_titles()
    with tenant_context("acme"):
        sharing.revoke(given)
    with tenant_context("globex"):
        assert raw_titles() == ["globex-own"]


@pytest.mark.parametrize("who", ["acme", "globex", "initech"])
def test_raw_sql_cannot_forge_widen_move_or_drop_a_grant(mode, rows, tenants, who):
    grant(rows, write=False)
    attacks = [
        "UPDATE tenantry_grant SET can_write = true",
        "UPDATE tenantry_grant SET expires_at = NULL, grantee_tenant = 'initech'",
        f"UPDATE tenantry_grant SET object_pk = '{rows.secret.pk}'",
        "INSERT INTO tenantry_grant (owner_tenant, grantee_tenant, target_model, target_table,"
        " object_pk, owner_key, can_write, created_at) VALUES ('acme', 'initech',"
        f" 'collaboration.Board', 'collaboration_board', '{rows.secret.pk}', 'acme', true, now())",
    ]
    with tenant_context(who):
        for attack in attacks:
            with pytest.raises((TenantMismatchError, DatabaseError)), transaction.atomic():
                result = sql(attack)
                assert result == [(0,)]  # a row it cannot see is not touched either
                raise DatabaseError("touched nothing")
        assert sql("DELETE FROM tenantry_grant") == [(0,)]
        seen = sql("SELECT grantee_tenant FROM tenantry_grant")
    assert seen == ([] if who == "initech" else [("globex",)])
    with rls_bypass(reason="test: as stored"):
        assert sql(
            "SELECT owner_tenant, grantee_tenant, object_pk, can_write, expires_at "
            "FROM tenantry_grant"
        ) == [("acme", "globex", str(rows.shared.pk), False, None)]
    with tenant_context("initech"):
        assert raw_titles() == ["initech-own"]


def _policies(table: str) -> list[str]:
    return [
        name
        for (name,) in sql(
            "SELECT polname FROM pg_policy WHERE polrelid = %s::regclass ORDER BY polname",
            [table],
        )
    ]


def _upgrade(direction: str) -> None:
    state = ProjectState.from_apps(django_apps)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with connection.schema_editor() as editor:
        operation = UpgradeTenantRLS("collaboration.Board", field="tenant_id")
        getattr(operation, f"database_{direction}")("collaboration", editor, state, state)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def test_rls_check_names_a_policy_older_than_grants_and_the_upgrade_fixes_it(
    settings, rows, tenants, capsys
):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    assert _policies("collaboration_board") == [
        "tenantry_isolation",
        "tenantry_shared_read",
        "tenantry_shared_write",
    ]
    grant(rows, write=False)
    _upgrade("backwards")  # what a table behind the wall before grants existed has
    assert _policies("collaboration_board") == ["tenantry_isolation"]
    with tenant_context("globex"):
        assert raw_titles() == ["globex-own"]  # an old policy hides granted rows
    with pytest.raises(CommandError, match="row-level security problem"):
        call_command("tenantry", "rls", "--check")
    out = capsys.readouterr().out
    assert "OLD      collaboration.Board (collaboration_board.tenant_id)" in out
    assert "UpgradeTenantRLS('collaboration.Board', field='tenant_id')" in out
    assert "ok       collaboration.Card (collaboration_card.tenant_id)" in out
    _upgrade("forwards")
    _upgrade("forwards")  # again: the same policies, once
    assert len(_policies("collaboration_board")) == 3
    with tenant_context("globex"):
        assert raw_titles() == ["acme-shared", "globex-own"]
    with pytest.raises(CommandError):
        call_command("tenantry", "rls", "--check")  # app.Item etc. still have none
    out = capsys.readouterr().out
    assert "ok       collaboration.Board (collaboration_board.tenant_id)" in out
    assert "OLD " not in out


def test_the_grant_policies_came_with_every_table_behind_the_wall():
    """tenantry's migration 0003 upgraded the tables put behind the wall
    before it (the app's own suite tables), and the grant table has its own."""
    for table in ("app_rlsfolder", "app_rlsnote", "app_rlsmeter", "collaboration_card"):
        assert {"tenantry_shared_read", "tenantry_shared_write"} <= set(_policies(table))
    assert _policies("tenantry_grant") == ["tenantry_grant_parties", "tenantry_grant_writes"]
