"""``manage.py tenantry create ID [--name NAME] [--setting KEY=VALUE]``: a row
of ``TENANT_MODEL``, refused for an id no configured resolver can produce."""

from __future__ import annotations

from django.core.exceptions import DisallowedHost, ValidationError
from django.core.management.base import CommandError

from ... import conf, lifecycle
from ..._core import BackendUnavailable, is_valid_tenant_id
from ...addressing import ANY, probe
from ._common import json_or_text, pairs, tenant_model

NAME = "create"


def add_arguments(subparsers) -> None:
    create = subparsers.add_parser(NAME, help="create a row of TENANT_MODEL")
    create.add_argument("tenant_id")
    create.add_argument("--name", default="")
    create.add_argument(
        "--setting",
        action="append",
        metavar="KEY=VALUE",
        help="a settings entry (VALUE is JSON when it parses)",
    )


def handle(command, options) -> None:
    model, id_field = tenant_model()
    config = conf.current()
    tenant_id = options["tenant_id"]
    taken = (
        model._base_manager.filter(**{f"{id_field}__iexact": tenant_id})
        .values_list(id_field, flat=True)
        .first()
    )
    if taken is not None:
        raise CommandError(
            f"tenant {taken!r} already exists; {tenant_id!r} differs only in case, and "
            "hosts are case-insensitive: pick another id."
        )
    why = unreachable(tenant_id) if is_valid_tenant_id(tenant_id) else None  # else full_clean
    if why:
        raise CommandError(
            f"no configured resolver can ever produce the tenant id {tenant_id!r}: {why}. "
            "Pick an id the resolvers can produce (e.g. lowercase letters, digits and '-')."
        )
    values = {id_field: tenant_id}
    name_field = config.tenant_name_field
    if name_field:
        values[name_field] = options["name"] or options["tenant_id"]
    settings_field = config.tenant_settings_field
    settings = {k: json_or_text(v) for k, v in pairs(options["setting"], "=", "--setting").items()}
    if settings_field:
        values[settings_field] = settings
    elif settings:
        raise CommandError("TENANT_MODEL_SETTINGS_FIELD is None: the model has no settings.")
    row = model(**values)
    try:
        row.full_clean()
    except ValidationError as exc:
        raise CommandError(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        ) from exc
    try:
        left = lifecycle.leftovers(tenant_id) if is_valid_tenant_id(tenant_id) else None
        row.save()  # removes them first (tenantry.lifecycle.on_insert)
    except BackendUnavailable as exc:
        raise CommandError(
            f"tenant {tenant_id!r} was not created: what its id may still hold cannot "
            f"be checked ({exc}); try again once the store is back"
        ) from exc
    if left is not None and left.lines:
        command.stdout.write(
            f"removed what the id {tenant_id!r} still held (a deleted tenant's data, "
            "never the new tenant's):"
        )
        command.stdout.write(str(left).replace("would delete", "deleted"))
    command.stdout.write(f"created tenant {options['tenant_id']!r}")


# -- which ids can a request carry? -------------------------------------------


def unreachable(tenant_id: str) -> str | None:
    """Why none of the configured resolvers can produce ``tenant_id``, or
    None when one can (see tenantry.addressing)."""
    reasons = []
    for step in probe(tenant_id):
        if step.found is ANY or step.found == tenant_id:
            return None
        if isinstance(step.found, DisallowedHost):
            reasons.append(
                f"{step.where} is not a valid host (DNS labels: a-z 0-9 '-') or not allowed"
            )
        elif step.found is not None:
            reasons.append(f"{step.where} resolves to {step.found!r} (hosts are lowercase)")
        else:
            reasons.append(f"{step.where} resolves to no tenant{_excluded(step.step)}")
    return "; ".join(reasons)


def _excluded(step: str) -> str:
    config = conf.current()
    if step == "SubdomainResolver":
        return (
            f" (TENANT_SUBDOMAIN_EXCLUDE {config.subdomain_exclude}, "
            f"TENANT_SUBDOMAIN_DEPTH {config.subdomain_depth})"
        )
    if step == "PathResolver":
        return f" (TENANT_PATH_EXCLUDE {config.path_exclude})"
    return ""
