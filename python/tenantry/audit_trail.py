"""The stored audit trail: ``DJUST_CONFIG["TENANT_AUDIT_STORE"] = "database"``
(docs/operations.md#audit-trail).

Every ``tenantry.audit`` event at INFO or above becomes a
``tenantry.AuditEvent`` row, a link of the chain of one *tenant
incarnation* (``tenantry.lifecycle.incarnation``): ``prev`` is the hash of
the row before it in that chain, ``hash`` covers the row and ``prev``.
Events that name no tenant, or an id the registry does not know, form the
*platform* chain (``tenant_id`` NULL, the id they named in ``data``): no
tenant sees them.

**Order.** Each chain has a head row (``tenantry.AuditHead``). An append
locks it first with an UPDATE (a row lock on PostgreSQL, the database's
write lock on SQLite), reads the previous hash, inserts the row and moves
the head: the database orders a chain across threads and processes.

**Durability.** The row is written in the running transaction (a savepoint
of it): it is durable when that transaction commits, and rolled back with
it. An event emitted where the database cannot be used now (a coroutine's
thread, a database that failed, an event raised while an event is being
written) waits in this process until :func:`tenantry.audit.flush` (also run
when a request finishes and by the next event written outside a
transaction). A killed process loses what waits, at most
:data:`MAX_PENDING` events; what was written and committed stays.

**Tamper evidence.** :func:`verify` walks a chain from its anchor and names
a changed row (its hash), a removed row (a gap in ``seq``, a broken link,
rows missing at the end), and a head that disagrees. The retention pruning
(:func:`prune`) removes rows from the oldest end only, records the last
removed row's ``seq`` and ``hash`` as the head's anchor and appends an
``audit.pruned`` event that carries the same anchor.

**Walls.** Both tables hold a tenant id. They are kept out of a tenant's
deletion (``tenantry.ownership.exclude``: the trail outlives the tenant,
under its old incarnation) and written with the chain's own tenant bound
(the ORM's wall and row-level security both see that tenant; the platform
chain is written with the bypass scope, quietly: it is tenantry's own
write). Reads for a tenant (the admin, :func:`events`) name the chain, so a
new tenant with an old id never sees the old incarnation's rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.signals import request_finished
from django.db import connections, router, transaction
from django.db.models import F
from django.utils import timezone

from . import _core, audit, conf, ownership
from ._core import TenantInfo
from .context import get_current_tenant, reset_current_tenant, set_current_tenant
from .db.scope import BYPASS, scoped_as
from .lifecycle import incarnation as incarnation_of
from .models import AuditEvent, AuditHead, _pruning, _trail_writer

__all__ = [
    "PLATFORM",
    "Chain",
    "Problem",
    "Report",
    "chains_of",
    "events",
    "export",
    "install",
    "prune",
    "row_hash",
    "verify",
]

logger = logging.getLogger("tenantry.audit_trail")

#: The chain of events that name no known tenant.
PLATFORM = "platform"
#: Part of every hash: a later format changes it.
HASH_FORMAT = "tenantry-audit-1"
#: Events waiting in one process at most (the oldest go first, logged).
MAX_PENDING = 10_000
#: Failed writes of one event before it is dropped (logged).
MAX_ATTEMPTS = 4
#: A longer string in ``data`` is cut (hostile values are unbounded).
MAX_STRING_CHARS = 2048
#: A larger ``data`` is cut to a preview (hostile values are unbounded).
MAX_DATA_CHARS = 16_384
_EXCLUDED_REASON = "the audit trail outlives its tenant, under the old incarnation"

#: True while this context writes the trail: an event emitted meanwhile waits.
_writing: ContextVar[bool] = ContextVar("tenantry_audit_writing", default=False)


@dataclass(frozen=True)
class Chain:
    """One tenant incarnation's chain (``tenant_id`` None: the platform's)."""

    tenant_id: str | None
    incarnation: str = ""

    @property
    def key(self) -> str:
        if self.tenant_id is None:
            return PLATFORM
        return f"tenant:{self.tenant_id}:{self.incarnation}"


@dataclass
class _Entry:
    """An event on its way to the table (its chain decided when emitted)."""

    chain: Chain | None  # None: decide when written (emitted in a coroutine's thread)
    tenant_id: str | None
    event: str
    created_at: datetime
    data: dict[str, Any]
    #: Times it was deferred (a failed write, a coroutine's thread): one the
    #: database keeps refusing is dropped
    #: (logged) after :data:`MAX_ATTEMPTS`, not retried for ever ahead of the rest.
    attempts: int = 0


# -- what a row is ---------------------------------------------------------------------


def _instant(value: datetime) -> str:
    """``created_at`` as hashed: UTC when aware (the database gives it back so)."""
    if timezone.is_aware(value):
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def row_hash(
    chain: str,
    tenant_id: str | None,
    incarnation: str,
    seq: int,
    event: str,
    created_at: datetime,
    data: Any,
    prev: str,
) -> str:
    """The SHA-256 of one row's content and ``prev`` (canonical JSON)."""
    payload = json.dumps(
        [HASH_FORMAT, chain, tenant_id, incarnation, seq, event, _instant(created_at), data, prev],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _stored_hash(row: AuditEvent) -> str:
    return row_hash(
        row.chain,
        row.tenant_id,
        row.incarnation,
        row.seq,
        row.event,
        row.created_at,
        row.data,
        row.prev,
    )


def _clean(value: Any) -> Any:
    """JSON that every database stores as given: strings without NUL or
    unpaired surrogates (PostgreSQL refuses them), keys as strings."""
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            value = f"{value[:MAX_STRING_CHARS]}…[{len(value) - MAX_STRING_CHARS} more characters]"
        return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_clean(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and infinities are not JSON (PostgreSQL refuses them)
    return value


def _data(record: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in record.items() if k not in ("event", "time")}
    data = _clean(json.loads(json.dumps(fields, default=str)))
    text = json.dumps(data, sort_keys=True, ensure_ascii=False)
    if len(text) > MAX_DATA_CHARS:
        data = {"truncated": True, "preview": text[:4096]}
    return data


# -- which chain -------------------------------------------------------------------------


def _chain(tenant_id: str | None, tenant: Any, explicit: Any, *, may_query: bool) -> Chain | None:
    """The chain of an event naming ``tenant_id``: its incarnation given
    (``tenant.deleted`` carries the deleted one), or the tenant's as known
    now; an id the registry does not know goes to the platform chain. None
    when only a registry lookup can say and ``may_query`` is False."""
    if tenant_id is None:
        return Chain(None)
    if isinstance(explicit, str) and explicit:
        return Chain(tenant_id, explicit)
    for candidate in (tenant, get_current_tenant()):
        if isinstance(candidate, TenantInfo) and candidate.id == tenant_id:
            found = incarnation_of(candidate)
            if found is not None:
                return Chain(tenant_id, found)
    if not may_query:
        return None
    try:
        known = _core.lookup_tenant(tenant_id)
    except _core.InvalidTenantId:
        return Chain(None)
    if known is None:
        return Chain(None)
    return Chain(tenant_id, incarnation_of(known) or "")


def chains_of(tenant_id: str) -> list[Chain]:
    """Every chain stored for ``tenant_id`` (one per incarnation), oldest first."""
    tenant_id = _core.validate_tenant_id(tenant_id)
    with _scope(Chain(tenant_id)):
        found = AuditHead.trail.filter(tenant_id=tenant_id).values_list("incarnation", flat=True)
        return [Chain(tenant_id, inc) for inc in sorted(found)]


def current_chain(tenant: TenantInfo) -> Chain:
    """The chain of ``tenant`` as bound now (a request's, a command's)."""
    return _chain(tenant.id, tenant, None, may_query=True) or Chain(tenant.id)


@contextmanager
def _scope(chain: Chain) -> Iterator[None]:
    """The chain's tenant bound for the ORM's wall and row-level security
    (the platform chain: the bypass scope). Quiet: the trail's own access."""
    tenant = (
        None
        if chain.tenant_id is None
        else TenantInfo(chain.tenant_id, metadata={"incarnation": chain.incarnation})
    )
    token = set_current_tenant(tenant)
    try:
        with scoped_as(BYPASS if tenant is None else (tenant.id, "")):
            yield
    finally:
        reset_current_tenant(token)


# -- writing ---------------------------------------------------------------------------


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _append(entry: _Entry, alias: str) -> AuditEvent:
    token = _trail_writer.set(True)  # the one writer of the trail's tables
    try:
        return _append_row(entry, alias)
    finally:
        _trail_writer.reset(token)


def _append_row(entry: _Entry, alias: str) -> AuditEvent:
    chain = entry.chain or _chain(entry.tenant_id, None, None, may_query=True) or Chain(None)
    if chain.tenant_id is None and entry.tenant_id is not None:
        entry.data.setdefault("tenant_id", entry.tenant_id)
    with _scope(chain):
        heads = AuditHead.trail.db_manager(alias).filter(chain=chain.key)
        # The UPDATE takes the chain's lock until the transaction ends.
        if not heads.update(seq=F("seq") + 1):
            AuditHead.trail.db_manager(alias).bulk_create(
                [
                    AuditHead(
                        chain=chain.key, tenant_id=chain.tenant_id, incarnation=chain.incarnation
                    )
                ],
                ignore_conflicts=True,
            )
            heads.update(seq=F("seq") + 1)
        seq, prev = heads.values_list("seq", "hash").get()
        digest = row_hash(
            chain.key,
            chain.tenant_id,
            chain.incarnation,
            seq,
            entry.event,
            entry.created_at,
            entry.data,
            prev,
        )
        row = AuditEvent(
            chain=chain.key,
            tenant_id=chain.tenant_id,
            incarnation=chain.incarnation,
            seq=seq,
            event=entry.event,
            created_at=entry.created_at,
            data=entry.data,
            prev=prev,
            hash=digest,
        )
        row.save(using=alias)
        heads.update(hash=digest)
        return row


#: Events naming an id no registry knows (a hostile ``Host`` header makes
#: one per request) stored per event name and minute, per process; the rest
#: are counted, and the count stored as one ``audit.suppressed`` row of the
#: platform chain once the minute is over (the log keeps every one).
UNKNOWN_ID_EVENTS_PER_MINUTE = 20
_UNKNOWN_ID_WINDOW = 60.0


class _UnknownIds:
    """The bound on platform-chain rows an anonymous client can cause."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._counts: dict[str, int] = {}

    def admit(self, event: str) -> tuple[bool, dict[str, int]]:
        """Whether to store this event, and what the minute that just ended
        left out (event → count)."""
        now = time.monotonic()
        with self._lock:
            ended: dict[str, int] = {}
            if now - self._started >= _UNKNOWN_ID_WINDOW:
                ended = {
                    name: count - UNKNOWN_ID_EVENTS_PER_MINUTE
                    for name, count in self._counts.items()
                    if count > UNKNOWN_ID_EVENTS_PER_MINUTE
                }
                self._started, self._counts = now, {}
            count = self._counts.get(event, 0) + 1
            self._counts[event] = count
            return count <= UNKNOWN_ID_EVENTS_PER_MINUTE, ended

    def reset(self) -> None:
        with self._lock:
            self._started, self._counts = time.monotonic(), {}


class Store:
    """The writer ``tenantry.audit`` hands events to (one per process)."""

    def __init__(self) -> None:
        self._pending: deque[_Entry] = deque()
        self._lock = threading.Lock()
        self.dropped = 0
        self._enabled: bool | None = None
        self.unknown_ids = _UnknownIds()

    def enabled(self) -> bool:
        """``TENANT_AUDIT_STORE == "database"``, read once per config (every
        event asks, also when nobody listens)."""
        known = self._enabled
        if known is None:
            try:
                known = conf.current().audit_store == "database"
            except Exception:  # a broken config is reported by the system checks
                return False
            self._enabled = known
        return known

    def forget_config(self) -> None:
        self._enabled = None

    def append(self, record: dict[str, Any], tenant: Any) -> None:
        try:
            deferred = _writing.get() or _in_event_loop()
            entry = _Entry(
                _chain(
                    record.get("tenant_id"),
                    tenant,
                    record.get("incarnation"),
                    may_query=not deferred,
                ),
                record.get("tenant_id"),
                str(record["event"]),
                timezone.now(),
                _data(record),
            )
        except Exception:
            logger.exception("tenantry.audit: event %r could not be stored", record.get("event"))
            return
        entries = [entry]
        if entry.chain == Chain(None) and entry.tenant_id is not None:
            keep, left_out = self.unknown_ids.admit(entry.event)
            if left_out:
                entries.insert(
                    0,
                    _Entry(
                        Chain(None),
                        None,
                        "audit.suppressed",
                        timezone.now(),
                        {
                            "why": "events naming ids no registry knows, over the bound",
                            "per_minute": UNKNOWN_ID_EVENTS_PER_MINUTE,
                            "left_out": left_out,
                        },
                    ),
                )
            if not keep:
                entries.remove(entry)
                if not entries:
                    return
        if deferred:
            self._defer(entries)
            return
        try:
            self._write(entries)
        except Exception:
            logger.warning(
                "tenantry.audit: event %r waits for flush(): the database refused it",
                entry.event,
                exc_info=True,
            )
            self._defer(entries[-1:])  # the ones before it: deferred by _write

    def _defer(self, entries: list[_Entry], *, front: bool = False) -> None:
        kept = []
        for entry in entries:
            entry.attempts += 1
            if entry.attempts > MAX_ATTEMPTS:
                self.dropped += 1
                logger.error(
                    "tenantry.audit: event %r dropped after %d failed writes: %r",
                    entry.event,
                    MAX_ATTEMPTS,
                    entry.data,
                )
            else:
                kept.append(entry)
        entries = kept
        with self._lock:
            if front:
                self._pending.extendleft(reversed(entries))
            else:
                self._pending.extend(entries)
            while len(self._pending) > MAX_PENDING:
                self._pending.popleft()
                self.dropped += 1
                logger.error(
                    "tenantry.audit: more than %d events wait; the oldest dropped", MAX_PENDING
                )

    def _take(self) -> list[_Entry]:
        with self._lock:
            taken = list(self._pending)
            self._pending.clear()
        return taken

    def _write(self, entries: list[_Entry]) -> None:
        alias = router.db_for_write(AuditEvent)
        if not connections[alias].in_atomic_block:
            # Outside a transaction what waits goes first: it commits now.
            entries = self._take() + entries
        token = _writing.set(True)
        try:
            with transaction.atomic(using=alias):
                for entry in entries:
                    _append(entry, alias)
        except BaseException:
            self._defer(entries[:-1], front=True)
            raise
        finally:
            _writing.reset(token)

    def flush(self) -> int:
        """Write what waits (see :func:`tenantry.audit.flush`)."""
        entries = self._take()
        if not entries:
            return 0
        alias = router.db_for_write(AuditEvent)
        token = _writing.set(True)
        try:
            with transaction.atomic(using=alias):
                for entry in entries:
                    _append(entry, alias)
        except BaseException:
            self._defer(entries, front=True)
            raise
        finally:
            _writing.reset(token)
        return len(entries)

    def pending(self) -> int:
        return len(self._pending)

    def discard(self) -> int:
        """Forget what waits (the test kit, between tests: a test's events
        must not land in the next test's database); returns how many. The
        bound on unknown ids starts over too."""
        self.unknown_ids.reset()
        return len(self._take())


store = Store()
conf._reset_hooks.append(store.forget_config)


def _flush_after_request(**kwargs: Any) -> None:
    if store.pending() and store.enabled():
        try:
            store.flush()
        except Exception:
            logger.warning("tenantry.audit: flush after a request failed", exc_info=True)


def install() -> None:
    """Hand the writer to ``tenantry.audit`` and keep both tables out of a
    tenant's deletion (``AppConfig.ready``)."""
    ownership.exclude(AuditEvent, reason=_EXCLUDED_REASON)
    ownership.exclude(AuditHead, reason=_EXCLUDED_REASON)
    audit.set_store(store)
    request_finished.connect(_flush_after_request, dispatch_uid="tenantry.audit_trail.flush")


# -- reading, verifying, exporting -----------------------------------------------------


def events(chain: Chain) -> Any:
    """The rows of ``chain`` in order (read with the chain's tenant bound)."""
    return AuditEvent.trail.filter(chain=chain.key).order_by("seq")


@dataclass
class Problem:
    """One thing :func:`verify` found: the row (``seq``, ``row_id``) and what."""

    seq: int | None
    row_id: int | None
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class Report:
    chain: Chain
    rows: int = 0
    head_seq: int = 0
    head_hash: str = ""
    anchor_seq: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _head(chain: Chain) -> AuditHead | None:
    return AuditHead.trail.filter(chain=chain.key).first()


def verify(chain: Chain) -> Report:
    """Walk ``chain`` from its anchor; every changed or removed row is named."""
    report = Report(chain)
    with _scope(chain):
        head = _head(chain)
        if head is not None:
            report.head_seq, report.head_hash, report.anchor_seq = (
                head.seq,
                head.hash,
                head.anchor_seq,
            )
        expected, prev = (head.anchor_seq + 1, head.anchor_hash) if head else (1, "")
        last: AuditEvent | None = None
        pruned: AuditEvent | None = None
        past: AuditEvent | None = None
        # Every row filed under the chain's key, whoever's tenant it names
        # (row-level security would hide a planted row of another tenant,
        # and it would still take a seq the chain needs).
        with scoped_as(BYPASS):
            for row in events(chain).iterator(chunk_size=2000):
                report.rows += 1
                where = f"row seq {row.seq} (id {row.pk}, {row.event})"
                if head is not None and row.seq > head.seq and past is None:
                    past = row
                if (row.tenant_id, row.incarnation) != (chain.tenant_id, chain.incarnation):
                    report.problems.append(
                        Problem(
                            row.seq,
                            row.pk,
                            f"{where} names tenant {row.tenant_id!r} (incarnation "
                            f"{row.incarnation!r}): it is not this chain's",
                        )
                    )
                if row.seq < expected:
                    report.problems.append(
                        Problem(
                            row.seq, row.pk, f"{where} is out of place: seq {expected} was expected"
                        )
                    )
                elif row.seq > expected:
                    gap = (
                        f"seq {expected}"
                        if row.seq == expected + 1
                        else f"seq {expected}..{row.seq - 1}"
                    )
                    report.problems.append(
                        Problem(
                            expected, None, f"{gap} removed: {where} follows seq {expected - 1}"
                        )
                    )
                elif row.prev != prev:
                    before = f"row seq {last.seq} (id {last.pk})" if last else "the anchor"
                    report.problems.append(
                        Problem(
                            row.seq - 1,
                            last.pk if last else None,
                            f"{before} was changed or replaced: {where} links to another hash",
                        )
                    )
                if _stored_hash(row) != row.hash:
                    report.problems.append(
                        Problem(
                            row.seq,
                            row.pk,
                            f"{where} was changed: its content does not match its hash",
                        )
                    )
                if row.event == "audit.pruned" and isinstance(row.data, dict):
                    pruned = row
                prev, expected, last = row.hash, row.seq + 1, row
        if (
            head is not None
            and head.anchor_seq
            and not (
                pruned is not None
                and pruned.data.get("through_seq") == head.anchor_seq
                and pruned.data.get("anchor") == head.anchor_hash
            )
        ):
            # The pruning records its anchor in the chain too: an anchor moved
            # by hand (rows removed from the start, the head edited) has none.
            report.problems.append(
                Problem(
                    head.anchor_seq,
                    None,
                    f"the head's anchor (seq {head.anchor_seq}) was not set by the pruning: "
                    "no audit.pruned event records it (rows removed from the start?)",
                )
            )
        if head is None:
            if report.rows:
                report.problems.append(Problem(None, None, "the chain's head row was removed"))
            return report
        if past is not None:
            # Only the trail's writer moves the head: a row past it was
            # written around the writer (and takes the seq the next event needs).
            report.problems.append(
                Problem(
                    past.seq,
                    past.pk,
                    f"row seq {past.seq} (id {past.pk}, {past.event}) is past the head (seq "
                    f"{head.seq}): it was not written by the trail",
                )
            )
        if head.seq >= expected:
            gap = f"seq {expected}" if head.seq == expected else f"seq {expected}..{head.seq}"
            report.problems.append(
                Problem(
                    expected, None, f"{gap} removed from the end (the head is at seq {head.seq})"
                )
            )
        elif head.seq == expected - 1 and head.hash != prev:
            report.problems.append(
                Problem(
                    head.seq,
                    last.pk if last else None,
                    f"row seq {head.seq} was changed or replaced: the head records another hash",
                )
            )
    return report


def export(chain: Chain) -> Iterator[str]:
    """``chain``'s rows as JSON lines, oldest first."""
    with _scope(chain):
        for row in events(chain).iterator(chunk_size=2000):
            yield json.dumps(
                {
                    "tenant_id": row.tenant_id,
                    "incarnation": row.incarnation,
                    "seq": row.seq,
                    "event": row.event,
                    "created_at": _instant(row.created_at),
                    "data": row.data,
                    "prev": row.prev,
                    "hash": row.hash,
                },
                sort_keys=True,
                ensure_ascii=False,
            )


# -- retention ---------------------------------------------------------------------------


def prune(*, days: int | None = None, now: datetime | None = None) -> list[tuple[Chain, int, int]]:
    """Remove every chain's rows older than ``days`` (default
    ``TENANT_AUDIT_RETENTION_DAYS``) from its oldest end; returns
    ``(chain, rows removed, anchor seq)`` per chain that lost rows. The
    head's anchor becomes the last removed row's seq and hash, and the
    chain gets an ``audit.pruned`` event carrying both."""
    if days is None:
        days = conf.current().audit_retention_days
    if days is None:
        raise ValueError(
            "DJUST_CONFIG['TENANT_AUDIT_RETENTION_DAYS'] is not set: nothing is pruned (give a "
            "number of days)"
        )
    cutoff = (now or timezone.now()) - timedelta(days=days)
    with _scope(Chain(None)):  # the list of chains spans tenants
        keys = list(AuditHead.trail.values_list("chain", "tenant_id", "incarnation"))
    alias = router.db_for_write(AuditEvent)
    pruned = []
    token = _writing.set(True)
    writer = _trail_writer.set(True)
    try:
        for _key, tenant_id, inc in keys:
            chain = Chain(tenant_id, inc or "")
            with transaction.atomic(using=alias), _scope(chain):
                heads = AuditHead.trail.db_manager(alias).filter(chain=chain.key)
                heads.update(anchor_seq=F("anchor_seq"))  # the chain's lock
                rows = AuditEvent.trail.db_manager(alias).filter(chain=chain.key)
                first_kept = (
                    rows.filter(created_at__gte=cutoff)
                    .order_by("seq")
                    .values_list("seq", flat=True)
                    .first()
                )
                older = rows if first_kept is None else rows.filter(seq__lt=first_kept)
                last = older.order_by("-seq").first()
                if last is None:
                    continue
                flag = _pruning.set(True)
                try:
                    removed = older.delete()[0]
                finally:
                    _pruning.reset(flag)
                heads.update(anchor_seq=last.seq, anchor_hash=last.hash)
                _append(
                    _Entry(
                        chain,
                        chain.tenant_id,
                        "audit.pruned",
                        timezone.now(),
                        {
                            "through_seq": last.seq,
                            "anchor": last.hash,
                            "removed": removed,
                            "days": days,
                        },
                    ),
                    alias,
                )
                pruned.append((chain, removed, last.seq))
    finally:
        _trail_writer.reset(writer)
        _writing.reset(token)
    return pruned


def select_chain(tenant_id: str | None, incarnation: str | None = None) -> Chain:
    """The chain an operator means by ``tenant_id`` (None: the platform
    chain): ``incarnation`` when given; else the tenant's current one when
    the registry knows the id; else its only stored one. ``LookupError``
    lists the stored incarnations when that is ambiguous or none matches."""
    if tenant_id is None:
        return Chain(None)
    tenant_id = _core.validate_tenant_id(tenant_id)
    stored = chains_of(tenant_id)
    if incarnation is not None:
        chain = Chain(tenant_id, incarnation)
        if chain not in stored:
            raise LookupError(
                _choices(tenant_id, stored, f"no trail of incarnation {incarnation!r}")
            )
        return chain
    known = _core.lookup_tenant(tenant_id)
    if known is not None:
        return current_chain(known)
    if len(stored) == 1:
        return stored[0]
    raise LookupError(
        _choices(tenant_id, stored, "the tenant no longer exists and several incarnations have one")
        if stored
        else f"no stored audit trail for tenant {tenant_id!r}"
    )


def _choices(tenant_id: str, stored: list[Chain], why: str) -> str:
    listed = ", ".join(c.incarnation or "''" for c in stored) or "none"
    return f"tenant {tenant_id!r}: {why}; stored incarnations: {listed} (pass --incarnation)"
