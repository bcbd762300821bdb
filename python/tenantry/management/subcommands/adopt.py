"""``manage.py tenantry adopt app_label.Model --tenant ID``: backfill the
tenant field of rows that have none (docs/adopting.md)."""

from __future__ import annotations

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import Q

from ... import audit, conf
from ..._core import InvalidTenantId, TenantInfo, lookup_tenant, validate_tenant_id
from ...isolation import scope_of, tenant_field_value

NAME = "adopt"


def add_arguments(subparsers) -> None:
    adopt = subparsers.add_parser(
        NAME, help="backfill the tenant field of rows that have none (docs/adopting.md)"
    )
    adopt.add_argument("model", metavar="app_label.Model")
    adopt.add_argument("--tenant", required=True, metavar="ID")
    adopt.add_argument(
        "--field", help="the tenant field (default: the TenantManager's, else tenant_id)"
    )
    adopt.add_argument("--batch", type=int, default=1000, help="rows per transaction")


def handle(command, options) -> None:
    try:
        model = apps.get_model(options["model"])
    except (LookupError, ValueError) as exc:
        raise CommandError(f"{options['model']!r} is not an installed model: {exc}") from exc
    if options["batch"] < 1:
        raise CommandError("--batch must be at least 1")
    scope = scope_of(model)
    name = options["field"] or (scope.field.name if scope else "tenant_id")
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist as exc:
        raise CommandError(
            f"{model._meta.label} has no field {name!r}: add the tenant field first "
            "(nullable, see docs/adopting.md) or name it with --field"
        ) from exc
    try:
        tenant_id = validate_tenant_id(options["tenant"])
    except InvalidTenantId as exc:
        raise CommandError(str(exc)) from exc
    config = conf.current()
    if config.tenant_model is not None or config.registry_models:
        tenant = lookup_tenant(tenant_id)
        if tenant is None:
            raise CommandError(
                f"the registry does not know tenant {tenant_id!r}: create it first "
                f"(manage.py tenantry create {tenant_id})"
            )
    else:
        tenant = TenantInfo(tenant_id)
    set_name, value = tenant_field_value(model, field.name, tenant)
    empty = Q(**{f"{field.attname}__isnull": True})
    if not field.is_relation and field.get_internal_type() in ("CharField", "TextField"):
        empty |= Q(**{field.attname: ""})
    base = model._base_manager
    pk = model._meta.pk.attname
    total = base.filter(empty).count()
    done = 0
    command.stdout.write(f"{total} rows of {model._meta.label} have no {field.name}")
    while True:
        with transaction.atomic():
            chunk = list(
                base.filter(empty).order_by(pk).values_list(pk, flat=True)[: options["batch"]]
            )
            if not chunk:
                break
            done += (
                base.filter(empty)
                .filter(**{f"{pk}__gte": chunk[0], f"{pk}__lte": chunk[-1]})
                .update(**{set_name: value})
            )
        command.stdout.write(f"  {done}/{total}")
    audit.emit("tenant.adopted", tenant=tenant_id, model=model._meta.label, rows=done)
    command.stdout.write(f"adopted {done} rows of {model._meta.label} into tenant {tenant_id!r}")
