"""TENANT_RLS, the EnableTenantRLS operation and the queryset scopes, on
whichever database the run uses (tests/isolation/test_rls.py attacks the wall on
PostgreSQL)."""

from __future__ import annotations

import pytest
from django.apps import apps as django_apps
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.state import ProjectState
from django.db.migrations.writer import MigrationWriter
from django.db.models import Count

from tenantry import conf, tenant_context
from tenantry.checks import check_id
from tenantry.db import EnableTenantRLS, rls_bypass, rls_mode
from tenantry.db.scope import BYPASS, _asked
from tests.app.models import Item, RlsNote


@pytest.mark.parametrize(
    ("value", "mode"), [(False, "off"), (True, "session"), ("transaction", "transaction")]
)
def test_tenant_rls_values(settings, value, mode):
    settings.DJUST_CONFIG = {"TENANT_RLS": value}
    assert conf.current().rls == mode
    assert rls_mode() == mode


@pytest.mark.parametrize("bad", ["session", "yes", 1, None, "True"])
def test_a_bad_tenant_rls_names_the_key(settings, bad):
    settings.DJUST_CONFIG = {"TENANT_RLS": bad}
    with pytest.raises(ImproperlyConfigured, match=r"TENANT_RLS.*False, True or 'transaction'"):
        conf.load()
    messages = [m for m in run_checks(tags=["tenantry"]) if m.id == check_id("TENANT_RLS")]
    assert len(messages) == 1 and "TENANT_RLS" in messages[0].msg


def test_tenant_rls_is_a_known_key(settings):
    settings.DJUST_CONFIG = {"TENANT_RLS": True, "TENANT_RLS_TYPO": True}
    assert [m.msg for m in run_checks(tags=["tenantry"]) if m.id == "tenantry.W001"] == [
        "DJUST_CONFIG['TENANT_RLS_TYPO'] is not a tenantry setting and is ignored."
    ]


def test_rls_on_another_database_is_a_system_check_error(settings):
    """This test is SQLite-only (no database marker: the PostgreSQL run
    leaves it out): there, TENANT_RLS must be refused."""
    assert connection.vendor == "sqlite"
    settings.DJUST_CONFIG = {"TENANT_RLS": True}
    errors = [m for m in run_checks(tags=["tenantry"]) if m.id == check_id("TENANT_RLS")]
    assert len(errors) == 1
    assert "DATABASES['default'] is sqlite: row-level security needs PostgreSQL" in errors[0].msg
    settings.DJUST_CONFIG = {"TENANT_RLS": False}
    assert not [m for m in run_checks(tags=["tenantry"]) if m.id == check_id("TENANT_RLS")]
    with pytest.raises(CommandError, match="row-level security needs PostgreSQL"):
        call_command("tenantry", "rls", "--check")


# -- the migration operation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("RlsNote",), "takes a model label like 'shop.Order', got 'RlsNote'"),
        (("app.RlsNote.x",), "got 'app.RlsNote.x'"),
        ((None,), "got None"),
        (("app.RlsNote", ""), "takes the tenant field's name"),
    ],
)
def test_bad_operation_arguments_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        EnableTenantRLS(*args)


def test_the_operation_serializes_into_a_migration():
    op = EnableTenantRLS("app.RlsNote", field="tenant_id")
    assert op.deconstruct() == ("EnableTenantRLS", ["app.RlsNote"], {"field": "tenant_id"})
    assert op.describe() == "Enable and force row-level security on app.RlsNote by tenant_id"
    assert op.migration_name_fragment == "enable_tenant_rls_rlsnote"
    code, imports = MigrationWriter.serialize(op)
    assert code.startswith("tenantry.db.operations.EnableTenantRLS(")
    assert "import tenantry.db.operations" in imports


def collected_sql(op: EnableTenantRLS, direction: str) -> list[str]:
    state = ProjectState.from_apps(django_apps)
    # Not entered: SQLite's editor refuses to open inside the test's transaction,
    # and collecting needs no connection state.
    editor = connection.schema_editor(collect_sql=True, atomic=False)
    editor.collected_sql, editor.deferred_sql = [], []
    getattr(op, f"database_{direction}")("app", editor, state, state)
    return editor.collected_sql


@pytest.mark.django_db
def test_the_operation_sql_on_this_database():
    forwards = collected_sql(EnableTenantRLS("app.RlsNote"), "forwards")
    backwards = collected_sql(EnableTenantRLS("app.RlsNote"), "backwards")
    meter = collected_sql(EnableTenantRLS("app.RlsMeter", field="tenant_number"), "forwards")
    if connection.vendor != "postgresql":
        assert (forwards, backwards, meter) == ([], [], [])  # SQLite migrates without it
        return
    condition = (
        "\"tenant_id\" = current_setting('tenantry.tenant_id', true) "
        "OR current_setting('tenantry.bypass', true) = 'on'"
    )
    assert forwards[:4] == [
        'ALTER TABLE "app_rlsnote" ENABLE ROW LEVEL SECURITY;',
        'ALTER TABLE "app_rlsnote" FORCE ROW LEVEL SECURITY;',
        'DROP POLICY IF EXISTS "tenantry_isolation" ON "app_rlsnote";',
        f'CREATE POLICY "tenantry_isolation" ON "app_rlsnote" USING ({condition}) '
        f"WITH CHECK ({condition});",
    ]
    # Then the grant policies and the trigger that keeps the tenant column
    # (docs/collaboration.md#postgresql).
    granted = [sql for sql in forwards[4:] if sql.startswith(("CREATE POLICY", "CREATE TRIGGER"))]
    assert [sql.split(" ON ")[0] for sql in granted] == [
        'CREATE POLICY "tenantry_shared_read"',
        'CREATE POLICY "tenantry_shared_write"',
        'CREATE TRIGGER "tenantry_keep_tenant" BEFORE UPDATE OF "tenant_id"',
    ]
    assert backwards == [
        'DROP POLICY IF EXISTS "tenantry_shared_read" ON "app_rlsnote";',
        'DROP POLICY IF EXISTS "tenantry_shared_write" ON "app_rlsnote";',
        'DROP TRIGGER IF EXISTS "tenantry_keep_tenant" ON "app_rlsnote";',
        'DROP POLICY IF EXISTS "tenantry_isolation" ON "app_rlsnote";',
        'ALTER TABLE "app_rlsnote" NO FORCE ROW LEVEL SECURITY;',
        'ALTER TABLE "app_rlsnote" DISABLE ROW LEVEL SECURITY;',
    ]
    assert any(
        "\"tenant_number\" = NULLIF(current_setting('tenantry.tenant_id', true), '')::integer"
        in sql
        for sql in meter
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("label", "field", "message"),
    [
        ("app.Nope", "tenant_id", "no model 'app.Nope' at this point of the migrations"),
        ("app.RlsNote", "tenant", "app.RlsNote has no field 'tenant'"),
        ("app.RlsFolder", "notes", "app.RlsFolder.notes has no column of its own"),
    ],
)
def test_a_wrong_model_or_field_fails_the_migration_on_every_database(label, field, message):
    with pytest.raises(ValueError, match=message):
        collected_sql(EnableTenantRLS(label, field=field), "forwards")


# -- which scope each queryset's queries carry -------------------------------------------


@pytest.fixture
def scopes():
    """The RLS scope each query ran with (None: the bound tenant)."""
    seen: list = []

    def spy(execute, sql, params, many, context):
        seen.append(_asked())
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        yield seen


@pytest.mark.django_db
def test_unscoped_querysets_carry_the_bypass_for_their_own_queries_only(scopes):
    with rls_bypass("set-up"):
        RlsNote.all_tenants.create(tenant_id="acme", title="a")
        RlsNote.all_tenants.create(tenant_id="globex", title="g")
    assert scopes == [BYPASS, BYPASS]
    with tenant_context("acme"):
        everyone = RlsNote.objects.unscoped(reason="test").filter(title__in=["a", "g"])
        for action in (
            lambda: list(everyone.all()),
            lambda: everyone.all().count(),
            lambda: everyone.all().exists(),
            lambda: everyone.aggregate(n=Count("id")),
            lambda: list(everyone.values_list("title", flat=True)),
            lambda: list(everyone.raw("SELECT * FROM app_rlsnote")),
            lambda: everyone.in_bulk(),
        ):
            scopes.clear()
            action()
            assert scopes and set(scopes) == {BYPASS}, action
        # "unscoped" lifts the read filter, never the write rules: with a
        # tenant bound its writes run as that tenant (docs/querysets.md#escape-hatches).
        for action in (
            lambda: everyone.all().update(title="x"),
            lambda: RlsNote.objects.unscoped(reason="t").create(tenant_id="acme", title="n"),
            lambda: RlsNote.objects.unscoped(reason="t").get_or_create(tenant_id="acme", title="o"),
        ):
            scopes.clear()
            action()
            assert scopes and set(scopes) == {None}, action
        scopes.clear()
        steps = []
        for _ in RlsNote.objects.unscoped(reason="t").iterator():
            steps.append(_asked())  # the caller's code between steps: no bypass
            RlsNote.objects.count()
        assert steps == [None] * len(steps) and len(steps) == 4
        assert scopes[0] == BYPASS and set(scopes[1:]) == {None}
        scopes.clear()
        RlsNote.objects.count()
        list(RlsNote.objects.for_tenant("globex"))
        Item.objects.count()
        assert scopes == [None, ("globex", ""), None]
    assert _asked() is None


@pytest.mark.django_db
def test_unscoped_and_for_tenant_scopes_survive_cloning():
    with tenant_context("acme"):
        everyone = RlsNote.objects.unscoped(reason="t")
        assert everyone._rls_scope == BYPASS
        assert everyone.filter(title="x").order_by("-id")._rls_scope == BYPASS
        assert RlsNote.objects.for_tenant("globex").filter(title="x")._rls_scope == ("globex", "")
        assert RlsNote.objects.filter(title="x")._rls_scope is None
        # The manager gains no delete() from the wrapped QuerySet method.
        assert not hasattr(RlsNote.objects, "delete")
