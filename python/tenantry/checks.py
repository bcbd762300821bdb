"""System checks (``manage.py check``): every ``DJUST_CONFIG`` key tenantry
reads, and the set-up around it.

Ids: ``tenantry.E0NN`` is a bad value for the NN-th key of
``tenantry._core.CONFIG_KEYS`` (see docs/configuration.md for the table);
``tenantry.E100`` a ``DJUST_CONFIG`` that is not a dict; ``tenantry.W001`` an
unknown ``TENANT_*`` key (usually a typo); ``tenantry.W002``/``W003`` settings a
project moving from djust.tenants should look at; ``tenantry.W010`` a
WebSocket route without ``TenantOriginValidator``; ``tenantry.E110`` /
``E111`` a live gate or a djust group the installed djust escapes;
``tenantry.W112`` a djust private name tenantry relies on that the installed
djust no longer has as expected; ``tenantry.W004`` no ``TenantMiddleware``;
``tenantry.E101`` a feature reading the session or the user without its
middleware (before ``TenantMiddleware`` where it runs there);
``tenantry.W203`` a model with a tenant field and no ``TenantManager``.
``tenantry.E400`` an object that runs with its owner's rights past the
row-level security policies; ``tenantry.E401`` ``TENANT_RLS = True`` on a
connection behind transaction pooling (database checks).
``tenantry.E058`` (``TENANT_DATABASE_FIELD``) also a database per tenant
set up wrong: no ``TenantDatabaseRouter``, a tenant-owned model's constraint
to a shared table, an alias the registry names missing from ``DATABASES``.
``tenantry.E102`` (tenantry used but not in ``INSTALLED_APPS``) is
registered by ``tenantry.conf``, since without the app this module never
loads.
"""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections
from django.utils.module_loading import import_string

from . import _core, conf, graph
from .channels import TenantOriginValidator
from .db import rls
from .db.router import constraint_problems, routing_enabled
from .djust import live
from .djust import names as djust_names
from .djust.broadcasts import djust_group_problems
from .exceptions import TransactionPoolingError
from .models import AbstractTenantDomain


def check_id(key: str) -> str:
    """The error id for a bad value of ``key``."""
    try:
        return f"tenantry.E{_core.CONFIG_KEYS.index(key) + 1:03d}"
    except ValueError:
        return "tenantry.E100"


@checks.register("tenantry")
def check_config(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    try:
        errors, unknown = conf.check()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="tenantry.E100")]
    messages: list[checks.CheckMessage] = [
        checks.Error(message, id=check_id(key), obj="settings.DJUST_CONFIG")
        for key, message in errors
    ]
    messages += [
        checks.Warning(
            message,
            hint="Check the spelling against docs/configuration.md.",
            id="tenantry.W001",
            obj="settings.DJUST_CONFIG",
        )
        for _key, message in unknown
    ]
    return messages


@checks.register("tenantry")
def check_rls_database(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """``TENANT_RLS`` needs PostgreSQL: on any other database the second wall
    would silently not exist."""
    from django.db import connections

    try:
        mode = conf.current().rls
    except ImproperlyConfigured:
        return []  # reported by check_config
    if mode == "off":
        return []
    return [
        checks.Error(
            f"DJUST_CONFIG['TENANT_RLS'] is {mode!r}, but DATABASES[{alias!r}] is "
            f"{connections[alias].vendor}: row-level security needs PostgreSQL.",
            hint="Use django.db.backends.postgresql, or set TENANT_RLS to False.",
            id=check_id("TENANT_RLS"),
            obj="settings.DJUST_CONFIG",
        )
        for alias in connections
        if connections[alias].vendor != "postgresql"
    ]


@checks.register("tenantry", checks.Tags.database)
def check_rls_definers(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    """With ``TENANT_RLS`` on: objects that run with their owner's rights
    past the policies (views, materialized views, ``SECURITY DEFINER``
    functions; see ``tenantry.db.rls.definer_problems``). A database check:
    ``manage.py check --database default`` and ``migrate`` run it."""
    try:
        if conf.current().rls == "off":
            return []
    except ImproperlyConfigured:
        return []  # reported by check_config
    messages: list[checks.CheckMessage] = []
    for alias in databases or ():
        if connections[alias].vendor != "postgresql":
            continue
        try:
            problems = rls.definer_problems(connections[alias])
        except TransactionPoolingError as exc:
            # Opening the connection found session settings behind
            # transaction pooling (tenantry.db.rls.pooling_problem).
            messages.append(
                checks.Error(
                    str(exc),
                    hint="Set DJUST_CONFIG['TENANT_RLS'] = 'transaction' behind a "
                    "transaction-pooling proxy (docs/postgresql.md"
                    "#session-settings-behind-transaction-pooling-refused).",
                    id="tenantry.E401",
                )
            )
            continue
        messages += [
            checks.Error(
                f"DATABASES[{alias!r}]: {problem}.",
                hint="Row-level security does not bound what runs with its owner's rights "
                "(docs/postgresql.md#objects-that-run-with-their-owners-rights).",
                id="tenantry.E400",
            )
            for problem in problems
        ]
    return messages


_MIDDLEWARE = "tenantry.middleware.TenantMiddleware"
_SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
_AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
#: Rate-limit scopes checked over the WebSocket, where the user comes from
#: the ASGI stack (channels' AuthMiddlewareStack), not from MIDDLEWARE.
_LIVE_SCOPES = frozenset({"events", "mounts", "uploads"})


def _position(middleware: list[str], wanted: str) -> int | None:
    """Where ``wanted`` (a dotted class path) or a subclass of it is in
    ``middleware``, or None."""
    try:
        wanted_class = import_string(wanted)
    except ImportError:
        wanted_class = None
    for index, path in enumerate(middleware):
        if path == wanted:
            return index
        try:
            entry = import_string(path)
        except Exception:  # Django reports an unimportable middleware itself
            continue
        if isinstance(entry, type) and wanted_class is not None and issubclass(entry, wanted_class):
            return index
    return None


def _middleware() -> list[str]:
    from django.conf import settings

    return list(getattr(settings, "MIDDLEWARE", None) or [])


@checks.register("tenantry")
def check_middleware_installed(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """No TenantMiddleware: no request gets a tenant (``request.tenant`` unset,
    no ``http`` rate limits, scoped querysets in plain views raise) except in
    TenantMixin views, which resolve their own."""
    if _position(_middleware(), _MIDDLEWARE) is not None:
        return []
    return [
        checks.Warning(
            f"{_MIDDLEWARE} is not in MIDDLEWARE: no request resolves a tenant "
            "(request.tenant is never set, TENANT_RATE_LIMITS['http'] and "
            "TENANT_REQUIRED never apply, scoped querysets in plain views raise "
            "TenantNotSetError); only TenantMixin views resolve their own.",
            hint=(
                f"Add {_MIDDLEWARE!r} to MIDDLEWARE, after {_SESSION!r} and {_AUTH!r} "
                "(docs/middleware.md). Silence tenantry.W004 if only TenantMixin views "
                "need a tenant."
            ),
            id="tenantry.W004",
            obj="settings.MIDDLEWARE",
        )
    ]


def _user_needs(config) -> list[tuple[str, str, bool]]:
    """``(middleware, why, must precede TenantMiddleware)`` for every
    configured feature that reads the session or the user."""
    needed = []
    if config.uses_session:
        needed += [
            (_SESSION, "the session resolver reads request.session", True),
            (_AUTH, "the session resolver falls back to request.user", True),
        ]
    if config.membership_check is not None:
        needed.append((_AUTH, "TENANT_MEMBERSHIP_CHECK reads request.user", True))
    for scope in config.scopes_counting_users:
        if scope == "http":
            why = (
                "TENANT_RATE_LIMITS['http'] counts per user (a 'user' key); before it "
                "every user would be counted as anonymous, by address"
            )
            needed.append((_AUTH, why, True))
        elif scope not in _LIVE_SCOPES:
            why = (
                f"TENANT_RATE_LIMITS[{scope!r}] counts per user (a 'user' key); without "
                "it every user would be counted as anonymous, by address"
            )
            needed.append((_AUTH, why, False))
    return needed


@checks.register("tenantry")
def check_middleware_order(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Every feature that reads the session or the user (the session
    resolver, the membership check, a rate limit counted per user) needs
    its middleware, and before TenantMiddleware when it runs there: never
    silently anonymous."""
    middleware = _middleware()
    position = _position(middleware, _MIDDLEWARE)
    try:
        config = conf.current()
    except ImproperlyConfigured:
        return []  # reported by check_config
    messages = []
    reported = set()
    for name, why, before in _user_needs(config):
        at = _position(middleware, name)
        if before and position is not None:
            if at is not None and at < position:
                continue
            problem = (
                f"{_MIDDLEWARE} must come after {name}: {why}."
                if at is not None
                else f"{name} is not in MIDDLEWARE, and {_MIDDLEWARE} needs it before it: {why}."
            )
            hint = f"Put {name} above {_MIDDLEWARE} in MIDDLEWARE (docs/middleware.md)."
        elif not before and at is None:
            problem = f"{name} is not in MIDDLEWARE: {why}."
            hint = f"Add {name} to MIDDLEWARE (docs/ratelimits.md#keys-what-is-counted)."
        else:
            continue
        if (name, why) not in reported:
            reported.add((name, why))
            messages.append(
                checks.Error(problem, hint=hint, id="tenantry.E101", obj="settings.MIDDLEWARE")
            )
    return messages


@checks.register("tenantry")
def check_legacy_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """``djust.tenants`` also read ``settings.DJUST_TENANTS``; tenantry reads
    ``DJUST_CONFIG`` only, so say where those values went."""
    from django.conf import settings

    legacy = getattr(settings, "DJUST_TENANTS", None)
    if not legacy:
        return []
    moved = {
        "REQUIRED": "TENANT_REQUIRED",
        "RESOLVER": "TENANT_RESOLVER",
        "STRICT_MODE": "TENANT_STRICT ('raise' or 'empty')",
    }
    keys = ", ".join(f"{k} → DJUST_CONFIG[{moved.get(k, '?')!r}]" for k in legacy)
    return [
        checks.Warning(
            f"settings.DJUST_TENANTS is not read by tenantry ({keys}).",
            hint="Move these values into DJUST_CONFIG (see docs/migrating-from-djust.md).",
            id="tenantry.W002",
            obj="settings.DJUST_TENANTS",
        )
    ]


@checks.register("tenantry")
def check_unconfigured_middleware(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """djust.tenants' middleware passes every request through untouched when
    no tenant setting is configured; tenantry's resolves with the defaults
    (subdomains, tenant required) and answers 404 for a host that names no
    tenant. A project that kept the middleware without configuring tenancy
    would start refusing requests after the switch: say so."""
    from django.conf import settings

    if _MIDDLEWARE not in list(getattr(settings, "MIDDLEWARE", None) or []):
        return []
    if getattr(settings, "DJUST_TENANTS", None):
        return []  # configured for djust.tenants: reported by check_legacy_settings
    try:
        if conf.tenant_keys():
            return []
        configured = conf.is_set()
    except ImproperlyConfigured:
        return []  # reported by check_config
    state = "has no TENANT_* key" if configured else "is empty or missing"
    return [
        checks.Warning(
            f"{_MIDDLEWARE} is installed but settings.DJUST_CONFIG {state}: every "
            "request is resolved with the defaults (TENANT_RESOLVER 'subdomain', "
            "TENANT_REQUIRED True), so a host that names no tenant answers 404. "
            "djust.tenants' middleware did nothing with this configuration.",
            hint=(
                "Configure tenancy in DJUST_CONFIG (at least TENANT_RESOLVER, e.g. "
                "'subdomain' with TENANT_MAIN_DOMAIN; TENANT_REQUIRED False to let "
                "requests without a tenant through), or remove the middleware "
                "(see docs/migrating-from-djust.md)."
            ),
            id="tenantry.W003",
            obj="settings.DJUST_CONFIG",
        )
    ]


@checks.register("tenantry", checks.Tags.models)
def check_registry_models(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """TENANT_MODEL / TENANT_DOMAIN_MODEL name installed models with the
    configured fields."""
    from django.apps import apps

    # A lenient parse, not the compiled config: a bad value elsewhere (reported
    # by check_config) must not hide a typo here.
    try:
        wanted = conf.registry_fields()
        reported = {key for key, _message in conf.check()[0]}  # by check_config
    except ImproperlyConfigured:
        return []  # reported by check_config
    messages = []
    for key, label, fields in wanted:
        if key in reported:
            continue
        try:
            model_class = apps.get_model(label)
        except (LookupError, ValueError):
            messages.append(
                checks.Error(
                    f"DJUST_CONFIG[{key!r}] names {label!r}, which is not an installed model.",
                    id=check_id(key),
                    obj="settings.DJUST_CONFIG",
                )
            )
            continue
        names = {f.name for f in model_class._meta.get_fields()} | {
            getattr(f, "attname", f.name) for f in model_class._meta.get_fields()
        }
        for field_key, field in fields:
            if (
                field_key not in reported
                and isinstance(field, str)
                and field
                and field not in names
            ):
                messages.append(
                    checks.Error(
                        f"DJUST_CONFIG[{field_key!r}] is {field!r}, "
                        f"which is not a field of {label}.",
                        id=check_id(field_key),
                        obj="settings.DJUST_CONFIG",
                    )
                )
    return messages


def _websocket_chain(application: object):
    """The WebSocket app of an ASGI ``ProtocolTypeRouter`` and the apps it
    wraps (``.application`` / ``.inner``), outermost first, bounded."""
    mapping = getattr(application, "application_mapping", None)
    current = mapping.get("websocket") if isinstance(mapping, dict) else None
    for _ in range(16):
        if current is None:
            return
        yield current
        inner = getattr(current, "application", None) or getattr(current, "inner", None)
        current = None if inner is current else inner


@checks.register("tenantry")
def check_origin_validator(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """WebSocket routes should be wrapped in TenantOriginValidator: without
    it one tenant's page can open another tenant's live views with a
    visitor's cookies."""
    from django.conf import settings

    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        return []
    try:
        application = import_string(path)
    except Exception:  # Django and channels report an unimportable app
        return []
    chain = list(_websocket_chain(application))
    if not chain or any(isinstance(app, TenantOriginValidator) for app in chain):
        return []
    return [
        checks.Warning(
            "The WebSocket routes of ASGI_APPLICATION are not wrapped in "
            "tenantry.channels.TenantOriginValidator.",
            hint=(
                "Without it a page of one tenant can open another tenant's live views "
                "with a visitor's cookies: wrap the websocket app, e.g. "
                "TenantOriginValidator(AuthMiddlewareStack(URLRouter(...)))."
            ),
            id="tenantry.W010",
            obj=path,
        )
    ]


@checks.register("tenantry")
def check_live_plane(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """What tenantry's live gates and group scoping cannot cover in the
    installed djust, read from djust itself: a consumer whose channel-layer
    handlers reach clients without re-admission, a client frame type
    tenantry does not classify, a djust seam that moved
    (``tenantry.djust.live.problems``; ``tenantry.E110``), and a channels
    group djust joins or sends to that tenantry does not scope by tenant
    (``tenantry.djust.broadcasts.djust_group_problems``; ``tenantry.E111``)."""

    hint = "Upgrade tenantry for this djust, or pin the djust version tenantry supports."
    return [
        checks.Error(problem, hint=hint, id="tenantry.E110", obj="djust")
        for problem in live.problems()
    ] + [
        checks.Error(problem, hint=hint, id="tenantry.E111", obj="djust")
        for problem in djust_group_problems()
    ]


@checks.register("tenantry")
def check_djust_private_names(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Every djust private name tenantry relies on is in the installed djust
    as tenantry expects it (``tenantry.djust.names.PRIVATE_NAMES``): one
    ``tenantry.W112`` per name missing or changed."""
    hint = (
        "This djust is not the one tenantry was checked against: run "
        "scripts/djust_compat.py --names, and upgrade tenantry or pin djust "
        "(docs/architecture.md#the-djust-seam)."
    )
    return [
        checks.Warning(problem, hint=hint, id="tenantry.W112", obj="djust")
        for problem in djust_names.problems()
    ]


# Tagged "models" only, like check_model_graph below.
@checks.register(checks.Tags.models)
def check_unscoped_models(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """A model whose rows belong to a tenant (a tenant field) with no
    TenantManager: its managers read every tenant's rows
    (docs/querysets.md#system-checks). A warning: some models are read
    across tenants on purpose (silence tenantry.W203 for them). Custom-domain
    models (``AbstractTenantDomain``) are: the domain resolver looks hosts up
    across tenants."""
    models = None if app_configs is None else [m for a in app_configs for m in a.get_models()]
    try:
        found = graph.unscoped_owned(models)
    except ImproperlyConfigured:
        return []  # a bad TENANT_MODEL: reported by check_registry_models
    found = [(m, f) for m, f in found if not issubclass(m, AbstractTenantDomain)]
    return [
        checks.Warning(
            f"{model._meta.label} has a tenant field ({field.name!r}) but no TenantManager: "
            f"its managers ({', '.join(m.name for m in model._meta.managers) or 'objects'}) "
            "read every tenant's rows (writes are still checked).",
            hint=(
                f"Add objects = TenantManager(tenant_field={field.name!r}) "
                "(docs/querysets.md); silence tenantry.W203 for a model read across "
                "tenants on purpose."
            ),
            id="tenantry.W203",
            obj=model,
        )
        for model, field in found
    ]


# Tagged "models" only: the model graph is the project's, not tenantry's
# settings, and `manage.py check` runs every tag.
@checks.register(checks.Tags.models)
def check_model_graph(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Every relation to a tenant-scoped model can be guarded, and no proxy
    or multi-table child escapes the scoping of its rows
    (docs/querysets.md#system-checks)."""
    return [
        checks.Error(message, obj=model, id=check) for check, model, message in graph.problems()
    ]


def _database_field() -> tuple[str | None, str | None]:
    """``(TENANT_MODEL label, TENANT_DATABASE_FIELD)``; Nones when unset or
    when the config does not compile (check_config reports that)."""
    try:
        config = conf.current()
    except ImproperlyConfigured:
        return None, None
    label = config.tenant_model[0] if config.tenant_model else None
    return label, config.tenant_database_field


@checks.register("tenantry")
def check_tenant_database_setup(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """A database per tenant (docs/postgresql.md#a-database-per-tenant):
    ``TENANT_DATABASE_FIELD`` needs ``TenantDatabaseRouter``, and a
    tenant-owned model's constraint to a shared table cannot hold across
    databases (``db_constraint=False``)."""
    _label, field = _database_field()
    if field is None:
        return []
    key = "TENANT_DATABASE_FIELD"
    found: list[checks.CheckMessage] = []
    if not routing_enabled():
        found.append(
            checks.Error(
                f"DJUST_CONFIG[{key!r}] is set but 'tenantry.db.TenantDatabaseRouter' is not "
                "in settings.DATABASE_ROUTERS: every tenant's rows would go to 'default'.",
                id=check_id(key),
                obj="settings.DATABASE_ROUTERS",
            )
        )
    for model, relation in constraint_problems():
        found.append(
            checks.Error(
                f"{model._meta.label}.{relation.name} is a database constraint to "
                f"{relation.related_model._meta.label}, which stays on 'default': it cannot hold "
                "on a tenant's own database. Set db_constraint=False on it (DJUST_CONFIG"
                f"[{key!r}] is set); until then its table is not made on tenant databases and "
                "`tenantry move` refuses tenants with rows in it.",
                id=check_id(key),
                obj=model,
            )
        )
    return found


@checks.register("tenantry", checks.Tags.database)
def check_tenant_databases(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    """Every alias the registry's ``TENANT_DATABASE_FIELD`` names is in
    ``DATABASES`` (its tenants are refused otherwise)."""
    label, field = _database_field()
    key = "TENANT_DATABASE_FIELD"
    found: list[checks.CheckMessage] = []
    if label is not None and field is not None:
        try:
            named = set(
                apps.get_model(label)._base_manager.values_list(field, flat=True).distinct()
            )
        except DatabaseError:
            named = set()  # not migrated yet: nothing to compare
        for alias in sorted(a for a in named if a and a not in settings.DATABASES):
            found.append(
                checks.Error(
                    f"{label}.{field} names database {alias!r}, which is not in "
                    "settings.DATABASES: its tenants are refused (503) until it is added.",
                    id=check_id(key),
                    obj=label,
                )
            )
    return found
