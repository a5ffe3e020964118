"""The wrapper for asyncio: the same functions for SQLAlchemy's AsyncEngine and AsyncConnection.

Use it with an async MySQL driver through SQLAlchemy's asyncio extension; the
project tests with aiomysql (``mysql+aiomysql://``, the recommended driver, see
the Python API page of the docs, "Drivers") and asyncmy (``mysql+asyncmy://``)::

    from sqlalchemy.ext.asyncio import create_async_engine
    from batchflag_db import aio

    engine = create_async_engine("mysql+aiomysql://app:secret@db/cofi")
    async with aio.current_batch(engine, batch_id):
        ...  # the pipeline

Transactions and retries are as in :mod:`batchflag_db.flag`:

* an :class:`~sqlalchemy.ext.asyncio.AsyncEngine`: the call checks out a
  connection in autocommit mode, the procedure commits its own work, and
  deadlocks (1213) and lock wait timeouts (1205) are retried with backoff;
* an :class:`~sqlalchemy.ext.asyncio.AsyncConnection`: the call joins its
  transaction (your ``commit()``/``rollback()`` decides) and a conflict raises
  :class:`~batchflag_db.errors.TransactionConflictError` for you to retry the
  whole transaction; in ``AUTOCOMMIT`` isolation it behaves like the engine.

Only the I/O lives here; validation, statements, result rows, log events, the
retry decisions and the reports that name a lock's holder (:mod:`batchflag_db.locks`)
or a group's primary are the sync wrapper's, shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeAlias, TypeVar

if importlib.util.find_spec("greenlet") is None:  # SQLAlchemy's asyncio needs it
    raise ImportError(
        "batchflag_db.aio needs the aio extra (SQLAlchemy's asyncio and aiomysql): "
        "pip install 'batchflag-db[aio]' (from a checkout: pip install -e '.[aio]')"
    )
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from batchflag_db import installation, locks
from batchflag_db._connection import not_a_connection
from batchflag_db._retry import DEFAULT_RETRY, RetryPolicy, RetryState, owns_transaction
from batchflag_db._schema import SET_PROCEDURE, UNSET_PROCEDURE
from batchflag_db.errors import (
    BatchFlagError,
    DatabaseConnectionError,
    NotAConnectionError,
    ReadOnlyServerError,
    TransactionConflictError,
    translated_errors,
)
from batchflag_db.flag import (
    PRIMARY_QUERY,
    Flip,
    call_statement,
    current_from_rows,
    flip_from_rows,
    gave_up_on_lock_wait,
    lock_wait_prefix,
    lock_wait_statements,
    naming_holders,
    naming_primary,
    undo_statement,
    validate_batch_id,
)

__all__ = [
    "AsyncConnectable",
    "Flip",
    "RetryPolicy",
    "current_batch",
    "get_current_batch",
    "set_current_batch",
    "unset_current_batch",
]

AsyncConnectable: TypeAlias = AsyncEngine | AsyncConnection

_T = TypeVar("_T")


def _refuse(conn: object) -> NotAConnectionError:
    if isinstance(conn, (str, URL)):
        return not_a_connection(conn, "an AsyncEngine or AsyncConnection")
    return NotAConnectionError(
        f"batchflag_db.aio takes an AsyncEngine or AsyncConnection, not {type(conn).__name__}; "
        "for a sync Engine, Connection or DB-API connection use batchflag_db"
    )


async def _with_retry(
    attempt: Callable[[], Awaitable[_T]],
    owns: bool | None,
    procedure: str,
    batch_id: int,
    policy: RetryPolicy,
) -> tuple[_T, int]:
    """Await ``attempt`` until it succeeds or the policy says stop; return (result, attempts)."""
    state = RetryState(policy, owns, procedure, batch_id)
    while True:
        try:
            with translated_errors():
                result = await attempt()
        except BatchFlagError as error:
            await asyncio.sleep(state.failed(error))
            continue
        return result, state.attempt


async def _rows(
    conn: AsyncConnection, sql: str, batch_id: int | None, **params: Any
) -> list[tuple[Any, ...]]:
    if batch_id is not None:
        params["batch_id"] = batch_id
    result = await conn.execute(text(sql), params)
    rows = [tuple(r) for r in result] if result.returns_rows else []
    result.close()  # aiomysql and asyncmy read the CALL's remaining result sets on close
    return rows


async def _installation(conn: AsyncConnection) -> installation.Installation:
    """The recorded installation (the default one where there is no record), as the sync wrapper."""
    try:
        with translated_errors():
            rows = await _rows(conn, installation.RECORD_QUERY, None)
    except BatchFlagError as exc:
        return installation.from_read_error(exc)
    return installation.from_record(rows[0] if rows else None)


async def _lock_holders(conn: AsyncConnection) -> locks.LockReport:
    """:func:`batchflag_db.locks.find_lock_holders`, on an AsyncConnection: never raises."""
    try:
        inst = await _installation(conn)
    except BatchFlagError:  # the statements below say what cannot be read
        inst = installation.DEFAULT
    error: BatchFlagError | None = None
    for sql, exact in locks.holder_queries(inst):
        try:
            with translated_errors():
                return locks.lock_report(await _rows(conn, sql, None), exact)
        except BatchFlagError as exc:
            error = exc
    return locks.unreadable_report(error)


async def _naming_primary(error: ReadOnlyServerError, conn: AsyncConnection) -> ReadOnlyServerError:
    """``error``, with the primary's address added when the server is a group member."""
    try:
        with translated_errors():
            rows = await _rows(conn, PRIMARY_QUERY, None)
    except BatchFlagError:  # not a group member (no such table), or no privilege: say less
        return error
    return naming_primary(error, rows)


async def _current(conn: AsyncConnection, scope: str | int | None) -> list[tuple[Any, ...]]:
    query = installation.current_query(await _installation(conn), scope)
    return await _rows(conn, query, None, **({} if scope is None else {"scope": scope}))


async def _owns_transaction(conn: AsyncConnection) -> bool | None:
    # aiomysql and asyncmy keep the server status flags, so this costs no round trip;
    # a driver that does not say is treated as "the caller's transaction" (no retry).
    raw = await conn.get_raw_connection()
    return owns_transaction(raw.driver_connection)


async def _flip(
    session: AsyncConnection,
    owns: bool | None,
    procedure: str,
    batch_id: int,
    policy: RetryPolicy,
) -> tuple[list[tuple[Any, ...]], int]:
    """The retried CALL, with the session's lock wait set for it (as the sync wrapper does).

    A flip that gave up on a lock wait names the transaction holding the lock, and one
    a read-only group member refused names the group's primary, as the sync wrapper's.
    """
    try:
        return await _retried_flip(session, owns, procedure, batch_id, policy)
    except ReadOnlyServerError as error:
        raise await _naming_primary(error, session) from error.__cause__
    except TransactionConflictError as error:
        if not gave_up_on_lock_wait(error):
            raise
        raise naming_holders(error, await _lock_holders(session)) from error.__cause__


async def _retried_flip(
    session: AsyncConnection,
    owns: bool | None,
    procedure: str,
    batch_id: int,
    policy: RetryPolicy,
) -> tuple[list[tuple[Any, ...]], int]:
    statement = call_statement(procedure)
    wait = policy.lock_wait_timeout
    if wait is not None and getattr(session.dialect, "is_mariadb", False):
        statement, wait = lock_wait_prefix(wait) + statement, None  # the session's untouched

    async def attempt() -> list[tuple[Any, ...]]:
        try:
            with translated_errors():
                return await _rows(session, statement, batch_id)
        except BatchFlagError as error:  # undo what an interrupted CALL left (see flag.py)
            if error.errno is not None and not isinstance(error, DatabaseConnectionError):
                with contextlib.suppress(Exception):
                    await session.exec_driver_sql(undo_statement(owns is True))
            raise

    if wait is None:
        return await _with_retry(attempt, owns, procedure, batch_id, policy)
    set_it, put_back = lock_wait_statements(wait)
    with translated_errors():
        await session.exec_driver_sql(set_it)
    try:
        return await _with_retry(attempt, owns, procedure, batch_id, policy)
    finally:
        with contextlib.suppress(Exception):  # a lost connection cannot be reset either
            await session.exec_driver_sql(put_back)


async def _call(conn: AsyncConnectable, procedure: str, batch_id: int, policy: RetryPolicy) -> Flip:
    if isinstance(conn, AsyncEngine):
        with translated_errors():
            async with conn.connect() as raw:
                session = await raw.execution_options(isolation_level="AUTOCOMMIT")
                rows, attempts = await _flip(session, True, procedure, batch_id, policy)
        committed = True
    elif isinstance(conn, AsyncConnection):
        with translated_errors():
            owns = await _owns_transaction(conn)
        rows, attempts = await _flip(conn, owns, procedure, batch_id, policy)
        committed = owns is True  # a driver that does not say: not known to be committed
    else:
        raise _refuse(conn)
    return flip_from_rows(procedure, batch_id, rows, attempts, committed=committed)


async def set_current_batch(
    conn: AsyncConnectable, batch_id: int, *, retry: RetryPolicy = DEFAULT_RETRY
) -> Flip:
    """Make ``batch_id`` the only current batch, atomically (CALL set_current_batch).

    The async twin of :func:`batchflag_db.set_current_batch`; logs
    ``current_batch_flag_set`` (``current_batch_flag_set_pending`` inside your transaction).

    Args:
        conn: An AsyncEngine (own transaction, retried) or AsyncConnection (yours).
        batch_id: The batch to make current.
        retry: How deadlocks and lock wait timeouts are retried when the call owns
            its transaction; ``RetryPolicy(attempts=1)`` never retries.

    Raises:
        TypeError: ``conn`` is not an AsyncEngine or AsyncConnection.
        InvalidBatchIdError: ``batch_id`` is not a positive integer.
        BatchNotFoundError: No row of batchStatus has that id; nothing changed.
        SchemaNotReadyError: The migrations have not been applied to this database.
        TransactionConflictError: Deadlock or lock wait timeout inside your
            transaction (retry the whole transaction), or retries exhausted.
        DatabaseConnectionError: The server cannot be reached or refuses the login.
        BatchFlagError: Any other server error, with ``errno`` and ``sqlstate``.
    """
    return await _call(conn, SET_PROCEDURE, validate_batch_id(batch_id), retry)


async def unset_current_batch(
    conn: AsyncConnectable, batch_id: int, *, retry: RetryPolicy = DEFAULT_RETRY
) -> Flip:
    """Clear the current flag of ``batch_id`` if it is current (CALL unset_current_batch).

    The async twin of :func:`batchflag_db.unset_current_batch`; logs
    ``current_batch_flag_unset`` (``current_batch_flag_unset_pending`` inside your transaction).

    Args:
        conn: An AsyncEngine (own transaction, retried) or AsyncConnection (yours).
        batch_id: The batch to clear.
        retry: As for :func:`set_current_batch`.

    Raises:
        TypeError: ``conn`` is not an AsyncEngine or AsyncConnection.
        InvalidBatchIdError: ``batch_id`` is not a positive integer.
        BatchNotFoundError: No row of batchStatus has that id; nothing changed.
        SchemaNotReadyError: The migrations have not been applied to this database.
        TransactionConflictError: Deadlock or lock wait timeout inside your
            transaction (retry the whole transaction), or retries exhausted.
        DatabaseConnectionError: The server cannot be reached or refuses the login.
        BatchFlagError: Any other server error, with ``errno`` and ``sqlstate``.
    """
    return await _call(conn, UNSET_PROCEDURE, validate_batch_id(batch_id), retry)


async def get_current_batch(
    conn: AsyncConnectable, *, scope: str | int | None = None
) -> int | None:
    """Return the id of the current batch (of ``scope``), or None, as the sync wrapper does.

    Raises:
        TypeError: ``conn`` is not an AsyncEngine or AsyncConnection.
        ConfigurationError: ``scope`` given without a scope column, or missing with one.
        SchemaNotReadyError: The key column is missing: the migrations are not applied.
        DatabaseConnectionError: The server cannot be reached or refuses the login.
        BatchFlagError: Any other server error.
    """
    with translated_errors():
        if isinstance(conn, AsyncEngine):
            async with conn.connect() as raw:
                session = await raw.execution_options(isolation_level="AUTOCOMMIT")
                rows = await _current(session, scope)
        elif isinstance(conn, AsyncConnection):
            rows = await _current(conn, scope)
        else:
            raise _refuse(conn)
    return current_from_rows(rows)


@asynccontextmanager
async def current_batch(
    conn: AsyncConnectable, batch_id: int, *, retry: RetryPolicy = DEFAULT_RETRY
) -> AsyncIterator[Flip]:
    """Mark ``batch_id`` current for an ``async with`` block, as :func:`batchflag_db.current_batch`.

    Set on entry (the :class:`Flip` is the ``as`` value); unset when the block
    ends normally; left set when it raises (cancellation included), so the
    dashboard shows the failed batch, and the error propagates unchanged.

    Raises:
        TypeError: ``conn`` is not an AsyncEngine or AsyncConnection.
        InvalidBatchIdError: ``batch_id`` is not a positive integer (nothing runs).
        BatchNotFoundError: No row of batchStatus has that id (the block does not run).
        TransactionConflictError: As for :func:`set_current_batch`.
        BatchFlagError: Any other server error, on entry or on the final unset.
    """
    flip = await set_current_batch(conn, batch_id, retry=retry)
    yield flip
    await unset_current_batch(conn, batch_id, retry=retry)
