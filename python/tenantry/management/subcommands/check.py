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
from ..._core import _django_host, header_meta_key, is_valid_tenant_id
from ...registry import case_twins
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
        _case_twins(command, parts, headers, request.session)
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


def _case_twins(command, parts, headers: dict, session: dict) -> None:
    """No tenant: name the registry ids that differ only in case from a part
    of the request (a host label, a path segment, a header or session value),
    the usual reason a tenant that exists is not found (hosts are lowercase;
    ids are case-sensitive)."""
    read = [label for label in parts.hostname.split(".")] if parts.hostname else []
    read += [segment for segment in parts.path.split("/") if segment]
    read += [str(v) for v in (*headers.values(), *session.values())]
    read = [r for r in dict.fromkeys(read) if is_valid_tenant_id(r)]
    for value, twin in sorted(case_twins(read).items()):
        command.stdout.write(
            f"case twin: the registry has {twin!r}, not {value!r} (they differ only in case); "
            f"tenant ids are case-sensitive and hosts are lowercase, so {twin!r} is never "
            "resolved from a host: create tenants with lowercase ids"
        )
