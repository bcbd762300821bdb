"""Reads ``settings.DJUST_CONFIG`` into the Rust core and keeps it current.

The dict is parsed and compiled once (``tenantry._core.configure``); Django's
``setting_changed`` signal (sent by ``override_settings``) drops the compiled
copy so the next use compiles the new one. Mutating ``DJUST_CONFIG`` in place
is not seen: assign a new dict, use ``override_settings``, or call
:func:`reload`.

A test that replaces the settings object itself
(``patch("django.conf.settings")``, djust's own test style) is honoured too:
every use compares ``django.conf.settings`` with the object the config was
compiled from (one attribute read and a pointer compare), and compiles the
stand-in's ``DJUST_CONFIG`` when they differ, then the real one again when
the stand-in goes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import django.conf as django_conf
from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from . import _core
from .resolvers import RESOLVER_REGISTRY

__all__ = [
    "check",
    "current",
    "get_djust_config",
    "is_set",
    "load",
    "registry_fields",
    "reload",
    "require_installed",
    "tenant_keys",
]

#: Callbacks run after the config is dropped (backend caches register here).
_reset_hooks: list = []
#: The compiled config's Python view, kept until the config is dropped.
_current: _core.CurrentConfig | None = None
#: The ``django.conf.settings`` object the current config was compiled from.
_compiled_from: object = None


#: The rate-limit scopes tenantry's own gates check: the middleware
#: (``http``), live events and the client frames that cause work (``events``),
#: live mounts (``mounts``), upload chunks (``uploads``).
GATED_SCOPES = ("http", "events", "mounts", "uploads")


class RequestConfig(NamedTuple):
    """What the per-request and per-render paths read of the current config."""

    context_name: str
    membership_check: Any
    audit_callback: Any
    #: Of the scopes tenantry's own gates check (:data:`GATED_SCOPES`), those
    #: ``TENANT_RATE_LIMITS`` or ``TENANT_QUOTAS`` limit.
    limited_scopes: frozenset[str]
    #: The scopes ``TENANT_RATE_LIMITS`` counts per user (a tenant's plan may
    #: add others): their checks load ``request.user`` first.
    user_scopes: frozenset[str]


#: The current config's :class:`RequestConfig`, or None: read without a call
#: (:func:`request_settings` fills it; dropped with the config). Those paths
#: run after the request's resolution, which notices a replaced settings
#: object (the Rust core asks :func:`current`'s question).
request_config: RequestConfig | None = None


def get_djust_config() -> dict:
    """``settings.DJUST_CONFIG`` (an empty dict when unset), to hand to the
    Rust core: the one place Python touches the dict. Every other module
    reads the parsed fields of :func:`current` (docs/architecture.md)."""
    raw = getattr(django_conf.settings, "DJUST_CONFIG", None)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(
            f"settings.DJUST_CONFIG must be a dict, got {type(raw).__name__}"
        )
    return raw


def load() -> None:
    """Compile the current settings; ``ImproperlyConfigured`` names the bad key."""
    global _current, _compiled_from
    _current = None
    source = django_conf.settings
    try:
        _core.configure(get_djust_config(), RESOLVER_REGISTRY, source)
    except _core.ConfigError as exc:
        raise ImproperlyConfigured(_every_problem(exc)) from exc
    _compiled_from = source


def _settings_replaced() -> None:
    """``django.conf.settings`` is another object than the one compiled from
    (called by the Rust core): drop everything built from the old config."""
    reset()
    load()


def _every_problem(exc: _core.ConfigError) -> str:
    """One line per problem, so fixing one does not just reveal the next."""
    problems = exc.args[1] if len(exc.args) > 1 else []
    if len(problems) < 2:
        return exc.args[0]
    lines = "\n".join(f"  - {message}" for _key, message in problems)
    return f"{len(problems)} problems in settings.DJUST_CONFIG:\n{lines}"


def reload() -> None:
    """Drop the compiled config (and cached backends) and compile it again."""
    reset()
    load()


def reset() -> None:
    global _current, request_config
    _current = None
    request_config = None
    _core.reset()
    for hook in list(_reset_hooks):
        hook()


def current() -> _core.CurrentConfig:
    """The compiled settings, compiling them on first use."""
    config = _current
    if config is None or django_conf.settings is not _compiled_from:
        config = _core.current_config()
        globals()["_current"] = config
    return config


def request_settings() -> RequestConfig:
    """:data:`request_config`, filled from :func:`current`."""
    global request_config
    config = current()
    request_config = RequestConfig(
        config.context_name,
        config.membership_check,
        config.audit_callback,
        frozenset(scope for scope in GATED_SCOPES if config.limits_scope(scope)),
        frozenset(config.scopes_counting_users),
    )
    return request_config


def check() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Every config problem as ``(key, message)``, and every key that looks
    meant for tenantry but is not one of its keys as ``(key, message)`` (the
    message says "did you mean" when a known key is close)."""
    return _core.check_config(get_djust_config(), RESOLVER_REGISTRY)


def registry_fields() -> list[tuple[str, str, list[tuple[str, str | None]]]]:
    """``TENANT_MODEL`` / ``TENANT_DOMAIN_MODEL`` and their field settings,
    parsed leniently (a bad value elsewhere does not hide them; see
    ``tenantry._core.registry_fields``), for the model system checks."""
    return _core.registry_fields(get_djust_config())


def is_set() -> bool:
    """True when ``DJUST_CONFIG`` holds any key at all (tenantry's or djust's)."""
    return bool(get_djust_config())


def tenant_keys() -> list[str]:
    """The ``TENANT_*`` keys set in ``DJUST_CONFIG`` (known or not)."""
    return _core.tenant_keys(get_djust_config())


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "DJUST_CONFIG":
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="tenantry.conf")


def _not_installed(user: str) -> str | None:
    """The message when tenantry is used (by ``user``) without being in
    ``INSTALLED_APPS``, else None (also while the app registry is loading)."""
    if not apps.ready or apps.is_installed("tenantry"):
        return None
    return (
        f"{user} is used but 'tenantry' is not in INSTALLED_APPS: tenantry's "
        "system checks, ORM wall, djust integration (live gates, event rate "
        "limits, presence and state backends) would silently not run. Add "
        "'tenantry' to INSTALLED_APPS (docs/quickstart.md)."
    )


def require_installed(user: str) -> None:
    """Raise ``ImproperlyConfigured`` when tenantry is used (``user`` names
    how: the middleware, a TenantMixin view) without being installed.
    Called once, when Django builds the middleware or a view's ``as_view()``."""
    message = _not_installed(user)
    if message is not None:
        raise ImproperlyConfigured(message)


# Registered on import, not in TenantryConfig.ready(): without the app its
# other checks never run, and this one must (any project model or view that
# imports tenantry imports this module before the checks run).
@checks.register("tenantry")
def check_installed(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    message = _not_installed("tenantry")
    if message is None:
        return []
    return [checks.Error(message, id="tenantry.E102", obj="settings.INSTALLED_APPS")]
