"""``manage.py tenantry deactivate ID``: the registry row's active flag off."""

from __future__ import annotations

from django.core.management.base import CommandError

from ... import audit
from ...registry import active_field, invalidate_tenant
from ._common import tenant_model, tenant_row

NAME = "deactivate"


def add_arguments(subparsers) -> None:
    deactivate = subparsers.add_parser(
        NAME, help="turn the registry row's active flag off (is_active/active)"
    )
    deactivate.add_argument("tenant_id")


def handle(command, options) -> None:
    model, id_field = tenant_model()
    flag = active_field(model)
    if flag is None:
        raise CommandError(
            f"{model._meta.label} has no active flag: add a BooleanField named "
            "'is_active' (or 'active') to deactivate tenants, or use 'tenantry delete'."
        )
    row = tenant_row(model, id_field, options["tenant_id"])
    setattr(row, flag, False)
    row.save(update_fields=[flag])
    invalidate_tenant(options["tenant_id"])
    audit.emit("tenant.deactivated", tenant=options["tenant_id"])
    command.stdout.write(
        f"deactivated tenant {options['tenant_id']!r} ({model._meta.label}.{flag} = False): "
        "it no longer resolves (404 on views that require a tenant)"
    )
