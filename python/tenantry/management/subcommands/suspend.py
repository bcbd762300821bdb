"""``manage.py tenantry suspend ID [--reason TEXT]``: a suspended tenant's
pages answer 503, its live views and jobs are refused, its data is kept
(docs/operations.md#suspending-a-tenant)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from ... import suspension
from ..._core import InvalidTenantId, TenantNotFound
from ._common import suspension_delay

NAME = "suspend"


def add_arguments(subparsers) -> None:
    parser = subparsers.add_parser(
        NAME, help="suspend a tenant: 503 pages, error frames, no jobs; its data untouched"
    )
    parser.add_argument("tenant_id")
    parser.add_argument("--reason", default="", help="why (kept and audited, never shown)")


def handle(command, options) -> None:
    tenant_id = options["tenant_id"]
    try:
        fresh = suspension.suspend(tenant_id, reason=options["reason"])
    except (ImproperlyConfigured, InvalidTenantId, TenantNotFound) as exc:
        raise CommandError(str(exc)) from exc
    if not fresh:
        command.stdout.write(f"tenant {tenant_id!r} was suspended already")
        return
    command.stdout.write(
        f"suspended tenant {tenant_id!r}: its pages answer 503, its live views and jobs are "
        f"refused; other processes see it within {suspension_delay()}"
    )
