"""``manage.py tenantry resume ID``: lift a tenant's suspension
(docs/operations.md#suspending-a-tenant)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from ... import suspension
from ..._core import InvalidTenantId
from ._common import suspension_delay

NAME = "resume"


def add_arguments(subparsers) -> None:
    parser = subparsers.add_parser(NAME, help="lift a tenant's suspension")
    parser.add_argument("tenant_id")


def handle(command, options) -> None:
    tenant_id = options["tenant_id"]
    try:
        lifted = suspension.resume(tenant_id)
    except (ImproperlyConfigured, InvalidTenantId) as exc:
        raise CommandError(str(exc)) from exc
    if not lifted:
        raise CommandError(f"tenant {tenant_id!r} is not suspended")
    command.stdout.write(
        f"resumed tenant {tenant_id!r}; other processes see it within {suspension_delay()}"
    )
