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

The statements that do not pass through ``execute_wrappers`` are guarded
one level down: tenantry gives each connection its own cursor classes (the
driver's ``cursor_factory``, and the class of Django's named cursors), whose
``callproc()``, psycopg's ``copy()`` and ``stream()``, ``execute()`` called on
the driver's cursor itself, and the ``FETCH``/``MOVE`` of a server-side
cursor bring the connection to the same scope first. So every DB-API method
that sends SQL runs with the right setting, not only ``execute()``.

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

import re
import secrets
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.apps import apps
from django.db import DatabaseError, connections, transaction
from django.db.backends.signals import connection_created

from .. import conf
from .._core import TenantMismatchError
from ..context import get_current_tenant
from ..exceptions import TransactionPoolingError
from ..graph import scope_of
from .grants import READ_POLICY, WRITE_POLICY

# The scope names and the bypass live one level down (tenantry.db.scope), so
# the migration operation and the ORM rules read them without this module;
# they stay importable from here.
from .scope import BYPASS_SETTING, POLICY, TENANT_SETTING, Scope, _asked, bypassing, rls_bypass

__all__ = ["BYPASS_SETTING", "TENANT_SETTING", "bypassing", "rls_bypass", "rls_mode"]

_SET = (
    f"SELECT set_config('{TENANT_SETTING}', %s, {{local}}), "
    f"set_config('{BYPASS_SETTING}', %s, {{local}})"
)
_SET_SESSION = _SET.format(local="false")
_SET_LOCAL = _SET.format(local="true")

_STATE = "_tenantry_rls"
#: psycopg 3's "no transaction open" (``pq.TransactionStatus.IDLE``).
_IDLE = 0
_mode_cache: list[str] = []


def rls_mode() -> str:
    """``"off"``, ``"session"`` (``TENANT_RLS = True``) or ``"transaction"``."""
    if not _mode_cache:
        _mode_cache.append(conf.current().rls)
    return _mode_cache[0]


conf._reset_hooks.append(_mode_cache.clear)


# -- what each connection last got -------------------------------------------------


class _State:
    """What one connection was last sent, and whether that happened inside
    the transaction now open (``dirty``): PostgreSQL undoes a ``set_config``
    when its transaction or an enclosing savepoint rolls back, and ends a
    transaction-local one when its transaction ends."""

    __slots__ = ("dirty", "mode", "passing", "scope")

    def __init__(self) -> None:
        self.scope: Scope | None = None  # None: unknown, send before the next query
        self.dirty = False
        self.mode = ""
        # True while tenantry itself drives the driver's cursor (the execute
        # wrapper's call, a set_config): the cursor classes let it through.
        self.passing = False

    def record(self, scope: Scope, connection: Any) -> None:
        self.scope = scope
        self.dirty = _in_transaction(connection)

    def transaction_ended(self, committed: bool, whole: bool = True) -> None:
        if self.dirty and (not committed or self.mode == "transaction"):
            self.scope = None
        if whole:
            self.dirty = False


def _in_transaction(connection: Any) -> bool:
    """Whether the server has a transaction open on this connection: the
    driver's own status (psycopg 3), which also knows transactions Django
    does not (the driver's ``transaction()``, a manual ``BEGIN``); Django's
    flags otherwise."""
    info = getattr(connection.connection, "info", None)
    if info is not None:
        return info.transaction_status != _IDLE
    return connection.in_atomic_block or not connection.get_autocommit()


def _transaction_ended(connection: Any, committed: bool, whole: bool) -> None:
    state = connection.__dict__.get(_STATE)
    if state is not None:
        state.transaction_ended(committed, whole)


#: Statements that end a transaction or roll back to a savepoint, sent as
#: SQL (``cursor.execute("ROLLBACK")``): what they undo is followed too.
_ENDS_TRANSACTION = re.compile(r"\s*(?:ROLLBACK|ABORT|COMMIT|END)\b(?P<to>\s+TO\b)?", re.I)


def _follow_statement(connection: Any, sql: Any) -> None:
    """After ``sql`` ran: if it ended a transaction (or rolled back to a
    savepoint), what was sent inside may be gone. Whether it committed is
    not known here: count it as rolled back (at worst one more set_config)."""
    if isinstance(sql, str) and (ended := _ENDS_TRANSACTION.match(sql)) is not None:
        _transaction_ended(connection, committed=False, whole=ended["to"] is None)


def _follow_driver(connection: Any, raw: Any) -> None:
    """The driver's own transaction control (psycopg 3), used by code that
    goes around Django's: ``commit()``, ``rollback()`` and ``transaction()``
    blocks (a top-level ``BEGIN``, or a savepoint inside one). PostgreSQL
    undoes a ``set_config`` with the transaction or savepoint it was sent in,
    so each tells the connection's state, as Django's commit and rollback do.
    A ``transaction()`` block may end in a rollback without an exception
    (``psycopg.Rollback``): every block counts as rolled back."""
    driver = type(raw)
    for method, committed in ((driver.commit, True), (driver.rollback, False)):

        def ended(_method: Any = method, _committed: bool = committed) -> None:
            try:
                _method(raw)
            finally:
                _transaction_ended(connection, _committed, whole=True)

        setattr(raw, method.__name__, ended)
    begin = driver.transaction

    @contextmanager
    def transaction_block(*args: Any, **kwargs: Any) -> Iterator[Any]:
        whole = raw.info.transaction_status == _IDLE  # else a savepoint
        try:
            with begin(raw, *args, **kwargs) as block:
                yield block
        finally:
            _transaction_ended(connection, committed=False, whole=whole)

    raw.transaction = transaction_block


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
    state = connection.__dict__.get(_STATE)
    passing = state is not None and state.passing
    if state is not None:
        state.passing = True
    try:
        with connection.wrap_database_errors, connection.connection.cursor() as cursor:
            cursor.execute(_SET_LOCAL if local else _SET_SESSION, scope)
    finally:
        if state is not None:
            state.passing = passing


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
    """What the running code's next statement must be sent with."""
    scope = _asked()
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
    _sync_connection(connections[alias])


def _sync_connection(connection: Any) -> None:
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
    if mode == "off" or state.passing:
        return execute(sql, params, many, context)
    scope = _wanted()
    state.passing = True
    try:
        if isinstance(sql, str) and _ENDS_TRANSACTION.match(sql) is not None:
            try:
                return execute(sql, params, many, context)
            finally:
                _follow_statement(connection, sql)
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
        _raise_refusal(exc, scope)
        raise
    finally:
        state.passing = False


def _raise_refusal(exc: BaseException, scope: Scope) -> None:
    """Raise ``TenantMismatchError`` for a ``WITH CHECK`` violation; return
    for any other error (the caller re-raises it)."""
    refused = _refused_table(exc)
    if refused is None:
        return
    bound = repr(scope[0]) if scope[0] else "none is bound"
    raise TenantMismatchError(
        f"row-level security refused a row of table {refused!r}: its tenant is not the "
        f"bound tenant ({bound}). PostgreSQL: {_message(exc)}"
    ) from exc


_REFUSED = re.compile(r'violates row-level security policy.* for table "([^"]+)"')


def _message(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__


def _refused_table(exc: BaseException) -> str | None:
    """The table of a ``WITH CHECK`` violation (SQLSTATE 42501), else None;
    ``exc`` is Django's error or the driver's own."""
    cause = exc.__cause__ or exc
    if getattr(cause, "sqlstate", getattr(cause, "pgcode", None)) != "42501":
        return None
    found = _REFUSED.search(_message(exc))
    return found.group(1) if found else None


# -- the statements that do not pass through execute_wrappers --------------------


@contextmanager
def _statement_scope(connection: Any) -> Iterator[None]:
    """The statements sent in this block (by a driver method that Django's
    execute wrappers never see) run with the running code's scope: synced
    first in session mode or inside a transaction; otherwise, in
    transaction mode, inside a short transaction that carries it."""
    mode = rls_mode()
    state = _state(connection, mode)
    if mode == "off" or state.passing:
        yield
        return
    scope = _wanted()
    try:
        if mode == "session" or connection.in_atomic_block:
            _sync(connection, state, scope)
            yield
        else:
            with transaction.atomic(using=connection.alias):
                _send(connection, scope, local=True)
                yield
    except Exception as exc:
        _raise_refusal(exc, scope)
        raise


def _owner(cursor: Any) -> Any:
    """The Django connection of a driver cursor made by tenantry's classes,
    when its statement needs the guard: None while tenantry itself drives
    the cursor (the execute wrapper's own call, a ``set_config``), which is
    every ordinary ``cursor.execute()``."""
    ref = getattr(cursor.connection, "_tenantry_owner", None)
    owner = None if ref is None else ref()
    if owner is None:
        return None
    state = owner.__dict__.get(_STATE)
    return None if state is not None and state.passing else owner


class _GuardedCursor:
    """Mixed first into the driver's cursor classes of PostgreSQL
    connections: the methods that send SQL without Django's execute
    wrappers (``callproc()`` runs ``execute()`` on the driver's cursor;
    ``copy()``, ``stream()``; code that calls ``cursor.cursor.execute()``)
    bring the connection to the scope of the running code first."""

    __slots__ = ()

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        owner = _owner(self)
        if owner is None:
            return super().execute(query, params, **kwargs)
        try:
            with _statement_scope(owner):
                return super().execute(query, params, **kwargs)
        finally:
            _follow_statement(owner, query)

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> Any:
        owner = _owner(self)
        if owner is None:
            return super().executemany(query, params_seq, **kwargs)
        with _statement_scope(owner):
            return super().executemany(query, params_seq, **kwargs)

    @contextmanager
    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Iterator[Any]:
        owner = _owner(self)
        if owner is None:
            with super().copy(statement, params, **kwargs) as copy:
                yield copy
            return
        with _statement_scope(owner), super().copy(statement, params, **kwargs) as copy:
            yield copy

    def stream(self, query: Any, params: Any = None, **kwargs: Any) -> Iterator[Any]:
        owner = _owner(self)
        if owner is None:
            yield from super().stream(query, params, **kwargs)
            return
        with _statement_scope(owner):
            yield from super().stream(query, params, **kwargs)


class _GuardedServerCursor(_GuardedCursor):
    """Server-side (named) cursors: each ``FETCH`` computes its rows under
    the settings of the moment inside a transaction, so every fetch brings
    the connection to the scope of the code fetching."""

    __slots__ = ()

    def _sync_owner(self) -> None:
        owner = _owner(self)
        if owner is not None:
            _sync_connection(owner)

    def fetchone(self) -> Any:
        self._sync_owner()
        return super().fetchone()

    def fetchmany(self, size: int = 0) -> Any:
        self._sync_owner()
        return super().fetchmany(size)

    def fetchall(self) -> Any:
        self._sync_owner()
        return super().fetchall()

    def __iter__(self) -> Iterator[Any]:
        while True:
            rows = self.fetchmany(self.itersize)
            yield from rows
            if len(rows) < self.itersize:
                return


_guarded_classes: dict[type, type] = {}


def _guarded_class(base: type) -> type:
    """``base`` with tenantry's guard mixed in (one class per base)."""
    if issubclass(base, _GuardedCursor):
        return base
    guarded = _guarded_classes.get(base)
    if guarded is None:
        import psycopg

        mixin = _GuardedServerCursor if issubclass(base, psycopg.ServerCursor) else _GuardedCursor
        guarded = type(f"Tenantry{base.__name__}", (mixin, base), {"__slots__": ()})
        _guarded_classes[base] = guarded
    return guarded


def _guard_cursors(connection: Any) -> None:
    """Give this connection's driver (psycopg 3) tenantry's cursor classes:
    its ``cursor_factory`` for ordinary cursors, and a swap of the class of
    the named cursors Django makes itself. psycopg2 keeps its own classes
    (docs/postgresql.md)."""
    try:
        import psycopg
    except ImportError:
        return
    raw = connection.connection
    if not isinstance(raw, psycopg.Connection):
        return
    raw._tenantry_owner = weakref.ref(connection)
    raw.cursor_factory = _guarded_class(raw.cursor_factory)
    _follow_driver(connection, raw)
    if connection.__dict__.get("_tenantry_named_cursors"):
        return
    create_cursor = connection.create_cursor

    def guarded_create_cursor(name: str | None = None) -> Any:
        cursor = create_cursor(name)
        if name and not isinstance(cursor, _GuardedCursor):
            cursor.__class__ = _guarded_class(type(cursor))
        return cursor

    connection.create_cursor = guarded_create_cursor
    connection.__dict__["_tenantry_named_cursors"] = True


def _fresh_state(connection: Any) -> _State:
    state = _State()
    connection.__dict__[_STATE] = state
    return state


def install(connection: Any) -> None:
    """Forget what this (new) connection was sent, and wrap its queries.

    In session mode, first make sure its server session is its own
    (:func:`refuse_transaction_pooling`). The wrapper goes first in
    ``execute_wrappers``: Django's ``connection.execute_wrapper()`` blocks
    append and pop their own at the end, so they never remove it."""
    if connection.vendor != "postgresql":
        return
    if rls_mode() == "session":
        refuse_transaction_pooling(connection)
    _fresh_state(connection)
    _follow_transactions(connection)
    _guard_cursors(connection)
    if _wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _wrapper)


# -- session settings need a session: refused behind transaction pooling ------------------

#: A custom setting no policy reads: set by the probe of a new connection.
PROBE_SETTING = "tenantry.pooling_probe"
#: Seconds the probe's second connection may wait for a server session (a
#: full session pool makes it wait: then the sessions are not shared).
PROBE_WAIT = 2.0


def _probe_one(raw: Any, sql: str, params: list[str]) -> tuple[Any, ...]:
    """One statement in its own transaction, on the driver's connection."""
    with raw.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if not raw.autocommit:
        raw.commit()
    return row


def _seen_by_another_client(connection: Any, token: str) -> bool:
    """Whether a second client of the same address reads ``token`` in its
    session: it was given the server session the probe left its setting in.
    A second client that waits longer than ``PROBE_WAIT`` for a session (a
    full pool of sessions held by their clients) saw nothing."""
    other = connection.get_new_connection(connection.get_connection_params())
    timer = threading.Timer(PROBE_WAIT, other.cancel)
    try:
        timer.start()
        try:
            seen = _probe_one(other, "SELECT current_setting(%s, true)", [PROBE_SETTING])[0]
            return seen == token
        except Exception:  # cancelled while waiting for a server session
            return False
    finally:
        timer.cancel()
        other.close()


def pooling_problem(connection: Any) -> str | None:
    """Why session settings would leak on this open connection, or None.

    Set, commit, read back: the probe sets :data:`PROBE_SETTING` to a random
    token in one transaction and reads it in the next. On a direct
    connection (the server process is the one the driver was told about at
    log-in) nothing more is sent: one round trip per new connection. Behind
    a proxy (it reports a process id of its own), the setting must survive
    its transaction on the same server process, and a second client of the
    same address must not read it: a transaction-pooling proxy gives the
    freed server session to the next transaction, of any client."""
    raw = connection.connection
    token = secrets.token_hex(16)
    pid, _ = _probe_one(
        raw, "SELECT pg_backend_pid(), set_config(%s, %s, false)", [PROBE_SETTING, token]
    )
    if pid == raw.info.backend_pid:
        return None
    alias = connection.alias
    pid_after, seen = _probe_one(
        raw, "SELECT pg_backend_pid(), current_setting(%s, true)", [PROBE_SETTING]
    )
    if pid_after != pid or seen != token:
        return (
            f"DATABASES[{alias!r}] is behind a transaction-pooling proxy: a session setting "
            "did not survive its transaction (the next transaction ran on another server "
            "session), so TENANT_RLS = True would hand one tenant's setting to another "
            "client's queries"
        )
    if _seen_by_another_client(connection, token):
        return (
            f"DATABASES[{alias!r}] is behind a transaction-pooling proxy: another client "
            "read this connection's session setting (the server session is shared between "
            "transactions), so TENANT_RLS = True would hand one tenant's setting to another "
            "client's queries"
        )
    return None


def refuse_transaction_pooling(connection: Any) -> None:
    """Close a new connection whose server session is shared between
    transactions (:func:`pooling_problem`) and raise
    ``TransactionPoolingError``: nothing runs on it, and the next attempt
    opens (and probes) a new one."""
    problem = pooling_problem(connection)
    if problem is None:
        return
    raw, connection.connection = connection.connection, None
    raw.close()
    raise TransactionPoolingError(
        f"{problem}. Refused: set DJUST_CONFIG['TENANT_RLS'] = 'transaction' behind "
        "transaction pooling "
        "(docs/postgresql.md#session-settings-behind-transaction-pooling-refused)."
    )


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    install(connection)


connection_created.connect(_on_connection_created, dispatch_uid="tenantry.db.rls")


# -- what is (not) behind the wall: manage.py tenantry rls --check --------------------


def scoped_models() -> list[tuple[Any, str]]:
    """``(model, tenant field)`` of every concrete scoped model (the one rule
    of ``tenantry.graph.scope_of``), one per table."""
    found: dict[str, tuple[Any, str]] = {}
    for model in apps.get_models():
        scope = None if model._meta.proxy else scope_of(model)
        if scope is not None:
            found.setdefault(model._meta.db_table, (model, scope.field.name))
    return sorted(found.values(), key=lambda pair: pair[0]._meta.label)


def table_problems(connection: Any, model: Any) -> str | None:
    """Why ``model``'s table is not behind the wall, or None when it is."""
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


def has_grant_policies(connection: Any, model: Any) -> bool:
    """Whether ``model``'s table carries the grant policies
    (docs/collaboration.md#postgresql): a policy made before grants existed
    does not, and hides every granted row."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_policy p WHERE p.polrelid = to_regclass(%s)"
            " AND p.polname IN (%s, %s)",
            [connection.ops.quote_name(model._meta.db_table), READ_POLICY, WRITE_POLICY],
        )
        return cursor.fetchone()[0] == 2


def old_policy_tables(connection: Any) -> list[tuple[Any, str]]:
    """``(model, tenant field)`` of the scoped models whose table is behind
    the wall with a policy made before grants existed (no grant policies)."""
    found = []
    for model, field in scoped_models():
        holder = model._meta.get_field(field).model._meta.concrete_model
        if holder is not model._meta.concrete_model:
            continue  # a child whose tenant column is a parent's: no grant policies
        if table_problems(connection, model) is None and not has_grant_policies(connection, model):
            found.append((model, field))
    return found


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


#: Views (and views of views) over tables that carry tenantry's policy, with
#: their owner's rights; materialized views store their rows at refresh.
_DEFINER_RELATIONS = """
WITH RECURSIVE walled AS (
    SELECT polrelid AS oid FROM pg_policy WHERE polname = %s
), over(oid) AS (
    SELECT DISTINCT w.ev_class FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid IN (SELECT oid FROM walled) AND w.ev_class <> d.refobjid
    UNION
    SELECT w.ev_class FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid
      JOIN over o ON d.refobjid = o.oid
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
       AND w.ev_class <> d.refobjid
)
SELECT c.oid::regclass::text, c.relkind, r.rolname, r.rolsuper OR r.rolbypassrls,
       coalesce(
           (SELECT lower(option_value) IN ('true', 'on', '1', 'yes')
              FROM pg_options_to_table(c.reloptions) WHERE option_name = 'security_invoker'),
           false)
  FROM over o JOIN pg_class c ON c.oid = o.oid JOIN pg_roles r ON r.oid = c.relowner
 ORDER BY 1
"""

#: SECURITY DEFINER functions of the application's schemas (not of an
#: extension) owned by a role that ignores row-level security.
_DEFINER_FUNCTIONS = """
SELECT p.oid::regprocedure::text, r.rolname
  FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
  JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.prosecdef AND (r.rolsuper OR r.rolbypassrls)
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                   AND d.objid = p.oid AND d.deptype = 'e')
 ORDER BY 1
"""


def definer_problems(connection: Any) -> list[str]:
    """Objects that run with their owner's rights and so may show every
    tenant's rows past the policies: views over a table behind the wall
    owned by a role that ignores row-level security (superuser or
    ``BYPASSRLS``) and not ``security_invoker``, materialized views over such
    a table (their rows are stored at refresh, for every reader), and
    ``SECURITY DEFINER`` functions owned by such a role."""
    problems = []
    with connection.cursor() as cursor:
        cursor.execute(_DEFINER_RELATIONS, [POLICY])
        for name, kind, owner, bypasses, invoker in cursor.fetchall():
            if kind == "m":
                problems.append(
                    f"materialized view {name} reads a table behind the wall: its rows are "
                    "stored when it is refreshed and shown to every tenant (use a view, or "
                    "give it a tenant column and a policy of its own through a table)"
                )
            elif bypasses and not invoker:
                problems.append(
                    f"view {name} reads a table behind the wall with the rights of its owner "
                    f"{owner!r}, who ignores row-level security: it shows every tenant's rows "
                    f"(ALTER VIEW {name} SET (security_invoker = true), or give it an owner "
                    "bound by the policies)"
                )
        cursor.execute(_DEFINER_FUNCTIONS)
        for name, owner in cursor.fetchall():
            problems.append(
                f"function {name} is SECURITY DEFINER and owned by {owner!r}, who ignores "
                "row-level security: whatever it reads, it reads for every tenant (make it "
                "SECURITY INVOKER, or give it an owner bound by the policies)"
            )
    return problems


# -- many-to-many link tables (docs/postgresql.md#many-to-many-link-tables) ----------


def _real_scope(label: str) -> Any:
    """The installed model ``label``'s scope (None: no tenant's, or gone)."""
    try:
        return scope_of(apps.get_model(label))
    except LookupError:
        return None


def link_tables(registry: Any = apps) -> list[tuple[Any, tuple[Any, ...]]]:
    """``(through model, its foreign keys to scoped models)`` of every
    many-to-many link table of ``registry`` (the installed apps, or a
    migration's historical ones) that has no tenant column of its own: the
    auto-created ``through`` tables, and explicit ``through`` models that
    are no tenant's. Such a table is walled by the scoped rows it links
    (``EnableTenantRLS`` of either end), one entry per table."""
    found: dict[str, tuple[Any, tuple[Any, ...]]] = {}
    for model in registry.get_models():
        for field in model._meta.local_many_to_many:
            through = field.remote_field.through
            if not isinstance(through, type) or through._meta.db_table in found:
                continue
            if not through._meta.auto_created and _real_scope(through._meta.label) is not None:
                continue  # a tenant's own rows: EnableTenantRLS of its own
            ends = tuple(
                fk
                for fk in through._meta.local_fields
                if fk.many_to_one and _real_scope(fk.related_model._meta.label) is not None
            )
            if ends:
                found[through._meta.db_table] = (through, ends)
    return sorted(found.values(), key=lambda pair: pair[0]._meta.db_table)


def walled_tables(connection: Any) -> set[str]:
    """The tables that carry tenantry's isolation policy."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid"
            " WHERE p.polname = %s",
            [POLICY],
        )
        return {name for (name,) in cursor.fetchall()}
