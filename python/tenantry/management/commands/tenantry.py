"""``manage.py tenantry``: list and create tenants, and explain resolution.

manage.py tenantry list
manage.py tenantry create acme --name "Acme Corp" --setting theme=dark
manage.py tenantry delete acme [--dry-run] [--leftovers]
manage.py tenantry deactivate acme
manage.py tenantry suspend acme [--reason "unpaid invoice"]
manage.py tenantry resume acme
manage.py tenantry adopt shop.Order --tenant acme [--field tenant_id] [--batch 1000]
manage.py tenantry domain shop.acme-corp.com acme
manage.py tenantry check http://acme.example.com/dashboard/ [-H "X-Tenant-ID: acme"]
                          [--session tenant_id=acme]
manage.py tenantry rls [--check] [--database default]
manage.py tenantry usage [--tenant ID] [--since HOURS] [--json]
manage.py tenantry audit verify|export ID [--incarnation INC] [-o PATH] / audit prune
manage.py tenantry export ID PATH
manage.py tenantry import PATH [--as ID]
manage.py tenantry migrate [--plan]
manage.py tenantry move ID ALIAS [--grace SECONDS]

Each subcommand lives in its own module of ``tenantry.management.subcommands``;
this command only builds the parsers and dispatches.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from ..subcommands import SUBCOMMANDS

_BY_NAME = {subcommand.NAME: subcommand for subcommand in SUBCOMMANDS}


class Command(BaseCommand):
    help = "List and create tenants (TENANT_MODEL), and explain how a request resolves."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        for subcommand in SUBCOMMANDS:
            subcommand.add_arguments(sub)

    def handle(self, *args, **options):
        _BY_NAME[options["action"]].handle(self, options)
