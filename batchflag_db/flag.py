"""The wrapper: flip and read the current batch from Python.

Every function takes ``conn``, one of:

* a SQLAlchemy :class:`~sqlalchemy.engine.Engine`: the wrapper checks out a
  connection in autocommit mode, so the procedure runs in its own transaction
  and commits it;
* a SQLAlchemy :class:`~sqlalchemy.engine.Connection`: the call joins the
  connection's transaction; your ``commit()`` or ``rollback()`` decides;
* a PEP 249 connection (PyMySQL, mysqlclient, ...): with autocommit on, the
  procedure commits its own work; with autocommit off (the drivers' default)
  it joins the open transaction and you commit.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from batchflag_db._schema import (
    KEY_COLUMN,
    MAX_BATCH_ID,
    SET_PROCEDURE,
    TABLE,
    UNSET_PROCEDURE,
)
from batchflag_db.errors import BatchFlagError, InvalidBatchIdError, from_driver_error

__all__ = [
    "Flip",
    "get_current_batch",
    "set_current_batch",
    "unset_current_batch",
    "validate_batch_id",
]


class DBAPIConnection(Protocol):
    """The part of a PEP 249 connection the wrapper uses."""

    def cursor(self) -> Any: ...  # noqa: D102


Connectable: TypeAlias = Engine | Connection | DBAPIConnection


@dataclass(frozen=True)
class Flip:
    """What a set or unset did.

    Attributes:
        batch_id: The batch the call named.
        previous_batch_id: The batch that was current before the call, or None.
        changed: False when the call was a no-op (already current / not current).
    """

    batch_id: int
    previous_batch_id: int | None
    changed: bool


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
        value = operator.index(batch_id)  # type: ignore[call-overload]
    except TypeError:
        shown = repr(batch_id)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise InvalidBatchIdError(
            f"invalid batch id {shown}: a batch id is an integer"
        ) from None
    if not 1 <= value <= MAX_BATCH_ID:
        raise InvalidBatchIdError(
            f"invalid batch id {value}: a batch id is a positive integer "
            f"no greater than {MAX_BATCH_ID}"
        )
    return int(value)


def _translate(exc: Exception) -> BatchFlagError | None:
    return from_driver_error(exc)


def _run(conn: Connectable, sql: str, batch_id: int | None) -> list[tuple[Any, ...]]:
    """Run one statement (a CALL or a SELECT) and return its first result set's rows."""
    try:
        if isinstance(conn, Engine):
            with conn.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                return _run_sqlalchemy(c, sql, batch_id)
        if isinstance(conn, Connection):
            return _run_sqlalchemy(conn, sql, batch_id)
        return _run_dbapi(conn, sql, batch_id)
    except BatchFlagError:
        raise
    except Exception as exc:
        translated = _translate(exc)
        if translated is None:
            raise
        raise translated from exc


def _run_sqlalchemy(conn: Connection, sql: str, batch_id: int | None) -> list[tuple[Any, ...]]:
    params = {} if batch_id is None else {"batch_id": batch_id}
    stmt = sql.replace("{id}", ":batch_id")
    result = conn.execute(text(stmt), params)
    rows = [tuple(r) for r in result] if result.returns_rows else []
    result.close()
    return rows


def _run_dbapi(conn: DBAPIConnection, sql: str, batch_id: int | None) -> list[tuple[Any, ...]]:
    # The id is a validated int, so it is rendered as a literal: no paramstyle to guess.
    stmt = sql.replace("{id}", str(batch_id))
    cursor = conn.cursor()
    try:
        cursor.execute(stmt)
        rows = [tuple(r) for r in cursor.fetchall()] if cursor.description else []
        # CALL returns an extra (empty) result; drain it or the connection breaks.
        while cursor.nextset():
            if cursor.description:
                cursor.fetchall()
        return rows
    finally:
        cursor.close()


def set_current_batch(conn: Connectable, batch_id: int) -> Flip:
    """Make ``batch_id`` the only current batch, atomically (CALL set_current_batch).

    Already current: success, nothing changes (``Flip.changed`` is False).

    Raises:
        InvalidBatchIdError: ``batch_id`` is not a positive integer.
        BatchNotFoundError: No row of batchStatus has that id; nothing changed.
        SchemaNotReadyError: The migrations have not been applied to this database.
        TransactionConflictError: The server aborted the call (deadlock / lock wait timeout).
        BatchFlagError: Any other server error, with ``errno`` and ``sqlstate``.
    """
    value = validate_batch_id(batch_id)
    rows = _run(conn, f"CALL {SET_PROCEDURE}({{id}})", value)
    if not rows:
        raise BatchFlagError(f"{SET_PROCEDURE} returned no result row for batch {value}")
    _, previous, changed = rows[0]
    return Flip(value, None if previous is None else int(previous), bool(changed))


def unset_current_batch(conn: Connectable, batch_id: int) -> Flip:
    """Clear the current flag of ``batch_id`` if it is the current batch (CALL unset_current_batch).

    A batch that is not current is left alone (``Flip.changed`` is False).

    Raises:
        InvalidBatchIdError: ``batch_id`` is not a positive integer.
        BatchNotFoundError: No row of batchStatus has that id; nothing changed.
        SchemaNotReadyError: The migrations have not been applied to this database.
        TransactionConflictError: The server aborted the call (deadlock / lock wait timeout).
        BatchFlagError: Any other server error, with ``errno`` and ``sqlstate``.
    """
    value = validate_batch_id(batch_id)
    rows = _run(conn, f"CALL {UNSET_PROCEDURE}({{id}})", value)
    if not rows:
        raise BatchFlagError(f"{UNSET_PROCEDURE} returned no result row for batch {value}")
    _, changed = rows[0]
    return Flip(value, value if changed else None, bool(changed))


def get_current_batch(conn: Connectable) -> int | None:
    """Return the id of the current batch, or None when no batch is current.

    A lookup on the UNIQUE index of ``currentBatchKey`` (one index probe, never a
    scan; MariaDB before 11.8 does not use that index for ``WHERE currentBatch = 1``).

    Raises:
        SchemaNotReadyError: The key column is missing: the migrations are not applied.
        BatchFlagError: Any other server error.
    """
    rows = _run(conn, f"SELECT id FROM {TABLE} WHERE {KEY_COLUMN} = 1", None)
    return int(rows[0][0]) if rows else None
