"""``manage.py tenantry delete ID [--dry-run] [--leftovers]``: every trace of
a tenant, and the certificate of what went."""

from __future__ import annotations

from django.core.management.base import CommandError

from ... import conf, lifecycle
from ..._core import InvalidTenantId, TenantNotFound
from ...exceptions import DeletionIncomplete
from ._common import tenant_model, tenant_row

NAME = "delete"


def add_arguments(subparsers) -> None:
    delete = subparsers.add_parser(
        NAME,
        help="delete every trace of a tenant (rows, domains, files, cache, presence, "
        "state, rate limits, usage) and print a certificate",
    )
    delete.add_argument("tenant_id")
    delete.add_argument("--dry-run", action="store_true", help="count, change nothing")
    delete.add_argument(
        "--leftovers",
        action="store_true",
        help="the registry row is already gone: remove what still holds the id",
    )


def handle(command, options) -> None:
    tenant_id, dry_run = options["tenant_id"], options["dry_run"]
    if conf.current().tenant_model is not None and not options["leftovers"]:
        model, id_field = tenant_model()
        tenant_row(model, id_field, tenant_id)  # a CommandError naming the model
    try:
        certificate = lifecycle.delete_tenant(
            tenant_id, dry_run=dry_run, leftovers=options["leftovers"]
        )
    except DeletionIncomplete as exc:
        _write_certificate(command, exc.certificate)
        raise CommandError(str(exc)) from exc
    except (TenantNotFound, InvalidTenantId) as exc:
        raise CommandError(str(exc)) from exc
    _write_certificate(command, certificate)


def _write_certificate(command, certificate) -> None:
    """What the deletion removed, per store: the lines of the certificate."""
    command.stdout.write(
        f"{'dry run: certificate of what deleting' if certificate.dry_run else 'certificate:'}"
        f" tenant {certificate.tenant_id!r} (incarnation {certificate.incarnation})"
        f"{' would remove' if certificate.dry_run else ''}"
    )
    command.stdout.write(str(certificate))
    command.stdout.write(
        f"dry run: nothing changed for tenant {certificate.tenant_id!r}"
        if certificate.dry_run
        else f"deleted tenant {certificate.tenant_id!r}"
    )
