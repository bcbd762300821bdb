"""``manage.py tenantry check URL [-H "NAME: VALUE"] [--session KEY=VALUE]``:
what a request would resolve to, step by step, and why."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.management.base import CommandError
from django.test import RequestFactory

from ... import addressing, conf, resolve_tenant
from ..._core import _django_host, header_meta_key
from ._common import json_or_text, pairs

NAME = "check"


def add_arguments(subparsers) -> None:
    check = subparsers.add_parser(NAME, help="what a request would resolve to, and why")
    check.add_argument("url", help="a URL or a host, e.g. http://acme.example.com/x/")
    check.add_argument("-H", "--header", action="append", metavar="NAME: VALUE")
    check.add_argument("--session", action="append", metavar="KEY=VALUE")


def _meta_headers(values: list[str] | None) -> dict[str, str]:
    """``-H`` arguments as ``request.META`` entries (the core's header rule)."""
    headers = {}
    for name, value in pairs(values, ":", "--header").items():
        try:
            headers[header_meta_key(name)] = value
        except ValueError as exc:
            raise CommandError(f"--header {exc}") from exc
    return headers


def handle(command, options) -> None:
    url = options["url"] if "://" in options["url"] else f"http://{options['url']}"
    parts = urlsplit(url)
    headers = _meta_headers(options["header"])
    request = RequestFactory().get(parts.path or "/", HTTP_HOST=parts.netloc, **headers)
    request.session = {
        k: json_or_text(v) for k, v in pairs(options["session"], "=", "--session").items()
    }
    out = command.stdout.write
    out(f"request: GET {url}")
    _explain_host(command, parts.netloc)
    steps = addressing.steps()
    out(f"resolver: {' → '.join(type(r).__name__ for r in steps)}")
    for number, step in enumerate(steps, 1):
        try:
            found = step.resolve(request)
        except DisallowedHost as exc:
            out(f"  {number}. {type(step).__name__}: DisallowedHost ({exc})")
            continue
        verdict = f"→ {found.id!r}" if found is not None else "no match"
        read = addressing.what_step_read(step, request)
        out(f"  {number}. {type(step).__name__}: {verdict}{f'  ({read})' if read else ''}")
    config = conf.current()
    if config.tenant_model or config.registry_models:
        out(
            f"registry: {config.tenant_model[0] if config.tenant_model else 'TENANT_VALIDATOR'}"
            " (unknown ids count as no match; the chain moves on)"
        )
    if config.default_tenant:
        out(f"default: TENANT_DEFAULT = {config.default_tenant!r}")
    try:
        tenant = resolve_tenant(request)
    except DisallowedHost as exc:
        out(f"result: DisallowedHost, answered 400 ({exc})")
        return
    if tenant is None:
        required = "a 404 on views that require a tenant" if config.required else "no tenant"
        out(f"result: no tenant ({required})")
    else:
        out(f"result: {tenant.id!r} name={tenant.name!r} settings={json.dumps(tenant.settings)}")


def _explain_host(command, netloc: str) -> None:
    domain = _django_host(netloc, list(settings.ALLOWED_HOSTS), bool(settings.DEBUG))
    if domain is None:
        command.stdout.write(
            f"host: {netloc!r} is refused by ALLOWED_HOSTS (Django: DisallowedHost)"
        )
    else:
        command.stdout.write(f"host: {netloc!r} → domain {domain!r}")

