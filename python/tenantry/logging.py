"""``TenantFilter``: every log record carries the current tenant.

    LOGGING = {
        "version": 1,
        "filters": {"tenant": {"()": "tenantry.logging.TenantFilter"}},
        "formatters": {"plain": {"format": "%(levelname)s [%(tenant)s] %(name)s: %(message)s"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "filters": ["tenant"],
                "formatter": "plain",
            }
        },
        "root": {"handlers": ["console"], "level": "INFO"},
    }

``record.tenant`` is the id of the tenant bound where the record was made (the
request, WebSocket event, job or ``tenant_context`` block), or ``"-"`` when
none is bound, so a format string can always use ``%(tenant)s``. The
attribute is tenantry's: a value passed as ``extra={"tenant": ...}`` is
replaced. A record is stamped once, by the first ``TenantFilter`` it meets,
so a filter on a ``QueueHandler`` (which runs where the record was made) wins
over one on the handler behind the queue (which runs in another thread).
"""

from __future__ import annotations

import logging

from .context import get_current_tenant

__all__ = ["NO_TENANT", "TenantFilter"]

#: ``record.tenant`` when no tenant is bound.
NO_TENANT = "-"

#: Set on a record once a TenantFilter stamped it.
_STAMPED = "_tenantry_stamped"


class TenantFilter(logging.Filter):
    """Adds ``record.tenant`` (the bound tenant's id, or ``"-"``); never drops
    a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, _STAMPED, False):
            tenant = get_current_tenant()
            record.tenant = NO_TENANT if tenant is None else tenant.id
            setattr(record, _STAMPED, True)
        return True
