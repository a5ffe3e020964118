"""The exceptions batchflag-db raises, and the server error numbers they stand for."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "BatchFlagError",
    "BatchNotFoundError",
    "ConfigurationError",
    "DatabaseConnectionError",
    "InvalidBatchIdError",
    "MigrationRefusedError",
    "NotAConnectionError",
    "ReadOnlyServerError",
    "SchemaNotReadyError",
    "TransactionConflictError",
    "driver_error_details",
    "from_driver_error",
    "translated_errors",
]

# --- Error numbers: every one the project or the server uses as a code, named once.

# The procedures SIGNAL these (all with SQLSTATE 45000). The SQL files use the
# same numbers; tests/test_sql_files.py checks the two agree. They stay below
# 32768 because PyMySQL reads the errno as a signed 16-bit number, and inside
# MySQL's 10000-49999 range, which the server uses only for its own log.
ER_INVALID_BATCH_ID = 31001
ER_BATCH_NOT_FOUND = 31002
ER_LOCK_ROW_MISSING = 31003
# With a scope column: the batch moved to another scope (or was deleted) between the
# flip's first read and its locks (SQLSTATE 40001, a conflict: retry), and
# resolve_dashboard_batch(NULL) where the answer depends on the scope.
ER_SCOPE_CHANGED = 31005
ER_SCOPE_REQUIRED = 31006

# The server's (names as in MySQL's and MariaDB's error lists).
ER_DBACCESS_DENIED_ERROR = 1044
ER_ACCESS_DENIED_ERROR = 1045
ER_BAD_DB_ERROR = 1049
ER_BAD_FIELD_ERROR = 1054
ER_DUP_ENTRY = 1062
ER_NONEXISTING_GRANT = 1133  # MariaDB: GRANT to an account that does not exist
ER_TABLEACCESS_DENIED_ERROR = 1142
ER_COLUMNACCESS_DENIED_ERROR = 1143
ER_NO_SUCH_TABLE = 1146
ER_TOO_MANY_ROWS = 1172  # SELECT ... INTO found more than one row
ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213
ER_SPECIFIC_ACCESS_DENIED_ERROR = 1227
ER_SP_DOES_NOT_EXIST = 1305
ER_PROCACCESS_DENIED_ERROR = 1370
ER_CANT_CREATE_USER_WITH_GRANT = 1410  # MySQL 8: GRANT to an account that does not exist
ER_NO_SUCH_USER = 1449  # a routine's DEFINER account does not exist (e.g. after a restore)
ER_CANT_CHANGE_TX_CHARACTERISTICS = 1568  # "... while a transaction is in progress"
ER_ALTER_OPERATION_NOT_SUPPORTED = 1845
ER_ALTER_OPERATION_NOT_SUPPORTED_REASON = 1846

# The client library's (CR_*): no server answered.
PYMYSQL_CONNECTION_CLOSED = 0  # PyMySQL: InterfaceError(0, '') on a connection already lost
CR_CONNECTION_ERROR = 2002
CR_CONN_HOST_ERROR = 2003
CR_UNKNOWN_HOST = 2005
CR_SERVER_GONE_ERROR = 2006
CR_SERVER_LOST = 2013

# Group Replication's answers to a transaction that lost certification to another
# member's: 3101 (ER_TRANSACTION_ROLLBACK_DURING_COMMIT, "Plugin instructed the
# server to rollback the current transaction") at COMMIT, and 1180
# (ER_ERROR_DURING_COMMIT) carrying engine error 149 (HA_ERR_LOCK_DEADLOCK,
# "Got error 149 - 'Lock deadlock; Retry transaction' during COMMIT"). 1180 with
# another engine error is not a conflict.
ER_TRANSACTION_ROLLBACK_DURING_COMMIT = 3101
ER_ERROR_DURING_COMMIT = 1180
HA_ERR_LOCK_DEADLOCK = 149

# The server refuses writes (read_only / super_read_only): a replica, or a Group
# Replication secondary in single-primary mode.
ER_OPTION_PREVENTS_STATEMENT = 1290

# Errors meaning "could not reach or log in to the server".
CONNECTION_ERRNOS = (
    PYMYSQL_CONNECTION_CLOSED,
    ER_DBACCESS_DENIED_ERROR,
    ER_ACCESS_DENIED_ERROR,
    ER_BAD_DB_ERROR,
    CR_CONNECTION_ERROR,
    CR_CONN_HOST_ERROR,
    CR_UNKNOWN_HOST,
    CR_SERVER_GONE_ERROR,
    CR_SERVER_LOST,
)

# Server errors after which the whole transaction must be retried (1180 only with
# engine error 149, see from_driver_error).
# MariaDB 11.6+ with innodb_snapshot_isolation=ON (its default): a locking read or
# write, inside a REPEATABLE READ transaction that already has a snapshot, of a row
# changed since that snapshot ("Record has changed since last read"). A conflict:
# retry the whole transaction.
ER_CHECKREAD = 1020

CONFLICT_ERRNOS = (
    ER_CHECKREAD,
    ER_LOCK_WAIT_TIMEOUT,
    ER_LOCK_DEADLOCK,
    ER_TRANSACTION_ROLLBACK_DURING_COMMIT,
    ER_ERROR_DURING_COMMIT,
)

# Server errors meaning "this account may not do that".
ACCESS_DENIED_ERRNOS = (
    ER_DBACCESS_DENIED_ERROR,
    ER_ACCESS_DENIED_ERROR,
    ER_TABLEACCESS_DENIED_ERROR,
    ER_SPECIFIC_ACCESS_DENIED_ERROR,
)


class BatchFlagError(Exception):
    """Base class: every error batchflag-db raises is one of these.

    Attributes:
        errno: The server's error number, when the error came from the server.
        sqlstate: The server's SQLSTATE, when known.
    """

    def __init__(self, message: str, *, errno: int | None = None, sqlstate: str | None = None):
        super().__init__(message)
        self.errno = errno
        self.sqlstate = sqlstate


class InvalidBatchIdError(BatchFlagError, ValueError):
    """Raised when a batch id is not a positive integer that fits a signed BIGINT."""


class BatchNotFoundError(BatchFlagError, LookupError):
    """Raised when no row of batchStatus has the given id."""


class SchemaNotReadyError(BatchFlagError):
    """Raised when the table, key column or procedures are missing: the migrations are not applied."""


class TransactionConflictError(BatchFlagError):
    """Raised when the server aborted a flip for a deadlock (1213), lock wait timeout (1205) or lost certification (3101, 1180).

    After 1213 the server has rolled back the caller's whole transaction: retry it from the start.
    3101 and 1180 (engine error 149) are Group Replication's: another member's transaction
    won certification, and the whole transaction was rolled back at COMMIT.

    After 1205 the message names the open transactions holding row locks, when the
    account may read them (see :mod:`batchflag_db.locks`).

    Attributes:
        attempts: How many times the wrapper called the procedure before giving up
            (1 when the conflict came inside the caller's transaction, where it never retries).
        holders: Connection ids of the transactions found holding locks after a lock
            wait timeout, oldest first (empty when none was found or they could not be read).
    """

    def __init__(
        self,
        message: str,
        *,
        errno: int | None = None,
        sqlstate: str | None = None,
        attempts: int = 1,
        holders: tuple[int, ...] = (),
    ):
        super().__init__(message, errno=errno, sqlstate=sqlstate)
        self.attempts = attempts
        self.holders = holders


class ReadOnlyServerError(BatchFlagError):
    """Raised when the server is read-only (1290), e.g. a Group Replication secondary: send flips to the primary."""


class DatabaseConnectionError(BatchFlagError):
    """Raised when the server cannot be reached, refuses the login, or lacks the database."""


class ConfigurationError(BatchFlagError):
    """Raised when no database URL (or environment) is configured, or it is malformed."""


class MigrationRefusedError(BatchFlagError, RuntimeError):
    """Raised when a migration refuses the database as it is (the message says what to change); nothing changed.

    Also a :class:`RuntimeError`, which is what migrations raised before it had a name.
    """


class NotAConnectionError(BatchFlagError, TypeError):
    """Raised when something other than a connection (a URL string, say) is passed as ``conn``.

    Also a :class:`TypeError`, which is what a wrong argument type is in Python.
    """


_SCHEMA_HINT = "schema not migrated: run `batchflag upgrade` (or `alembic upgrade head`)"

_BY_ERRNO: dict[int, type[BatchFlagError]] = {
    ER_INVALID_BATCH_ID: InvalidBatchIdError,
    ER_BATCH_NOT_FOUND: BatchNotFoundError,
    ER_LOCK_ROW_MISSING: SchemaNotReadyError,
    ER_SCOPE_CHANGED: TransactionConflictError,
    ER_SCOPE_REQUIRED: ConfigurationError,
    ER_NO_SUCH_TABLE: SchemaNotReadyError,
    ER_BAD_FIELD_ERROR: SchemaNotReadyError,
    ER_SP_DOES_NOT_EXIST: SchemaNotReadyError,
    ER_NO_SUCH_USER: SchemaNotReadyError,
    **dict.fromkeys(CONFLICT_ERRNOS, TransactionConflictError),
    **dict.fromkeys(CONNECTION_ERRNOS, DatabaseConnectionError),
    ER_OPTION_PREVENTS_STATEMENT: ReadOnlyServerError,
}


def driver_error_details(exc: BaseException) -> tuple[int | None, str | None, str]:
    """Return (errno, sqlstate, message) of a DB-API error from any MySQL driver.

    Works for PyMySQL and mysqlclient (``args == (errno, message)``) and
    mysql-connector-python (``.errno``, ``.sqlstate``, ``.msg``); unwraps
    SQLAlchemy's ``DBAPIError`` through its ``orig`` attribute.
    """
    orig: Any = getattr(exc, "orig", None) or exc
    errno = getattr(orig, "errno", None)
    message = getattr(orig, "msg", None)
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    if errno is None and len(args) >= 1 and isinstance(args[0], int):
        errno = args[0]
    if message is None:
        message = str(args[1]) if len(args) >= 2 else str(orig)
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(errno, int) and errno < 0:  # PyMySQL: errno read as a signed 16-bit int
        errno += 65536
    return (errno if isinstance(errno, int) else None), sqlstate, str(message)


def from_driver_error(exc: BaseException) -> BatchFlagError | None:
    """Translate a driver error into a :class:`BatchFlagError`, or None if it has no errno.

    Errors the table above does not name become a plain :class:`BatchFlagError`
    carrying the server's errno and message. The caller raises the result
    ``from exc`` so the driver error stays as ``__cause__``.
    """
    errno, sqlstate, message = driver_error_details(exc)
    if errno is None:
        return None
    cls = _BY_ERRNO.get(errno, BatchFlagError)
    if errno == ER_ERROR_DURING_COMMIT and f"error {HA_ERR_LOCK_DEADLOCK} " not in message:
        cls = BatchFlagError
    if errno == ER_NO_SUCH_USER:
        message = (
            f"the procedures' definer account does not exist on this server ({message}): "
            "create that account (it may stay locked), or re-create the procedures as an "
            "existing account with `batchflag downgrade 0002 && batchflag upgrade`"
        )
    elif cls is ReadOnlyServerError:
        message = (
            f"this server is read-only ({message}): send flips to the primary "
            "(in Group Replication: the member whose MEMBER_ROLE is PRIMARY in "
            "performance_schema.replication_group_members)"
        )
    elif errno == PYMYSQL_CONNECTION_CLOSED and not message:
        message = "the connection was lost earlier and is closed: open a new one"
    elif cls is SchemaNotReadyError and errno != ER_LOCK_ROW_MISSING:
        message = f"{_SCHEMA_HINT} ({message})"
    return cls(message, errno=errno, sqlstate=sqlstate)


@contextmanager
def translated_errors(only: type[BatchFlagError] = BatchFlagError) -> Iterator[None]:
    """Re-raise driver errors as :class:`BatchFlagError`, the driver error as ``__cause__``.

    The one place a driver's exception (PyMySQL, mysqlclient, mysql-connector-python,
    or SQLAlchemy's ``DBAPIError`` around one) becomes ours. Errors without a server
    errno (programming errors, SQLAlchemy state errors) and a :class:`BatchFlagError`
    pass through unchanged.

    Args:
        only: Translate only errors that become this class (e.g.
            :class:`DatabaseConnectionError`); the others pass through unchanged.

    Raises:
        BatchFlagError: For every driver error that carries an errno (of class ``only``).
    """
    try:
        yield
    except BatchFlagError:
        raise
    except Exception as exc:
        translated = from_driver_error(exc)
        if translated is None or not isinstance(translated, only):
            raise
        raise translated from exc
