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
The stamp is sealed (a keyed hash of the tenant and the record's creation
time, thread and process, with a secret of this process), so a caller's
``extra`` cannot pass a record off as already stamped with another tenant;
a copy of the record (the ``QueueHandler``'s) keeps a valid seal.
"""

from __future__ import annotations

import hashlib
import logging
import secrets

from .context import get_current_tenant

__all__ = ["NO_TENANT", "TenantFilter"]

#: ``record.tenant`` when no tenant is bound.
NO_TENANT = "-"

#: Set on a record once a TenantFilter stamped it: the stamp's seal.
_STAMPED = "_tenantry_stamped"
_KEY = secrets.token_bytes(32)


def _seal(record: logging.LogRecord, tenant: object) -> str:
    """What only this process's filter can write next to ``tenant``."""
    made = f"{tenant!r}\0{record.created!r}\0{record.thread!r}\0{record.process!r}"
    return hashlib.blake2b(made.encode(), key=_KEY, digest_size=16).hexdigest()


class TenantFilter(logging.Filter):
    """Adds ``record.tenant`` (the bound tenant's id, or ``"-"``); never drops
    a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        sealed = getattr(record, _STAMPED, None)
        if sealed is None or sealed != _seal(record, getattr(record, "tenant", None)):
            tenant = get_current_tenant()
            record.tenant = NO_TENANT if tenant is None else tenant.id
            setattr(record, _STAMPED, _seal(record, record.tenant))
        return True
