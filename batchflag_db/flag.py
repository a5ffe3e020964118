"""The wrapper: flip and read the current batch from Python.

Every function takes ``conn``, one of:

* a SQLAlchemy :class:`~sqlalchemy.engine.Engine`: the wrapper checks out a
  connection in autocommit mode, so the procedure runs in its own transaction
  and commits it; deadlocks and lock wait timeouts are retried;
* a SQLAlchemy :class:`~sqlalchemy.engine.Connection`: the call joins the
  connection's transaction; your ``commit()`` or ``rollback()`` decides, and a
  deadlock or lock wait timeout raises :class:`TransactionConflictError` for you
  to retry the whole transaction (a Connection in ``AUTOCOMMIT`` isolation
  behaves like an Engine);
* a PEP 249 connection (PyMySQL, mysqlclient, mysql-connector-python): with
  autocommit on and no transaction open, the procedure commits its own work and
  conflicts are retried; otherwise (the drivers' default is autocommit off) it
  joins the open transaction and you commit.

The sync and async (:mod:`batchflag_db.aio`) wrappers share everything here that
does no I/O: id validation, statements, reading the result row, log events, and
the retry decisions of :mod:`batchflag_db._retry`.
"""

from __future__ import annotations

import logging
import operator
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, SupportsIndex, TypeAlias, TypeVar, cast

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from batchflag_db._retry import (
    DEFAULT_RETRY,
    ER_IN_TRANSACTION,
    IN_TRANSACTION_PROBE,
    RetryPolicy,
    RetryState,
    owns_transaction,
)
from batchflag_db._schema import (
    KEY_COLUMN,
    MAX_BATCH_ID,
    SET_PROCEDURE,
    TABLE,
    UNSET_PROCEDURE,
)
from batchflag_db.errors import (
    BatchFlagError,
    DatabaseConnectionError,
    InvalidBatchIdError,
    ReadOnlyServerError,
    from_driver_error,
)

__all__ = [
    "SET_EVENT",
    "UNSET_EVENT",
    "Flip",
    "RetryPolicy",
    "current_batch",
    "get_current_batch",
    "set_current_batch",
    "unset_current_batch",
    "validate_batch_id",
]

logger = logging.getLogger("batchflag_db")
"""The library's only logger. It never adds handlers or configures logging."""

SET_EVENT = "current_batch_flag_set"
"""Log event (INFO) after every successful set, as the seed's repository named it."""

UNSET_EVENT = "current_batch_flag_unset"
"""Log event (INFO) after every successful unset."""

CURRENT_QUERY = f"SELECT id FROM {TABLE} WHERE {KEY_COLUMN} = 1"
"""The current batch, by a probe of the key column's UNIQUE index (never a scan)."""

PRIMARY_QUERY = (
    "SELECT MEMBER_HOST, MEMBER_PORT FROM performance_schema.replication_group_members "
    "WHERE MEMBER_ROLE = 'PRIMARY' AND MEMBER_STATE = 'ONLINE'"
)
"""Where a Group Replication member says its group's primary is (one row in single-primary mode)."""

# mysql-connector-python runs a CALL with cursor.execute() and walks its result
# sets with nextset() from 9.2 on; before, execute() refuses a CALL that returns
# rows ("Use multi=True ...") and callproc() is the way.
_CONNECTOR_EXECUTE_CALL = (9, 2)

_T = TypeVar("_T")


class DBAPIConnection(Protocol):
    """The part of a PEP 249 connection the wrapper uses."""

    def cursor(self) -> Any: ...


Connectable: TypeAlias = Engine | Connection | DBAPIConnection


@dataclass(frozen=True)
class Flip:
    """What a set or unset did.

    Attributes:
        batch_id: The batch the call named.
        previous_batch_id: The batch that was current before the call, or None.
            For an unset: ``batch_id`` when it was current, else None.
        changed: False when the call was a no-op (already current / not current).
        attempts: Calls it took, retries included (1 without a conflict). Not part
            of equality: ``Flip(7, None, True)`` equals the result whatever it took.
    """

    batch_id: int
    previous_batch_id: int | None
    changed: bool
    attempts: int = field(default=1, compare=False)


def validate_batch_id(batch_id: object) -> int:
    """Return ``batch_id`` as an int if it is a valid batch id.

    A valid id is an integer (not a bool, float or string) from 1 to 2**63-1,
    the range of the procedures' BIGINT parameter.

    Raises:
        InvalidBatchIdError: Anything else, with the offending value in the message.
    """
    if isinstance(batch_id, bool):
        raise InvalidBatchIdError(f"invalid batch id {batch_id!r}: a batch id is an integer")
    try:
        value = operator.index(cast(SupportsIndex, batch_id))
    except TypeError:
        shown = repr(batch_id)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise InvalidBatchIdError(f"invalid batch id {shown}: a batch id is an integer") from None
    if not 1 <= value <= MAX_BATCH_ID:
        # str() of an int above 4300 digits raises ValueError (CPython's conversion limit).
        shown = (
            str(value)
            if value.bit_length() <= 256
            else f"({'negative ' if value < 0 else ''}integer of {value.bit_length()} bits)"
        )
        raise InvalidBatchIdError(
            f"invalid batch id {shown}: a batch id is a positive integer "
            f"no greater than {MAX_BATCH_ID}"
        )
    return int(value)


# --- shared with batchflag_db.aio: no I/O below this line until "sync I/O" ---


def call_statement(procedure: str) -> str:
    """Return the SQLAlchemy text of a CALL of ``procedure`` with a ``:batch_id`` parameter."""
    return f"CALL {procedure}(:batch_id)"


def flip_from_rows(
    procedure: str, batch_id: int, rows: Sequence[Sequence[Any]], attempts: int
) -> Flip:
    """Build the :class:`Flip` from a procedure's result row and log its event.

    Raises:
        BatchFlagError: The procedure returned no row (it always returns one).
    """
    if not rows:
        raise BatchFlagError(f"{procedure} returned no result row for batch {batch_id}")
    row = rows[0]
    if procedure == SET_PROCEDURE:
        previous = row[1]
        flip = Flip(batch_id, None if previous is None else int(previous), bool(row[2]), attempts)
        event = SET_EVENT
    else:
        changed = bool(row[1])
        flip = Flip(batch_id, batch_id if changed else None, changed, attempts)
        event = UNSET_EVENT
    logger.info(
        "%s batch_id=%s previous_batch_id=%s changed=%s",
        event,
        flip.batch_id,
        flip.previous_batch_id,
        flip.changed,
        extra={
            "event": event,
            "batch_id": flip.batch_id,
            "previous_batch_id": flip.previous_batch_id,
            "changed": flip.changed,
            "attempts": flip.attempts,
        },
    )
    return flip


def current_from_rows(rows: Sequence[Sequence[Any]]) -> int | None:
    """Return the current batch id from :data:`CURRENT_QUERY`'s rows."""
    return int(rows[0][0]) if rows else None


@contextmanager
def translated_errors() -> Iterator[None]:
    """Re-raise driver errors as :class:`BatchFlagError`, the driver error as ``__cause__``.

    Errors without a server errno (programming errors, SQLAlchemy state errors)
    pass through unchanged.

    Raises:
        BatchFlagError: For every driver error that carries an errno.
    """
    try:
        yield
    except BatchFlagError:
        raise
    except Exception as exc:
        translated = from_driver_error(exc)
        if translated is None:
            raise
        raise translated from exc


# --- sync I/O ---


def _with_retry(
    attempt: Callable[[], _T],
    owns: bool | None,
    procedure: str,
    batch_id: int,
    policy: RetryPolicy,
    *,
    conn: DBAPIConnection,
) -> tuple[_T, int]:
    """Run ``attempt`` until it succeeds or the policy says stop; return (result, attempts)."""
    state = RetryState(policy, owns, procedure, batch_id)
    while True:
        try:
            with translated_errors():
                result = attempt()
        except ReadOnlyServerError as error:
            raise _naming_primary(error, conn) from error.__cause__
        except BatchFlagError as error:
            time.sleep(state.failed(error))
            continue
        return result, state.attempt


def _naming_primary(error: ReadOnlyServerError, conn: DBAPIConnection) -> ReadOnlyServerError:
    """``error``, with the primary's address added when ``conn``'s server is a group member."""
    try:
        rows = _dbapi_query(conn, PRIMARY_QUERY)
    except Exception:  # not a group member (no such table), or no privilege: say less
        return error
    if len(rows) != 1:
        return error
    host, port = rows[0]
    return ReadOnlyServerError(
        f"{error}; this group's primary is {host}:{port}",
        errno=error.errno,
        sqlstate=error.sqlstate,
    )


def _sqlalchemy_query(conn: Connection, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a plain SELECT through SQLAlchemy (a CALL goes through :func:`_dbapi_call`)."""
    result = conn.execute(text(sql))
    rows = [tuple(r) for r in result] if result.returns_rows else []
    result.close()
    return rows


def _fetch_and_drain(cursor: Any) -> list[tuple[Any, ...]]:
    rows = [tuple(r) for r in cursor.fetchall()] if cursor.description else []
    # CALL returns an extra (empty) result; drain it or the connection breaks.
    while cursor.nextset():
        if cursor.description:
            cursor.fetchall()
    return rows


def _is_old_connector(conn: object) -> bool:
    if not type(conn).__module__.startswith("mysql.connector"):
        return False
    module = sys.modules.get("mysql.connector")
    version = getattr(module, "__version_info__", None) or (0,)
    return tuple(version[:2]) < _CONNECTOR_EXECUTE_CALL


def _dbapi_call(conn: DBAPIConnection, procedure: str, batch_id: int) -> list[tuple[Any, ...]]:
    cursor = conn.cursor()
    try:
        if _is_old_connector(conn):
            cursor.callproc(procedure, (batch_id,))
            rows: list[tuple[Any, ...]] = []
            for result in cursor.stored_results():
                fetched = [tuple(r) for r in result.fetchall()]
                rows = rows or fetched
            return rows
        # The id is a validated int, rendered as a literal: no paramstyle to guess.
        cursor.execute(f"CALL {procedure}({batch_id})")
        return _fetch_and_drain(cursor)
    finally:
        cursor.close()


def _dbapi_query(conn: DBAPIConnection, sql: str) -> list[tuple[Any, ...]]:
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
        return _fetch_and_drain(cursor)
    finally:
        cursor.close()


def _probe_owns_transaction(conn: DBAPIConnection) -> bool:
    """Ask the server whether a CALL on ``conn`` would run in its own transaction."""
    if not _dbapi_query(conn, "SELECT @@autocommit")[0][0]:
        return False
    cursor = conn.cursor()
    try:
        cursor.execute(IN_TRANSACTION_PROBE)
    except Exception as exc:
        translated = from_driver_error(exc)
        if translated is not None and translated.errno == ER_IN_TRANSACTION:
            return False
        raise
    finally:
        cursor.close()
    return True


def _dbapi_owns_transaction(dbapi_conn: DBAPIConnection, driver_conn: object) -> bool:
    owns = owns_transaction(driver_conn)
    return _probe_owns_transaction(dbapi_conn) if owns is None else owns


def _dbapi_of(conn: Connection) -> DBAPIConnection:
    """The DB-API connection under a SQLAlchemy Connection.

    The CALL runs on its cursor, SQLAlchemy's documented route for procedures
    with several result sets: SQLAlchemy reads only the first and closes the
    cursor, and mysql-connector-python does not drain the rest on close, so the
    next statement on that connection would read the leftover result.
    """
    raw = conn.connection.dbapi_connection
    if raw is None:  # pragma: no cover - SQLAlchemy raises before this on an invalidated connection
        raise BatchFlagError("the SQLAlchemy connection has no DB-API connection: open a new one")
    return cast(DBAPIConnection, raw)


def _call(conn: Connectable, procedure: str, batch_id: int, policy: RetryPolicy) -> Flip:
    if isinstance(conn, Engine):
        with translated_errors(), conn.connect() as checked_out:
            session = checked_out.execution_options(isolation_level="AUTOCOMMIT")
            raw = _dbapi_of(session)
            try:
                rows, attempts = _with_retry(
                    lambda: _dbapi_call(raw, procedure, batch_id),
                    True,
                    procedure,
                    batch_id,
                    policy,
                    conn=raw,
                )
            except DatabaseConnectionError:
                # The connection is gone (the CALL ran outside SQLAlchemy's execute, which
                # would have noticed): keep the pool from handing it out or resetting it.
                session.invalidate()
                raise
    elif isinstance(conn, Connection):
        with translated_errors():
            if not conn.in_transaction():
                # What executing through SQLAlchemy would do (autobegin), so that the
                # caller's commit() / rollback() / close() applies to the flip.
                conn.begin()
            raw = _dbapi_of(conn)
            owns = _dbapi_owns_transaction(raw, conn.connection.driver_connection)
        rows, attempts = _with_retry(
            lambda: _dbapi_call(raw, procedure, batch_id),
            owns,
            procedure,
            batch_id,
            policy,
            conn=raw,
        )
    else:
        with translated_errors():
            owns = _dbapi_owns_transaction(conn, conn)
        rows, attempts = _with_retry(
            lambda: _dbapi_call(conn, procedure, batch_id),
            owns,
            procedure,
            batch_id,
            policy,
            conn=conn,
        )
    return flip_from_rows(procedure, batch_id, rows, attempts)


def set_current_batch(
    conn: Connectable, batch_id: int, *, retry: RetryPolicy = DEFAULT_RETRY
) -> Flip:
    """Make ``batch_id`` the only current batch, atomically (CALL set_current_batch).

    Already current: success, nothing changes (``Flip.changed`` is False). Logs
    ``current_batch_flag_set`` with batch_id and previous_batch_id.

    Args:
        conn: Engine, Connection or PEP 249 connection (see the module docstring).
        batch_id: The batch to make current.
        retry: How deadlocks and lock wait timeouts are retried when the call owns
            its transaction; ``RetryPolicy(attempts=1)`` never retries.

    Raises:
        InvalidBatchIdError: ``batch_id`` is not a positive integer.
        BatchNotFoundError: No row of batchStatus has that id; nothing changed.
        SchemaNotReadyError: The migrations have not been applied to this database.
        TransactionConflictError: Deadlock or lock wait timeout inside your
            transaction (retry the whole transaction), or retries exhausted.
        ReadOnlyServerError: The server is read-only (a Group Replication secondary, a
            replica): send flips to the primary, which the message names when it can.
        DatabaseConnectionError: The server cannot be reached or refuses the login.
        BatchFlagError: Any other server error, with ``errno`` and ``sqlstate``.
    """
    return _call(conn, SET_PROCEDURE, validate_batch_id(batch_id), retry)


def unset_current_batch(
    conn: Connectable, batch_id: int, *, retry: RetryPolicy = DEFAULT_RETRY
) -> Flip:
    """Clear the current flag of ``batch_id`` if it is the current batch (CALL unset_current_batch).

    A batch that is not current is left alone (``Flip.changed`` is False). Logs
    ``current_batch_flag_unset`` with batch_id and previous_batch_id.

    Args:
        conn: Engine, Connection or PEP 249 connection (see the module docstring).
        batch_id: The batch to clear.
        retry: As for :func:`set_current_batch`.

    Raises:
        InvalidBatchIdError: ``batch_id`` is not a positive integer.
        BatchNotFoundError: No row of batchStatus has that id; nothing changed.
        SchemaNotReadyError: The migrations have not been applied to this database.
        TransactionConflictError: Deadlock or lock wait timeout inside your
            transaction (retry the whole transaction), or retries exhausted.
        ReadOnlyServerError: As for :func:`set_current_batch`.
        DatabaseConnectionError: The server cannot be reached or refuses the login.
        BatchFlagError: Any other server error, with ``errno`` and ``sqlstate``.
    """
    return _call(conn, UNSET_PROCEDURE, validate_batch_id(batch_id), retry)


def get_current_batch(conn: Connectable) -> int | None:
    """Return the id of the current batch, or None when no batch is current.

    A lookup on the UNIQUE index of ``currentBatchKey`` (one index probe, never a
    scan; MariaDB before 11.8 does not use that index for ``WHERE currentBatch = 1``).
    A plain consistent read: it takes no locks and is never retried.

    Raises:
        SchemaNotReadyError: The key column is missing: the migrations are not applied.
        DatabaseConnectionError: The server cannot be reached or refuses the login.
        BatchFlagError: Any other server error.
    """
    with translated_errors():
        if isinstance(conn, Engine):
            with conn.connect() as raw:
                session = raw.execution_options(isolation_level="AUTOCOMMIT")
                rows = _sqlalchemy_query(session, CURRENT_QUERY)
        elif isinstance(conn, Connection):
            rows = _sqlalchemy_query(conn, CURRENT_QUERY)
        else:
            rows = _dbapi_query(conn, CURRENT_QUERY)
    return current_from_rows(rows)


@contextmanager
def current_batch(
    conn: Connectable, batch_id: int, *, retry: RetryPolicy = DEFAULT_RETRY
) -> Iterator[Flip]:
    """Mark ``batch_id`` current for the duration of a block: the seed's pipeline semantics.

    On entry the batch is set current (the :class:`Flip` is the ``as`` value). When
    the block ends normally it is unset. When the block raises, the flag is left
    set, so the dashboard keeps showing the failed batch, and the error propagates
    unchanged. With an Engine (or an autocommit connection) both flips commit on
    their own; with a Connection in a transaction they are part of it, so a
    rollback of yours also undoes the set.

    Raises:
        InvalidBatchIdError: ``batch_id`` is not a positive integer (nothing runs).
        BatchNotFoundError: No row of batchStatus has that id (the block does not run).
        TransactionConflictError: As for :func:`set_current_batch`.
        BatchFlagError: Any other server error, on entry or on the final unset.
    """
    flip = set_current_batch(conn, batch_id, retry=retry)
    yield flip
    unset_current_batch(conn, batch_id, retry=retry)
