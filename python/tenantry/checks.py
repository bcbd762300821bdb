"""System checks (``manage.py check``): every ``DJUST_CONFIG`` key tenantry
reads, and the set-up around it.

Ids: ``tenantry.E0NN`` is a bad value for the NN-th key of
``tenantry._core.CONFIG_KEYS`` (see docs/configuration.md for the table);
``tenantry.E100`` a ``DJUST_CONFIG`` that is not a dict; ``tenantry.W001`` an
unknown ``TENANT_*`` key (usually a typo).
"""

from __future__ import annotations

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from . import _core, conf


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
            f"DJUST_CONFIG[{key!r}] is not a tenantry setting and is ignored.",
            hint="Check the spelling against docs/configuration.md.",
            id="tenantry.W001",
            obj="settings.DJUST_CONFIG",
        )
        for key in unknown
    ]
    return messages
