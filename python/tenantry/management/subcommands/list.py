"""``manage.py tenantry list``: the rows of ``TENANT_MODEL``."""

from __future__ import annotations

import json

from ... import conf
from ._common import tenant_model

NAME = "list"


def add_arguments(subparsers) -> None:
    subparsers.add_parser(NAME, help="list the rows of TENANT_MODEL")


def handle(command, options) -> None:
    model, id_field = tenant_model()
    config = conf.current()
    name_field = config.tenant_name_field
    settings_field = config.tenant_settings_field
    rows = model._base_manager.order_by(id_field)
    for row in rows:
        name = getattr(row, name_field) if name_field else ""
        settings = getattr(row, settings_field) if settings_field else {}
        command.stdout.write(
            f"{getattr(row, id_field)}\t{name}\t{json.dumps(settings, sort_keys=True)}"
        )
    command.stdout.write(f"({rows.count()} tenants)")
