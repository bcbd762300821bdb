"""The second wall: PostgreSQL row-level security follows the bound tenant.

With ``DJUST_CONFIG["TENANT_RLS"]`` on, every PostgreSQL connection carries
two settings that the policies of :class:`~tenantry.db.EnableTenantRLS` read:

``tenantry.tenant_id``  the bound tenant's id ('' when none is bound: no rows)
``tenantry.bypass``     'on' only while an ``unscoped(reason=...)`` queryset
                        or :func:`rls_bypass` runs its queries

How they get there: an execute wrapper, installed first on every PostgreSQL
connection when Django opens it (``connection_created``), compares what the
query needs with what it last sent on that connection and sends
``SELECT set_config(...)`` only when they differ. So a connection pays one
round trip when its tenant changes and none per query otherwise, and every
query (ORM, ``raw()``, ``cursor.execute()``, a third-party app's) runs with
the right setting.

What the wrapper remembers is dropped whenever the database could have
dropped it: a new connection (also after a close, a reconnect or a pool
checkout), and a transaction or savepoint rolled back after the setting was
sent inside it (the connection's commit and rollback methods report to it:
``atomic()``, ``commit()``, ``rollback()``, manual transactions alike).

``TENANT_RLS = "transaction"`` sends transaction-local settings
(``set_config(..., true)``) for transaction-pooling proxies (pgbouncer),
which may run each transaction on another server session: once per
transaction inside ``atomic()``; outside, in the same round trip as the
query (prepended to it) or, where a statement cannot be prepended to
(``executemany``, server-side cursors), in a short transaction around it.

A row refused by a policy's ``WITH CHECK`` raises ``TenantMismatchError``
naming the table.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import DatabaseError, transaction
from django.db.backends.signals import connection_created

from .. import audit, conf
from .._core import TenantMismatchError
from ..context import get_current_tenant

__all__ = ["BYPASS_SETTING", "TENANT_SETTING", "bypassing", "rls_bypass", "rls_mode"]

TENANT_SETTING = "tenantry.tenant_id"
BYPASS_SETTING = "tenantry.bypass"

#: What the database sees: (tenant id or "", "on" or "").
Scope = tuple[str, str]
BYPASS: Scope = ("", "on")

_SET = (
    f"SELECT set_config('{TENANT_SETTING}', %s, {{local}}), "
    f"set_config('{BYPASS_SETTING}', %s, {{local}})"
)
_SET_SESSION = _SET.format(local="false")
_SET_LOCAL = _SET.format(local="true")

#: The scope a queryset asked for while it runs its queries (unscoped():
#: BYPASS; for_tenant(t): t), else None: the bound tenant.
_override: ContextVar[Scope | None] = ContextVar("tenantry_rls_scope", default=None)

_STATE = "_tenantry_rls"
_mode_cache: list[str] = []


def rls_mode() -> str:
    """``"off"``, ``"session"`` (``TENANT_RLS = True``) or ``"transaction"``."""
    if not _mode_cache:
        _mode_cache.append(conf.current().rls)
    return _mode_cache[0]


conf._reset_hooks.append(_mode_cache.clear)


@contextmanager
def scoped_as(scope: Scope | None) -> Iterator[None]:
    """Run the block's queries with ``scope`` (None: the bound tenant)."""
    token = _override.set(scope)
    try:
        yield
    finally:
        _override.reset(token)


def bypassing() -> bool:
    """Whether the running code is inside :func:`rls_bypass` (or an
    ``unscoped()`` queryset's own query): the ORM's first wall lifts its
    write rules there too (docs/querysets.md#escape-hatches)."""
    return _override.get() == BYPASS


@contextmanager
def rls_bypass(reason: str = "") -> Iterator[None]:
    """The block's queries ignore the tenant policies (``tenantry.bypass``).

    For work that must see or write every tenant's rows with RLS on, such as
    a data migration or a maintenance command. Audited as ``rls.bypass``
    with ``reason``. ``unscoped(reason=...)`` querysets already bypass for
    their own queries.
    """
    audit.emit(
        "rls.bypass",
        tenant=get_current_tenant(),
        level=logging.WARNING,
        reason=reason or "(no reason given)",
    )
    with scoped_as(BYPASS):
        yield


# -- what each connection last got -------------------------------------------------


class _State:
    """What one connection was last sent, and whether that happened inside
    the transaction now open (``dirty``): PostgreSQL undoes a ``set_config``
    when its transaction or an enclosing savepoint rolls back, and ends a
    transaction-local one when its transaction ends."""

    __slots__ = ("dirty", "mode", "scope")

    def __init__(self) -> None:
        self.scope: Scope | None = None  # None: unknown, send before the next query
        self.dirty = False
        self.mode = ""

    def record(self, scope: Scope, connection: Any) -> None:
        self.scope = scope
        self.dirty = connection.in_atomic_block or not connection.get_autocommit()

    def transaction_ended(self, committed: bool, whole: bool = True) -> None:
        if self.dirty and (not committed or self.mode == "transaction"):
            self.scope = None
        if whole:
            self.dirty = False


def _follow_transactions(connection: Any) -> None:
    """Wrap this connection's commit, rollback and savepoint rollback (the
    methods Django's ``atomic()`` and ``commit()``/``rollback()`` call) to
    tell its state. Instance attributes: other connections are untouched."""
    if connection.__dict__.get("_tenantry_follows"):
        return
    for name, committed, whole in (
        ("_commit", True, True),
        ("_rollback", False, True),
        ("_savepoint_rollback", False, False),
    ):
        original = getattr(connection, name)

        def hooked(*args, _original=original, _committed=committed, _whole=whole, **kwargs):
            try:
                return _original(*args, **kwargs)
            finally:
                state = _original.__self__.__dict__.get(_STATE)
                if state is not None:
                    state.transaction_ended(_committed, _whole)

        setattr(connection, name, hooked)
    connection.__dict__["_tenantry_follows"] = True


def _send(connection: Any, scope: Scope, *, local: bool) -> None:
    with connection.wrap_database_errors, connection.connection.cursor() as cursor:
        cursor.execute(_SET_LOCAL if local else _SET_SESSION, scope)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _can_prepend(cursor: Any) -> bool:
    """psycopg 3's client-side binding cursors run several statements in one
    round trip (one implicit transaction); named cursors and server-side
    binding cannot."""
    try:
        import psycopg
    except ImportError:  # psycopg2
        return False
    return isinstance(cursor, psycopg.ClientCursor) and not isinstance(cursor, psycopg.ServerCursor)


def _wanted() -> Scope:
    scope = _override.get()
    if scope is None:
        tenant = get_current_tenant()
        scope = ("" if tenant is None else tenant.id, "")
    return scope


def _state(connection: Any, mode: str) -> _State:
    state: _State = connection.__dict__.get(_STATE) or _fresh_state(connection)
    if mode != state.mode:
        state.mode, state.scope = mode, None
    return state


def _sync(connection: Any, state: _State, scope: Scope) -> None:
    """Send ``scope`` unless the connection holds it already."""
    if state.scope != scope:
        connection.validate_no_broken_transaction()
        _send(connection, scope, local=state.mode == "transaction")
        state.record(scope, connection)


def sync(alias: str) -> None:
    """Bring connection ``alias`` to the scope of the running code, now.

    For reads that reach the server outside ``execute()``: the next chunk of
    a server-side cursor (``.iterator()`` inside a transaction) is computed
    under the settings of the moment it is fetched."""
    from django.db import connections

    connection = connections[alias]
    if connection.vendor != "postgresql" or connection.connection is None:
        return
    mode = rls_mode()
    if mode == "off" or (mode == "transaction" and not connection.in_atomic_block):
        return  # outside a transaction, a cursor's rows were computed when it opened
    _sync(connection, _state(connection, mode), _wanted())


def _wrapper(execute, sql, params, many, context):
    connection = context["connection"]
    mode = _mode_cache[0] if _mode_cache else rls_mode()
    state = _state(connection, mode)
    if mode == "off":
        return execute(sql, params, many, context)
    scope = _wanted()
    try:
        if mode == "session" or connection.in_atomic_block:
            _sync(connection, state, scope)
            return execute(sql, params, many, context)
        # Transaction-local outside atomic(): the setting must travel with
        # the statement, in the same transaction.
        raw = context["cursor"].cursor
        if not many and _can_prepend(raw):
            prefix = _SET_LOCAL.replace("%s", "{}").format(*map(_literal, scope)) + "; "
            if params is not None:
                prefix = prefix.replace("%", "%%")
            result = execute(prefix + sql, params, many, context)
            raw.nextset()  # the statement's own result, not set_config's
            return result
        with transaction.atomic(using=connection.alias):
            _send(connection, scope, local=True)
            return execute(sql, params, many, context)
    except DatabaseError as exc:
        refused = _refused_table(exc)
        if refused is None:
            raise
        bound = repr(scope[0]) if scope[0] else "none is bound"
        raise TenantMismatchError(
            f"row-level security refused a row of table {refused!r}: its tenant is not the "
            f"bound tenant ({bound}). PostgreSQL: {_message(exc)}"
        ) from exc


_REFUSED = re.compile(r'violates row-level security policy.* for table "([^"]+)"')


def _message(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__


def _refused_table(exc: DatabaseError) -> str | None:
    """The table of a ``WITH CHECK`` violation (SQLSTATE 42501), else None."""
    cause = exc.__cause__
    if getattr(cause, "sqlstate", getattr(cause, "pgcode", None)) != "42501":
        return None
    found = _REFUSED.search(_message(exc))
    return found.group(1) if found else None


def _fresh_state(connection: Any) -> _State:
    state = _State()
    connection.__dict__[_STATE] = state
    return state


def install(connection: Any) -> None:
    """Forget what this (new) connection was sent, and wrap its queries.

    The wrapper goes first in ``execute_wrappers``: Django's
    ``connection.execute_wrapper()`` blocks append and pop their own at the
    end, so they never remove it."""
    if connection.vendor != "postgresql":
        return
    _fresh_state(connection)
    _follow_transactions(connection)
    if _wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _wrapper)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    install(connection)


connection_created.connect(_on_connection_created, dispatch_uid="tenantry.db.rls")


# -- what is (not) behind the wall: manage.py tenantry rls --check --------------------


def scoped_models() -> list[tuple[Any, str]]:
    """``(model, tenant field)`` of every concrete scoped model (the one rule
    of ``tenantry.isolation.scope_of``), one per table."""
    from django.apps import apps

    from ..isolation import scope_of

    found: dict[str, tuple[Any, str]] = {}
    for model in apps.get_models():
        scope = None if model._meta.proxy else scope_of(model)
        if scope is not None:
            found.setdefault(model._meta.db_table, (model, scope.field.name))
    return sorted(found.values(), key=lambda pair: pair[0]._meta.label)


def table_problems(connection: Any, model: Any) -> str | None:
    """Why ``model``'s table is not behind the wall, or None when it is."""
    from .operations import POLICY

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relrowsecurity, c.relforcerowsecurity, EXISTS ("
            "  SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = %s)"
            " FROM pg_class c WHERE c.oid = to_regclass(%s)",
            [POLICY, connection.ops.quote_name(model._meta.db_table)],
        )
        row = cursor.fetchone()
    if row is None:
        return "its table does not exist (run migrate)"
    enabled, forced, policy = row
    missing = [
        what
        for what, ok in (
            ("row-level security is not enabled", enabled),
            ("it is not forced (the table's owner bypasses it)", forced),
            (f"it has no {POLICY!r} policy", policy),
        )
        if not ok
    ]
    return "; ".join(missing) or None


def role_problems(connection: Any) -> list[str]:
    """Why the connection's role ignores row-level security, if it does."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        user, superuser, bypass = cursor.fetchone()
    problems = []
    if superuser:
        problems.append(f"the database role {user!r} is a superuser: it ignores row-level security")
    if bypass:
        problems.append(f"the database role {user!r} has BYPASSRLS: it ignores row-level security")
    return problems
