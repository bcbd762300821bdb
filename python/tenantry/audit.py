"""Audit events: structured records on the ``tenantry.audit`` logger, and to
``DJUST_CONFIG["TENANT_AUDIT_CALLBACK"]`` when set.

Events (``record["event"]``):

``tenant.resolved``   a request or view got its tenant
``tenant.missing``    a tenant was required and none resolved (answered 404)
``tenant.denied``     admission refused the user: ``TENANT_MEMBERSHIP_CHECK`` said no,
                      or an anonymous user asked for a client-chosen tenant (404)
``tenant.unknown``    the registry does not know a tenant a view or
                      ``tenant_context()`` tried to bind (404 / ``TenantNotFound``)
``domain.ignored``    a custom-domain row claiming a platform host was ignored
``websocket.refused`` a WebSocket from another tenant's page was refused: by
                      ``TenantOriginValidator`` (``stage="handshake"``) or
                      at a live mount (``stage="mount"``)
``ratelimit.refused`` tenantry refused a request, live event or live mount on
                      a rate limit (INFO, with ``scope``)
``tenant.switched``   ``TenantMixin.set_tenant()`` changed a view's tenant
``queryset.unscoped`` ``unscoped(reason=...)`` bypassed tenant scoping
``isolation.refused`` an ORM write or ``raw()`` was refused by the isolation
                      rules (``tenantry.isolation``); WARNING, with ``model``,
                      ``field``, ``value`` and ``action``
``rls.bypass``        ``tenantry.db.rls_bypass(reason=...)`` lifted row-level security
``task.refused``      a Celery task was refused before its body (invalid,
                      unknown or conflicting tenant)
``task.conflict``     a task was published with another tenant's header while
                      a tenant was bound (the worker refuses it)
``task.fanout_skipped`` ``for_each_tenant`` skipped a row whose id is invalid

Each record is a dict with ``event``, ``tenant_id`` and, where known, ``path``,
``user_id``, ``source``, ``reason``, ``model``, ``field``, ``value``, ``action``.
A refusal's record also has ``refusal``: ``admission``, ``origin``,
``rate_limit`` or ``isolation`` (``tenantry.access.refuse``, which counts
them, in the tenant's usage and the metrics too).
Log handlers receive it as ``record.tenantry`` (``extra={"tenantry": ...}``).

With ``DJUST_CONFIG["TENANT_AUDIT_STORE"] = "database"`` every event at INFO
or above (all but the per-request ``tenant.resolved`` trace) is also stored
as a ``tenantry.AuditEvent`` row, chained per tenant incarnation
(``tenantry.audit_trail``, docs/operations.md#audit-trail): written in the
running transaction, so durable when it commits; an event emitted where the
database cannot be used (a coroutine's thread, a failing database) waits in
this process until :func:`flush`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import conf
from .naming import refuse_naming_another

logger = logging.getLogger("tenantry.audit")

__all__ = ["emit", "flush", "logger"]

#: The stored trail's writer (``tenantry.audit_trail.store``, installed by
#: ``AppConfig.ready``): this module sits below the ORM, so the writer comes
#: to it. None until then.
_store: Any = None


def set_store(store: Any) -> None:
    """Install the writer of stored events (``tenantry.audit_trail``)."""
    global _store
    _store = store


def _storing(level: int) -> bool:
    return _store is not None and level >= logging.INFO and _store.enabled()


def flush() -> int:
    """Write the stored events that wait in this process (emitted in a
    coroutine's thread, or while the database failed): they are durable once
    this returns. Call it from synchronous code (``sync_to_async(flush)`` in
    a coroutine); returns how many were written. A no-op without
    ``TENANT_AUDIT_STORE``."""
    return 0 if _store is None else _store.flush()


def discard_waiting() -> int:
    """Forget the stored events that wait for :func:`flush` (the test kit,
    between tests); returns how many."""
    return 0 if _store is None else _store.discard()


def _user_id(request: Any) -> str | None:
    user = getattr(request, "__dict__", {}).get("user")  # never force a lazy user load
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return str(getattr(user, "pk", None))


#: The keys of an event's record that ``emit`` sets itself from its own
#: arguments (``event`` is one: a field cannot take its name).
_OWN_KEYS = frozenset({"tenant_id", "time"})


def emit(
    event: str, *, tenant: Any = None, request: Any = None, level: int = logging.INFO, **fields: Any
) -> None:
    """Record one audit event (cheap when nobody listens). ``tenant`` is the
    chain it is filed in: naming another tenant than the bound one is
    refused (``TenantMismatchError``; docs/security.md#naming-another-tenant)."""
    refuse_naming_another(tenant, "tenantry.audit.emit")
    taken = _OWN_KEYS.intersection(fields)
    if taken:
        # The chain an event is filed in is its tenant's: a field may not
        # name another (docs/security.md#naming-another-tenant).
        raise ValueError(
            f"tenantry.audit.emit({event!r}): field(s) {sorted(taken)} are the event's own "
            "(its tenant and time); name the tenant with tenant=..."
        )
    callback = conf.current().audit_callback
    storing = _storing(level)
    if callback is None and not storing and not logger.isEnabledFor(level):
        return
    record: dict[str, Any] = {
        "event": event,
        "tenant_id": None if tenant is None else str(tenant),
        "time": time.time(),
    }
    if request is not None:
        record["path"] = getattr(request, "path", None)
        record["user_id"] = _user_id(request)
    record.update(fields)
    logger.log(
        level,
        "%s tenant=%s %s",
        event,
        record["tenant_id"],
        " ".join(f"{k}={v}" for k, v in fields.items()),
        extra={"tenantry": record},
    )
    if storing:
        _store.append(record, tenant)
    if callback is not None:
        try:
            callback(record)
        except Exception:
            logger.exception("TENANT_AUDIT_CALLBACK raised for %s", event)
