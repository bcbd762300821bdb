"""``manage.py tenantry move ID ALIAS [--grace SECONDS]``: put a tenant's rows
on another database and switch its registry row
(docs/postgresql.md#moving-a-tenant)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from ... import moving
from ..._core import InvalidTenantId, TenantNotFound

NAME = "move"


def add_arguments(subparsers) -> None:
    parser = subparsers.add_parser(
        NAME, help="move a tenant's rows to another database (503 only while it switches)"
    )
    parser.add_argument("tenant_id")
    parser.add_argument("alias", help="a DATABASES alias ('default' for the shared one)")
    parser.add_argument(
        "--grace",
        type=float,
        default=None,
        help="seconds between refusing the tenant and copying (default: "
        "TENANT_CACHE_TTL + TENANT_READMIT_INTERVAL, so every process sees it)",
    )


def handle(command, options) -> None:
    if options["grace"] is not None and options["grace"] < 0:
        raise CommandError("--grace must be 0 or more seconds")
    try:
        moved = moving.move_tenant(options["tenant_id"], options["alias"], grace=options["grace"])
    except (ImproperlyConfigured, InvalidTenantId, TenantNotFound, moving.MoveRefused) as exc:
        raise CommandError(str(exc)) from exc
    total = sum(moved.rows.values())
    command.stdout.write(
        f"moved tenant {moved.tenant_id!r} from {moved.source!r} to {moved.target!r}: "
        f"{total} rows in {sum(1 for n in moved.rows.values() if n)} models, counts verified"
    )
