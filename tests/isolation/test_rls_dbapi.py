"""The second wall holds for every way a statement reaches PostgreSQL
(docs/postgresql.md#every-db-api-method), not only ``cursor.execute()``.

Each DB-API method that sends SQL — ``callproc()``, psycopg's ``copy()`` and
``stream()``, ``execute()`` on the driver's own cursor, and the ``FETCH`` of a
server-side cursor — is tried as the first statement after a tenant switch,
right after an ``unscoped()`` query, and with no tenant bound, in session
mode and in transaction mode (inside ``atomic()`` and in autocommit). Before
the guard, each ran with whatever the connection last carried: the previous
tenant's rows, every tenant's rows after a bypass.

Also: ``rls_bypass()`` covers exactly its own block, also when a generator
opens it (docs/postgresql.md#the-escape-hatches); multi-table-inheritance
child tables are behind the wall through their parent's row
(docs/postgresql.md#multi-table-inheritance); objects that run with their
owner's rights are reported (docs/postgresql.md#objects-that-run-with-their-owners-rights).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from tenantry import TenantMismatchError, tenant_context
from tenantry.checks import check_rls_definers
from tenantry.db import rls_bypass
from tests.dbapi.models import Kiosk, Shop
from tests.isolation.test_rls import ACME, EVERYONE, GLOBEX, make_rows

pytestmark = pytest.mark.postgres

SELECT = "SELECT title FROM app_rlsnote ORDER BY title"


# -- reading the notes through each DB-API method ------------------------------------------


def by_execute() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(SELECT)
        return [row[0] for row in cursor.fetchall()]


def by_callproc() -> list[str]:
    with connection.cursor() as cursor:
        cursor.callproc("tenantry_test_titles")
        return [row[0] for row in cursor.fetchall()]


def by_copy() -> list[str]:
    with connection.cursor() as cursor, cursor.copy(f"COPY ({SELECT}) TO STDOUT") as copy:
        return [row[0] for row in copy.rows()]


def by_stream() -> list[str]:
    with connection.cursor() as cursor:
        return [row[0] for row in cursor.stream(SELECT)]


def by_driver_cursor() -> list[str]:
    """``execute()`` on psycopg's own cursor, under Django's wrapper."""
    with connection.cursor() as cursor:
        cursor.cursor.execute(SELECT)
        return [row[0] for row in cursor.cursor.fetchall()]


def by_named_cursor() -> list[str]:
    """A server-side cursor: DECLARE through Django, then FETCH by FETCH."""
    cursor = connection.chunked_cursor()
    try:
        cursor.execute(SELECT)
        titles = []
        while chunk := cursor.fetchmany(1):
            titles += [row[0] for row in chunk]
        return titles
    finally:
        cursor.close()


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [True, "transaction"])
@pytest.mark.parametrize("fetch", ["fetchone", "fetchmany", "fetchall", "iterate"])
def test_each_fetch_of_a_server_side_cursor_runs_with_the_fetching_code(settings, mode, fetch):
    """Inside a transaction a named cursor computes each chunk when it is
    fetched: a FETCH sent after the connection carried another scope (an
    ``unscoped()`` query, another tenant) runs with the fetching code's."""
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": mode}
    make_rows()
    take = {
        "fetchone": lambda c: [r for r in [c.fetchone()] if r],
        "fetchmany": lambda c: c.fetchmany(10),
        "fetchall": lambda c: c.fetchall(),
        "iterate": lambda c: list(c),
    }[fetch]
    for before, reader, expected in [("bypass", "acme", ["acme-2"]), ("globex", None, [])]:
        with tenant_context("acme", must_exist=False):
            cursor = connection.chunked_cursor()
            # No ORDER BY: a sequential scan, whose rows (and their policy
            # check) are computed fetch by fetch; a sort would read them all
            # at the first fetch.
            cursor.execute("SELECT title FROM app_rlsnote")
            assert cursor.fetchone() == ("acme-1",)
        try:
            prime_with(before)
            assert [row[0] for row in read_as(lambda c=cursor: take(c), reader)] == expected
        finally:
            cursor.close()


METHODS: dict[str, Callable[[], list[str]]] = {
    "callproc": by_callproc,
    "copy": by_copy,
    "stream": by_stream,
    "driver cursor": by_driver_cursor,
    "named cursor": by_named_cursor,  # declared and fetched in one scope
    "execute": by_execute,
}


@pytest.fixture
def titles_function():
    """A set-returning SQL function (SECURITY INVOKER) for ``callproc``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE OR REPLACE FUNCTION tenantry_test_titles() RETURNS SETOF text"
            f" LANGUAGE sql STABLE AS $$ {SELECT} $$"
        )


def prime_with(scope: str) -> None:
    """Leave the connection carrying another scope than the next statement's."""
    if scope == "globex":
        with tenant_context("globex", must_exist=False):
            by_execute()
    else:  # every tenant's rows, through an unscoped() query of acme
        from tests.app.models import RlsNote

        with tenant_context("acme", must_exist=False):
            RlsNote.objects.unscoped(reason="test: leave the bypass behind").count()


def read_as(method: Callable[[], list[str]], tenant: str | None) -> list[str]:
    if tenant is None:
        return method()
    with tenant_context(tenant, must_exist=False):
        return method()


CASES = [
    # (what the connection carried before, who reads, what they must see)
    ("globex", "acme", ACME),
    ("bypass", "acme", ACME),
    ("globex", None, []),
    ("bypass", None, []),
]


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [True, "transaction"], ids=["session", "transaction-atomic"])
@pytest.mark.parametrize("method", list(METHODS))
def test_every_db_api_method_runs_with_the_right_tenant(settings, titles_function, mode, method):
    """Inside a transaction (the test's): session settings and
    transaction-local ones sent once per transaction."""
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": mode}
    make_rows()
    for before, reader, expected in CASES:
        prime_with(before)
        assert read_as(METHODS[method], reader) == expected, (before, reader)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", [True, "transaction"], ids=["session", "transaction-autocommit"])
@pytest.mark.parametrize("method", list(METHODS))
def test_every_db_api_method_runs_with_the_right_tenant_in_autocommit(settings, mode, method):
    """Outside ``atomic()``: in transaction mode each statement carries its
    own transaction-local setting."""
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": mode}
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE OR REPLACE FUNCTION tenantry_test_titles() RETURNS SETOF text"
            f" LANGUAGE sql STABLE AS $$ {SELECT} $$"
        )
    make_rows()
    assert not connection.in_atomic_block
    for before, reader, expected in CASES:
        prime_with(before)
        assert read_as(METHODS[method], reader) == expected, (before, reader)
    assert not connection.in_atomic_block


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [True, "transaction"])
def test_writes_through_the_driver_cursor_are_refused_across_tenants(settings, mode):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": mode}
    make_rows()
    prime_with("bypass")
    with tenant_context("acme", must_exist=False), connection.cursor() as cursor:
        with pytest.raises(TenantMismatchError, match="app_rlsnote"), transaction.atomic():
            cursor.cursor.execute(
                "INSERT INTO app_rlsnote (tenant_id, title) VALUES ('globex', 'planted')"
            )
        with pytest.raises(TenantMismatchError, match="app_rlsnote"), transaction.atomic():
            cursor.cursor.executemany(
                "INSERT INTO app_rlsnote (tenant_id, title) VALUES (%s, %s)",
                [("globex", "planted-1"), ("globex", "planted-2")],
            )
        cursor.cursor.execute("UPDATE app_rlsnote SET title = 'pwned' WHERE tenant_id = 'globex'")
        assert cursor.cursor.rowcount == 0
    with rls_bypass("test: what is stored"):
        assert sorted(by_execute()) == EVERYONE


@pytest.mark.django_db
def test_copy_from_into_a_walled_table_is_refused_by_the_database(settings):
    """PostgreSQL refuses ``COPY FROM`` into a table with row-level
    security: bulk loads go through ``INSERT`` (and so the policy)."""
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    with tenant_context("acme", must_exist=False), connection.cursor() as cursor:
        with pytest.raises(Exception, match="row-level security"), transaction.atomic():
            with cursor.copy("COPY app_rlsnote (tenant_id, title) FROM STDIN") as copy:
                copy.write_row(("globex", "planted"))


# -- rls_bypass(): exactly its own block ----------------------------------------------------


def notes_with_a_bypass():
    """A generator that opens the bypass around its own query."""
    with rls_bypass(reason="test: a generator's own report"):
        yield from list(by_execute())


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [True, "transaction"])
def test_a_generators_bypass_never_covers_its_consumer(settings, mode):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": mode}
    make_rows()
    with tenant_context("acme", must_exist=False):
        seen = [(title, by_execute(), by_stream()) for title in notes_with_a_bypass()]
        assert [title for title, _, _ in seen] == EVERYONE  # the generator's own query
        assert all(execute == ACME and stream == ACME for _, execute, stream in seen)

        # abandoned half-way: nothing of the bypass is left behind
        abandoned = notes_with_a_bypass()
        next(abandoned)
        assert by_execute() == ACME and by_stream() == ACME
        del abandoned
        assert by_execute() == ACME

        # the consumer's own bypass still covers the consumer
        with rls_bypass(reason="test: the consumer's own"):
            assert all(by_execute() == EVERYONE for _ in notes_with_a_bypass())
        assert by_execute() == ACME
    assert by_execute() == []


def test_an_ordinary_block_still_covers_everything_it_calls(settings, db):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    make_rows()

    def helper():
        return by_execute(), by_stream()

    with tenant_context("acme", must_exist=False), rls_bypass(reason="test: maintenance"):
        assert helper() == (EVERYONE, EVERYONE)
        assert [title for title in (by_execute())] == EVERYONE


@pytest.mark.django_db(transaction=True)
def test_an_async_generators_bypass_never_covers_its_consumer(settings):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    make_rows()

    async def notes():
        with rls_bypass(reason="test: an async generator's report"):
            for title in await sync_to_async(by_execute)():
                yield title

    async def main():
        with tenant_context("acme", must_exist=False):
            return [(title, await sync_to_async(by_execute)()) async for title in notes()]

    try:
        seen = async_to_sync(main)()
    finally:
        connection.close()
    assert [title for title, _ in seen] == EVERYONE
    assert all(raw == ACME for _, raw in seen)


# -- multi-table inheritance: child tables behind the wall --------------------------------


@pytest.fixture
def chain():
    with rls_bypass("test set-up: two tenants' shops and kiosks"):
        acme = Kiosk.all_tenants.create(tenant_id="acme", name="acme-kiosk", licence="a", stall="1")
        globex = Kiosk.all_tenants.create(
            tenant_id="globex", name="globex-kiosk", licence="g", stall="2"
        )
        Shop.all_tenants.create(tenant_id="globex", name="globex-shop", licence="g2")
    return acme, globex


def raw(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else [(cursor.rowcount,)]


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [True, "transaction"])
def test_child_tables_are_behind_the_wall_through_their_parent(settings, chain, mode):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": mode}
    acme, globex = chain
    with tenant_context("acme", must_exist=False):
        # the child tables have no tenant column: only the join to the root tells
        assert raw("SELECT place_ptr_id FROM dbapi_shop ORDER BY 1") == [(acme.pk,)]
        assert raw("SELECT shop_ptr_id FROM dbapi_kiosk ORDER BY 1") == [(acme.pk,)]
        assert raw("SELECT stall FROM dbapi_kiosk WHERE shop_ptr_id = %s", [globex.pk]) == []
        pwned = "UPDATE dbapi_kiosk SET stall = 'pwned' WHERE shop_ptr_id = %s"
        assert raw(pwned, [globex.pk]) == [(0,)]
        assert raw("DELETE FROM dbapi_shop WHERE place_ptr_id = %s", [globex.pk]) == [(0,)]
        # a child row may not be attached to another tenant's parent row
        bare = raw(
            "INSERT INTO dbapi_place (tenant_id, name) VALUES ('acme', 'bare') RETURNING id"
        )
        with rls_bypass("test: a globex place with no shop yet"):
            (orphan,) = raw(
                "INSERT INTO dbapi_place (tenant_id, name) VALUES ('globex', 'orphan') RETURNING id"
            )
        with pytest.raises(TenantMismatchError, match="dbapi_shop"), transaction.atomic():
            raw("INSERT INTO dbapi_shop (place_ptr_id, licence) VALUES (%s, 'x')", [orphan[0]])
        raw("INSERT INTO dbapi_shop (place_ptr_id, licence) VALUES (%s, 'x')", [bare[0][0]])
        with pytest.raises(TenantMismatchError, match="dbapi_shop"), transaction.atomic():
            raw("UPDATE dbapi_shop SET place_ptr_id = %s WHERE place_ptr_id = %s",
                [orphan[0], bare[0][0]])
    with tenant_context("globex", must_exist=False):
        assert raw("SELECT stall FROM dbapi_kiosk") == [("2",)]
        assert sorted(raw("SELECT licence FROM dbapi_shop")) == [("g",), ("g2",)]
    assert raw("SELECT count(*) FROM dbapi_shop") == [(0,)]  # no tenant: no rows


@pytest.mark.django_db
def test_rls_check_lists_child_tables_through_their_parent(settings, capsys):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    with pytest.raises(CommandError):  # the suite keeps some tables unwalled on purpose
        call_command("tenantry", "rls", "--check")
    out = capsys.readouterr().out
    assert "ok       dbapi.Place (dbapi_place.tenant_id)" in out
    assert "ok       dbapi.Shop (dbapi_shop → dbapi_place.tenant_id)" in out
    assert "ok       dbapi.Kiosk (dbapi_kiosk → dbapi_place.tenant_id)" in out


# -- objects that run with their owner's rights --------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_objects_running_with_a_privileged_owners_rights_are_reported(
    settings, postgres_server, capsys
):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    make_rows()
    database = connection.settings_dict["NAME"]
    assert check_rls_definers(databases=["default"]) == []
    made = [
        "CREATE VIEW tenantry_all_notes AS SELECT title FROM app_rlsnote",
        "CREATE VIEW tenantry_all_notes_2 AS SELECT title FROM tenantry_all_notes",
        "CREATE MATERIALIZED VIEW tenantry_note_counts AS"
        " SELECT tenant_id, count(*) AS n FROM app_rlsnote GROUP BY tenant_id",
        "CREATE FUNCTION tenantry_definer_titles() RETURNS SETOF text LANGUAGE sql"
        " SECURITY DEFINER AS $$ SELECT title FROM app_rlsnote $$",
    ]
    with postgres_server.superuser(database) as admin:
        for sql in made:
            admin.execute(sql)
        admin.execute(
            "GRANT SELECT ON tenantry_all_notes, tenantry_all_notes_2, tenantry_note_counts"
            " TO tenantry_app"
        )
    try:
        with tenant_context("acme", must_exist=False):
            # what the report is about: the view shows every tenant's rows
            assert sorted(r[0] for r in raw("SELECT title FROM tenantry_all_notes")) == EVERYONE
        messages = check_rls_definers(databases=["default"])
        text = "\n".join(m.msg for m in messages)
        assert {m.id for m in messages} == {"tenantry.E400"}
        assert "view tenantry_all_notes reads a table behind the wall" in text
        assert "view tenantry_all_notes_2 reads a table behind the wall" in text  # a view of a view
        assert "materialized view tenantry_note_counts" in text
        assert "function tenantry_definer_titles() is SECURITY DEFINER" in text
        with pytest.raises(CommandError, match="row-level security problem"):
            call_command("tenantry", "rls", "--check")
        err = capsys.readouterr().err
        assert "WARNING: view tenantry_all_notes reads a table behind the wall" in err

        with postgres_server.superuser(database) as admin:
            admin.execute("ALTER VIEW tenantry_all_notes SET (security_invoker = true)")
            admin.execute("ALTER VIEW tenantry_all_notes_2 SET (security_invoker = true)")
        with tenant_context("acme", must_exist=False):
            assert sorted(r[0] for r in raw("SELECT title FROM tenantry_all_notes_2")) == ACME
        left = "\n".join(m.msg for m in check_rls_definers(databases=["default"]))
        assert "view tenantry_all_notes " not in left and "tenantry_all_notes_2" not in left
        assert "tenantry_note_counts" in left and "tenantry_definer_titles" in left
    finally:
        with postgres_server.superuser(database) as admin:
            admin.execute("DROP VIEW IF EXISTS tenantry_all_notes_2, tenantry_all_notes")
            admin.execute("DROP MATERIALIZED VIEW IF EXISTS tenantry_note_counts")
            admin.execute("DROP FUNCTION IF EXISTS tenantry_definer_titles()")
    assert check_rls_definers(databases=["default"]) == []


@pytest.mark.django_db
def test_a_view_owned_by_the_bound_app_role_is_not_reported(settings):
    """The application's own role is bound by the (forced) policies: its
    views filter like its queries."""
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    make_rows()
    raw("CREATE VIEW tenantry_app_notes AS SELECT title FROM app_rlsnote")
    with tenant_context("acme", must_exist=False):
        assert sorted(r[0] for r in raw("SELECT title FROM tenantry_app_notes")) == ACME
    assert check_rls_definers(databases=["default"]) == []



# -- transaction control around Django's API ------------------------------------------------


class Boom(Exception):
    pass


def seen_by(tenant: str) -> list[str]:
    with tenant_context(tenant, must_exist=False):
        return by_execute()


def in_scope(before: str):
    """Run code in the scope the connection was primed with, so that what
    it sends does not change the connection's setting."""
    if before == "globex":
        return tenant_context("globex", must_exist=False)
    return rls_bypass(reason="test: the scope the connection carries")


def acme_reads_inside_a_transaction_rolled_back(how: str, before: str) -> None:
    """A transaction opened around Django's API, in which acme's read sends
    acme's setting, then rolled back: PostgreSQL undoes that set_config and
    the connection carries ``before``'s scope again."""
    import psycopg

    raw = connection.connection
    if how in ("exception", "psycopg.Rollback"):  # the driver's transaction() block
        with contextlib.suppress(Boom), raw.transaction():
            with tenant_context("acme", must_exist=False):
                by_execute()
            if how == "exception":
                raise Boom
            raise psycopg.Rollback()  # rolled back; the block exits normally
        return
    with in_scope(before):
        if how == "rollback()":
            raw.execute("BEGIN")
        else:
            with connection.cursor() as cursor:
                cursor.execute("BEGIN")
    with tenant_context("acme", must_exist=False):
        by_execute()
    if how == "rollback()":
        raw.rollback()
    else:
        with connection.cursor() as cursor:
            cursor.execute("ROLLBACK")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", [True, "transaction"], ids=["session", "transaction"])
@pytest.mark.parametrize("how", ["exception", "psycopg.Rollback", "rollback()", "SQL"])
@pytest.mark.parametrize("before", ["globex", "bypass"])
def test_a_transaction_rolled_back_around_django_leaves_no_stale_scope(settings, mode, how, before):
    """The setting a rolled-back transaction took with it is sent again:
    before, the connection believed it still carried acme's and acme's next
    statement ran with what was there before (globex's rows, or every
    tenant's after an unscoped() read)."""
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": mode}
    make_rows()
    prime_with(before)
    acme_reads_inside_a_transaction_rolled_back(how, before)
    with tenant_context("acme", must_exist=False):
        assert by_execute() == ACME
        assert by_stream() == ACME
    assert by_execute() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", [True, "transaction"], ids=["session", "transaction"])
@pytest.mark.parametrize("how", ["driver", "SQL"])
def test_a_savepoint_rolled_back_around_django_leaves_no_stale_scope(settings, mode, how):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": mode}
    make_rows()
    with transaction.atomic():
        assert seen_by("globex") == GLOBEX
        if how == "driver":
            with contextlib.suppress(Boom), connection.connection.transaction():
                assert seen_by("acme") == ACME  # acme's setting, inside the savepoint
                raise Boom
        else:
            with tenant_context("globex", must_exist=False), connection.cursor() as cursor:
                cursor.execute("SAVEPOINT tenantry_test")  # sends nothing: globex already
            assert seen_by("acme") == ACME
            with connection.cursor() as cursor:
                cursor.execute("ROLLBACK TO SAVEPOINT tenantry_test")
        assert seen_by("acme") == ACME  # sent again: the savepoint took it
        assert seen_by("globex") == GLOBEX


@pytest.mark.django_db(transaction=True)
def test_django_savepoints_and_committed_driver_blocks_keep_working(settings):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    make_rows()
    with transaction.atomic():
        assert seen_by("globex") == GLOBEX
        sid = transaction.savepoint()
        assert seen_by("acme") == ACME
        transaction.savepoint_rollback(sid)
        assert seen_by("acme") == ACME
    with tenant_context("acme", must_exist=False), connection.connection.transaction():
        assert by_execute() == ACME
    assert seen_by("acme") == ACME and seen_by("globex") == GLOBEX
