"""The second wall (docs/postgresql.md): PostgreSQL row-level security bounds queries
that go around tenantry's querysets on purpose, with a tenant bound.

Every attack runs three times (the ``wall`` fixture): with ``TENANT_RLS =
True`` (session settings), with ``"transaction"`` (transaction-local
settings), and as the control with ``TENANT_RLS = False`` and the policies
dropped (EnableTenantRLS run backwards), where the same attack must leak.
The database is a real PostgreSQL (tests/postgres_server.py); Django
connects as a role that is neither a superuser nor BYPASSRLS, and owns the
tables (the policies are forced, so the owner is bound too).
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.apps import apps as django_apps
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection, transaction
from django.db.migrations.state import ProjectState
from django.db.models import OuterRef, Subquery
from django.http import JsonResponse
from django.test import AsyncClient, RequestFactory
from django.urls import path

from tenantry import TenantMismatchError, get_current_tenant, tenant_context
from tenantry.db import EnableTenantRLS, rls_bypass
from tenantry.db.rls import role_problems
from tests.app.models import RlsFolder, RlsMeter, RlsNote

pytestmark = [pytest.mark.postgres, pytest.mark.urls("tests.isolation.test_rls")]

ACME = ["acme-1", "acme-2"]
GLOBEX = ["globex-secret-1"]
EVERYONE = sorted(ACME + GLOBEX)
WALLED_TABLES = ("app.RlsFolder", "app.RlsNote")


# -- views of the request tests ---------------------------------------------------------


def _raw_titles() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT title FROM app_rlsnote ORDER BY title")
        return [row[0] for row in cursor.fetchall()]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def raw_view(request):
    """Raw SQL, as a third-party app or a forgotten query would send it."""
    tenant = get_current_tenant()
    return JsonResponse(
        {"tenant": tenant and tenant.id, "titles": _raw_titles(), "pid": _backend_pid()}
    )


async def async_view(request):
    orm = [note.title async for note in RlsNote.all_tenants.order_by("title")]
    return JsonResponse({"orm": orm, "raw": await sync_to_async(_raw_titles)()})


urlpatterns = [
    path("raw/", raw_view),
    path("public/raw/", raw_view),
    path("async/", async_view),
]


# -- the wall and the rows ----------------------------------------------------------------

_PROJECT_STATE: list[ProjectState] = []


def run_operations(direction: str, labels=WALLED_TABLES) -> None:
    """EnableTenantRLS forwards or backwards on the suite's tables."""
    if not _PROJECT_STATE:
        _PROJECT_STATE.append(ProjectState.from_apps(django_apps))
    state = _PROJECT_STATE[0]
    # ALTER TABLE refuses a table with foreign key checks pending in this
    # transaction: run them now, and defer them again afterwards.
    in_transaction = connection.in_atomic_block
    if in_transaction:
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with connection.schema_editor() as editor:
        for label in labels:
            getattr(EnableTenantRLS(label), f"database_{direction}")("app", editor, state, state)
    if in_transaction:
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")


@pytest.fixture(params=["session", "transaction", "off"])
def wall(request, settings):
    """The mode of the test: "session", "transaction", or "off" (control)."""
    mode = request.param
    value = {"session": True, "transaction": "transaction", "off": False}[mode]
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": value}
    if mode == "off":
        run_operations("backwards")
    try:
        yield mode
    finally:
        # Inside the test's transaction its rollback restores the policies.
        if mode == "off" and not connection.in_atomic_block:
            run_operations("forwards")


def make_rows() -> SimpleNamespace:
    """Two tenants' rows, one acme note planted to point at globex's folder."""
    with rls_bypass("test set-up: rows of two tenants"):
        acme_folder = RlsFolder.all_tenants.create(tenant_id="acme", name="acme-folder")
        globex_folder = RlsFolder.all_tenants.create(tenant_id="globex", name="globex-secret")
        return SimpleNamespace(
            acme_folder=acme_folder,
            globex_folder=globex_folder,
            a1=RlsNote.all_tenants.create(tenant_id="acme", title="acme-1", folder=acme_folder),
            a2=RlsNote.all_tenants.create(tenant_id="acme", title="acme-2", folder=globex_folder),
            g1=RlsNote.all_tenants.create(tenant_id="globex", title="globex-secret-1"),
        )


@pytest.fixture
def rows(wall) -> SimpleNamespace:
    return make_rows()


@pytest.fixture
def stored() -> SimpleNamespace:
    """The rows, for tests of one RLS mode (policies in place)."""
    return make_rows()


def walled(wall: str) -> bool:
    return wall != "off"


def everything() -> list[str]:
    return [title for _, title in stored_pairs()]


def stored_pairs() -> list[tuple[str, str]]:
    """(tenant, title) of every stored note."""
    with rls_bypass("test: what is really stored"):
        return sorted(RlsNote.all_tenants.values_list("tenant_id", "title"))


# -- going around the first wall, with acme bound ----------------------------------------


@pytest.mark.django_db
def test_raw_sql_through_a_cursor(wall, rows):
    with tenant_context("acme"):
        titles = _raw_titles()
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM app_rlsnote WHERE tenant_id = %s", ["globex"])
            globex_count = cursor.fetchone()[0]
    assert titles == (ACME if walled(wall) else EVERYONE)
    assert globex_count == (0 if walled(wall) else 1)


@pytest.mark.django_db
def test_forgotten_managers_and_raw_querysets(wall, rows):
    with tenant_context("acme"):
        seen = {
            "plain manager": sorted(n.title for n in RlsNote.all_tenants.all()),
            "plain raw()": sorted(
                n.title for n in RlsNote.all_tenants.raw("SELECT * FROM app_rlsnote")
            ),
            "base raw()": sorted(
                n.title for n in RlsNote._base_manager.raw("SELECT * FROM app_rlsnote")
            ),
            "iterator()": sorted(n.title for n in RlsNote.all_tenants.iterator()),
            "values()": sorted(RlsNote.all_tenants.values_list("title", flat=True)),
        }
        # The base manager is held to the bound tenant by the first wall
        # (docs/querysets.md#how-the-wall-is-built), whatever the second does.
        base = sorted(n.title for n in RlsNote._base_manager.all())
    expected = ACME if walled(wall) else EVERYONE
    assert seen == dict.fromkeys(seen, expected)
    assert base == ACME


@pytest.mark.django_db
def test_select_related_into_another_tenants_row(wall, rows):
    with tenant_context("acme"):
        joined = RlsNote.objects.select_related("folder").get(pk=rows.a2.pk)
        lazy = RlsNote.objects.get(pk=rows.a2.pk)
        # The join finds no globex row: with RLS off too, the first wall holds
        # every join to the bound tenant (docs/querysets.md#joins-and-subqueries).
        assert joined.folder is None
        # A lazy load goes through the base manager: the first wall holds it
        # to the bound tenant (docs/querysets.md#how-the-wall-is-built).
        with pytest.raises(RlsFolder.DoesNotExist):
            _ = lazy.folder
        through = sorted(
            RlsFolder.all_tenants.filter(notes__isnull=False).values_list("name", flat=True)
        )
    assert through == (["acme-folder"] if walled(wall) else ["acme-folder", "globex-secret"])


@pytest.mark.django_db
def test_extra_and_subqueries(wall, rows):
    with tenant_context("acme"):
        extra = RlsNote.objects.extra(
            select={"everyone": "SELECT string_agg(title, ',' ORDER BY title) FROM app_rlsnote"}
        ).first()
        other = RlsNote.all_tenants.exclude(tenant_id="acme").values("title")[:1]
        annotated = RlsNote.objects.annotate(other=Subquery(other)).first()
        folder_names = RlsFolder.all_tenants.filter(pk=OuterRef("folder_id")).values("name")
        named = dict(
            RlsNote.objects.annotate(folder_name=Subquery(folder_names)).values_list(
                "title", "folder_name"
            )
        )
    if walled(wall):
        assert extra.everyone == ",".join(ACME)
        assert annotated.other is None
        assert named == {"acme-1": "acme-folder", "acme-2": None}
    else:
        assert extra.everyone == ",".join(EVERYONE)
        assert annotated.other == "globex-secret-1"
        assert named == {"acme-1": "acme-folder", "acme-2": "globex-secret"}


@pytest.mark.django_db
def test_update_and_delete_by_another_tenants_id(wall, rows):
    with tenant_context("acme"):
        with connection.cursor() as cursor:
            cursor.execute("UPDATE app_rlsnote SET title = 'pwned' WHERE id = %s", [rows.g1.pk])
            raw_updated = cursor.rowcount
        orm_updated = RlsNote.all_tenants.filter(pk=rows.g1.pk).update(title="pwned-orm")
        try:
            with transaction.atomic():  # a refusal rolls back to here only
                deleted_folders, _ = RlsFolder.all_tenants.filter(
                    pk=rows.globex_folder.pk
                ).delete()
        except TenantMismatchError:
            # The first wall: deleting loads the row, and its delete() guard
            # refuses another tenant's row (only with RLS off is it visible).
            deleted_folders = None
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM app_rlsnote WHERE tenant_id = 'globex'")
            raw_deleted = cursor.rowcount
    if walled(wall):
        assert (raw_updated, orm_updated, deleted_folders, raw_deleted) == (0, 0, 0, 0)
        assert everything() == EVERYONE
    else:
        # The first wall holds the plain manager's UPDATE to acme's rows;
        # raw SQL only meets the second.
        assert (raw_updated, orm_updated, raw_deleted) == (1, 0, 1)
        assert deleted_folders is None
        assert "globex-secret-1" not in everything()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "attack",
    ["raw INSERT", "plain manager create", "save()", "bulk_create", "raw UPDATE moving a row"],
)
def test_writing_another_tenants_id(wall, rows, attack):
    def run():
        if attack == "raw INSERT":
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO app_rlsnote (tenant_id, title) VALUES (%s, %s)", ["globex", "x"]
                )
        elif attack == "plain manager create":
            RlsNote.all_tenants.create(tenant_id="globex", title="x")
        elif attack == "save()":
            RlsNote(tenant_id="globex", title="x").save()
        elif attack == "bulk_create":
            RlsNote.all_tenants.bulk_create([RlsNote(tenant_id="globex", title="x")])
        else:
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE app_rlsnote SET tenant_id = 'globex' WHERE id = %s", [rows.a1.pk]
                )

    before = stored_pairs()
    # The ORM's writes meet the first wall (tenantry.isolation) before the
    # database sees them; the raw statements only meet the second.
    first_wall = attack in ("plain manager create", "save()", "bulk_create")
    with tenant_context("acme"):
        if walled(wall) or first_wall:
            with pytest.raises(
                TenantMismatchError, match=r"(app_rlsnote|app\.RlsNote).*'acme'"
            ) as caught:
                with transaction.atomic():
                    run()
            assert not isinstance(caught.value, OSError)  # docs/api.md#exceptions
        else:
            run()
    if walled(wall) or first_wall:
        assert stored_pairs() == before
    else:
        assert ("globex", "x") in stored_pairs() or ("globex", "acme-1") in stored_pairs()


@pytest.mark.django_db
def test_no_tenant_bound_sees_no_rows(wall, rows):
    assert get_current_tenant() is None
    seen = (_raw_titles(), RlsNote.all_tenants.count(), RlsFolder._base_manager.count())
    assert seen == (([], 0, 0) if walled(wall) else (EVERYONE, 3, 2))
    if walled(wall):
        with pytest.raises(TenantMismatchError, match="none is bound"), transaction.atomic():
            RlsNote.all_tenants.create(tenant_id="acme", title="x")


# -- connections, threads, async, workers -------------------------------------------------


def wsgi_get(handler: WSGIHandler, host: str, url: str) -> dict:
    """One request through Django's real WSGI handler (request_started and
    request_finished close connections per CONN_MAX_AGE, unlike the test
    client)."""
    environ = RequestFactory().get(url, HTTP_HOST=host).environ
    status: list[str] = []
    body = b"".join(handler(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status == ["200 OK"], (status, body[:500])
    return json.loads(body)


@pytest.mark.django_db(transaction=True)
def test_a_pooled_connection_serves_the_next_tenants_request(wall, rows):
    """CONN_MAX_AGE > 0: one connection serves acme, then globex, then a
    request with no tenant; each sees only its own rows."""
    connection.close()
    old_age = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = 600
    try:
        handler = WSGIHandler()
        answers = [
            wsgi_get(handler, "acme.example.com", "/raw/"),
            wsgi_get(handler, "globex.example.com", "/raw/"),
            wsgi_get(handler, "example.com", "/public/raw/"),
            wsgi_get(handler, "acme.example.com", "/raw/"),
        ]
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = old_age
        connection.close()
    assert len({a["pid"] for a in answers}) == 1, "the connection was not reused"
    assert [a["tenant"] for a in answers] == ["acme", "globex", None, "acme"]
    titles = [a["titles"] for a in answers]
    if walled(wall):
        assert titles == [ACME, GLOBEX, [], ACME]
    else:
        assert titles == [EVERYONE] * 4


@pytest.mark.django_db(transaction=True)
def test_threads_and_a_job_worker(wall, rows):
    """Threads interleaving tenants, each on its own connection; and one
    worker thread taking jobs of alternating tenants on one connection."""
    expected = {"acme": ACME, "globex": GLOBEX}

    def interleave(offset: int) -> list[tuple[str, list[str]]]:
        seen = []
        try:
            for n in range(12):
                tenant = ("acme", "globex")[(n + offset) % 2]
                with tenant_context(tenant):
                    seen.append((tenant, _raw_titles()))
                    seen.append((tenant, sorted(n.title for n in RlsNote.all_tenants.iterator())))
        finally:
            connection.close()
        return seen

    with ThreadPoolExecutor(4) as pool:
        results = [pair for part in pool.map(interleave, range(4)) for pair in part]

    jobs: queue.Queue = queue.Queue()
    done: list[tuple[str, list[str]]] = []

    def worker() -> None:
        try:
            while (tenant := jobs.get()) is not None:
                with tenant_context(tenant):
                    done.append((tenant, _raw_titles()))
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    for n in range(10):
        jobs.put(("acme", "globex")[n % 2])
    jobs.put(None)
    thread.join(60)
    results += done

    assert len(results) == 4 * 24 + 10
    wrong = [(tenant, titles) for tenant, titles in results if titles != expected[tenant]]
    if walled(wall):
        assert wrong == []
    else:
        assert len(wrong) == len(results)  # every query saw both tenants


def in_event_loop(main):
    """Run ``main()`` the way an ASGI server runs Django: ``async_to_sync``
    from this thread, so the ORM's thread-sensitive calls come back to it
    (and to its connection, closed afterwards)."""
    try:
        return async_to_sync(main)()
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_async_views(wall, rows, settings):
    # The async test client cannot replace its Host header: name the tenant in one of its own.
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RESOLVER": "header"}
    client = AsyncClient()

    async def main():
        tenants = ["acme", "globex"] * 6
        responses = await asyncio.gather(
            *(client.get("/async/", headers={"x-tenant-id": t}) for t in tenants)
        )
        return [(t, r.status_code, r.content) for t, r in zip(tenants, responses, strict=True)]

    answers = in_event_loop(main)
    assert {status for _, status, _ in answers} == {200}, answers[0]
    for tenant, _, content in answers:
        body = json.loads(content)
        want = ACME if tenant == "acme" else GLOBEX
        assert body == (
            {"orm": want, "raw": want} if walled(wall) else {"orm": EVERYONE, "raw": EVERYONE}
        )


@pytest.mark.django_db(transaction=True)
def test_a_connection_closed_or_killed_and_reopened(wall, rows, postgres_server):
    with tenant_context("acme"):
        first = _raw_titles()
        connection.close()
        after_close = _raw_titles()  # a new connection: sent again
        pid = _backend_pid()
    with postgres_server.superuser() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    with tenant_context("globex"), pytest.raises(OperationalError):
        _raw_titles()
    connection.close_if_unusable_or_obsolete()
    with tenant_context("globex"):
        after_kill = _raw_titles()
        assert _backend_pid() != pid
    connection.close()
    if walled(wall):
        assert (first, after_close, after_kill) == (ACME, ACME, GLOBEX)
    else:
        assert (first, after_close, after_kill) == (EVERYONE, EVERYONE, EVERYONE)


# -- rollbacks: what a connection was sent must be forgotten with them -------------------


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [True, "transaction"])
def test_a_rolled_back_savepoint_takes_the_setting_with_it(settings, stored, mode):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": mode}
    with tenant_context("acme"):
        assert _raw_titles() == ACME
    with pytest.raises(RuntimeError), transaction.atomic():
        with tenant_context("globex"):
            assert _raw_titles() == GLOBEX
        raise RuntimeError("roll back")
    # PostgreSQL undid the globex setting with the savepoint: it is acme
    # again on the connection, and must not be taken for globex.
    with tenant_context("globex"):
        assert _raw_titles() == GLOBEX
    with tenant_context("acme"):
        assert _raw_titles() == ACME


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", [True, "transaction"])
def test_a_rolled_back_transaction_takes_the_setting_with_it(settings, stored, mode):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": mode}
    try:
        with tenant_context("acme"):
            assert _raw_titles() == ACME
        with transaction.atomic():
            with tenant_context("globex"):
                assert _raw_titles() == GLOBEX
            transaction.set_rollback(True)
        with tenant_context("globex"):
            assert _raw_titles() == GLOBEX
        with transaction.atomic():  # committed: it stays
            with tenant_context("acme"):
                assert _raw_titles() == ACME
        with tenant_context("acme"):
            assert _raw_titles() == ACME
        connection.set_autocommit(False)  # manual transactions: commit()/rollback()
        try:
            with tenant_context("globex"):
                assert _raw_titles() == GLOBEX
            connection.rollback()
            with tenant_context("globex"):
                assert _raw_titles() == GLOBEX
            connection.commit()
            with tenant_context("globex"):
                assert _raw_titles() == GLOBEX
        finally:
            connection.rollback()
            connection.set_autocommit(True)
    finally:
        connection.close()


@pytest.mark.django_db
def test_following_transactions_adds_no_on_commit_callback(
    settings, stored, django_capture_on_commit_callbacks
):
    """Apps that count their on-commit callbacks see only their own."""
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    with django_capture_on_commit_callbacks() as callbacks:
        for tenant in ("acme", "globex", "acme"):
            with tenant_context(tenant), transaction.atomic():
                _raw_titles()
    assert callbacks == []


# -- the escape hatches: unscoped(), for_tenant(), rls_bypass() --------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [True, "transaction"])
def test_unscoped_bypasses_for_its_own_queries_only(settings, stored, caplog, mode):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": mode}
    with tenant_context("acme"), caplog.at_level("WARNING", logger="tenantry.audit"):
        everyone = RlsNote.objects.unscoped(reason="monthly report")
        assert everyone.count() == 3
        assert sorted(everyone.values_list("title", flat=True)) == EVERYONE
        assert _raw_titles() == ACME  # the bypass did not stay on the connection
        between = []
        for note in everyone.iterator():
            between.append((note.title, _raw_titles()))
        assert sorted(t for t, _ in between) == EVERYONE
        assert all(seen == ACME for _, seen in between)  # not even between steps
        assert sorted(n.title for n in everyone.raw("SELECT * FROM app_rlsnote")) == EVERYONE
        # "unscoped" lifts the read filter, never the write rules: its
        # UPDATE keeps to acme's rows; rls_bypass() is the escape for writes
        # (docs/querysets.md#escape-hatches).
        fix = RlsNote.objects.unscoped(reason="fix").filter(pk=stored.g1.pk)
        assert fix.update(title="fixed") == 0
        with rls_bypass(reason="fix a globex row from acme's context"):
            assert fix.update(title="fixed") == 1
        assert sorted(RlsNote.objects.for_tenant("globex").values_list("title", flat=True)) == [
            "fixed"
        ]
        assert RlsNote.objects.count() == 2
        assert RlsNote.all_tenants.count() == 2
    events = [r.tenantry["event"] for r in caplog.records if hasattr(r, "tenantry")]
    assert events.count("queryset.unscoped") == 2


@pytest.mark.django_db(transaction=True)
def test_unscoped_async_iteration_bypasses_per_step(settings, stored):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}

    async def main():
        with tenant_context("acme"):
            seen = []
            async for note in RlsNote.objects.unscoped(reason="async report").aiterator():
                seen.append((note.title, await sync_to_async(_raw_titles)()))
            return seen, await RlsNote.objects.unscoped(reason="count").acount()

    seen, count = in_event_loop(main)
    assert sorted(t for t, _ in seen) == EVERYONE and count == 3
    assert all(raw == ACME for _, raw in seen)


@pytest.mark.django_db
def test_rls_bypass_is_audited_and_ends_with_its_block(settings, stored, caplog):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    with tenant_context("acme"), caplog.at_level("WARNING", logger="tenantry.audit"):
        with rls_bypass(reason="data repair"):
            assert _raw_titles() == EVERYONE
            with tenant_context("globex", must_exist=False):
                RlsNote.all_tenants.create(tenant_id="globex", title="globex-2")
        assert _raw_titles() == ACME
    (record,) = [
        r for r in caplog.records if getattr(r, "tenantry", {}).get("reason") == "data repair"
    ]
    assert record.tenantry["event"] == "rls.bypass" and record.tenantry["tenant_id"] == "acme"


# -- cost: one round trip per tenant change, none per query ------------------------------


def statements(server, query_like: str = "%") -> int:
    """Statements the app role sent to the test database, counted by the
    server (pg_stat_statements; top-level only: a statement the grant
    policies' function runs inside another is no round trip)."""
    with server.superuser(connection.settings_dict["NAME"]) as admin:
        return admin.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND userid = 'tenantry_app'::regrole AND toplevel AND query ILIKE %s",
            [query_like],
        ).fetchone()[0]


@pytest.mark.django_db
def test_round_trips_counted_by_the_server(settings, stored, postgres_server):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    set_config = "SELECT set_config(%"
    with tenant_context("acme"):
        _raw_titles()  # whatever the connection had, it is acme now
        before_all, before_set = (
            statements(postgres_server),
            statements(postgres_server, set_config),
        )
        for _ in range(10):
            _raw_titles()
            list(RlsNote.objects.all())
            RlsNote.all_tenants.count()
        assert statements(postgres_server, set_config) == before_set  # unchanged tenant: none
        assert statements(postgres_server) == before_all + 30  # and nothing else extra
    before_set = statements(postgres_server, set_config)
    for n in range(10):
        with tenant_context(("globex", "acme")[n % 2]):
            _raw_titles()
            _raw_titles()
    assert statements(postgres_server, set_config) == before_set + 10  # one per change

    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": "transaction"}
    before_set = statements(postgres_server, set_config)
    with tenant_context("acme"), transaction.atomic():
        for _ in range(10):
            _raw_titles()
    assert statements(postgres_server, set_config) == before_set + 1  # one per transaction


# -- the migration operation, other column types, the command ---------------------------


@pytest.mark.django_db
def test_an_integer_tenant_column(settings):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    with rls_bypass("set-up"):
        RlsMeter.all_tenants.bulk_create(
            [RlsMeter(tenant_number=7, reading=1), RlsMeter(tenant_number=8, reading=2)]
        )
    with tenant_context("7"):
        assert list(RlsMeter.all_tenants.values_list("reading", flat=True)) == [1]
        with pytest.raises(TenantMismatchError, match="app_rlsmeter"), transaction.atomic():
            with connection.cursor() as cursor:  # around the first wall's instance guard
                cursor.execute(
                    "INSERT INTO app_rlsmeter (tenant_number, reading) VALUES (%s, %s)", [8, 3]
                )
    assert RlsMeter.all_tenants.count() == 0  # no tenant: '' never reaches the cast


@pytest.mark.django_db
def test_the_operation_is_reversible(settings, stored):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    run_operations("backwards", ["app.RlsNote"])
    with tenant_context("acme"):
        assert _raw_titles() == EVERYONE
    run_operations("forwards", ["app.RlsNote"])
    run_operations("forwards", ["app.RlsNote"])  # again: still one policy of each kind
    with tenant_context("acme"):
        assert _raw_titles() == ACME
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT polname FROM pg_policy WHERE polrelid = 'app_rlsnote'::regclass"
            " ORDER BY polname"
        )
        # The isolation policy, and the two that admit granted rows
        # (docs/collaboration.md#postgresql).
        assert [row[0] for row in cursor.fetchall()] == [
            "tenantry_isolation",
            "tenantry_shared_read",
            "tenantry_shared_write",
        ]


@pytest.mark.django_db
def test_the_app_role_is_bound_by_the_policies():
    """The suite connects as a role that RLS applies to."""
    assert role_problems(connection) == []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, relforcerowsecurity FROM pg_class WHERE relname = 'app_rlsnote'"
        )
        assert cursor.fetchone() == ("tenantry_app", True)


@pytest.mark.django_db
def test_rls_check_command_lists_models_without_a_policy(settings, capsys):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    with pytest.raises(CommandError, match="row-level security problem"):
        call_command("tenantry", "rls", "--check")
    out = capsys.readouterr().out
    assert "ok       app.RlsFolder (app_rlsfolder.tenant_id)" in out
    assert "ok       app.RlsNote (app_rlsnote.tenant_id)" in out
    assert "ok       app.RlsMeter (app_rlsmeter.tenant_number)" in out
    assert "MISSING  app.Item (app_item.tenant_id)" in out
    assert "EnableTenantRLS('app.Item', field='tenant_id')" in out
    assert "MISSING  app.Project (app_project.organization_id)" in out
    call_command("tenantry", "rls")  # without --check: a report, no error


@pytest.mark.django_db
def test_rls_check_command_warns_about_a_role_that_ignores_rls(settings, capsys, postgres_server):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": True}
    with postgres_server.superuser() as admin:
        admin.execute("ALTER ROLE tenantry_app BYPASSRLS")
        try:
            call_command("tenantry", "rls")
        finally:
            admin.execute("ALTER ROLE tenantry_app NOBYPASSRLS")
    err = capsys.readouterr().err
    assert "'tenantry_app' has BYPASSRLS: it ignores row-level security" in err
    assert role_problems(connection) == []
