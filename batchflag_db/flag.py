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
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, SupportsIndex, TypeVar, cast

from batchflag_db._connection import Connectable, Link, connect
from batchflag_db._retry import (
    DEFAULT_RETRY,
    ER_IN_TRANSACTION,
    IN_TRANSACTION_PROBE,
    RetryPolicy,
    RetryState,
    owns_transaction,
)
from batchflag_db._schema import (
    FLIP_SAVEPOINT,
    MAX_BATCH_ID,
    SAVED_LOCK_WAIT,
    SET_PROCEDURE,
    UNSET_PROCEDURE,
)
from batchflag_db.errors import (
    ER_LOCK_WAIT_TIMEOUT,
    BatchFlagError,
    DatabaseConnectionError,
    InvalidBatchIdError,
    ReadOnlyServerError,
    TransactionConflictError,
)
from batchflag_db.installation import current_query
from batchflag_db.installation import read as read_installation
from batchflag_db.locks import LockReport, find_lock_holders

__all__ = [
    "SET_EVENT",
    "SET_PENDING_EVENT",
    "UNSET_EVENT",
    "UNSET_PENDING_EVENT",
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
"""Log event (INFO) after a successful set that committed itself (it owned its transaction):
the name the pipeline's own logs already use."""

UNSET_EVENT = "current_batch_flag_unset"
"""Log event (INFO) after a successful unset that committed itself."""

SET_PENDING_EVENT = "current_batch_flag_set_pending"
"""Log event (INFO) after a successful set inside the caller's transaction: not committed
yet, the caller's commit or rollback decides."""

UNSET_PENDING_EVENT = "current_batch_flag_unset_pending"
"""Log event (INFO) after a successful unset inside the caller's transaction."""

_PENDING_NOTE = " (inside the caller's transaction: not committed yet)"

PRIMARY_QUERY = (
    "SELECT MEMBER_HOST, MEMBER_PORT FROM performance_schema.replication_group_members "
    "WHERE MEMBER_ROLE = 'PRIMARY' AND MEMBER_STATE = 'ONLINE'"
)
"""Where a Group Replication member says its group's primary is (one row in single-primary mode)."""

_T = TypeVar("_T")


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
    procedure: str,
    batch_id: int,
    rows: Sequence[Sequence[Any]],
    attempts: int,
    *,
    committed: bool = True,
) -> Flip:
    """Build the :class:`Flip` from a procedure's result row and log its event.

    Args:
        procedure: The procedure that ran.
        batch_id: The batch it was called with.
        rows: Its result rows.
        attempts: Calls it took.
        committed: True when the call owned its transaction, so the flip is committed
            (:data:`SET_EVENT` / :data:`UNSET_EVENT`); False when it joined the caller's,
            which may still roll it back (:data:`SET_PENDING_EVENT` /
            :data:`UNSET_PENDING_EVENT`).

    Raises:
        BatchFlagError: The procedure returned no row (it always returns one).
    """
    if not rows:
        raise BatchFlagError(f"{procedure} returned no result row for batch {batch_id}")
    row = rows[0]
    if procedure == SET_PROCEDURE:
        previous = row[1]
        flip = Flip(batch_id, None if previous is None else int(previous), bool(row[2]), attempts)
        event = SET_EVENT if committed else SET_PENDING_EVENT
    else:
        changed = bool(row[1])
        flip = Flip(batch_id, batch_id if changed else None, changed, attempts)
        event = UNSET_EVENT if committed else UNSET_PENDING_EVENT
    logger.info(
        "%s batch_id=%s previous_batch_id=%s changed=%s%s",
        event,
        flip.batch_id,
        flip.previous_batch_id,
        flip.changed,
        "" if committed else _PENDING_NOTE,
        extra={
            "event": event,
            "batch_id": flip.batch_id,
            "previous_batch_id": flip.previous_batch_id,
            "changed": flip.changed,
            "attempts": flip.attempts,
        },
    )
    return flip


def naming_holders(
    conflict: TransactionConflictError, report: LockReport
) -> TransactionConflictError:
    """``conflict`` (a flip that gave up on a lock wait), naming what holds the lock.

    The message gains the report's sentence (the oldest holder, its account, how long
    open, idle or not, and ``KILL <id>``, or what could not be read), and ``holders``
    the holders' connection ids.
    """
    return TransactionConflictError(
        f"{conflict}; {report.describe()}",
        errno=conflict.errno,
        sqlstate=conflict.sqlstate,
        attempts=conflict.attempts,
        holders=tuple(h.connection_id for h in report.holders),
    )


def gave_up_on_lock_wait(error: BatchFlagError) -> bool:
    """Tell whether a flip's error is a lock wait timeout :func:`naming_holders` explains."""
    return isinstance(error, TransactionConflictError) and error.errno == ER_LOCK_WAIT_TIMEOUT


def naming_primary(
    error: ReadOnlyServerError, rows: Sequence[Sequence[Any]]
) -> ReadOnlyServerError:
    """``error``, with the primary's address added when :data:`PRIMARY_QUERY` found one.

    Args:
        error: A flip refused by a read-only server (1290).
        rows: :data:`PRIMARY_QUERY`'s rows (none when the server is no group member).
    """
    if len(rows) != 1:
        return error
    host, port = rows[0]
    return ReadOnlyServerError(
        f"{error}; this group's primary is {host}:{port}",
        errno=error.errno,
        sqlstate=error.sqlstate,
    )


def current_from_rows(rows: Sequence[Sequence[Any]]) -> int | None:
    """Return the current batch id from the rows of :func:`~batchflag_db.installation.current_query`."""
    return int(rows[0][0]) if rows else None


# --- sync I/O ---


def _with_retry(
    attempt: Callable[[], _T],
    owns: bool | None,
    procedure: str,
    batch_id: int,
    policy: RetryPolicy,
) -> tuple[_T, int]:
    """Run ``attempt`` until it succeeds or the policy says stop; return (result, attempts)."""
    state = RetryState(policy, owns, procedure, batch_id)
    while True:
        try:
            result = attempt()
        except BatchFlagError as error:
            time.sleep(state.failed(error))
            continue
        return result, state.attempt


def _owns_transaction(link: Link) -> bool:
    """Tell whether a CALL on ``link`` runs in its own transaction (then it may be retried)."""
    if link.checked_out:
        return True  # checked out of the caller's Engine in AUTOCOMMIT for this call
    owns = owns_transaction(link.driver)
    if owns is not None:
        return owns
    # The driver does not say: ask the server.
    if not link.run("SELECT @@autocommit").rows[0][0]:
        return False
    try:
        link.run(IN_TRANSACTION_PROBE)
    except BatchFlagError as error:
        if error.errno == ER_IN_TRANSACTION:
            return False
        raise
    return True


def lock_wait_statements(seconds: int) -> tuple[str, str]:
    """The statements that set the session's lock wait for a flip, and put it back."""
    return (
        f"SET {SAVED_LOCK_WAIT} = @@SESSION.innodb_lock_wait_timeout, "
        f"SESSION innodb_lock_wait_timeout = {int(seconds)}",
        f"SET SESSION innodb_lock_wait_timeout = {SAVED_LOCK_WAIT}",
    )


def lock_wait_prefix(seconds: int) -> str:
    """MariaDB's ``SET STATEMENT ... FOR``: the CALL's own lock wait, in the CALL's round trip.

    The session's value is never touched, so nothing needs putting back: one statement
    per flip instead of three (:func:`lock_wait_statements`, which MySQL needs).
    """
    return f"SET STATEMENT innodb_lock_wait_timeout = {int(seconds)} FOR "


@contextmanager
def _lock_wait(link: Link, seconds: int | None) -> Iterator[None]:
    """Set the session's innodb_lock_wait_timeout for the flip; put the old value back."""
    if seconds is None:
        yield
        return
    set_it, put_back = lock_wait_statements(seconds)
    link.run(set_it)
    try:
        yield
    finally:
        with suppress(BatchFlagError):  # a connection the flip lost cannot be reset either
            link.run(put_back)


def undo_statement(owns: bool) -> str:
    """What undoes whatever a failed CALL left behind, in its own transaction or the caller's.

    A procedure's handler normally undoes a failed flip itself; a CALL interrupted by
    ``KILL QUERY`` on MySQL runs no handler and leaves the procedure's own transaction
    open, or its savepoint unreleased inside the caller's, holding the locks and half
    a flip. The wrapper sends this after any failed CALL that did not lose the connection.
    """
    return "ROLLBACK" if owns else f"ROLLBACK TO SAVEPOINT {FLIP_SAVEPOINT}"


def _undoing(link: Link, owns: bool, attempt: Callable[[], _T]) -> Callable[[], _T]:
    def run() -> _T:
        try:
            return attempt()
        except BatchFlagError as error:
            if error.errno is not None and not isinstance(error, DatabaseConnectionError):
                with suppress(BatchFlagError):  # nothing left to undo (the handler did it)
                    link.run(undo_statement(owns))
            raise

    return run


def _naming_primary(error: ReadOnlyServerError, link: Link) -> ReadOnlyServerError:
    """``error``, with the primary's address added when the server is a group member."""
    try:
        rows = link.run(PRIMARY_QUERY).rows
    except BatchFlagError:  # not a group member (no such table), or no privilege: say less
        return error
    return naming_primary(error, rows)


def _call(conn: Connectable, procedure: str, batch_id: int, policy: RetryPolicy) -> Flip:
    with connect(conn) as link:
        owns = _owns_transaction(link)
        wait, prefix = policy.lock_wait_timeout, ""
        if wait is not None and link.takes_call_prefix:
            prefix, wait = lock_wait_prefix(wait), None  # the session's value is untouched
        try:
            with _lock_wait(link, wait):
                rows, attempts = _with_retry(
                    _undoing(link, owns, lambda: link.call(procedure, batch_id, prefix=prefix)),
                    owns,
                    procedure,
                    batch_id,
                    policy,
                )
        except ReadOnlyServerError as error:
            raise _naming_primary(error, link) from error.__cause__
        except TransactionConflictError as error:
            if not gave_up_on_lock_wait(error):
                raise
            raise naming_holders(error, find_lock_holders(link)) from error.__cause__
    return flip_from_rows(procedure, batch_id, rows, attempts, committed=owns)


def set_current_batch(
    conn: Connectable, batch_id: int, *, retry: RetryPolicy = DEFAULT_RETRY
) -> Flip:
    """Make ``batch_id`` the only current batch, atomically (CALL set_current_batch).

    Already current: success, nothing changes (``Flip.changed`` is False). Logs
    ``current_batch_flag_set`` with batch_id and previous_batch_id, or
    ``current_batch_flag_set_pending`` when the call joined your transaction (your
    commit or rollback decides).

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
        DatabaseConnectionError: The server cannot be reached or refuses the login.
        BatchFlagError: Any other server error, with ``errno`` and ``sqlstate``.
    """
    return _call(conn, SET_PROCEDURE, validate_batch_id(batch_id), retry)


def unset_current_batch(
    conn: Connectable, batch_id: int, *, retry: RetryPolicy = DEFAULT_RETRY
) -> Flip:
    """Clear the current flag of ``batch_id`` if it is the current batch (CALL unset_current_batch).

    A batch that is not current is left alone (``Flip.changed`` is False). Logs
    ``current_batch_flag_unset`` with batch_id and previous_batch_id, or
    ``current_batch_flag_unset_pending`` inside your transaction.

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
        DatabaseConnectionError: The server cannot be reached or refuses the login.
        BatchFlagError: Any other server error, with ``errno`` and ``sqlstate``.
    """
    return _call(conn, UNSET_PROCEDURE, validate_batch_id(batch_id), retry)


def get_current_batch(conn: Connectable, *, scope: str | int | None = None) -> int | None:
    """Return the id of the current batch (of ``scope``), or None when no batch is current.

    Reads the installation's names (one primary-key read of its record), then probes
    the key column's UNIQUE index (never a scan; MariaDB before 11.8 does not use
    that index for ``WHERE currentBatch = 1``). Plain consistent reads: no locks,
    never retried.

    Args:
        conn: An Engine, a Connection or a PEP 249 connection.
        scope: With a scope column (one current batch per pipeline, say), the scope
            value whose current batch you want; required there, refused elsewhere.

    Raises:
        ConfigurationError: ``scope`` given without a scope column, or missing with one.
        SchemaNotReadyError: The key column is missing: the migrations are not applied.
        DatabaseConnectionError: The server cannot be reached or refuses the login.
        BatchFlagError: Any other server error.
    """
    with connect(conn) as link:
        query = current_query(read_installation(link), scope)
        rows = link.query(query, scope=scope).rows if scope is not None else link.run(query).rows
    return current_from_rows(rows)


@contextmanager
def current_batch(
    conn: Connectable, batch_id: int, *, retry: RetryPolicy = DEFAULT_RETRY
) -> Iterator[Flip]:
    """Mark ``batch_id`` current for the duration of a block, as a pipeline run needs it.

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
