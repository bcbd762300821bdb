"""What several subcommands of ``manage.py tenantry`` share: argument
parsing helpers and the tenant model of the registry."""

from __future__ import annotations

import json
from typing import Any

from django.apps import apps
from django.core.management.base import CommandError

from ... import conf


def pairs(values: list[str] | None, sep: str, what: str) -> dict[str, str]:
    """``KEY<sep>VALUE`` arguments as a dict; ``CommandError`` for another shape."""
    out = {}
    for value in values or []:
        key, found, rest = value.partition(sep)
        if not found or not key.strip():
            raise CommandError(f"{what} must look like KEY{sep}VALUE, got {value!r}")
        out[key.strip()] = rest.strip()
    return out


def json_or_text(value: str) -> Any:
    """``value`` as JSON when it parses, else the text itself."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def tenant_model() -> tuple[Any, str]:
    """``(model, id field)`` of ``TENANT_MODEL``; ``CommandError`` when unset."""
    found = conf.current().tenant_model
    if found is None:
        raise CommandError("DJUST_CONFIG['TENANT_MODEL'] is not set: there is no tenant table.")
    label, id_field = found
    return apps.get_model(label), id_field


def tenant_row(model: Any, id_field: str, tenant_id: str) -> Any:
    """The registry row of ``tenant_id``; ``CommandError`` naming the model."""
    row = model._base_manager.filter(**{id_field: tenant_id}).first()
    if row is None:
        raise CommandError(f"no tenant {tenant_id!r} in {model._meta.label}.")
    return row


def suspension_delay() -> str:
    """How soon other processes see a suspension or its end (the registry's
    cache and the suspension table's per-process copy)."""
    config = conf.current()
    seconds = config.cache_ttl + config.readmit_interval
    return (
        f"{seconds:g}s (TENANT_CACHE_TTL + TENANT_READMIT_INTERVAL; open sockets: one "
        "TENANT_READMIT_INTERVAL more)"
    )
