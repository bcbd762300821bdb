"""``manage.py tenantry``: list and create tenants, and explain resolution.

manage.py tenantry list
manage.py tenantry create acme --name "Acme Corp" --setting theme=dark
manage.py tenantry delete acme [--dry-run] [--leftovers]
manage.py tenantry deactivate acme
manage.py tenantry adopt shop.Order --tenant acme [--field tenant_id] [--batch 1000]
manage.py tenantry domain shop.acme-corp.com acme
manage.py tenantry check http://acme.example.com/dashboard/ [-H "X-Tenant-ID: acme"]
                          [--session tenant_id=acme]
manage.py tenantry rls [--check] [--database default]
manage.py tenantry usage [--tenant ID] [--since HOURS] [--json]
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.core.exceptions import DisallowedHost, FieldDoesNotExist, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Q
from django.test import RequestFactory

from ... import audit, conf, lifecycle, resolve_tenant
from ..._core import (
    BackendUnavailable,
    ChainedResolver,
    InvalidTenantId,
    TenantInfo,
    TenantNotFound,
    _django_host,
    get_tenant_resolver,
    is_valid_tenant_id,
    lookup_tenant,
    validate_tenant_id,
)
from ...addressing import ANY, probe
from ...exceptions import DeletionIncomplete
from ...isolation import scope_of, tenant_field_value
from ...registry import active_field, invalidate_tenant, validate_custom_domain


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
        delete = sub.add_parser(
            "delete",
            help="delete every trace of a tenant (rows, domains, files, cache, presence, "
            "state, rate limits, usage) and print a certificate",
        )
        delete.add_argument("tenant_id")
        delete.add_argument("--dry-run", action="store_true", help="count, change nothing")
        delete.add_argument(
            "--leftovers",
            action="store_true",
            help="the registry row is already gone: remove what still holds the id",
        )
        deactivate = sub.add_parser(
            "deactivate", help="turn the registry row's active flag off (is_active/active)"
        )
        deactivate.add_argument("tenant_id")
        adopt = sub.add_parser(
            "adopt", help="backfill the tenant field of rows that have none (docs/adopting.md)"
        )
        adopt.add_argument("model", metavar="app_label.Model")
        adopt.add_argument("--tenant", required=True, metavar="ID")
        adopt.add_argument(
            "--field", help="the tenant field (default: the TenantManager's, else tenant_id)"
        )
        adopt.add_argument("--batch", type=int, default=1000, help="rows per transaction")
        domain = sub.add_parser("domain", help="map a custom domain to a tenant")
        domain.add_argument("domain")
        domain.add_argument("tenant_id")
        check = sub.add_parser("check", help="what a request would resolve to, and why")
        check.add_argument("url", help="a URL or a host, e.g. http://acme.example.com/x/")
        check.add_argument("-H", "--header", action="append", metavar="NAME: VALUE")
        check.add_argument("--session", action="append", metavar="KEY=VALUE")
        rls = sub.add_parser(
            "rls", help="which scoped models are behind PostgreSQL row-level security"
        )
        rls.add_argument(
            "--check",
            action="store_true",
            help="exit non-zero when a scoped model has no policy or the role ignores RLS",
        )
        rls.add_argument("--database", default="default", help="the database alias to inspect")
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
        try:
            left = lifecycle.leftovers(tenant_id) if is_valid_tenant_id(tenant_id) else None
            row.save()  # removes them first (tenantry.lifecycle.on_insert)
        except BackendUnavailable as exc:
            raise CommandError(
                f"tenant {tenant_id!r} was not created: what its id may still hold cannot "
                f"be checked ({exc}); try again once the store is back"
            ) from exc
        if left is not None and left.lines:
            self.stdout.write(
                f"removed what the id {tenant_id!r} still held (a deleted tenant's data, "
                "never the new tenant's):"
            )
            self.stdout.write(str(left).replace("would delete", "deleted"))
        self.stdout.write(f"created tenant {options['tenant_id']!r}")

    def _row(self, model, id_field, tenant_id):
        row = model._base_manager.filter(**{id_field: tenant_id}).first()
        if row is None:
            raise CommandError(f"no tenant {tenant_id!r} in {model._meta.label}.")
        return row

    def handle_deactivate(self, options):
        model, id_field = self._model()
        flag = active_field(model)
        if flag is None:
            raise CommandError(
                f"{model._meta.label} has no active flag: add a BooleanField named "
                "'is_active' (or 'active') to deactivate tenants, or use 'tenantry delete'."
            )
        row = self._row(model, id_field, options["tenant_id"])
        setattr(row, flag, False)
        row.save(update_fields=[flag])
        invalidate_tenant(options["tenant_id"])
        audit.emit("tenant.deactivated", tenant=options["tenant_id"])
        self.stdout.write(
            f"deactivated tenant {options['tenant_id']!r} ({model._meta.label}.{flag} = False): "
            "it no longer resolves (404 on views that require a tenant)"
        )

    def handle_delete(self, options):
        tenant_id, dry_run = options["tenant_id"], options["dry_run"]
        if conf.current().tenant_model is not None and not options["leftovers"]:
            model, id_field = self._model()
            self._row(model, id_field, tenant_id)  # a CommandError naming the model
        try:
            certificate = lifecycle.delete_tenant(
                tenant_id, dry_run=dry_run, leftovers=options["leftovers"]
            )
        except DeletionIncomplete as exc:
            self._certificate(exc.certificate)
            raise CommandError(str(exc)) from exc
        except (TenantNotFound, InvalidTenantId) as exc:
            raise CommandError(str(exc)) from exc
        self._certificate(certificate)

    def _certificate(self, certificate):
        """What the deletion removed, per store: the lines of the certificate."""
        self.stdout.write(
            f"{'dry run: certificate of what deleting' if certificate.dry_run else 'certificate:'}"
            f" tenant {certificate.tenant_id!r} (incarnation {certificate.incarnation})"
            f"{' would remove' if certificate.dry_run else ''}"
        )
        self.stdout.write(str(certificate))
        self.stdout.write(
            f"dry run: nothing changed for tenant {certificate.tenant_id!r}"
            if certificate.dry_run
            else f"deleted tenant {certificate.tenant_id!r}"
        )

    def handle_adopt(self, options):
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
        self.stdout.write(f"{total} rows of {model._meta.label} have no {field.name}")
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
            self.stdout.write(f"  {done}/{total}")
        audit.emit("tenant.adopted", tenant=tenant_id, model=model._meta.label, rows=done)
        self.stdout.write(f"adopted {done} rows of {model._meta.label} into tenant {tenant_id!r}")

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
    # -- row-level security ------------------------------------------------------

    def handle_rls(self, options):
        from django.db import connections

        from ...db import rls

        connection = connections[options["database"]]
        if connection.vendor != "postgresql":
            raise CommandError(
                f"DATABASES[{options['database']!r}] is {connection.vendor}: "
                "row-level security needs PostgreSQL."
            )
        out = self.stdout.write
        mode = conf.current().rls
        out(f"TENANT_RLS: {mode}")
        problems = 0
        for model, field in rls.scoped_models():
            tenant_field = model._meta.get_field(field)
            table = model._meta.db_table
            holder = tenant_field.model._meta.db_table
            if holder != table:  # multi-table inheritance: the column is a parent's
                table = f"{table} → {holder}"
            where = f"{model._meta.label} ({table}.{tenant_field.column})"
            problem = rls.table_problems(connection, model)
            if problem is None:
                out(f"  ok       {where}")
            else:
                problems += 1
                out(
                    f"  MISSING  {where}: {problem}. Add a migration with "
                    f"tenantry.db.EnableTenantRLS({model._meta.label!r}, field={field!r})."
                )
        for warning in rls.role_problems(connection):
            problems += 1
            self.stderr.write(f"WARNING: {warning}. Connect the application as a role without it.")
        for warning in rls.definer_problems(connection):
            problems += 1
            self.stderr.write(f"WARNING: {warning}.")
        if mode == "off":
            self.stderr.write(
                "WARNING: TENANT_RLS is off: connections carry no tenant, so tables with a "
                "policy return no rows."
            )
        if options["check"] and problems:
            raise CommandError(f"{problems} row-level security problem(s), listed above.")

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
    source = conf.current().source
    if step == "SubdomainResolver":
        return (
            " (TENANT_SUBDOMAIN_EXCLUDE "
            f"{source.get('TENANT_SUBDOMAIN_EXCLUDE', ['www', 'api', 'admin'])}, "
            f"TENANT_SUBDOMAIN_DEPTH {source.get('TENANT_SUBDOMAIN_DEPTH', 1)})"
        )
    if step == "PathResolver":
        return (
            " (TENANT_PATH_EXCLUDE "
            f"{source.get('TENANT_PATH_EXCLUDE', ['admin', 'api', 'static', 'media'])})"
        )
    return ""
