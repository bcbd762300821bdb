"""Admission: the one place that decides whether a tenant may be bound.

Every way a tenant gets bound goes through :func:`admit`: request
resolution (the middleware, ``TenantMixin`` on HTTP and on djust's live
mounts, the context processor), ``TenantMixin.set_tenant()`` and any other
assignment of a view's tenant (so a live-view event handler cannot switch to
a tenant its user may not see), and ``tenant_context()`` (registry only).

The rules, in order:

1. the id is valid (``InvalidTenantId`` otherwise);
2. the registry (``TENANT_MODEL`` / ``TENANT_VALIDATOR``), when configured,
   knows it;
3. ``TENANT_MEMBERSHIP_CHECK``, when configured, accepts the user; an
   anonymous user is refused any tenant that came from a client-chosen
   source (a header, the session, a JWT claim, a user attribute, a custom or
   user resolver, a view's ``set_tenant``), and allowed one named by the
   address itself (subdomain, custom domain, path) or ``TENANT_DEFAULT``.

A refusal is audited and answered like a missing tenant (404, one message
for "no such tenant" and "not yours"). The resolved tenant is kept on
``request.tenant`` so nothing resolves twice.

A live view admitted at its mount is admitted again while its socket stays
open (:func:`readmit_live`): at most once per ``TENANT_READMIT_INTERVAL``
seconds per view, at its next event or server-originated turn, so a revoked
membership or a deleted, deactivated or suspended tenant stops the socket without a query per event.

Every refusal tenantry makes (here, the WebSocket origin rule, the rate
limits, jobs) is audited and counted by :func:`refuse` under one of
:data:`REFUSAL_REASONS`.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

from django.conf import settings
from django.http import Http404

from . import _core, addressing, audit, conf, observe, usage
from ._core import TenantInfo, TenantMismatchError
from .context import get_current_tenant
from .exceptions import TenantSuspended
from .naming import refuse_naming_another
from .registry import tenant_database

__all__ = [
    "HOST_SOURCES",
    "NOT_FOUND",
    "REFUSAL_REASONS",
    "admit",
    "deny",
    "expire_live_admissions",
    "missing",
    "readmit_live",
    "refusal_counts",
    "refuse",
    "served",
    "tenant_for_request",
]

#: One message for "no such tenant" and "not yours", so a 404 never tells an
#: outsider which tenants exist.
NOT_FOUND = "Tenant not found"

#: Sources where the tenant is named by the address the client was sent to
#: (or by the server's own default), not by a value the client picks freely.
HOST_SOURCES = frozenset({"subdomain", "domain", "path", "default"})

#: The source of a tenant a view sets itself (``set_tenant``, assignment).
VIEW_SOURCE = "view"


#: Why tenantry refuses something, as counted by :func:`refuse` (and as a
#: metrics exporter labels its refusal counter): ``admission`` (the registry,
#: the membership check, a required tenant missing, a job's tenant),
#: ``origin`` (a WebSocket from another tenant's page), ``rate_limit``,
#: ``isolation`` (an ORM write or ``raw()`` the isolation rules refused).
REFUSAL_REASONS = ("admission", "origin", "rate_limit", "isolation")
_refusals = dict.fromkeys(REFUSAL_REASONS, 0)
_refusals_lock = threading.Lock()


def refuse(
    why: str,
    event: str,
    tenant: Any = None,
    request: Any = None,
    /,
    *,
    level: int = logging.WARNING,
    **fields: Any,
) -> None:
    """Count one refusal under ``why`` (one of :data:`REFUSAL_REASONS`) and
    audit it as ``event``, its record carrying ``refusal=why`` (and
    ``fields``: ``reason`` says what was wrong). A known tenant's refusal is
    also counted in its usage (``refused``) and reported to the refusal
    watchers (``tenantry.observe``: the metrics' ``tenantry_refusals_total``).
    Naming another tenant than the bound one is refused
    (``TenantMismatchError``; docs/security.md#naming-another-tenant)."""
    refuse_naming_another(tenant, "tenantry.access.refuse")
    if why not in _refusals:
        raise ValueError(f"unknown refusal reason {why!r}; one of {REFUSAL_REASONS}")
    with _refusals_lock:
        _refusals[why] += 1
    if isinstance(tenant, TenantInfo):
        # A known tenant's figure; an id nobody registered (a probing
        # client's) is not worth a usage row of its own.
        usage.count(tenant, "refused")
    watching = observe.refusal
    if watching is not None:
        watching(why, tenant)
    audit.emit(event, tenant=tenant, request=request, level=level, refusal=why, **fields)


def refusal_counts() -> dict[str, int]:
    """Refusals of this process so far, by reason."""
    with _refusals_lock:
        return dict(_refusals)


def deny(event: str, tenant: Any, request: Any, **fields: Any) -> Http404:
    """An admission refusal: counted, audited, and the 404 to raise."""
    refuse("admission", event, tenant, request, **fields)
    return Http404(NOT_FOUND)


def missing(request: Any, source: str) -> Http404:
    """A required tenant that did not resolve: counted, audited, and the 404
    to raise. With ``DEBUG = True`` its message (shown on Django's debug
    page) says which resolver ran, what it read, the main domain, and the
    command that explains further; without DEBUG it is :data:`NOT_FOUND`
    alone, as every refusal."""
    refusal = deny("tenant.missing", None, request, source=source)
    if settings.DEBUG and request is not None:
        try:
            return Http404(f"{NOT_FOUND}: {addressing.explain_no_tenant(request)}")
        except Exception:  # the explanation must never replace the 404
            logging.getLogger("tenantry").exception("explaining a missing tenant failed")
    return refusal


def _user(request: Any) -> Any:
    return getattr(request, "user", None) if request is not None else None


def _is_member_user(user: Any) -> bool:
    return user is not None and bool(getattr(user, "is_authenticated", False))


def _check_membership(
    request: Any, tenant: TenantInfo, source: str, by_address: bool | None
) -> None:
    check = conf.current().membership_check
    if check is None:
        return
    user = _user(request)
    if not _is_member_user(user):
        if source in HOST_SOURCES if by_address is None else by_address:
            return
        raise deny(
            "tenant.denied",
            tenant,
            request,
            source=source,
            reason="anonymous user, tenant chosen by the client",
        )
    if not check(user, tenant):
        raise deny("tenant.denied", tenant, request, source=source, reason="membership_check")


def admit(
    tenant: TenantInfo | str | int | None,
    *,
    request: Any = None,
    source: str,
    registered: bool = False,
    by_address: bool | None = None,
) -> TenantInfo | None:
    """``tenant`` as it may be bound for ``request``'s user, or ``Http404``.

    ``source`` names where the tenant came from (a resolver's name,
    ``"default"``, or ``"view"``); ``registered=True`` when the registry
    already admitted it (resolution does that in the core). ``by_address``
    says whether the address named the tenant (which admits anonymous
    users) when ``source`` cannot (a re-admission); None decides by
    ``source``.

    A suspended tenant (the registry's answer carries it: ``suspended``)
    is refused after the membership check, so only its members learn that
    it is suspended (``TenantSuspended``, an ``Http404``: a 503 page from
    the middleware, an error frame on a live view); every other refusal is
    the one 404. The rules hold for requests, mounts, view switches and the
    re-admission of open sockets alike.
    """
    if tenant is None:
        return None
    if not registered:
        known = _core.lookup_tenant(tenant)  # InvalidTenantId for a bad id
        if known is None:
            raise deny("tenant.unknown", tenant, request, source=source)
        tenant = known
    _check_membership(request, tenant, source, by_address)
    if tenant.suspended is not None:
        refuse("admission", "tenant.denied", tenant, request, source=source, reason="suspended")
        raise TenantSuspended.of(tenant.id, tenant.suspended)
    if tenant.database is not None:
        tenant_database(tenant)  # TenantDatabaseMissing (a 503) for an unknown alias
    return tenant


def served(tenant_id: str) -> bool:
    """Whether the registry serves ``tenant_id`` now: known, active (a row
    whose active flag is False is no tenant) and not suspended; the
    registry's cached answer, as admission reads it. A grant is given only
    to a served tenant and admits rows only to one, so a grantee that is
    deactivated or suspended reads nothing through its grants while it is
    (docs/collaboration.md#a-grantee-deactivated-or-suspended)."""
    try:
        found = _core.lookup_tenant(tenant_id)
    except _core.InvalidTenantId:
        return False
    return found is not None and found.suspended is None


#: ``request.tenant`` not set yet (``None`` is a resolved "no tenant").
_UNRESOLVED = object()
_NO_DICT: dict = {}


def tenant_for_request(request: Any, resolve: Any = None) -> TenantInfo | None:
    """``request.tenant`` when already resolved, else resolve and admit it now.
    ``resolve`` is what the mixins pass (their patchable ``resolve_tenant``):
    anything but tenantry's own is admitted like a client-chosen source.

    Raises ``Http404`` when admission refuses the tenant, and Django's
    ``DisallowedHost`` for a host outside ``ALLOWED_HOSTS``.
    """
    # A dict lookup, not an exception: this runs first on every request.
    tenant = getattr(request, "__dict__", _NO_DICT).get("tenant", _UNRESOLVED)
    if tenant is not _UNRESOLVED:
        return tenant
    if resolve is None or resolve is _core.resolve_tenant:
        tenant, source = _core.resolve_tenant_sourced(request)
        registered = True
    else:
        tenant, source, registered = resolve(request), "custom", False
    return _admit_resolved(request, tenant, source, registered)


def tenant_and_http_outcome(request: Any, limiter: Any) -> tuple[TenantInfo | None, Any]:
    """:func:`tenant_for_request` for ``TenantMiddleware``, with the tenant's
    ``http`` rate limits checked (and its ``http_requests`` usage counted) in
    the same call into the core (``limiter()._resolve_and_check_http``): one
    crossing per request instead of two (docs/performance-design.md#crossings-per-request).
    ``limiter``: what returns the process's rate limiter. Returns ``(tenant,
    outcome)``: ``outcome`` is the ``Decision``, the ``BackendUnavailable``
    of a store that is down, or None when nothing was checked (no tenant;
    resolved before; a membership check admits the tenant first; or the
    config limits no ``http``: then resolution alone, and the caller counts
    the request or checks a tenant's plan as before)."""
    tenant = getattr(request, "__dict__", _NO_DICT).get("tenant", _UNRESOLVED)
    if tenant is not _UNRESOLVED:
        return tenant, None
    config = conf.request_config or conf.request_settings()
    if (
        "http" not in config.limited_scopes
        or config.membership_check is not None
        or get_current_tenant() is not None
    ):
        # With a tenant bound this is not the middleware (which calls it
        # before binding): resolve only, and spend no one's allowance.
        # Otherwise nothing to fold into the call (measured: the fold costs
        # a request ~0.4 µs when it only resolves).
        return tenant_for_request(request), None
    tenant, source, outcome = limiter()._resolve_and_check_http(request)
    return _admit_resolved(request, tenant, source, True), outcome


def _admit_resolved(
    request: Any, tenant: Any, source: str | None, registered: bool
) -> TenantInfo | None:
    """The resolved ``tenant`` admitted and audited, kept on ``request.tenant``."""
    if tenant is not None:
        # admit() and audit.emit() inlined to their cheap tests: this runs on
        # every request, and each call costs more than the test it makes.
        config = conf.request_config or conf.request_settings()
        if not registered or config.membership_check is not None or tenant.suspended is not None:
            tenant = admit(tenant, request=request, source=source, registered=registered)
        if config.audit_callback is not None or audit.logger.isEnabledFor(logging.DEBUG):
            audit.emit(
                "tenant.resolved",
                tenant=tenant,
                request=request,
                level=logging.DEBUG,
                source=source,
            )
    try:
        request.tenant = tenant
    except AttributeError:  # an object that refuses attributes
        pass
    return tenant


# -- open live views: re-admission ------------------------------------------------

#: The source audited for a re-admission.
READMIT_SOURCE = "readmission"


class _Admitted:
    """When one live view's tenant was last admitted (see :func:`readmit_live`)."""

    __slots__ = ("by_address", "due", "fresh", "generation", "member", "refusal", "tenant_id")

    def __init__(self, tenant_id: str, due: float, generation: int, member: bool, by_address: bool):
        self.tenant_id = tenant_id
        self.due = due
        self.generation = generation
        #: Whether the user was signed in when first admitted: signing out
        #: on an open socket does not keep a member's tenant.
        self.member = member
        #: Whether the address named the tenant (what admitted an anonymous
        #: user when a membership check is configured).
        self.by_address = by_address
        #: The refusal once re-admission failed: every later turn gets it.
        self.refusal: Http404 | None = None
        #: The tenant as the last re-admission read it (its settings and
        #: flags as they are now), for the view to take (:func:`readmitted`).
        self.fresh: TenantInfo | None = None


#: Live view → its admission; a view leaves with its last reference.
_admitted: weakref.WeakKeyDictionary[Any, _Admitted] = weakref.WeakKeyDictionary()
#: Bumped by :func:`expire_live_admissions`; an admission of an older
#: generation is checked against :data:`_expired`.
_generation = 0
#: Tenant id (or None: every tenant) → the generation that expired it.
_expired: dict[str | None, int] = {}
#: Tenants remembered in :data:`_expired` before it folds into "every tenant".
_EXPIRED_KEPT = 10_000
_expire_lock = threading.Lock()


def admitted_live(view: Any, tenant: TenantInfo, request: Any) -> None:
    """Start ``view``'s re-admission clock: its tenant was just admitted
    for ``request``'s user (a live mount)."""
    member = _is_member_user(_user(request))
    by_address = not member and conf.current().membership_check is not None
    _keep(
        view,
        _Admitted(
            tenant.id,
            time.monotonic() + conf.current().readmit_interval,
            _generation,
            member,
            by_address,
        ),
    )


def _record(view: Any) -> _Admitted | None:
    try:
        return _admitted.get(view)
    except TypeError:  # a view class that made itself unhashable: no record
        return None


def _keep(view: Any, record: _Admitted) -> None:
    try:
        _admitted[view] = record
    except TypeError:  # unhashable: admitted again at every turn
        pass


def readmission_due(view: Any, tenant: TenantInfo) -> bool:
    """Whether ``view`` must be admitted again before its next turn (no
    query, no lock: this runs on every event)."""
    record = _record(view)
    if record is None or record.refusal is not None or record.tenant_id != tenant.id:
        return True
    if record.generation != _generation:
        expired = max(_expired.get(None, 0), _expired.get(tenant.id, 0))
        if expired > record.generation:
            return True
        record.generation = _generation
    return time.monotonic() >= record.due


def readmit_live(view: Any, tenant: TenantInfo) -> Http404 | None:
    """Admit ``view``'s ``tenant`` again for its user (the registry through
    its cache, the membership check, any rule :func:`admit` holds); the
    refusal, or None. Synchronous (it may query): call it when
    :func:`readmission_due` says so. A refused view stays refused."""
    record = _record(view)
    if record is not None and record.refusal is not None:
        return record.refusal
    request = getattr(view, "request", None)
    if record is None:
        # A view this process did not see mounted: judged as a view whose
        # tenant its user chose (an anonymous user is refused when a
        # membership check is configured).
        member, by_address = _is_member_user(_user(request)), False
    else:
        # The same user as at the mount (a tenant the view switched to was
        # admitted for it then); a member who signed out since is anonymous
        # now and was not admitted by the address: refused.
        member, by_address = record.member, record.by_address
    generation = _generation
    try:
        fresh = admit(tenant.id, request=request, source=READMIT_SOURCE, by_address=by_address)
    except Http404 as refusal:
        refused = _Admitted(tenant.id, 0.0, generation, member, by_address)
        refused.refusal = refusal
        _keep(view, refused)
        return refusal
    record = _Admitted(
        tenant.id,
        time.monotonic() + conf.current().readmit_interval,
        generation,
        member,
        by_address,
    )
    record.fresh = fresh
    _keep(view, record)
    return None


def readmitted(view: Any) -> TenantInfo | None:
    """The tenant as ``view``'s last re-admission read it (None before
    one): an open view takes it, so a changed setting or flag holds on open
    sockets within ``TENANT_READMIT_INTERVAL`` (and the cache's TTL)."""
    record = _record(view)
    return None if record is None else record.fresh


def expire_live_admissions(tenant: TenantInfo | str | None = None) -> None:
    """Make every open live view of ``tenant`` (every tenant when None) in
    this process re-admit its tenant at its next turn, without waiting for
    ``TENANT_READMIT_INTERVAL``: for code that just revoked something (a
    membership, a suspension). Other processes see it within the interval.
    With a tenant bound, only its own (``TenantMismatchError`` for another,
    or for every tenant)."""
    global _generation
    bound = get_current_tenant()
    if tenant is None and bound is not None:
        raise TenantMismatchError(
            "tenantry.access.expire_live_admissions() of every tenant with tenant "
            f"{bound.id!r} bound: name the bound tenant, or call it with none bound"
        )
    refuse_naming_another(tenant, "tenantry.access.expire_live_admissions")
    key = None if tenant is None else str(getattr(tenant, "id", tenant))
    with _expire_lock:
        _generation += 1
        if len(_expired) >= _EXPIRED_KEPT:  # bounded: expire everyone instead
            _expired.clear()
            key = None
        _expired[key] = _generation
