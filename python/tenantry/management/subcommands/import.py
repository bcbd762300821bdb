"""``manage.py tenantry import PATH [--as ID]``: restore an archive of
``manage.py tenantry export`` into an empty tenant
(docs/operations.md#export-and-import). (The module is named like the
subcommand; ``subcommands/__init__`` loads it by name, ``import`` being a
keyword.)"""

from __future__ import annotations

from django.core.management.base import CommandError

from ... import transfer
from ..._core import InvalidTenantId
from ...exceptions import ArchiveRefused

NAME = "import"


def add_arguments(subparsers) -> None:
    parser = subparsers.add_parser(NAME, help="restore an exported tenant into an empty tenant")
    parser.add_argument("path", help="the folder manage.py tenantry export wrote")
    parser.add_argument("--as", dest="as_id", metavar="ID", help="under another tenant id")


def handle(command, options) -> None:
    try:
        summary = transfer.import_tenant(options["path"], as_id=options["as_id"])
    except (ArchiveRefused, InvalidTenantId) as exc:
        raise CommandError(str(exc)) from exc
    for label, count in sorted(summary.rows.items()):
        command.stdout.write(f"{count}\t{label}")
    command.stdout.write(f"{summary.files}\tfiles")
    command.stdout.write(f"imported tenant {summary.tenant_id!r}")
