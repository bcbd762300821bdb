"""``manage.py tenantry domain DOMAIN ID``: map a custom domain to a tenant."""

from __future__ import annotations

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from ... import conf
from ..._core import normalize_domain
from ...registry import validate_custom_domain

NAME = "domain"


def add_arguments(subparsers) -> None:
    domain = subparsers.add_parser(NAME, help="map a custom domain to a tenant")
    domain.add_argument("domain")
    domain.add_argument("tenant_id")


def handle(command, options) -> None:
    config = conf.current()
    label = config.domain_model
    if not label:
        raise CommandError("DJUST_CONFIG['TENANT_DOMAIN_MODEL'] is not set: no domain table.")
    model = apps.get_model(label)
    domain = normalize_domain(options["domain"])
    row = model(
        **{
            config.domain_field: domain,
            config.domain_tenant_field: options["tenant_id"],
        }
    )
    try:
        row.full_clean()
        validate_custom_domain(domain, options["tenant_id"])
    except ValidationError as exc:
        raise CommandError(" ".join(exc.messages)) from exc
    row.save()
    command.stdout.write(f"{domain} now serves tenant {options['tenant_id']!r}")
