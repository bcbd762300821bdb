"""``manage.py tenantry export ID PATH``: a tenant's rows, files and
registry row as a checked archive (docs/operations.md#export-and-import)."""

from __future__ import annotations

from django.core.management.base import CommandError

from ... import transfer
from ..._core import InvalidTenantId, TenantNotFound
from ...exceptions import ArchiveRefused

NAME = "export"


def add_arguments(subparsers) -> None:
    parser = subparsers.add_parser(
        NAME, help="write a tenant's rows, files and registry row to a folder"
    )
    parser.add_argument("tenant_id")
    parser.add_argument("path", help="a new or empty folder")


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
