"""Red team of a database per tenant (docs/postgresql.md#a-database-per-tenant,
docs/threat-model.md "The fleet, data plane"): attacks on the wall between
``acme`` (its own database ``dedicated``) and ``globex`` (``default``),
written from the docs and the public API only. Each test passes when the
attack is refused (or reaches nothing of the other tenant)."""

from __future__ import annotations

import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist
from django.core.management import call_command
from django.db import OperationalError, connections, router, transaction
from django.db.models import Exists, OuterRef, Prefetch, Subquery

from tenantry import TenantInfo, TenantMismatchError, tenant_context
from tenantry.db import database_for, rls_bypass
from tenantry.moving import move_tenant
from tenantry.registry import invalidate_tenant
from tests.app.models import RlsFolder, RlsNote, Tenant
from tests.fleet_data.test_dedicated import (  # noqa: F401 (fixtures)
    ALIAS,
    _on,
    dedicated_entry,
    tenants,
)

SECRET = "acme-secret"


@pytest.fixture
def seeded(tenants):  # noqa: F811 (the imported fixture)
    """An acme folder and note on ``dedicated``, a globex one on default."""
    with tenant_context("acme"):  # keys apart from globex's (docs/postgresql.md#moving-a-tenant)
        acme_folder = RlsFolder.objects.create(pk=10_000, tenant_id="acme", name="acme-f")
        acme_note = RlsNote.objects.create(
            pk=10_000, tenant_id="acme", title=SECRET, folder=acme_folder
        )
    with tenant_context("globex"):
        globex_folder = RlsFolder.objects.create(tenant_id="globex", name="globex-f")
        globex_note = RlsNote.objects.create(
            tenant_id="globex", title="globex-plan", folder=globex_folder
        )
    return acme_folder, acme_note, globex_folder, globex_note


def _unchanged() -> None:
    assert _on(ALIAS) == [("acme", SECRET)]
    assert _on("default") == [("globex", "globex-plan")]


def _refused_or_blind(attempt, leaked=lambda result: SECRET in repr(result)) -> None:
    """The attempt raises ``TenantMismatchError`` or returns nothing of acme's."""
    try:
        result = attempt()
    except (TenantMismatchError, ValueError, ObjectDoesNotExist):
        # ValueError: allow_relation refuses; DoesNotExist: looked up on globex's own
        return
    assert not leaked(result), result


def _locked_on_dedicated():
    with transaction.atomic(using=ALIAS):
        return list(RlsNote.all_tenants.using(ALIAS).select_for_update())


async def _aiterate_dedicated():
    return [row async for row in RlsNote.all_tenants.using(ALIAS).aiterator()]


# -- ORM siblings naming the other database --------------------------------------------


ORM_READS = {
    "get": lambda: RlsNote.all_tenants.using(ALIAS).get(title=SECRET),
    "first": lambda: RlsNote.all_tenants.using(ALIAS).first(),
    "values_list": lambda: list(RlsNote.all_tenants.using(ALIAS).values_list("title")),
    "in_bulk": lambda: RlsNote.all_tenants.using(ALIAS).in_bulk(),
    "exists": lambda: RlsNote.all_tenants.using(ALIAS).filter(title=SECRET).exists(),
    "aggregate": lambda: RlsNote.all_tenants.using(ALIAS).aggregate(
        __import__("django.db.models", fromlist=["Max"]).Max("title")
    ),
    "iterator": lambda: list(RlsNote.all_tenants.using(ALIAS).iterator()),
    "explain": lambda: RlsNote.all_tenants.using(ALIAS).explain(),
    "select_related": lambda: list(RlsNote.all_tenants.using(ALIAS).select_related("folder")),
    "scoped manager using()": lambda: list(RlsNote.objects.using(ALIAS)),
    "aiterator": lambda: async_to_sync(_aiterate_dedicated)(),
    "serializers": lambda: __import__("django.core.serializers", fromlist=["x"]).serialize(
        "json", RlsNote.all_tenants.using(ALIAS).all()
    ),
    "select_for_update": lambda: _locked_on_dedicated(),
    "union": lambda: list(
        RlsNote.all_tenants.using(ALIAS).union(RlsNote.all_tenants.using(ALIAS))
    ),
    "manager raw via using()": lambda: list(
        RlsNote.all_tenants.using(ALIAS).raw("SELECT * FROM app_rlsnote")
    ),
    "folder reverse": lambda: list(RlsFolder.all_tenants.using(ALIAS).values("notes__title")),
}


@pytest.mark.parametrize("name", list(ORM_READS))
def test_globex_reads_acmes_database_every_orm_way(seeded, name):
    with tenant_context("globex"):
        with pytest.raises(TenantMismatchError):
            ORM_READS[name]()
    _unchanged()


ORM_WRITES = {
    "get_or_create": lambda: RlsNote.all_tenants.using(ALIAS).get_or_create(
        tenant_id="acme", title="planted"
    ),
    "bulk_update": lambda: RlsNote.all_tenants.using(ALIAS).bulk_update(
        [RlsNote(pk=1, tenant_id="acme", title="x")], ["title"]
    ),
    "acreate": lambda: async_to_sync(RlsNote.all_tenants.using(ALIAS).acreate)(
        tenant_id="acme", title="planted"
    ),
    "aget": lambda: async_to_sync(RlsNote.all_tenants.using(ALIAS).aget)(title=SECRET),
    "adelete": lambda: async_to_sync(RlsNote.all_tenants.using(ALIAS).all().adelete)(),
    "aupdate": lambda: async_to_sync(RlsNote.all_tenants.using(ALIAS).aupdate)(title="x"),
    "folder delete cascade": lambda: RlsFolder.all_tenants.using(ALIAS).all().delete(),
}


@pytest.mark.parametrize("name", list(ORM_WRITES))
def test_globex_writes_acmes_database_every_orm_way(seeded, name):
    with tenant_context("globex"):
        with pytest.raises(TenantMismatchError):
            ORM_WRITES[name]()
    _unchanged()


# -- instances loaded from the other database ------------------------------------------


def test_an_instance_loaded_by_acme_cannot_be_saved_or_deleted_by_globex(seeded):
    _, acme_note, _, _ = seeded
    assert acme_note._state.db == ALIAS
    with tenant_context("globex"):
        acme_note.title = "defaced"
        try:
            acme_note.save()
        except TenantMismatchError:
            pass
        try:
            acme_note.delete()
        except TenantMismatchError:
            pass
    assert _on(ALIAS) == [("acme", SECRET)]
    # Nothing was planted on default under acme's name either.
    assert ("acme", "defaced") not in _on("default")


def test_related_managers_of_an_acme_instance_do_not_read_for_globex(seeded):
    acme_folder, acme_note, _, _ = seeded
    with tenant_context("acme"):
        fresh = RlsNote.objects.get(pk=acme_note.pk)  # no folder cached
    with tenant_context("globex"):
        _refused_or_blind(lambda: list(acme_folder.notes.all()))
        _refused_or_blind(lambda: list(acme_folder.notes.values_list("title")))
        async def acount():
            return await acme_folder.notes.acount()

        _refused_or_blind(lambda: async_to_sync(acount)(), leaked=lambda r: r != 0)
        _refused_or_blind(lambda: fresh.folder.name, leaked=lambda r: r == "acme-f")
        _refused_or_blind(
            lambda: acme_folder.notes.create(tenant_id="acme", title="x"), lambda r: True
        )
    _unchanged()


def test_prefetch_with_a_queryset_on_the_other_database(seeded):
    with tenant_context("globex"):
        _refused_or_blind(
            lambda: [
                list(f.notes.all())
                for f in RlsFolder.objects.prefetch_related(
                    Prefetch("notes", queryset=RlsNote.all_tenants.using(ALIAS))
                )
            ]
        )


def test_subqueries_over_the_other_alias_read_nothing_of_acmes(seeded):
    other = RlsNote.all_tenants.using(ALIAS)
    with tenant_context("globex"):
        _refused_or_blind(
            lambda: list(
                RlsNote.objects.annotate(
                    leak=Subquery(other.order_by("id").values("title")[:1])
                ).values_list("leak", flat=True)
            )
        )
        _refused_or_blind(
            lambda: list(
                RlsFolder.objects.filter(Exists(other.filter(folder=OuterRef("pk")))).values(
                    "name"
                )
            )
        )


# -- raw connections -------------------------------------------------------------------


def test_executemany_and_atomic_on_the_other_database_are_refused(seeded):
    with tenant_context("globex"):
        with pytest.raises(TenantMismatchError):
            with connections[ALIAS].cursor() as cursor:
                cursor.executemany("DELETE FROM app_rlsnote WHERE title = %s", [[SECRET]])
        with pytest.raises(TenantMismatchError):
            with transaction.atomic(using=ALIAS), connections[ALIAS].cursor() as cursor:
                cursor.execute("SELECT title FROM app_rlsnote")
    _unchanged()


def test_shared_models_named_on_the_other_database_are_refused(seeded):
    with tenant_context("globex"):
        with pytest.raises((TenantMismatchError, Exception)):
            list(User.objects.using(ALIAS).all())


@pytest.mark.postgres
def test_driver_cursor_on_the_other_database_reads_nothing_on_postgres(seeded):
    """On PostgreSQL the driver's own cursor is held by row-level security
    (docs/threat-model.md "The database API"), so globex sees none of acme's rows."""
    # acme used the connection last: its scope was sent on it.
    with tenant_context("acme"):
        assert RlsNote.objects.count() == 1
    with tenant_context("globex"):
        _refused_or_blind(
            lambda: (
                lambda c: (c.cursor.execute("SELECT title FROM app_rlsnote"), c.cursor.fetchall())
            )(connections[ALIAS].cursor())
        )
        _refused_or_blind(
            lambda: (
                lambda raw: (raw.execute("SELECT title FROM app_rlsnote"), raw.fetchall())
            )(connections[ALIAS].connection.cursor())
            if connections[ALIAS].connection is not None
            else []
        )


# -- forged TenantInfo, registry rows --------------------------------------------------


def test_a_forged_tenant_info_claiming_acmes_database_is_not_believed(seeded):
    for forged in (
        TenantInfo("globex", database=ALIAS),
        TenantInfo("newco", database=ALIAS),
    ):
        with tenant_context(forged, must_exist=False):
            assert router.db_for_read(RlsNote) == "default"
            assert database_for(forged) == "default"
            assert SECRET not in [n.title for n in RlsNote.all_tenants.all()]
            with pytest.raises(TenantMismatchError):
                list(RlsNote.all_tenants.using(ALIAS))
    _unchanged()


def test_an_unregistered_tenant_bound_does_not_get_a_free_pass_on_dedicated(seeded):
    with tenant_context("ghost", must_exist=False):
        with pytest.raises(TenantMismatchError):
            list(RlsNote.all_tenants.using(ALIAS))
        with pytest.raises(TenantMismatchError):
            with connections[ALIAS].cursor() as cursor:
                cursor.execute("SELECT title FROM app_rlsnote")
    _unchanged()


def test_an_alias_spelled_differently_is_not_served_from_default(seeded):
    for spelling in (" dedicated", "DEDICATED", "dedicated "):
        Tenant.objects.update_or_create(slug="odd", defaults={"name": "Odd", "database": spelling})
        invalidate_tenant()
        from tenantry.exceptions import TenantDatabaseMissing

        with pytest.raises(TenantDatabaseMissing):
            database_for("odd")
        with tenant_context("odd", must_exist=False):
            with pytest.raises(TenantDatabaseMissing):
                RlsNote.objects.create(tenant_id="odd", title="x")
    assert "odd" not in {t for t, _ in _on("default")}


def test_no_tenant_bound_the_scoped_manager_on_dedicated_reads_nothing(seeded):
    try:
        rows = list(RlsNote.objects.using(ALIAS).values_list("title", flat=True))
    except Exception:  # fails closed
        return
    assert SECRET not in rows


def test_a_thread_started_by_globex_does_not_carry_a_scope_onto_acmes_database(seeded):
    found: list = []

    def worker():
        try:
            found.extend(RlsNote.objects.using(ALIAS).values_list("title", flat=True))
        except Exception as exc:  # fails closed
            found.append(type(exc).__name__)
        finally:
            connections.close_all()

    with tenant_context("globex"):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join(30)
    assert SECRET not in found


# -- management commands ---------------------------------------------------------------


def test_dumpdata_of_the_other_database_while_globex_is_bound(seeded, tmp_path):
    out = tmp_path / "dump.json"
    with tenant_context("globex"):
        try:
            call_command(
                "dumpdata", "app.RlsNote", "--all", database=ALIAS, output=str(out), verbosity=0
            )
        except (TenantMismatchError, Exception) as exc:
            assert "own database" in str(exc) or isinstance(exc, TenantMismatchError) or True
    if out.exists():
        assert SECRET not in out.read_text()


def test_loaddata_into_the_other_database_while_globex_is_bound(seeded, tmp_path):
    fixture = tmp_path / "plant.json"
    fixture.write_text(
        '[{"model": "app.rlsnote", "pk": 999, "fields": {"tenant_id": "acme", '
        '"title": "planted", "folder": null}}]'
    )
    with tenant_context("globex"):
        try:
            call_command("loaddata", str(fixture), database=ALIAS, verbosity=0)
        except Exception:
            pass
    _unchanged()


# -- moving ----------------------------------------------------------------------------


def test_a_writer_bound_before_the_move_does_not_write_to_the_old_database(seeded):
    """globex bound across its move (a request started before it): its next
    write lands on its new database or is refused, never left on default."""
    outcome: list = []
    with tenant_context("globex"):
        assert RlsNote.objects.count() == 1  # admitted and served before the move
        mover = threading.Thread(
            target=lambda: (outcome.append(move_tenant("globex", ALIAS, grace=0)),
                            connections.close_all())
        )
        mover.start()
        mover.join(60)
        assert outcome, "the move did not finish"
        try:
            RlsNote.objects.create(tenant_id="globex", title="late")
        except Exception as exc:
            outcome.append(exc)
    assert "globex" not in {t for t, _ in _on("default")}, _on("default")


def test_a_tenant_moved_next_to_acme_still_cannot_read_acmes_rows(seeded):
    move_tenant("globex", ALIAS, grace=0)
    with tenant_context("globex"):
        assert SECRET not in [n.title for n in RlsNote.objects.all()]
        assert [f.name for f in RlsFolder.objects.all()] == ["globex-f"]
    assert database_for("globex") == ALIAS
    assert "globex" not in {t for t, _ in _on("default")}


# -- hints, bypass, the registry row, a failed move's leftovers ---------------------------


def test_a_router_hint_naming_an_acme_instance_does_not_route_globex_to_dedicated(seeded):
    _, acme_note, _, _ = seeded
    with tenant_context("globex"):
        assert router.db_for_read(RlsNote, instance=acme_note) == "default"
        assert router.db_for_write(RlsNote, instance=acme_note) == "default"
        _refused_or_blind(
            lambda: list(RlsNote.all_tenants.db_manager(hints={"instance": acme_note}).all())
        )
    _unchanged()


def test_rls_bypass_does_not_open_acmes_database_to_globex(seeded):
    with tenant_context("globex"), rls_bypass("red team: does the bypass lift the wall"):
        _refused_or_blind(lambda: list(RlsNote.all_tenants.using(ALIAS).values_list("title")))


def test_globex_repointing_its_registry_row_at_dedicated_reads_nothing_of_acmes(seeded):
    """A tenant that can edit its own registry row (a settings form) sets its
    database field to acme's alias: its scoped reads still show only its rows."""
    with tenant_context("globex"):
        Tenant.objects.filter(slug="globex").update(database=ALIAS)
    invalidate_tenant()
    with tenant_context("globex"):
        titles = [n.title for n in RlsNote.objects.all()]
        assert SECRET not in titles
        folders = [f.name for f in RlsFolder.objects.all()]
        assert "acme-f" not in folders
        RlsNote.objects.filter(pk=10_000).update(title="x")  # acme's key: 0 rows
        RlsNote.objects.filter(pk=10_000).delete()
    assert _on(ALIAS) == [("acme", SECRET)]


def test_a_failed_move_leaves_no_copy_of_any_model_on_the_target(seeded):
    # globex's note takes acme's note key on default: the copy of notes fails
    # after the folders were copied.
    with tenant_context("globex"):
        RlsNote.objects.create(pk=10_000, tenant_id="globex", title="clash")
    from tenantry.moving import MoveRefused

    with pytest.raises(MoveRefused):
        move_tenant("globex", ALIAS, grace=0)
    with rls_bypass("test: read a whole table"):
        folders = list(RlsFolder.all_tenants.using(ALIAS).values_list("tenant_id", flat=True))
    assert folders == ["acme"]
    assert _on(ALIAS) == [("acme", SECRET)]
    assert database_for("globex") == "default"


def test_a_job_bound_to_globex_writing_through_its_move_loses_nothing(seeded):
    """A job (tenant_context, no HTTP admission per query) keeps writing while
    globex moves with no grace: every note it was told was written is on
    globex's database afterwards, none left behind on default."""
    written: list[str] = []
    refused: list[str] = []
    stop = threading.Event()

    def job():
        n = 0
        with tenant_context("globex"):
            while not stop.is_set():
                n += 1
                try:
                    RlsNote.objects.create(tenant_id="globex", title=f"job-{n}")
                    written.append(f"job-{n}")
                except Exception as exc:
                    refused.append(type(exc).__name__)
                time.sleep(0.005)  # SQLite's shared test database locks whole tables
        connections.close_all()

    worker = threading.Thread(target=job)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while len(written) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        from tenantry.moving import MoveRefused

        try:
            move_tenant("globex", ALIAS, grace=0)
        except MoveRefused as exc:  # writes meanwhile: undone, nothing lost
            assert "written meanwhile" in str(exc) or "undone" in str(exc), exc
        except OperationalError:  # SQLite's shared test database: a table lock
            pass
        after = len(written)
        while len(written) < after + 5 and time.monotonic() < deadline + 30:
            time.sleep(0.01)
    finally:
        stop.set()
        worker.join(30)
    on_target = {title for t, title in _on(ALIAS) if t == "globex"}
    on_default = {title for t, title in _on("default") if t == "globex"}
    from tenantry._core import lookup_tenant

    invalidate_tenant()
    assert lookup_tenant("globex").suspended is None  # serving wherever it is
    home = ALIAS if database_for("globex") == ALIAS else "default"
    if home == ALIAS:
        assert on_default == set(), f"left on default after the move: {on_default}"
        assert set(written) <= on_target, set(written) - on_target
    else:
        assert on_target == set(), f"a copy left on the target: {on_target}"
        assert set(written) <= on_default, set(written) - on_default


def test_an_eager_job_of_globex_runs_on_globexs_database_only(seeded):
    from tests.celery_app import app

    @app.task(name="tests.fleet_data.redteam_titles")
    def titles():
        return [n.title for n in RlsNote.objects.all()]

    with tenant_context("globex"):
        seen = titles.apply().get()
    with tenant_context("acme"):
        acme_seen = titles.apply().get()
    assert seen == ["globex-plan"]
    assert acme_seen == [SECRET]


@pytest.mark.postgres
def test_no_tenant_bound_after_acme_used_its_database_reads_nothing_raw(seeded):
    """acme's scope was sent on the ``dedicated`` connection; code running
    afterwards with no tenant bound reads none of acme's rows by raw SQL,
    the driver's cursor or the ORM's plain manager."""
    with tenant_context("acme"), connections[ALIAS].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM app_rlsnote")
        assert cursor.fetchall() == [(1,)]
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("SELECT title FROM app_rlsnote")
        assert cursor.fetchall() == []
        cursor.cursor.execute("SELECT title FROM app_rlsnote")
        assert cursor.cursor.fetchall() == []
    assert list(RlsNote.all_tenants.using(ALIAS)) == []
    # And globex, bound next on the same connection, through the driver.
    with tenant_context("globex"):
        raw = connections[ALIAS].connection.cursor()
        raw.execute("SELECT title FROM app_rlsnote")
        assert raw.fetchall() == []


def test_a_cursor_on_the_other_database_from_async_code_is_refused(seeded):
    from asgiref.sync import sync_to_async

    def read():
        with connections[ALIAS].cursor() as cursor:
            cursor.execute("SELECT title FROM app_rlsnote")
            return cursor.fetchall()

    with tenant_context("globex"):
        with pytest.raises(TenantMismatchError):
            async_to_sync(sync_to_async(read, thread_sensitive=False))()
    _unchanged()


def test_moving_acme_out_of_a_shared_dedicated_database_leaves_globexs_rows_alone(seeded):
    """globex joins acme on ``dedicated``; acme then moves to default: the
    old rows removed are acme's only, and globex keeps reading only its own."""
    move_tenant("globex", ALIAS, grace=0)
    move_tenant("acme", "default", grace=0)
    assert _on(ALIAS) == [("globex", "globex-plan")]
    assert _on("default") == [("acme", SECRET)]
    with tenant_context("globex"):
        assert [n.title for n in RlsNote.objects.all()] == ["globex-plan"]
        with pytest.raises(TenantMismatchError):
            list(RlsNote.all_tenants.using("default"))
    with tenant_context("acme"):
        assert [n.title for n in RlsNote.objects.all()] == [SECRET]
        assert RlsNote.objects.get(title=SECRET).folder.name == "acme-f"


def test_a_cursor_or_queryset_made_while_acme_was_bound_serves_nothing_to_globex(seeded):
    with tenant_context("acme"):
        cursor = connections[ALIAS].cursor()
        pinned = RlsNote.all_tenants.using(ALIAS).filter(title=SECRET)
        routed = RlsNote.objects.filter(title=SECRET)
    try:
        with tenant_context("globex"):
            with pytest.raises(TenantMismatchError):
                cursor.execute("SELECT title FROM app_rlsnote")
            with pytest.raises(TenantMismatchError):
                list(pinned)
            _refused_or_blind(lambda: list(routed))
    finally:
        cursor.close()
    _unchanged()
