"""A database per tenant (docs/postgresql.md#a-database-per-tenant): the
registry's ``TENANT_DATABASE_FIELD`` names a tenant's alias,
``TenantDatabaseRouter`` sends its tenant-owned rows there, the wall refuses
every way of naming another tenant's database, ``tenantry migrate`` builds
every database (row-level security on each PostgreSQL one) and ``tenantry
move`` moves a tenant with 503 only while it switches.

A second database (an SQLite file, or a second database of the suite's
PostgreSQL cluster as the non-superuser app role) is added as the alias
``dedicated`` for this module only, and migrated by ``tenantry migrate``.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections, router
from django.test import Client, override_settings

from tenantry import TenantInfo, TenantMismatchError, signals, tenant_context
from tenantry._core import lookup_tenant
from tenantry.db import database_for, rls_bypass
from tenantry.db.router import constraint_problems
from tenantry.exceptions import TenantDatabaseMissing
from tenantry.models import AbstractTenant  # noqa: F401 (the registry's base)
from tenantry.moving import MoveRefused, move_tenant
from tenantry.registry import invalidate_tenant
from tests.app.models import RlsFolder, RlsNote, Tenant
from tests.fleet_data.conftest import database_alias
from tests.postgres_fixtures import ON_POSTGRES

ALIAS = "dedicated"
CONFIG = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "app.Tenant",
    "TENANT_DATABASE_FIELD": "database",
    **({"TENANT_RLS": True} if ON_POSTGRES else {}),
}
ROUTED = {
    "DJUST_CONFIG": CONFIG,
    "DATABASE_ROUTERS": ["tenantry.db.TenantDatabaseRouter"],
}


@pytest.fixture(scope="module")
def dedicated_entry(request, django_db_setup, django_db_blocker):
    """The ``DATABASES`` entry of ``dedicated``, migrated once by ``manage.py
    tenantry migrate``."""
    if ON_POSTGRES:
        server = request.getfixturevalue("postgres_server")
        name = server.create_database("test_tenantry_dedicated")
        entry = {**connections["default"].settings_dict, "NAME": name}
        folder = None
    else:
        folder = tempfile.mkdtemp(prefix="tenantry-dedicated-")
        entry = {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(folder, "t.db")}
    with django_db_blocker.unblock(), override_settings(**ROUTED):
        with database_alias(ALIAS, entry):
            call_command("tenantry", "migrate", stdout=open(os.devnull, "w"))
    return entry


@pytest.fixture
def tenants(dedicated_entry, transactional_db):
    """``acme`` on ``dedicated``, ``globex`` on default; the dedicated
    database emptied afterwards (Django flushes only ``default``)."""
    with override_settings(**ROUTED), database_alias(ALIAS, dedicated_entry):
        Tenant.objects.create(slug="acme", name="Acme", database=ALIAS)
        Tenant.objects.create(slug="globex", name="Globex")
        invalidate_tenant()
        try:
            yield
        finally:
            invalidate_tenant()
            with rls_bypass("test clean-up"), connections[ALIAS].cursor() as cursor:
                for table in ("app_rlsnote", "app_rlsfolder"):
                    cursor.execute(f"DELETE FROM {table}")


def _on(alias: str, model=RlsNote) -> list[tuple[str, str]]:
    """Every row of ``model`` on ``alias`` as ``(tenant, title)``, read with
    no wall (the tests' own view of the database)."""
    with rls_bypass("test: read a whole table"):
        return sorted(model.all_tenants.using(alias).values_list("tenant_id", "title"))


# -- configuration and the registry ---------------------------------------------------


def test_tenant_info_takes_a_database_alias():
    assert TenantInfo("acme").database is None
    assert TenantInfo("acme", database="").database is None
    info = TenantInfo("acme", database="eu")
    assert info.database == "eu"
    import pickle

    assert pickle.loads(pickle.dumps(info)).database == "eu"
    with pytest.raises(TypeError, match="database alias"):
        TenantInfo("acme", database=3)


def test_tenant_database_field_is_validated_in_one_parser(settings):
    from django.core.exceptions import ImproperlyConfigured

    from tenantry import conf

    settings.DJUST_CONFIG = {
        "TENANT_VALIDATOR": "tests.sample_resolvers.from_query",
        "TENANT_DATABASE_FIELD": "database",
    }
    with pytest.raises(ImproperlyConfigured, match=r"TENANT_DATABASE_FIELD.*TENANT_MODEL"):
        conf.load()
    settings.DJUST_CONFIG = {"TENANT_MODEL": "app.Tenant", "TENANT_DATABASE_FIELD": "data base"}
    with pytest.raises(ImproperlyConfigured, match=r"TENANT_DATABASE_FIELD.*field name"):
        conf.load()
    settings.DJUST_CONFIG = {"TENANT_MODEL": "app.Tenant", "TENANT_DATABASE_FIELD": "database"}
    conf.load()
    assert conf.current().tenant_database_field == "database"


def test_the_registry_reads_each_tenants_database(tenants):
    assert lookup_tenant("acme").database == ALIAS
    assert lookup_tenant("globex").database is None
    assert database_for("acme") == ALIAS
    assert database_for("globex") == "default"
    # The registry's answer wins over what a TenantInfo claims.
    assert database_for(TenantInfo("globex", database=ALIAS)) == "default"


# -- routing --------------------------------------------------------------------------


def _write_every_way(tenant: str) -> None:
    folder = RlsFolder.objects.create(tenant_id=tenant, name="f")
    RlsNote.objects.create(tenant_id=tenant, title="create", folder=folder)
    RlsNote.objects.get_or_create(tenant_id=tenant, title="get_or_create")
    RlsNote.objects.update_or_create(
        tenant_id=tenant, title="update_or_create", defaults={"folder": folder}
    )
    RlsNote.objects.bulk_create([RlsNote(tenant_id=tenant, title="bulk_create")])
    note = RlsNote(tenant_id=tenant, title="save")
    note.save()
    note.title = "saved"
    note.save()
    moved = list(RlsNote.objects.filter(title="bulk_create"))
    for row in moved:
        row.title = "bulk_update"
    RlsNote.objects.bulk_update(moved, ["title"])
    RlsNote.objects.filter(title="create").update(title="update")
    RlsNote.objects.create(tenant_id=tenant, title="deleted").delete()

    async def async_orm():
        await RlsNote.objects.acreate(tenant_id=tenant, title="async")
        return await RlsNote.objects.acount()

    assert async_to_sync(async_orm)() == 6
    assert RlsNote.objects.count() == 6
    assert [n.title for n in RlsNote.objects.iterator()][:1] == ["update"]
    assert RlsNote.objects.get(title="update").folder.name == "f"


EXPECTED = ["async", "bulk_update", "get_or_create", "saved", "update", "update_or_create"]


def test_every_orm_write_and_read_goes_to_the_tenants_database(tenants):
    with tenant_context("acme"):
        _write_every_way("acme")
    with tenant_context("globex"):
        _write_every_way("globex")
    assert _on(ALIAS) == [("acme", t) for t in EXPECTED]
    assert _on("default") == [("globex", t) for t in EXPECTED]
    with rls_bypass("test"):
        assert RlsFolder.all_tenants.using(ALIAS).filter(tenant_id="acme").count() == 1
        assert RlsFolder.all_tenants.using("default").filter(tenant_id="acme").count() == 0


def test_shared_models_stay_on_default(tenants):
    with tenant_context("acme"):
        user = User.objects.create(username="acme-admin")
        assert router.db_for_write(User) == "default"
        assert router.db_for_read(Tenant) == "default"
        assert user._state.db == "default"
        assert Tenant.objects.filter(slug="acme").exists()
    assert User.objects.using("default").filter(username="acme-admin").exists()


def test_no_tenant_bound_goes_to_default_or_the_instances_database(tenants):
    assert router.db_for_read(RlsNote) == "default"
    with tenant_context("acme"):
        note = RlsNote.objects.create(tenant_id="acme", title="x")
    assert note._state.db == ALIAS
    assert router.db_for_write(RlsNote, instance=note) == ALIAS


# -- the wall: another database named explicitly ----------------------------------------


def test_naming_another_database_is_refused_every_way(tenants):
    with tenant_context("globex"):
        RlsNote.objects.create(tenant_id="globex", title="g")
    with tenant_context("acme"):
        RlsNote.objects.create(tenant_id="acme", title="a")
    attempts = {
        "using() read": lambda: list(RlsNote.objects.using(other)),
        "using() count": lambda: RlsNote.all_tenants.using(other).count(),
        "db_manager()": lambda: list(RlsNote.all_tenants.db_manager(other).all()),
        "create via using()": lambda: RlsNote.all_tenants.using(other).create(
            tenant_id=me, title="x"
        ),
        "save(using=)": lambda: RlsNote(tenant_id=me, title="x").save(using=other),
        "bulk_create": lambda: RlsNote.all_tenants.using(other).bulk_create(
            [RlsNote(tenant_id=me, title="x")]
        ),
        "update_or_create": lambda: RlsNote.all_tenants.using(other).update_or_create(
            tenant_id=me, title="x"
        ),
        "update()": lambda: RlsNote.all_tenants.using(other).update(title="x"),
        "delete()": lambda: RlsNote.all_tenants.using(other).all().delete(),
        "raw()": lambda: list(RlsNote.all_tenants.raw("SELECT * FROM app_rlsnote", using=other)),
        "async": lambda: async_to_sync(RlsNote.all_tenants.using(other).acount)(),
    }
    for me, other in (("acme", "default"), ("globex", ALIAS)):
        with tenant_context(me):
            for name, attempt in attempts.items():
                if other == "default" and name == "raw()":
                    continue  # default is shared: raw SQL there is the scoping's job
                with pytest.raises(TenantMismatchError, match="own database"):
                    attempt()
                    pytest.fail(f"{name} reached {other!r} as {me!r}")
    with tenant_context("globex"), pytest.raises(TenantMismatchError, match="own database"):
        with connections[ALIAS].cursor() as cursor:
            cursor.execute("SELECT tenant_id FROM app_rlsnote")
    # Nothing was changed on either side.
    assert _on(ALIAS) == [("acme", "a")]
    assert _on("default") == [("globex", "g")]


def test_no_relation_across_databases(tenants):
    with tenant_context("globex"):
        folder = RlsFolder.objects.create(tenant_id="globex", name="g")
    with tenant_context("acme"):
        note = RlsNote.objects.create(tenant_id="acme", title="a")
        with pytest.raises(ValueError, match="database"):
            note.folder = folder


def test_an_alias_not_in_databases_is_refused_not_served_from_default(tenants):
    Tenant.objects.create(slug="lost", name="Lost", database="nowhere")
    with pytest.raises(TenantDatabaseMissing, match="nowhere"):
        database_for("lost")
    with override_settings(ROOT_URLCONF="tests.fleet_data.dedicated_urls"):
        response = Client().get("/notes/", HTTP_HOST="lost.example.com")
    assert response.status_code == 503
    with tenant_context("lost", must_exist=False), pytest.raises(TenantDatabaseMissing):
        RlsNote.objects.create(tenant_id="lost", title="x")
    assert ("lost", "x") not in _on("default")
    from tenantry.checks import check_tenant_databases

    [missing] = check_tenant_databases()
    assert missing.id == "tenantry.E058" and "'nowhere'" in missing.msg


def test_constraints_to_shared_tables_are_named(tenants):
    from tenantry.checks import check_tenant_database_setup

    problems = {f"{m._meta.label}.{f.name}" for m, f in constraint_problems()}
    assert "lifecycle.Membership.user" in problems  # a foreign key to auth.User
    assert "app.RlsNote.folder" not in problems  # both ends routed
    messages = [m.msg for m in check_tenant_database_setup() if m.id == "tenantry.E058"]
    assert any("lifecycle.Membership.user" in m and "db_constraint=False" in m for m in messages)
    with override_settings(DATABASE_ROUTERS=[]):
        assert any("TenantDatabaseRouter" in m.msg for m in check_tenant_database_setup())


# -- migrate ------------------------------------------------------------------------------


def _tables(alias: str) -> set[str]:
    with connections[alias].cursor() as cursor:
        return set(connections[alias].introspection.table_names(cursor))


def test_migrate_builds_every_tenant_database(tenants):
    tables = _tables(ALIAS)
    assert {"app_rlsnote", "app_rlsfolder"} <= tables
    # Shared tables and tables holding a constraint to one stay on default.
    assert not {"auth_user", "app_tenant", "tenantry_suspension", "lifecycle_membership"} & tables
    from io import StringIO

    out = StringIO()
    call_command("tenantry", "migrate", "--plan", stdout=out)
    assert out.getvalue().split() == ["default", ALIAS]
    Tenant.objects.create(slug="lost", name="Lost", database="nowhere")
    with pytest.raises(CommandError, match="nowhere"):
        call_command("tenantry", "migrate", stdout=out)


@pytest.mark.postgres
def test_row_level_security_holds_on_the_tenant_database(tenants):
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'app_rlsnote'"
        )
        assert cursor.fetchall() == [(True, True)]
    with rls_bypass("test set-up"), tenant_context("acme", must_exist=False):
        RlsNote.all_tenants.using(ALIAS).create(tenant_id="acme", title="a")
        RlsNote.all_tenants.using(ALIAS).create(tenant_id="intruder", title="i")
    with tenant_context("acme"), connections[ALIAS].cursor() as cursor:
        cursor.execute("SELECT tenant_id FROM app_rlsnote")
        assert cursor.fetchall() == [("acme",)]
        with pytest.raises(TenantMismatchError):
            RlsNote.all_tenants.create(tenant_id="intruder", title="x")
    connections[ALIAS].close()
    with connections[ALIAS].cursor() as cursor:  # no tenant bound: nothing
        cursor.execute("SELECT count(*) FROM app_rlsnote")
        assert cursor.fetchall() == [(0,)]


# -- move ---------------------------------------------------------------------------------


def _seed(tenant: str, n: int = 3, first_key: int | None = None) -> dict[str, int]:
    """``n`` notes of ``tenant`` in a folder; keys from ``first_key`` when
    given (each database has its own sequences: keys kept by a move must
    not be taken on the target, docs/postgresql.md#moving-a-tenant)."""
    with tenant_context(tenant):
        folder = RlsFolder.objects.create(pk=first_key, tenant_id=tenant, name=f"{tenant}-f")
        keys = {}
        for i in range(n):
            keys[f"{tenant}-{i}"] = RlsNote.objects.create(
                pk=None if first_key is None else first_key + i,
                tenant_id=tenant,
                title=f"{tenant}-{i}",
                folder=folder,
            ).pk
    return keys


def test_move_copies_verifies_switches_and_removes(tenants):
    keys = _seed("globex")
    _seed("acme", 1, first_key=10_000)
    seen = []
    signals.tenant_moved.connect(
        lambda **kw: seen.append((kw["source"], kw["target"], kw["rows"])),
        weak=False,
        dispatch_uid="test-moved",
    )
    try:
        moved = move_tenant("globex", ALIAS, grace=0)
    finally:
        signals.tenant_moved.disconnect(dispatch_uid="test-moved")
    assert moved.rows["app.RlsNote"] == 3 and moved.rows["app.RlsFolder"] == 1
    assert seen == [("default", ALIAS, moved.rows)]
    assert Tenant.objects.get(slug="globex").database == ALIAS
    assert database_for("globex") == ALIAS
    assert [t for t, _ in _on("default")] == []
    with tenant_context("globex"):
        assert {n.title: n.pk for n in RlsNote.objects.all()} == keys  # keys kept
        assert RlsNote.objects.get(title="globex-0").folder.name == "globex-f"
        RlsNote.objects.create(tenant_id="globex", title="after")  # the sequence moved on
    assert not Tenant.objects.get(slug="globex").settings.get("suspended")
    assert lookup_tenant("globex").suspended is None
    # And back to the shared database.
    call_command(
        "tenantry", "move", "globex", "default", "--grace", "0", stdout=open(os.devnull, "w")
    )
    assert sorted(t for _, t in _on("default")) == sorted([*keys, "after"])
    assert [t for t, _ in _on(ALIAS)] == ["acme"]


def test_a_failed_move_leaves_the_tenant_on_its_old_database(tenants):
    keys = _seed("globex")
    # A row already on the target with one of globex's keys: the copy fails.
    with tenant_context("acme"):
        RlsNote.objects.create(pk=max(keys.values()), tenant_id="acme", title="squatter")
    with pytest.raises(MoveRefused, match="undone"):
        move_tenant("globex", ALIAS, grace=0)
    assert Tenant.objects.get(slug="globex").database == ""
    assert lookup_tenant("globex").suspended is None  # serving
    assert sorted(t for _, t in _on("default")) == sorted(keys)
    assert _on(ALIAS) == [("acme", "squatter")]
    with pytest.raises(CommandError, match="already"):
        call_command("tenantry", "move", "acme", ALIAS, "--grace", "0")
    with pytest.raises(CommandError, match="not an alias"):
        call_command("tenantry", "move", "acme", "nowhere", "--grace", "0")


def _until(condition, limit: float = 60.0) -> None:
    """Wait for ``condition`` (a bound on a hung test, not a timing claim)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the clients stopped answering"
        time.sleep(0.01)


def _keys_from(alias: str, start: int) -> None:
    """New notes on ``alias`` take keys from ``start`` on (so that keys a
    move keeps do not meet them)."""
    with rls_bypass("test set-up"), connections[alias].cursor() as cursor:
        if connections[alias].vendor == "postgresql":
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('app_rlsnote', 'id'), %s)", [start]
            )
        else:
            cursor.execute(
                "INSERT INTO app_rlsnote (id, tenant_id, title) VALUES (%s, 'x', 'x')", [start]
            )
            cursor.execute("DELETE FROM app_rlsnote WHERE id = %s", [start])


def test_move_under_concurrent_requests_loses_nothing(tenants):
    """Two clients keep writing notes (globex, which moves, and acme, which
    does not) while globex moves: every note answered 201 is on globex's
    database afterwards, 503s fall only inside the move, acme never sees one."""
    _seed("globex", 2)
    _keys_from(ALIAS, 1_000_000)
    stop = threading.Event()
    #: (sent, answered, status, title) of each request, in order.
    answers: dict[str, list[tuple[float, float, int, str]]] = {"globex": [], "acme": []}
    refusals: list[tuple[str, str | None]] = []

    def client(tenant: str) -> None:
        http = Client()
        n = 0
        while not stop.is_set():
            n += 1
            sent = time.monotonic()
            response = http.post("/notes/", {"title": f"c-{n}"}, HTTP_HOST=f"{tenant}.example.com")
            answers[tenant].append((sent, time.monotonic(), response.status_code, f"c-{n}"))
            if response.status_code == 503:
                refusals.append((response.content.decode(), response.get("Retry-After")))
            time.sleep(0.005)
        connections.close_all()

    with override_settings(ROOT_URLCONF="tests.fleet_data.dedicated_urls"):
        threads = [threading.Thread(target=client, args=(t,)) for t in answers]
        for thread in threads:
            thread.start()
        try:
            _until(lambda: len(answers["globex"]) >= 5)
            started = time.monotonic()
            move_tenant("globex", ALIAS, grace=0.2)
            ended = time.monotonic()
            _until(lambda: sum(1 for a in answers["globex"] if a[0] > ended and a[2] == 201) >= 3)
        finally:  # a failure here must not leave writers holding SQLite's locks
            stop.set()
            for thread in threads:
                thread.join(30)
    statuses = {t: {a[2] for a in found} for t, found in answers.items()}
    assert statuses["acme"] == {201}, statuses
    assert 503 in statuses["globex"] and statuses["globex"] <= {201, 503}, statuses
    # Every 503 was a request in flight while the move ran (ordering, not duration).
    assert all(
        sent <= ended and answered >= started
        for sent, answered, status, _ in answers["globex"]
        if status == 503
    )
    # Before the move and after it: served.
    assert all(a[2] == 201 for a in answers["globex"] if a[1] < started or a[0] > ended)
    body, retry_after = refusals[0]
    assert "being moved" in body and retry_after is not None  # not "suspended"
    written = {a[3] for a in answers["globex"] if a[2] == 201}
    on_target = {title for t, title in _on(ALIAS) if t == "globex"}
    assert written <= on_target, written - on_target  # 0 lost rows
    assert [t for t, _ in _on("default")] == []


def test_a_tenant_being_moved_is_not_moved_twice_and_a_suspension_stays(tenants):
    from tenantry import suspension

    suspension.hold_for_move("globex", ALIAS)  # another move under way
    with pytest.raises(MoveRefused, match="being moved already"):
        move_tenant("globex", ALIAS, grace=0)
    assert lookup_tenant("globex").suspended.startswith("tenantry:moving")
    suspension.release_move("globex")
    # A suspended tenant can move, and stays suspended.
    suspension.suspend("globex", reason="unpaid")
    move_tenant("globex", ALIAS, grace=0)
    assert lookup_tenant("globex").suspended == "unpaid"
    assert database_for("globex") == ALIAS


# -- grants and dedicated databases (docs/collaboration.md#grants-and-dedicated-databases)


def test_no_grant_reaches_or_leaves_a_tenant_with_its_own_database(tenants):
    from tenantry import sharing
    from tenantry.exceptions import GrantRefused

    with tenant_context("acme"):
        acme_note = RlsNote.objects.create(tenant_id="acme", title="acme-secret")
        with pytest.raises(GrantRefused, match="default database"):
            sharing.grant(acme_note, "globex")
    with tenant_context("globex"):
        globex_note = RlsNote.objects.create(tenant_id="globex", title="globex-plan")
        with pytest.raises(GrantRefused, match="default database"):
            sharing.grant(globex_note, "acme")
        assert sharing.grants_given() == []


def test_a_tenant_holding_grants_is_not_moved(tenants):
    from tenantry import sharing

    Tenant.objects.create(slug="initech", name="Initech")
    invalidate_tenant()
    with tenant_context("globex"):
        note = RlsNote.objects.create(tenant_id="globex", title="shared-plan")
        grant = sharing.grant(note, "initech")
    for moving in ("globex", "initech"):  # the giver and the receiver alike
        with pytest.raises(MoveRefused, match=r"1 grant\(s\).*revoke"):
            move_tenant(moving, ALIAS, grace=0)
    assert database_for("globex") == "default" and database_for("initech") == "default"
    assert [t for t, _ in _on(ALIAS)] == []
    with tenant_context("globex"):
        sharing.revoke(grant)
    assert move_tenant("initech", ALIAS, grace=0).target == ALIAS
