"""``manage.py tenantry export ID PATH`` and ``manage.py tenantry import PATH
[--as ID]``: a tenant's rows, files and registry row as a checked archive
(docs/operations.md#export-and-import)."""

from __future__ import annotations

from django.core.management.base import CommandError

from ... import transfer
from ..._core import InvalidTenantId, TenantNotFound
from ...exceptions import ArchiveRefused


class Export:
    NAME = "export"

    @staticmethod
    def add_arguments(subparsers) -> None:
        parser = subparsers.add_parser(
            Export.NAME, help="write a tenant's rows, files and registry row to a folder"
        )
        parser.add_argument("tenant_id")
        parser.add_argument("path", help="a new or empty folder")

    @staticmethod
    def handle(command, options) -> None:
        try:
            summary = transfer.export_tenant(options["tenant_id"], options["path"])
        except (ArchiveRefused, TenantNotFound, InvalidTenantId) as exc:
            raise CommandError(str(exc)) from exc
        for label, count in sorted(summary.rows.items()):
            command.stdout.write(f"{count}\t{label}")
        command.stdout.write(f"{summary.files}\tfiles")
        command.stdout.write(
            f"exported tenant {summary.tenant_id!r} to {options['path']} "
            f"(manifest.json SHA-256 {summary.manifest_sha256})"
        )


class Import:
    NAME = "import"

    @staticmethod
    def add_arguments(subparsers) -> None:
        parser = subparsers.add_parser(
            Import.NAME, help="restore an exported tenant into an empty tenant"
        )
        parser.add_argument("path", help="the folder manage.py tenantry export wrote")
        parser.add_argument("--as", dest="as_id", metavar="ID", help="under another tenant id")

    @staticmethod
    def handle(command, options) -> None:
        try:
            summary = transfer.import_tenant(options["path"], as_id=options["as_id"])
        except (ArchiveRefused, InvalidTenantId) as exc:
            raise CommandError(str(exc)) from exc
        for label, count in sorted(summary.rows.items()):
            command.stdout.write(f"{count}\t{label}")
        command.stdout.write(f"{summary.files}\tfiles")
        command.stdout.write(f"imported tenant {summary.tenant_id!r}")
