"""``manage.py tenantry create ID [--name NAME] [--setting KEY=VALUE]``: a row
of ``TENANT_MODEL``, refused for an id no configured resolver can produce."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from ... import conf, lifecycle
from ..._core import BackendUnavailable, is_valid_tenant_id
from ...registry import new_tenant_id_problem
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
    # The registry's rule for new ids (the model and every INSERT use it too);
    # a value that is no tenant id at all is left to full_clean's message.
    problem = new_tenant_id_problem(tenant_id) if is_valid_tenant_id(tenant_id) else None
    if problem:
        raise CommandError(problem)
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
