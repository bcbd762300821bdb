"""``manage.py tenantry``: list and create tenants, and explain resolution.

manage.py tenantry list
manage.py tenantry create acme --name "Acme Corp" --setting theme=dark
manage.py tenantry domain shop.acme-corp.com acme
manage.py tenantry check http://acme.example.com/dashboard/ [-H "X-Tenant-ID: acme"]
                          [--session tenant_id=acme]
manage.py tenantry usage [--tenant ID] [--since HOURS] [--json]
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.core.exceptions import DisallowedHost, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.test import RequestFactory

from ... import conf, resolve_tenant
from ..._core import ChainedResolver, _django_host, get_tenant_resolver
from ...registry import validate_custom_domain


def _pairs(values: list[str], sep: str, what: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, found, rest = value.partition(sep)
        if not found or not key.strip():
            raise CommandError(f"{what} must look like KEY{sep}VALUE, got {value!r}")
        out[key.strip()] = rest.strip()
    return out


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


class Command(BaseCommand):
    help = "List and create tenants (TENANT_MODEL), and explain how a request resolves."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="list the rows of TENANT_MODEL")
        create = sub.add_parser("create", help="create a row of TENANT_MODEL")
        create.add_argument("tenant_id")
        create.add_argument("--name", default="")
        create.add_argument(
            "--setting",
            action="append",
            metavar="KEY=VALUE",
            help="a settings entry (VALUE is JSON when it parses)",
        )
        domain = sub.add_parser("domain", help="map a custom domain to a tenant")
        domain.add_argument("domain")
        domain.add_argument("tenant_id")
        check = sub.add_parser("check", help="what a request would resolve to, and why")
        check.add_argument("url", help="a URL or a host, e.g. http://acme.example.com/x/")
        check.add_argument("-H", "--header", action="append", metavar="NAME: VALUE")
        check.add_argument("--session", action="append", metavar="KEY=VALUE")
        usage = sub.add_parser("usage", help="per-tenant usage by day (requests, events, ...)")
        usage.add_argument("--tenant", action="append", metavar="ID", help="only these tenants")
        usage.add_argument("--since", type=int, default=24, metavar="HOURS", help="default 24")
        usage.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, **options):
        getattr(self, f"handle_{options['action']}")(options)

    # -- registry --------------------------------------------------------------

    def _model(self):
        found = conf.current().tenant_model
        if found is None:
            raise CommandError("DJUST_CONFIG['TENANT_MODEL'] is not set: there is no tenant table.")
        label, id_field = found
        return apps.get_model(label), id_field

    def handle_list(self, options):
        model, id_field = self._model()
        source = conf.current().source
        name_field = source.get("TENANT_MODEL_NAME_FIELD", "name")
        settings_field = source.get("TENANT_MODEL_SETTINGS_FIELD", "settings")
        rows = model._base_manager.order_by(id_field)
        for row in rows:
            name = getattr(row, name_field) if name_field else ""
            settings = getattr(row, settings_field) if settings_field else {}
            self.stdout.write(
                f"{getattr(row, id_field)}\t{name}\t{json.dumps(settings, sort_keys=True)}"
            )
        self.stdout.write(f"({rows.count()} tenants)")

    def handle_create(self, options):
        model, id_field = self._model()
        source = conf.current().source
        values = {id_field: options["tenant_id"]}
        name_field = source.get("TENANT_MODEL_NAME_FIELD", "name")
        if name_field:
            values[name_field] = options["name"] or options["tenant_id"]
        settings_field = source.get("TENANT_MODEL_SETTINGS_FIELD", "settings")
        settings = {
            k: _json_or_text(v) for k, v in _pairs(options["setting"], "=", "--setting").items()
        }
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
        row.save()
        self.stdout.write(f"created tenant {options['tenant_id']!r}")

    def handle_domain(self, options):
        source = conf.current().source
        label = source.get("TENANT_DOMAIN_MODEL")
        if not label:
            raise CommandError("DJUST_CONFIG['TENANT_DOMAIN_MODEL'] is not set: no domain table.")
        model = apps.get_model(label)
        domain = options["domain"].strip().lower().rstrip(".")
        row = model(
            **{
                source.get("TENANT_DOMAIN_FIELD", "domain"): domain,
                source.get("TENANT_DOMAIN_TENANT_FIELD", "tenant_id"): options["tenant_id"],
            }
        )
        try:
            row.full_clean()
            validate_custom_domain(domain, options["tenant_id"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        row.save()
        self.stdout.write(f"{domain} now serves tenant {options['tenant_id']!r}")

    # -- explanation -------------------------------------------------------------

    def handle_check(self, options):
        url = options["url"] if "://" in options["url"] else f"http://{options['url']}"
        parts = urlsplit(url)
        headers = {
            "HTTP_" + k.upper().replace("-", "_"): v
            for k, v in _pairs(options["header"], ":", "--header").items()
        }
        request = RequestFactory().get(parts.path or "/", HTTP_HOST=parts.netloc, **headers)
        request.session = {
            k: _json_or_text(v) for k, v in _pairs(options["session"], "=", "--session").items()
        }
        out = self.stdout.write
        out(f"request: GET {url}")
        self._explain_host(request, parts.netloc)
        resolver = get_tenant_resolver()
        steps = resolver.resolvers if isinstance(resolver, ChainedResolver) else [resolver]
        out(f"resolver: {' → '.join(type(r).__name__ for r in steps)}")
        for number, step in enumerate(steps, 1):
            try:
                found = step.resolve(request)
            except DisallowedHost as exc:
                out(f"  {number}. {type(step).__name__}: DisallowedHost ({exc})")
                continue
            verdict = f"→ {found.id!r}" if found is not None else "no match"
            out(f"  {number}. {type(step).__name__}: {verdict}{self._hint(step, request)}")
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
            out(
                f"result: {tenant.id!r} name={tenant.name!r} settings={json.dumps(tenant.settings)}"
            )

    def _explain_host(self, request, netloc):
        from django.conf import settings

        domain = _django_host(netloc, list(settings.ALLOWED_HOSTS), bool(settings.DEBUG))
        if domain is None:
            self.stdout.write(
                f"host: {netloc!r} is refused by ALLOWED_HOSTS (Django: DisallowedHost)"
            )
        else:
            self.stdout.write(f"host: {netloc!r} → domain {domain!r}")

    def _hint(self, step, request) -> str:
        source = conf.current().source
        name = type(step).__name__
        if name == "SubdomainResolver":
            main = source.get("TENANT_MAIN_DOMAIN")
            exclude = source.get("TENANT_SUBDOMAIN_EXCLUDE", ["www", "api", "admin"])
            return f"  (main domain {main!r}, excluded {exclude})"
        if name == "HeaderResolver":
            header = source.get("TENANT_HEADER", "X-Tenant-ID")
            return f"  ({header}: {request.headers.get(header)!r})"
        if name == "PathResolver":
            return (
                f"  (path {request.path_info!r}, segment {source.get('TENANT_PATH_POSITION', 1)})"
            )
        if name == "SessionResolver":
            key = source.get("TENANT_SESSION_KEY", "tenant_id")
            return f"  (session[{key!r}] = {request.session.get(key)!r})"
        return ""

    # -- usage -----------------------------------------------------------------

    def handle_usage(self, options):
        from datetime import UTC, datetime, timedelta

        from ... import usage

        if options["since"] < 1:
            raise CommandError("--since is a number of hours, at least 1")
        since = datetime.now(UTC) - timedelta(hours=options["since"] - 1)
        tenants = options["tenant"] or usage.tenants_with_usage()
        reports = [usage.get_usage(t, since=since) for t in tenants]
        if options["json"]:
            out = [
                {
                    "tenant": r["tenant"],
                    "total": r["total"],
                    "days": [{**d, "day": d["day"].isoformat()} for d in r["days"]],
                    "hours": [{**h, "hour": h["hour"].isoformat()} for h in r["hours"]],
                }
                for r in reports
            ]
            self.stdout.write(json.dumps(out, indent=2))
            return
        header = ["tenant", "day", *usage.METRICS]
        rows = [
            [r["tenant"], d["day"].isoformat(), *(str(d[m]) for m in usage.METRICS)]
            for r in reports
            for d in r["days"]
        ]
        if not rows:
            self.stdout.write("no usage recorded")
            return
        widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
        for line in [header, *rows]:
            self.stdout.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
