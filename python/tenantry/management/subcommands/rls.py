"""``manage.py tenantry rls [--check] [--database ALIAS]``: which scoped
models are behind PostgreSQL row-level security."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import connections

from ... import conf
from ...db import rls
from ...exceptions import TransactionPoolingError

NAME = "rls"


def add_arguments(subparsers) -> None:
    parser = subparsers.add_parser(
        NAME, help="which scoped models are behind PostgreSQL row-level security"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit non-zero when a scoped model has no policy or the role ignores RLS",
    )
    parser.add_argument("--database", default="default", help="the database alias to inspect")


def handle(command, options) -> None:
    connection = connections[options["database"]]
    if connection.vendor != "postgresql":
        raise CommandError(
            f"DATABASES[{options['database']!r}] is {connection.vendor}: "
            "row-level security needs PostgreSQL."
        )
    out = command.stdout.write
    mode = conf.current().rls
    out(f"TENANT_RLS: {mode}")
    try:
        connection.ensure_connection()
    except TransactionPoolingError as exc:  # found when the connection opened
        command.stderr.write(f"ERROR: {exc}")
        if options["check"]:
            raise CommandError("1 row-level security problem(s), listed above.") from None
        return
    problems = 0
    for model, field in rls.scoped_models():
        tenant_field = model._meta.get_field(field)
        table = model._meta.db_table
        holder = tenant_field.model._meta.db_table
        if holder != table:  # multi-table inheritance: the column is a parent's
            table = f"{table} → {holder}"
        where = f"{model._meta.label} ({table}.{tenant_field.column})"
        problem = rls.table_problems(connection, model)
        if (
            problem is None
            and holder == model._meta.db_table
            and not rls.has_grant_policies(connection, model)
        ):
            problems += 1
            out(
                f"  OLD      {where}: its policy predates cross-tenant grants (no "
                "tenantry_shared_read/tenantry_shared_write policy). Add a migration with "
                f"tenantry.db.UpgradeTenantRLS({model._meta.label!r}, field={field!r})."
            )
        elif problem is None:
            out(f"  ok       {where}")
        else:
            problems += 1
            out(
                f"  MISSING  {where}: {problem}. Add a migration with "
                f"tenantry.db.EnableTenantRLS({model._meta.label!r}, field={field!r})."
            )
    walled = rls.walled_tables(connection)
    for through, ends in rls.link_tables():
        if not any(fk.related_model._meta.db_table in walled for fk in ends):
            continue  # no end behind the wall: its models are listed MISSING above
        sides = ", ".join(fk.related_model._meta.label for fk in ends)
        where = f"link table {through._meta.db_table} (of {sides})"
        problem = rls.table_problems(connection, through)
        if problem is None:
            out(f"  ok       {where}")
        else:
            problems += 1
            first = ends[0].related_model._meta.label
            out(
                f"  MISSING  {where}: {problem}. Its walled ends' EnableTenantRLS puts it "
                f"behind the wall; for a table walled before, add a migration with "
                f"tenantry.db.UpgradeTenantRLS({first!r}, field=...)."
            )
    for warning in rls.role_problems(connection):
        problems += 1
        command.stderr.write(f"WARNING: {warning}. Connect the application as a role without it.")
    for warning in rls.definer_problems(connection):
        problems += 1
        command.stderr.write(f"WARNING: {warning}.")
    if mode == "off":
        command.stderr.write(
            "WARNING: TENANT_RLS is off: connections carry no tenant, so tables with a "
            "policy return no rows."
        )
    if options["check"] and problems:
        raise CommandError(f"{problems} row-level security problem(s), listed above.")
