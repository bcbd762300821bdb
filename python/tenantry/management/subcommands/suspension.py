"""``manage.py tenantry suspend ID [--reason TEXT]`` and ``manage.py tenantry
resume ID`` (docs/operations.md#suspending-a-tenant). Two subcommands, one
module: :data:`SUSPEND` and :data:`RESUME`."""

from __future__ import annotations

from types import SimpleNamespace

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from ... import conf, suspension
from ..._core import InvalidTenantId, TenantNotFound


def _add_suspend(subparsers) -> None:
    parser = subparsers.add_parser(
        "suspend",
        help="suspend a tenant: 503 pages, error frames, no jobs; its data untouched",
    )
    parser.add_argument("tenant_id")
    parser.add_argument("--reason", default="", help="why (kept and audited, never shown)")


def _suspend(command, options) -> None:
    tenant_id = options["tenant_id"]
    try:
        fresh = suspension.suspend(tenant_id, reason=options["reason"])
    except (ImproperlyConfigured, InvalidTenantId, TenantNotFound) as exc:
        raise CommandError(str(exc)) from exc
    if not fresh:
        command.stdout.write(f"tenant {tenant_id!r} was suspended already")
        return
    command.stdout.write(
        f"suspended tenant {tenant_id!r}: its pages answer 503, its live views and jobs are "
        f"refused; other processes see it within {_delay()}"
    )


def _add_resume(subparsers) -> None:
    parser = subparsers.add_parser("resume", help="lift a tenant's suspension")
    parser.add_argument("tenant_id")


def _resume(command, options) -> None:
    tenant_id = options["tenant_id"]
    try:
        lifted = suspension.resume(tenant_id)
    except (ImproperlyConfigured, InvalidTenantId) as exc:
        raise CommandError(str(exc)) from exc
    if not lifted:
        raise CommandError(f"tenant {tenant_id!r} is not suspended")
    command.stdout.write(f"resumed tenant {tenant_id!r}; other processes see it within {_delay()}")


def _delay() -> str:
    config = conf.current()
    seconds = config.cache_ttl + config.readmit_interval
    return (
        f"{seconds:g}s (TENANT_CACHE_TTL + TENANT_READMIT_INTERVAL; open sockets: one "
        "TENANT_READMIT_INTERVAL more)"
    )


SUSPEND = SimpleNamespace(NAME="suspend", add_arguments=_add_suspend, handle=_suspend)
RESUME = SimpleNamespace(NAME="resume", add_arguments=_add_resume, handle=_resume)
