"""``manage.py tenantry migrate [--plan]``: run Django's ``migrate`` on
``default`` and on every tenant database (docs/postgresql.md#a-database-per-tenant).

The tenant databases are every alias of ``settings.DATABASES`` (with
``TenantDatabaseRouter``, every alias but ``default`` may hold a tenant)
plus any alias the registry names; an alias the registry names that is
not in ``DATABASES`` is an error (its tenant is refused). The router's
``allow_migrate`` decides which tables each gets, and ``EnableTenantRLS``
puts them behind row-level security on each PostgreSQL database.
"""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS

from ... import conf

NAME = "migrate"


def add_arguments(subparsers) -> None:
    parser = subparsers.add_parser(
        NAME, help="migrate default and every tenant database (RLS on each PostgreSQL one)"
    )
    parser.add_argument("--plan", action="store_true", help="list the databases, change nothing")


def named_databases() -> set[str]:
    """The aliases the registry's ``TENANT_DATABASE_FIELD`` names."""
    config = conf.current()
    if config.tenant_model is None or config.tenant_database_field is None:
        return set()
    model = apps.get_model(config.tenant_model[0])
    field = config.tenant_database_field
    return {
        alias
        for alias in model._base_manager.using(DEFAULT_DB_ALIAS)
        .values_list(field, flat=True)
        .distinct()
        if alias
    }


def databases() -> list[str]:
    named = named_databases()
    missing = sorted(named - set(settings.DATABASES))
    if missing:
        raise CommandError(
            f"the registry names database(s) {', '.join(map(repr, missing))} that "
            "settings.DATABASES does not have: their tenants are refused; add them first"
        )
    others = sorted(alias for alias in settings.DATABASES if alias != DEFAULT_DB_ALIAS)
    return [DEFAULT_DB_ALIAS, *others]


def handle(command, options) -> None:
    aliases = databases()
    for alias in aliases:
        if options["plan"]:
            command.stdout.write(alias)
            continue
        command.stdout.write(f"migrating {alias!r}")
        call_command("migrate", database=alias, interactive=False, verbosity=0)
    if not options["plan"]:
        command.stdout.write(f"migrated {len(aliases)} database(s): {', '.join(aliases)}")
