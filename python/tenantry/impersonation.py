"""Staff impersonation (docs/operations.md#impersonation).

A staff user with the permission ``tenantry.impersonate`` acts as a member
of the request's tenant, for a bounded time and with a reason::

    from tenantry import impersonation

    impersonation.start(request, member, reason="ticket 4521", minutes=15)
    ...
    impersonation.stop(request)

While it lasts the session is the member's: ``request.user`` is the member
on every page, WebSocket and SSE mount, so every permission check, the
membership check (``TENANT_MEMBERSHIP_CHECK``) and admission see the member,
never the staff user: impersonation grants no more than the member has. A
superuser or another impersonator cannot be impersonated (that would grant
more than the staff user's own rights), nor a user the membership check
refuses for the tenant, nor oneself; impersonations do not nest.

Audited (``tenantry.audit``): ``impersonation.started`` (staff, member,
tenant, reason, end), ``impersonation.write`` for each INSERT, UPDATE and
DELETE the ORM sends during an impersonated HTTP request (the model and the
kind of write; sessions and tenantry's own tables left out), and
``impersonation.ended`` (``stopped``, ``expired``, ``logout``,
``permission revoked``, ``refused``, ``session changed``).

It ends at :func:`stop`, when its time is up (the next request restores the
staff user's session before the tenant is admitted), on logout (Django's
``logout()`` flushes the session: the staff user is signed out too), when
the staff user loses ``tenantry.impersonate`` or the member becomes someone
:func:`start` refuses. It acts only in its own tenant. An end before the
bound is kept in ``tenantry.EndedImpersonation`` until the bound, so other
processes' open sockets learn of it, and a session captured while acting is
worthless once it ended. Live views (any, with or without ``TenantMixin``)
are tracked by the live plane's gates (``tenantry.djust.live``).

:class:`ImpersonationMiddleware` goes after ``AuthenticationMiddleware`` and
before ``TenantMiddleware``; :func:`start` refuses to run without it. The
context processor (``tenantry.context_processors.tenant``) gives templates
``impersonation`` (None when not acting), whose ``banner`` is the "acting
as" bar.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.apps import apps
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user,
    get_user_model,
    user_logged_out,
)
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import HttpResponseForbidden
from django.middleware.csrf import rotate_token
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from . import audit, conf
from ._core import TenantInfo

__all__ = [
    "DEFAULT_MINUTES",
    "MAX_MINUTES",
    "PERMISSION",
    "Impersonation",
    "ImpersonationMiddleware",
    "current",
    "live_mount_may_act",
    "live_recheck",
    "live_recheck_due",
    "live_tracked",
    "live_turn_due",
    "live_turn_refusal",
    "mounted_live",
    "other_tenant_refusal",
    "start",
    "stop",
]

#: The permission a staff user needs (its Meta: ``tenantry.TenantSuspension``).
PERMISSION = "tenantry.impersonate"
#: How long an impersonation lasts unless ``minutes`` says otherwise.
DEFAULT_MINUTES = 30
#: The longest an impersonation may last.
MAX_MINUTES = 240
#: Where the session keeps it.
SESSION_KEY_IMPERSONATION = "_tenantry_impersonation"
#: The template of the "acting as" bar (override it in your templates).
BANNER_TEMPLATE = "tenantry/impersonation_banner.html"
#: Tables whose writes are not audited: the session (every request saves
#: it) and tenantry's own (the audit store writes there).
_UNAUDITED_APPS = frozenset({"sessions", "tenantry"})

logger = logging.getLogger("tenantry.impersonation")

#: True once an :class:`ImpersonationMiddleware` was built in this process:
#: a live mount reads the session for an impersonation only then.
_installed = False

#: The request being served by :class:`ImpersonationMiddleware` (its writes
#: are audited while it carries an impersonation).
_serving: ContextVar[Any] = ContextVar("tenantry_impersonation_request", default=None)


@dataclass(frozen=True)
class Impersonation:
    """One impersonation: who acts as whom, in which tenant, why, until when
    (seconds since the epoch)."""

    staff_id: str
    staff_name: str
    user_id: str
    user_name: str
    tenant_id: str
    reason: str
    started: float
    until: float

    @property
    def remaining_minutes(self) -> int:
        return max(0, math.ceil((self.until - time.time()) / 60))

    @property
    def expired(self) -> bool:
        return time.time() >= self.until

    @property
    def banner(self) -> SafeString:
        """The "acting as" bar (``tenantry/impersonation_banner.html``)."""
        return SafeString(render_to_string(BANNER_TEMPLATE, {"impersonation": self}))


def current(request: Any) -> Impersonation | None:
    """The impersonation ``request`` is served under, or None."""
    return getattr(request, "__dict__", {}).get("impersonation")


def _middleware_order_problem() -> str | None:
    names = list(getattr(settings, "MIDDLEWARE", []))
    ours = f"{__name__}.ImpersonationMiddleware"
    if ours not in names:
        return (
            f"add '{ours}' to MIDDLEWARE (after AuthenticationMiddleware, before TenantMiddleware)"
        )
    auth = "django.contrib.auth.middleware.AuthenticationMiddleware"
    tenant = "tenantry.middleware.TenantMiddleware"
    if auth in names and names.index(auth) > names.index(ours):
        return f"'{ours}' must come after '{auth}' in MIDDLEWARE"
    if tenant in names and names.index(tenant) < names.index(ours):
        return (
            f"'{ours}' must come before '{tenant}' in MIDDLEWARE (an ended impersonation "
            "restores the staff user before the tenant is admitted)"
        )
    return None


def _user_key(user: Any) -> str:
    return user._meta.pk.value_to_string(user)


def _sign_in_as(request: Any, user: Any, backend: str) -> None:
    """The session becomes ``user``'s (what ``django.contrib.auth.login``
    does, without its signal: the member's ``last_login`` is not theirs to
    change)."""
    request.session.cycle_key()
    request.session[SESSION_KEY] = _user_key(user)
    request.session[BACKEND_SESSION_KEY] = backend
    request.session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    request.user = user
    rotate_token(request)


def start(
    request: Any, user: Any, *, reason: str, minutes: float = DEFAULT_MINUTES
) -> Impersonation:
    """Make ``request``'s staff user act as ``user`` in the request's tenant
    for ``minutes`` (at most :data:`MAX_MINUTES`), for ``reason`` (required).
    ``PermissionDenied`` when the staff user lacks ``tenantry.impersonate``,
    is already acting as someone, or ``user`` may not be impersonated here;
    ``ValueError`` for a missing reason or a bad duration."""
    problem = _middleware_order_problem()
    if problem:
        raise ImproperlyConfigured(f"tenantry.impersonation.start(): {problem}")
    staff = getattr(request, "user", None)
    if staff is None or not staff.is_authenticated:
        raise PermissionDenied("impersonation needs a signed-in staff user")
    if current(request) is not None or SESSION_KEY_IMPERSONATION in request.session:
        raise PermissionDenied(
            "already acting as another user: impersonations do not nest (stop() first)"
        )
    if not staff.has_perm(PERMISSION):
        raise PermissionDenied(f"impersonation needs the permission {PERMISSION}")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("impersonation needs a reason (reason='ticket 4521', say)")
    if (
        isinstance(minutes, bool)
        or not isinstance(minutes, int | float)
        or not 0 < minutes <= MAX_MINUTES
    ):
        raise ValueError(
            f"minutes must be a number greater than 0 and at most {MAX_MINUTES}, got {minutes!r}"
        )
    tenant = getattr(request, "tenant", None)
    if not isinstance(tenant, TenantInfo):
        raise PermissionDenied("impersonation acts inside a tenant: the request has none")
    if user is None or not getattr(user, "is_active", False) or not user.is_authenticated:
        raise PermissionDenied("only an active user can be impersonated")
    if _user_key(user) == _user_key(staff):
        raise PermissionDenied("a user cannot impersonate themselves")
    if user.is_superuser or user.has_perm(PERMISSION):
        raise PermissionDenied(
            "a superuser or another impersonator cannot be impersonated: acting as them "
            "would grant more than a member's rights"
        )
    check = conf.current().membership_check
    if check is not None and not check(user, tenant):
        raise PermissionDenied(f"{user} is not a member of tenant {tenant.id!r}")
    now = time.time()
    acting = Impersonation(
        staff_id=_user_key(staff),
        staff_name=str(staff.get_username()),
        user_id=_user_key(user),
        user_name=str(user.get_username()),
        tenant_id=tenant.id,
        reason=reason.strip(),
        started=now,
        until=now + float(minutes) * 60,
    )
    backend = request.session.get(BACKEND_SESSION_KEY) or settings.AUTHENTICATION_BACKENDS[0]
    _sign_in_as(request, user, backend)
    request.session[SESSION_KEY_IMPERSONATION] = {**asdict(acting), "backend": backend}
    request.impersonation = acting
    audit.emit(
        "impersonation.started",
        tenant=tenant,
        level=logging.WARNING,
        staff=acting.staff_id,
        acting_as=acting.user_id,
        reason=acting.reason,
        until=acting.until,
    )
    return acting


def stop(request: Any) -> Impersonation | None:
    """End the impersonation ``request`` is served under (the session is
    the staff user's again); the one that ended, or None."""
    return _end(request, "stopped")


def _stored(request: Any) -> dict | None:
    session = getattr(request, "session", None)
    if session is None:
        return None
    state = session.get(SESSION_KEY_IMPERSONATION)
    return state if isinstance(state, dict) else None


def _from_state(state: dict) -> Impersonation | None:
    try:
        return Impersonation(**{k: state[k] for k in Impersonation.__dataclass_fields__})
    except (KeyError, TypeError):
        return None


def _end(request: Any, why: str) -> Impersonation | None:
    state = _stored(request)
    if state is None:
        return None
    acting = _from_state(state)
    staff = None
    if acting is not None:
        model = get_user_model()
        staff = model._default_manager.filter(pk=acting.staff_id).first()
    if staff is not None and staff.is_active:
        _sign_in_as(request, staff, state.get("backend") or settings.AUTHENTICATION_BACKENDS[0])
        request.session.pop(SESSION_KEY_IMPERSONATION, None)
    else:  # the staff user is gone: nobody is signed in
        request.session.flush()
        # An anonymous user (django.contrib.auth.models is not imported
        # here: a project without the auth app still imports this module).
        request.user = get_user(request)
    request.__dict__.pop("impersonation", None)
    if acting is not None:
        _ended(acting, why, request)
    return acting


def _ended(acting: Impersonation, why: str, request: Any = None) -> None:
    _remember_ended(acting, why)
    audit.emit(
        "impersonation.ended",
        tenant=acting.tenant_id,
        level=logging.WARNING,
        staff=acting.staff_id,
        acting_as=acting.user_id,
        why=why,
    )


def _load(request: Any) -> None:
    """Mark ``request`` as served under its session's impersonation, or end
    one that expired or no longer matches the session's user."""
    state = _stored(request)
    if state is None:
        return
    acting = _from_state(state)
    if acting is None or acting.expired:
        _end(request, "expired")
        return
    if str(request.session.get(SESSION_KEY)) != acting.user_id:
        # The session signed in someone else since (login()): it is over.
        request.session.pop(SESSION_KEY_IMPERSONATION, None)
        _ended(acting, "session changed")
        return
    if _ended_anywhere(acting):
        # Ended before its bound while this session still says otherwise:
        # a cookie session captured while acting and sent again after
        # stop() or logout. Nobody is signed in by it.
        request.session.flush()
        request.user = get_user(request)
        return
    why = _refusal_now(acting)
    if why is not None:
        # The staff user lost the permission (or was deactivated), or the
        # member became a superuser or an impersonator, since: the staff
        # user's own session back (none for a deactivated one).
        _end(request, why)
        return
    request.impersonation = acting


class ImpersonationMiddleware:
    """Ends an expired impersonation before the view (and the tenant's
    admission) and audits each write of an impersonated request. Place it
    after ``AuthenticationMiddleware`` and before ``TenantMiddleware``."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        global _installed
        _installed = True
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        _load(request)
        token = _serving.set(request)
        try:
            return self.get_response(request)
        finally:
            _serving.reset(token)

    async def __acall__(self, request: Any) -> Any:
        await sync_to_async(_load)(request)  # the session may query the database
        token = _serving.set(request)
        try:
            return await self.get_response(request)
        finally:
            _serving.reset(token)

    def process_view(self, request: Any, view_func: Any, args: Any, kwargs: Any) -> Any:
        """After ``TenantMiddleware`` resolved the request's tenant, before
        the view: an impersonation acts only in the tenant it was started
        in (the member's other tenants are not the staff user's to enter)."""
        refusal = other_tenant_refusal(current(request), getattr(request, "tenant", None))
        if refusal is None:
            return None
        request.__dict__.pop("impersonation", None)  # nothing of it runs here
        return HttpResponseForbidden(refusal)


def other_tenant_refusal(acting: Impersonation | None, tenant: Any) -> str | None:
    """The refusal of an impersonation used in a tenant other than its
    own (``tenant``: the request's or the live view's), else None."""
    if acting is None or not isinstance(tenant, TenantInfo) or tenant.id == acting.tenant_id:
        return None
    return (
        f"Acting as {acting.user_name} in tenant {acting.tenant_id!r}: an impersonation "
        "acts only there (stop it to use another tenant)"
    )


def on_write(query: Any, kind: str) -> None:
    """Audit one ORM write (``kind``: insert, update, delete) of an
    impersonated request (``tenantry.wall``'s compilers call this: one
    ContextVar read when nobody impersonates)."""
    request = _serving.get()
    if request is None:
        return
    acting = request.__dict__.get("impersonation")
    if acting is None:
        return
    meta = query.model._meta
    if meta.app_label in _UNAUDITED_APPS:
        return
    audit.emit(
        "impersonation.write",
        tenant=acting.tenant_id,
        request=request,
        level=logging.WARNING,
        staff=acting.staff_id,
        acting_as=acting.user_id,
        model=meta.label,
        action=kind,
    )


# -- live views ------------------------------------------------------------------------

#: The message of a live view whose impersonation is over (its socket's
#: session still names the member: a page load gives the staff user back).
LIVE_ENDED = "Impersonation ended: reload the page"
#: Where a live view keeps the impersonation it was mounted under.
_LIVE_ATTRIBUTE = "_tenantry_impersonation"

#: Impersonations this process saw end (stop, logout, a new sign-in, the
#: staff user's permission gone), by identity → their time bound: a live
#: view of one learns at its next turn, with no query. Every process learns
#: from ``tenantry.EndedImpersonation`` at its next check
#: (:func:`live_recheck`). Entries go once their bound is past (the bound
#: refuses them anyway).
_ended_here: dict[str, float] = {}
#: The model that tells every process (``tenantry.EndedImpersonation``).
ENDED_MODEL = "tenantry.EndedImpersonation"


def _identity(acting: Impersonation) -> str:
    who = json.dumps(
        [acting.staff_id, acting.user_id, acting.tenant_id, repr(acting.started)],
        separators=(",", ":"),
    )
    return hashlib.sha256(who.encode()).hexdigest()


def _remember_ended(acting: Impersonation, why: str) -> None:
    """This process knows at once; the database tells the others (not for
    an expiry: the bound tells everyone)."""
    now = time.time()
    for identity, until in list(_ended_here.items()):
        if until <= now:
            _ended_here.pop(identity, None)
    _ended_here[_identity(acting)] = acting.until
    if why == "expired" or acting.until <= now:
        return
    ended = apps.get_model(ENDED_MODEL)
    ended._default_manager.filter(until__lte=now).delete()
    ended._default_manager.get_or_create(
        identity=_identity(acting), defaults={"until": acting.until}
    )


def _ended_anywhere(acting: Impersonation) -> bool:
    identity = _identity(acting)
    if identity in _ended_here:
        return True
    return apps.get_model(ENDED_MODEL)._default_manager.filter(identity=identity).exists()


class _Live:
    """The impersonation a live view was mounted under, and when to check
    again that it still holds."""

    __slots__ = ("acting", "due")

    def __init__(self, acting: Impersonation) -> None:
        self.acting = acting
        self.due = time.monotonic() + conf.current().readmit_interval


#: A live view whose impersonation ended: refused at every later turn.
_LIVE_OVER = object()


def live_mount_may_act(request: Any) -> bool:
    """Whether a live mount must look for an impersonation (in a thread:
    :func:`mounted_live` may query). No query: False without the middleware
    in this process, and when the mount's session is loaded already (djust's
    auth checks load it) and carries none, the common case."""
    if not _installed:
        return False
    if current(request) is not None:
        return True
    session = getattr(request, "session", None)
    if session is None:
        return False
    loaded = getattr(session, "_session_cache", None)
    if not isinstance(loaded, dict):
        return True  # not loaded yet: read it in the thread
    return SESSION_KEY_IMPERSONATION in loaded


def mounted_live(view: Any, request: Any, tenant: TenantInfo | None = None) -> None:
    """A live mount of any view (the live plane's pre-mount gate, in a
    thread): remember the impersonation the socket's session carries, so
    each turn of the view is audited as the staff user's and stops when it
    ends; ``PermissionDenied`` for one already over (the session can only be
    given back to the staff user by a page load)."""
    if not _installed:
        return
    acting = current(request)  # a page render: the middleware read it already
    if acting is None:
        state = _stored(request)
        if state is None:
            return
        acting = _from_state(state)
        if acting is None or str(request.session.get(SESSION_KEY)) != acting.user_id:
            return  # signed in as someone else since: not acting
    if acting.expired or _ended_anywhere(acting) or _refusal_now(acting) is not None:
        raise PermissionDenied(LIVE_ENDED)
    refusal = other_tenant_refusal(acting, tenant)
    if refusal is not None:
        raise PermissionDenied(refusal)
    setattr(view, _LIVE_ATTRIBUTE, _Live(acting))


def live_turn_refusal(view: Any, tenant: TenantInfo | None = None) -> str | None:
    """Before each turn of a live view: :data:`LIVE_ENDED` when the
    impersonation it was mounted under is over (its time is up, or this
    process saw it end), else None; while it lasts, the turn's writes are
    audited (``impersonation.write``). One getattr for a view mounted
    without one; no query (see :func:`live_recheck_due`)."""
    live = getattr(view, _LIVE_ATTRIBUTE, None)
    if live is None:
        return None
    if live is _LIVE_OVER:
        return LIVE_ENDED
    acting = live.acting
    if acting.expired:
        _ended(acting, "expired")
        setattr(view, _LIVE_ATTRIBUTE, _LIVE_OVER)
        return LIVE_ENDED
    if _identity(acting) in _ended_here:
        setattr(view, _LIVE_ATTRIBUTE, _LIVE_OVER)  # audited where it ended
        return LIVE_ENDED
    refusal = other_tenant_refusal(acting, tenant)  # the view switched tenants
    if refusal is not None:
        return refusal
    request = getattr(view, "request", None)
    if request is not None and hasattr(request, "__dict__"):
        request.__dict__["impersonation"] = acting
        _serving.set(request)  # this task's turns: the socket is the member's anyway
    return None


def live_tracked(view: Any) -> bool:
    """Whether ``view`` was mounted under an impersonation (one getattr:
    every turn of every live view asks)."""
    return getattr(view, _LIVE_ATTRIBUTE, None) is not None


def live_recheck_due(view: Any) -> bool:
    """Whether ``view``'s impersonation is due for :func:`live_recheck`
    (``TENANT_READMIT_INTERVAL`` after the last one)."""
    live = getattr(view, _LIVE_ATTRIBUTE, None)
    return isinstance(live, _Live) and time.monotonic() >= live.due


def live_turn_due(view: Any) -> bool:
    """Whether a frame of ``view`` must pass the impersonation gate before
    it is delivered: one that ended (told once), or is due for a check."""
    live = getattr(view, _LIVE_ATTRIBUTE, None)
    if live is None or live is _LIVE_OVER:
        return False
    return live.acting.expired or _identity(live.acting) in _ended_here or live_recheck_due(view)


def live_recheck(view: Any) -> str | None:
    """Synchronous (it queries): whether the impersonation ``view`` was
    mounted under still holds where another process may have ended it (a
    row of ``tenantry.EndedImpersonation``: ``stop()``, logout, a new
    sign-in), and the staff user is still active with
    ``tenantry.impersonate``. :data:`LIVE_ENDED` when not (the view is
    refused from then on)."""
    live = getattr(view, _LIVE_ATTRIBUTE, None)
    if not isinstance(live, _Live):
        return LIVE_ENDED if live is _LIVE_OVER else None
    acting = live.acting
    if _ended_anywhere(acting):
        setattr(view, _LIVE_ATTRIBUTE, _LIVE_OVER)  # audited where it ended
        return LIVE_ENDED
    why = _refusal_now(acting)
    if why is not None:
        _ended(acting, why)
        setattr(view, _LIVE_ATTRIBUTE, _LIVE_OVER)
        return LIVE_ENDED
    live.due = time.monotonic() + conf.current().readmit_interval
    return None


def _refusal_now(acting: Impersonation) -> str | None:
    """Why ``acting`` may not go on, read afresh (no permission cache of an
    earlier request): ``"permission revoked"`` when the staff user lost
    ``tenantry.impersonate`` or was deactivated, ``"refused"`` when the
    member became someone :func:`start` refuses (a superuser, an
    impersonator, inactive); else None."""
    users = get_user_model()._default_manager
    staff = users.filter(pk=acting.staff_id).first()
    if staff is None or not staff.is_active or not staff.has_perm(PERMISSION):
        return "permission revoked"
    member = users.filter(pk=acting.user_id).first()
    if member is None or not member.is_active or member.is_superuser or member.has_perm(PERMISSION):
        return "refused"
    return None


def _on_logout(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """``logout()`` flushes the session after this: the impersonation ends
    with it (the staff user is signed out too)."""
    state = _stored(request) if request is not None else None
    acting = None if state is None else _from_state(state)
    if acting is not None:
        _ended(acting, "logout", request)
    if request is not None:
        request.__dict__.pop("impersonation", None)


user_logged_out.connect(_on_logout, dispatch_uid="tenantry.impersonation.logout")
