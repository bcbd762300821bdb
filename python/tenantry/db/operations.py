"""``EnableTenantRLS``: the migration operation that puts a table behind the
second wall.

    from django.db import migrations
    from tenantry.db import EnableTenantRLS

    class Migration(migrations.Migration):
        dependencies = [("shop", "0001_initial")]
        operations = [EnableTenantRLS("shop.Order", field="tenant_id")]

On PostgreSQL it enables and forces row-level security on the model's table
(forced, so the table's owner is bound too) and creates one policy,
``tenantry_isolation``, for every command::

    USING and WITH CHECK (
        <tenant column> = current_setting('tenantry.tenant_id', true)
        OR current_setting('tenantry.bypass', true) = 'on'
    )

A tenant column that is not text (an integer or uuid foreign key to the
tenant table) is compared with the setting cast to the column's type. Going
backwards drops the policy and disables row-level security. On other
databases it does nothing, so the same migrations run on SQLite.

Granted rows (docs/collaboration.md): when the grant table
(``tenantry_grant``, tenantry's migration 0003) exists, two more policies
admit the rows another tenant granted to the bound one, and nothing else::

    tenantry_shared_read   FOR SELECT USING (<a live grant of the row to the tenant>)
    tenantry_shared_write  FOR UPDATE USING (<a live write grant>) WITH CHECK (<the same>)

and a trigger, ``tenantry_keep_tenant``, refuses an UPDATE that changes the
tenant column outside the bypass (permissive policies are OR-ed, so the
write grant's USING and the isolation policy's WITH CHECK together would
let the grantee take the row)

(``tenantry.db.grants.granted``, called through the PL/pgSQL function
``tenantry_granted``, which plans once per connection). No grant admits an INSERT or
a DELETE. Policies made before the grant table existed are upgraded by
tenantry's migration 0003 (every table then behind the wall) or by
``UpgradeTenantRLS("shop.Order", field="tenant_id")``; ``manage.py tenantry
rls --check`` names a table still without them.

A multi-table-inheritance child whose tenant field lives on an ancestor's
table (``EnableTenantRLS("shop.DigitalOrder", field="tenant_id")`` where
``DigitalOrder(Order)``) has no tenant column of its own: its policy joins
the ancestor's row by the parent link (every table of an inheritance chain
shares the primary key's value)::

    USING and WITH CHECK (EXISTS (
        SELECT 1 FROM <ancestor> t WHERE t.<pk> = <child>.<parent link>
        AND (<the condition above on t's tenant column>)))

so a child row is visible, and may be written, only when its parent row is
the bound tenant's.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as installed_apps
from django.core.exceptions import FieldDoesNotExist
from django.db.migrations.operations.base import Operation

from .. import conf
from ..graph import scope_of
from . import grants
from .rls import link_tables, old_policy_tables, walled_tables
from .scope import BYPASS_SETTING, POLICY, TENANT_SETTING

__all__ = [
    "POLICY",
    "EnableTenantRLS",
    "ProtectGrantTable",
    "UpgradeAllTenantRLS",
    "UpgradeTenantRLS",
]

_TEXT_TYPES = ("varchar", "character varying", "text", "char", "character", "citext")


class EnableTenantRLS(Operation):
    reversible = True
    reduces_to_sql = True

    def __init__(self, model: str, field: str = "tenant_id") -> None:
        if not isinstance(model, str) or model.count(".") != 1 or not all(model.split(".")):
            raise ValueError(
                f"EnableTenantRLS(model=...) takes a model label like 'shop.Order', got {model!r}"
            )
        if not isinstance(field, str) or not field:
            raise ValueError(
                f"EnableTenantRLS({model!r}, field=...) takes the tenant field's name, "
                f"got {field!r}"
            )
        self.model = model
        self.field = field

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return self.__class__.__qualname__, [self.model], {"field": self.field}

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass  # row-level security is not part of Django's model state

    def describe(self) -> str:
        return f"Enable and force row-level security on {self.model} by {self.field}"

    @property
    def migration_name_fragment(self) -> str:
        return f"enable_tenant_rls_{self.model.split('.')[1].lower()}"

    def _target(self, schema_editor: Any, state: Any) -> tuple[Any, Any] | None:
        """``(model, tenant field)``, checked on every database (a mistake
        shows on SQLite too); None where there is nothing to do."""
        app_label, model_name = self.model.split(".")
        try:
            model = state.apps.get_model(app_label, model_name)
        except LookupError:
            raise ValueError(
                f"EnableTenantRLS: no model {self.model!r} at this point of the migrations "
                "(add a dependency on the migration that creates it)"
            ) from None
        try:
            field = model._meta.get_field(self.field)
        except FieldDoesNotExist:
            raise ValueError(
                f"EnableTenantRLS: {self.model} has no field {self.field!r} "
                "(give the tenant field's name, e.g. field='tenant_id' or field='organization')"
            ) from None
        if getattr(field, "column", None) is None:
            raise ValueError(
                f"EnableTenantRLS: {self.model}.{self.field} has no column of its own; "
                "name the field that stores the tenant id"
            )
        connection = schema_editor.connection
        if connection.vendor != "postgresql" or not self.allow_migrate_model(
            connection.alias, model
        ):
            return None
        return model, field

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any):
        self._execute(schema_editor, to_state, forwards=True)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ):
        self._execute(schema_editor, from_state, forwards=False)

    def _execute(self, schema_editor: Any, state: Any, *, forwards: bool) -> None:
        target = self._target(schema_editor, state)
        if target is None:
            return
        model, field = target
        quote = schema_editor.quote_name
        table, policy = quote(model._meta.db_table), quote(POLICY)
        if forwards:
            db_type = field.db_type(schema_editor.connection)
            owner = field.model._meta.concrete_model
            if owner is model._meta.concrete_model:
                condition = _condition(quote(field.column), db_type)
            else:
                condition = _through_parent(model, owner, field, db_type, quote)
            statements = (
                f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
                f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
                f"DROP POLICY IF EXISTS {policy} ON {table}",
                f"CREATE POLICY {policy} ON {table} USING ({condition}) WITH CHECK ({condition})",
            )
            if _grant_table_exists(schema_editor):
                statements += grant_policies(model, field, quote, db_type)
        else:
            statements = (
                *drop_link_policies(schema_editor, state, model),
                *drop_grant_policies(model, quote),
                f"DROP POLICY IF EXISTS {policy} ON {table}",
                f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
                f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
            )
        for sql in statements:
            schema_editor.execute(sql)
        if forwards:
            for sql in link_policies(schema_editor, state, model):
                schema_editor.execute(sql)


def _through_parent(model: Any, owner: Any, field: Any, db_type: str | None, quote: Any) -> str:
    """The condition of a child table whose tenant column is on ``owner``'s
    table (an ancestor): the ancestor's row, found by the parent link, must
    satisfy it. The link's column holds the ancestor's primary key."""
    if owner not in model._meta.get_parent_list():
        raise ValueError(
            f"EnableTenantRLS: {model._meta.label}'s tenant field lives on "
            f"{owner._meta.label}, which is not one of its parents"
        )
    alias = quote("tenantry_owner")
    condition = _condition(f"{alias}.{quote(field.column)}", db_type)
    return (
        f"EXISTS (SELECT 1 FROM {quote(owner._meta.db_table)} {alias} "
        f"WHERE {alias}.{quote(owner._meta.pk.column)} = "
        f"{quote(model._meta.db_table)}.{quote(model._meta.pk.column)} AND ({condition}))"
    )


def _condition(column: str, db_type: str | None) -> str:
    """The policy's expression for a tenant column of type ``db_type``."""
    setting = f"current_setting('{TENANT_SETTING}', true)"
    if db_type and not db_type.lower().startswith(_TEXT_TYPES):
        # '' (no tenant) must not reach the cast: NULL matches no row.
        setting = f"NULLIF({setting}, '')::{db_type}"
    return f"{column} = {setting} OR current_setting('{BYPASS_SETTING}', true) = 'on'"


# -- granted rows (docs/collaboration.md) -------------------------------------------


def _grant_table_exists(schema_editor: Any) -> bool:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [grants.TABLE])
        return bool(cursor.fetchone()[0])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def grant_policies(model: Any, field: Any, quote: Any, db_type: str | None) -> tuple[str, ...]:
    """The statements that (re)create ``model``'s grant policies: a live
    grant of the row to the bound tenant admits it to SELECT; a live write
    grant admits it to UPDATE, and the updated row must still be granted
    (its tenant column unchanged)."""
    table = model._meta.db_table
    holder = field.model._meta.concrete_model
    if holder is not model._meta.concrete_model:
        return ()  # a child whose tenant column is a parent's: grants name such rows not
    qtable = quote(table)

    pk = f"{qtable}.{quote(model._meta.pk.column)}"
    owner = f"{qtable}.{quote(field.column)}"
    # The tenant's own rows first: PostgreSQL ORs the policies in an order of
    # its own (this one first, as it happens), and evaluates an OR from the
    # left, so an own row never calls the function.
    own = _condition(owner, db_type)

    def condition(write: bool) -> str:
        return (
            f"{own} OR {grants.FUNCTION}({_literal(table)}, CAST({pk} AS text), "
            f"CAST({owner} AS text), {'true' if write else 'false'})"
        )

    read, write = quote(grants.READ_POLICY), quote(grants.WRITE_POLICY)
    column, keep = quote(field.column), quote(grants.KEEP_TENANT)
    return (
        *drop_grant_policies(model, quote),
        grants.granted_function(),
        f"CREATE POLICY {read} ON {qtable} FOR SELECT USING ({condition(False)})",
        f"CREATE POLICY {write} ON {qtable} FOR UPDATE USING ({condition(True)}) "
        f"WITH CHECK ({condition(True)})",
        # Permissive policies are OR-ed: the write grant's USING admits the
        # old row and the isolation policy's WITH CHECK the new one, so an
        # UPDATE could move a granted row to the grantee. No policy sees both
        # rows; this trigger does: a tenant column changes only under the bypass.
        _KEEP_TENANT_FUNCTION,
        f"CREATE TRIGGER {keep} BEFORE UPDATE OF {column} ON {qtable} FOR EACH ROW "
        f"WHEN (OLD.{column} IS DISTINCT FROM NEW.{column}) "
        f"EXECUTE FUNCTION {grants.KEEP_TENANT}()",
    )


#: Raises as PostgreSQL does for a WITH CHECK violation (SQLSTATE 42501, the
#: table named), so the connection wrapper reports TenantMismatchError.
_MOVE_REFUSED = (
    "a row never moves to another tenant: new row violates row-level security policy "
    f'"{grants.KEEP_TENANT}" for table "'
)
_KEEP_TENANT_FUNCTION = f"""CREATE OR REPLACE FUNCTION {grants.KEEP_TENANT}() RETURNS trigger
LANGUAGE plpgsql AS $tenantry$
BEGIN
    IF current_setting('{BYPASS_SETTING}', true) = 'on' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION USING ERRCODE = '42501',
        MESSAGE = '{_MOVE_REFUSED}' || TG_TABLE_NAME || '"';
END
$tenantry$"""


def drop_grant_policies(model: Any, quote: Any) -> tuple[str, ...]:
    table = quote(model._meta.db_table)
    return (
        *(
            f"DROP POLICY IF EXISTS {quote(name)} ON {table}"
            for name in (grants.READ_POLICY, grants.WRITE_POLICY)
        ),
        f"DROP TRIGGER IF EXISTS {quote(grants.KEEP_TENANT)} ON {table}",
    )


# -- many-to-many link tables (docs/postgresql.md#many-to-many-link-tables) ----------

#: A link table's policies besides ``tenantry_isolation`` (its SELECT
#: policy), one per writing command: a policy of its own for each command,
#: so a read evaluates the read condition only (permissive policies of one
#: command are OR-ed, every row of a full read would pay both).
LINK_WRITE_POLICIES = {
    "INSERT": "tenantry_link_insert",
    "UPDATE": "tenantry_link_update",
    "DELETE": "tenantry_link_delete",
}


def _links_at(schema_editor: Any, state: Any, model: Any) -> list[tuple[Any, tuple[Any, ...]]]:
    """The link tables (of the migration's state) with an end at ``model``
    and a table in the database."""
    label = model._meta.concrete_model._meta.label_lower
    found = []
    for through, ends in link_tables(state.apps):
        if any(fk.related_model._meta.label_lower == label for fk in ends):
            with schema_editor.connection.cursor() as cursor:
                cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [through._meta.db_table])
                if cursor.fetchone()[0]:
                    found.append((through, ends))
    return found


def link_policies(schema_editor: Any, state: Any, model: Any) -> list[str]:
    """The statements that put ``model``'s many-to-many link tables behind
    the wall (``model`` is being walled; the other ends count when their
    table is walled already). A link row is visible when every walled row it
    links is visible (an ``EXISTS`` on that table, itself under its
    policies, so a read grant shows the link); it may be inserted, changed
    or deleted only when every walled row it links is the bound tenant's or
    granted to it with a write grant (a read grant's links are read-only).
    A nullable end left empty (an explicit ``through`` model's extra foreign
    key) links no row and asks nothing; a row must link at least one."""
    connection = schema_editor.connection
    quote = schema_editor.quote_name
    walled = walled_tables(connection) | {model._meta.db_table}
    grants_on = _grant_table_exists(schema_editor)
    statements: list[str] = []
    for through, ends in _links_at(schema_editor, state, model):
        table = quote(through._meta.db_table)
        visible, writable, given = [], [], []
        for index, fk in enumerate(ends):
            target = fk.related_model
            if target._meta.db_table not in walled:
                continue
            alias = quote(f"tenantry_end{index}")
            column = f"{table}.{quote(fk.column)}"
            found = (
                f"SELECT 1 FROM {quote(target._meta.db_table)} {alias} WHERE "
                f"{alias}.{quote(fk.target_field.column)} = {column}"
            )
            seen = f"EXISTS ({found})"
            own = f"EXISTS ({found} AND ({_own_end(target, alias, connection, grants_on, quote)}))"
            if fk.null:
                seen, own = f"({column} IS NULL OR {seen})", f"({column} IS NULL OR {own})"
                given.append(f"{column} IS NOT NULL")
            visible.append(seen)
            writable.append(own)
        if not visible:
            continue
        if len(given) == len(visible):
            # Every walled end may be empty: a row must still link one.
            linked = "(" + " OR ".join(given) + ")"
            visible.append(linked)
            writable.append(linked)
        read, write = " AND ".join(visible), " AND ".join(writable)
        policy = quote(POLICY)
        statements += [
            f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
            *_drop_link_policies(table, quote),
            f"CREATE POLICY {policy} ON {table} FOR SELECT USING ({read})",
        ]
        for command, name in LINK_WRITE_POLICIES.items():
            using = "" if command == "INSERT" else f" USING ({write})"
            check = "" if command == "DELETE" else f" WITH CHECK ({write})"
            statements.append(f"CREATE POLICY {quote(name)} ON {table} FOR {command}{using}{check}")
    if grants_on and statements:
        statements.insert(0, grants.granted_function())
    return statements


def _own_end(target: Any, alias: str, connection: Any, grants_on: bool, quote: Any) -> str:
    """The condition on a linked row (``alias``) that lets the bound tenant
    write its links: its own row, or one it holds a live write grant of. A
    multi-table child whose tenant column is a parent's: its table's own
    policy already admits only the tenant's rows (no grant names them)."""
    scope = scope_of(_installed(target))
    if scope is None or scope.table is not scope.model._meta.concrete_model:
        return "true"
    column = f"{alias}.{quote(scope.field.column)}"
    own = _condition(column, scope.field.db_type(connection))
    if not grants_on:
        return own
    pk = f"{alias}.{quote(scope.model._meta.pk.column)}"
    return (
        f"{own} OR {grants.FUNCTION}({_literal(target._meta.db_table)}, CAST({pk} AS text), "
        f"CAST({column} AS text), true)"
    )


def _installed(model: Any) -> Any:
    """The installed model of a migration's historical one."""
    return installed_apps.get_model(model._meta.label)


def _drop_link_policies(table: str, quote: Any) -> list[str]:
    return [
        f"DROP POLICY IF EXISTS {quote(name)} ON {table}"
        for name in (POLICY, *LINK_WRITE_POLICIES.values())
    ]


def drop_link_policies(schema_editor: Any, state: Any, model: Any) -> list[str]:
    """Going backwards: ``model``'s link tables leave the wall."""
    quote = schema_editor.quote_name
    statements: list[str] = []
    for through, _ends in _links_at(schema_editor, state, model):
        table = quote(through._meta.db_table)
        statements += [
            *_drop_link_policies(table, quote),
            f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
            f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
        ]
    return statements


class UpgradeTenantRLS(EnableTenantRLS):
    """Give a table already behind the wall (an ``EnableTenantRLS`` made
    before grants existed) the grant policies; backwards removes them."""

    def describe(self) -> str:
        return f"Add the grant policies to {self.model}'s row-level security"

    @property
    def migration_name_fragment(self) -> str:
        return f"upgrade_tenant_rls_{self.model.split('.')[1].lower()}"

    def _execute(self, schema_editor: Any, state: Any, *, forwards: bool) -> None:
        target = self._target(schema_editor, state)
        if target is None:
            return
        model, field = target
        quote = schema_editor.quote_name
        if forwards:
            if not _grant_table_exists(schema_editor):
                raise ValueError(
                    f"UpgradeTenantRLS({self.model!r}): the grant table does not exist yet; "
                    "add a dependency on ('tenantry', '0004_grant')"
                )
            db_type = field.db_type(schema_editor.connection)
            statements = grant_policies(model, field, quote, db_type)
        else:
            statements = drop_grant_policies(model, quote)
        for sql in statements:
            schema_editor.execute(sql)
        if forwards:  # and the link tables put behind the wall since
            for sql in link_policies(schema_editor, state, model):
                schema_editor.execute(sql)


class _DatabaseOnlyOperation(Operation):
    """An operation that changes the database only (policies, functions),
    never the migration state; ``description`` is what ``describe()`` says."""

    reversible = True
    description = ""

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def describe(self) -> str:
        return self.description


class UpgradeAllTenantRLS(_DatabaseOnlyOperation):
    """tenantry's migration 0003: every table that already carries the
    ``tenantry_isolation`` policy and no grant policy gets them (found
    among the installed scoped models). PostgreSQL only."""

    reduces_to_sql = False
    description = "Add the grant policies to every table already behind row-level security"

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any):
        connection = schema_editor.connection
        if connection.vendor != "postgresql" or not _grant_table_exists(schema_editor):
            return  # and a tenant's own database has no grant table to admit by
        quote = schema_editor.quote_name
        for model, name in old_policy_tables(connection):
            field = model._meta.get_field(name)
            for sql in grant_policies(model, field, quote, field.db_type(connection)):
                schema_editor.execute(sql)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ):
        # Every grant policy goes before the grant table can (they depend on it).
        connection = schema_editor.connection
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT p.polname, c.relname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid"
                " WHERE p.polname IN (%s, %s)",
                [grants.READ_POLICY, grants.WRITE_POLICY],
            )
            found = cursor.fetchall()
        quote = schema_editor.quote_name
        for policy, table in found:
            schema_editor.execute(f"DROP POLICY IF EXISTS {quote(policy)} ON {quote(table)}")
        schema_editor.execute(
            f"DROP FUNCTION IF EXISTS {grants.FUNCTION}(text, text, text, boolean)"
        )


class ProtectGrantTable(_DatabaseOnlyOperation):
    """The grant table behind row-level security when ``TENANT_RLS`` is on
    as the migration runs: each party reads its own grants (the policies of
    the tables behind the wall read them as the bound tenant); only
    tenantry's own writes (``tenantry.sharing``, under the bypass scope)
    insert, change or delete one, so a tenant's raw SQL can neither forge,
    widen, move nor quietly drop a grant."""

    reduces_to_sql = True
    description = "Put tenantry's grant table behind row-level security"

    def _on(self, schema_editor: Any) -> bool:
        # A tenant's own database has no grant table (tenantry's tables stay
        # on default: docs/postgresql.md#a-database-per-tenant).
        return (
            schema_editor.connection.vendor == "postgresql"
            and conf.current().rls != "off"
            and _grant_table_exists(schema_editor)
        )

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any):
        if not self._on(schema_editor):
            return
        table = grants.TABLE
        parties, writes = grants.GRANT_TABLE_POLICY, grants.GRANT_TABLE_WRITE_POLICY
        tenant = f"current_setting('{TENANT_SETTING}', true)"
        bypass = f"current_setting('{BYPASS_SETTING}', true) = 'on'"
        for sql in (
            f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
            f"DROP POLICY IF EXISTS {parties} ON {table}",
            f"DROP POLICY IF EXISTS {writes} ON {table}",
            f"CREATE POLICY {parties} ON {table} FOR SELECT USING (owner_tenant = {tenant} OR "
            f"grantee_tenant = {tenant} OR {bypass})",
            f"CREATE POLICY {writes} ON {table} USING ({bypass}) WITH CHECK ({bypass})",
        ):
            schema_editor.execute(sql)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ):
        if schema_editor.connection.vendor != "postgresql":
            return
        table = grants.TABLE
        for sql in (
            f"DROP POLICY IF EXISTS {grants.GRANT_TABLE_POLICY} ON {table}",
            f"DROP POLICY IF EXISTS {grants.GRANT_TABLE_WRITE_POLICY} ON {table}",
            f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
            f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
        ):
            schema_editor.execute(sql)
