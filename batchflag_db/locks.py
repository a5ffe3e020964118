"""Who holds what a flip waits for: the open transactions that hold row locks.

A flip waits when another transaction holds the lock row (``currentBatchLock``)
or a row of ``batchStatus`` it needs, typically a flip made with autocommit off
and never committed. When a flip gives up on a lock wait, or when ``batchflag
status``/``doctor`` look, this module names those transactions: connection id,
account, how long open, whether idle, and how to end them.

It reads ``information_schema.INNODB_TRX`` and ``PROCESSLIST`` (both servers;
another account's rows need the PROCESS privilege). On MySQL it narrows the list
with ``performance_schema.data_locks`` to transactions that hold locks on this
database's flag tables (the installation's table and lock table, whatever their
names); MariaDB has no such table for granted locks, so there every other
transaction of a session using the same database that holds row locks is listed,
oldest first.

The statements (:func:`holder_queries`) and the reading of their rows
(:func:`lock_report`, :func:`unreadable_report`) do no I/O, so the sync path
(:func:`find_lock_holders`, on a :class:`~batchflag_db._connection.Link`) and
:mod:`batchflag_db.aio` run the same SQL and build the same report.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchflag_db._connection import Link
from batchflag_db.errors import BatchFlagError, ConfigurationError
from batchflag_db.installation import DEFAULT, Installation
from batchflag_db.installation import read as read_installation

__all__ = [
    "STUCK_AFTER",
    "STUCK_AFTER_VARIABLE",
    "Blocker",
    "LockReport",
    "find_lock_holders",
    "holder_queries",
    "lock_report",
    "stuck_after",
    "stuck_warnings",
    "unreadable_report",
]

#: The default of :func:`stuck_after`: seconds after which status, doctor and watch call a
#: transaction holding locks stuck (a flip holds its locks for about a millisecond).
STUCK_AFTER = 10

#: The environment variable that overrides :data:`STUCK_AFTER` (whole seconds, 1 or more).
STUCK_AFTER_VARIABLE = "BATCHFLAG_STUCK_AFTER"

_HOLDERS = """
SELECT t.trx_mysql_thread_id, p.USER, p.HOST, p.DB,
       TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), p.COMMAND, p.TIME, t.trx_query,
       t.trx_rows_locked
FROM information_schema.INNODB_TRX AS t
LEFT JOIN information_schema.PROCESSLIST AS p ON p.ID = t.trx_mysql_thread_id
WHERE t.trx_mysql_thread_id <> CONNECTION_ID() AND t.trx_rows_locked > 0 {narrow}
ORDER BY t.trx_started
LIMIT 10
"""

_ON_FLAG_TABLES = (
    "AND t.trx_id IN (SELECT ENGINE_TRANSACTION_ID FROM performance_schema.data_locks "
    "WHERE OBJECT_SCHEMA = DATABASE() AND OBJECT_NAME IN ('{lock}', '{table}', '{history}') "
    "AND LOCK_TYPE = 'RECORD')"
)

# Without data_locks: the transactions of sessions using this database (or whose
# database cannot be seen), which is where a forgotten flip lives.
_IN_THIS_DATABASE = "AND (p.DB = DATABASE() OR p.DB IS NULL)"


@dataclass(frozen=True)
class Blocker:
    """An open transaction holding row locks.

    Attributes:
        connection_id: Its session's id (``KILL`` takes it).
        account: ``user@host`` of the session, or ``?`` when not visible.
        database: The session's current database, if any.
        open_seconds: How long the transaction has been open.
        idle_seconds: How long the session has been idle (``Sleep``), or None when busy.
        statement: What it is running now, if anything.
        rows_locked: Row locks it holds (InnoDB's estimate).
    """

    connection_id: int
    account: str
    database: str | None
    open_seconds: int
    idle_seconds: int | None
    statement: str | None
    rows_locked: int

    def describe(self) -> str:
        """One sentence naming the transaction and how to end it."""
        state = (
            f"idle for {self.idle_seconds} s"
            if self.idle_seconds is not None
            else f"running {self.statement!r}"
            if self.statement
            else "busy"
        )
        return (
            f"connection {self.connection_id} ({self.account}) holds {self.rows_locked} row "
            f"lock{'s' if self.rows_locked != 1 else ''} in a transaction open for "
            f"{self.open_seconds} s, {state}: end it with COMMIT or ROLLBACK in that "
            f"session, or KILL {self.connection_id}"
        )


@dataclass(frozen=True)
class LockReport:
    """What :func:`find_lock_holders` found.

    Attributes:
        holders: The transactions, oldest first (at most 10).
        exact: True when they are known to hold locks on the flag tables (MySQL);
            False when they are the transactions holding row locks in sessions using
            this database (MariaDB).
        unreadable: What could not be read and why (e.g. a missing privilege), or None.
    """

    holders: tuple[Blocker, ...]
    exact: bool
    unreadable: str | None = None

    def describe(self) -> str:
        """The sentence an error message or a report adds."""
        if self.unreadable is not None:
            return self.unreadable
        if not self.holders:
            return "no other open transaction holds row locks now"
        scope = "on the flag tables" if self.exact else "in this database"
        first = self.holders[0].describe()
        more = len(self.holders) - 1
        tail = f"; {more} more transaction{'s' if more != 1 else ''} hold locks" if more else ""
        return f"oldest transaction holding row locks {scope}: {first}{tail}"


def _blocker(row: Sequence[object]) -> Blocker:
    thread, user, host, database, open_s, command, time_s, query, locked = row
    idle = int(str(time_s)) if command == "Sleep" and time_s is not None else None
    return Blocker(
        connection_id=int(str(thread)),
        account=f"{user}@{host}" if user is not None else "?",
        database=str(database) if database is not None else None,
        open_seconds=int(str(open_s or 0)),
        idle_seconds=idle,
        statement=str(query) if query is not None else None,
        rows_locked=int(str(locked or 0)),
    )


def holder_queries(inst: Installation, *, older_than: int = 0) -> tuple[tuple[str, bool], ...]:
    """The statements that list the holders, in the order to try them, each with its ``exact``.

    The first narrows to locks on ``inst``'s table and lock table (MySQL's
    ``performance_schema.data_locks``); where it fails (MariaDB has no such table, or
    it is not readable) the second lists the transactions of sessions using this
    database. Run them on the connection the flip waited on: its own transaction is
    left out.

    Args:
        inst: The installation whose tables a flip locks.
        older_than: Only transactions open at least this many seconds.
    """
    age = f"AND TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) >= {int(older_than)}"
    # The names are validated identifiers (letters, digits, _): safe as literals.
    narrowed = _ON_FLAG_TABLES.format(
        lock=inst.lock_table, table=inst.table, history=inst.history_table
    )
    return (
        (_HOLDERS.format(narrow=f"{age} {narrowed}"), True),
        (_HOLDERS.format(narrow=f"{age} {_IN_THIS_DATABASE}"), False),
    )


def lock_report(rows: Sequence[Sequence[Any]], exact: bool) -> LockReport:
    """The report from the rows of one of :func:`holder_queries`' statements."""
    return LockReport(tuple(_blocker(r) for r in rows), exact)


def unreadable_report(error: BatchFlagError | None) -> LockReport:
    """The report when none of :func:`holder_queries`' statements could be read."""
    return LockReport(
        (),
        False,
        "could not read information_schema.INNODB_TRX and PROCESSLIST to name the "
        f"transaction holding the lock ({error}; another account's transactions "
        "need the PROCESS privilege)",
    )


def find_lock_holders(
    link: Link, inst: Installation | None = None, *, older_than: int = 0
) -> LockReport:
    """The other open transactions holding row locks, oldest first.

    Args:
        link: The connection to ask on (its own transaction is left out).
        inst: The installation whose tables to narrow to; None reads it from the
            database ``link`` is on (the default names when it cannot be read).
        older_than: Only transactions open at least this many seconds.

    Returns:
        A report; when the server's tables cannot be read, ``unreadable`` says which
        and why, and no exception is raised.
    """
    if inst is None:
        try:
            inst = read_installation(link)
        except BatchFlagError:  # the statements below say what cannot be read
            inst = DEFAULT
    error: BatchFlagError | None = None
    for sql, exact in holder_queries(inst, older_than=older_than):
        try:
            return lock_report(link.run(sql).rows, exact)
        except BatchFlagError as exc:
            error = exc
    return unreadable_report(error)


def stuck_after(environ: Mapping[str, str] | None = None) -> int:
    """Seconds after which status, doctor and watch call a transaction holding locks stuck.

    ``BATCHFLAG_STUCK_AFTER`` (:data:`STUCK_AFTER_VARIABLE`) when set, else
    :data:`STUCK_AFTER` (10 s). A test suite sets it low to see a stuck transaction
    reported without waiting 10 s; an operator may set it higher on a system whose
    own transactions are long.

    Args:
        environ: The variables to read (default: ``os.environ``).

    Raises:
        ConfigurationError: The variable is not a whole number of seconds, 1 or more.
    """
    value = (os.environ if environ is None else environ).get(STUCK_AFTER_VARIABLE)
    if value is None or not value.strip():
        return STUCK_AFTER
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise ConfigurationError(
            f"{STUCK_AFTER_VARIABLE}={value!r} is not a whole number of seconds: set it to "
            f"1 or more, or unset it for the default of {STUCK_AFTER}"
        )
    return seconds


def stuck_warnings(
    link: Link, inst: Installation | None = None, older_than: int | None = None
) -> list[str]:
    """One line per transaction holding locks for ``older_than`` s or more (status, watch).

    ``inst`` is as for :func:`find_lock_holders`; ``older_than`` defaults to
    :func:`stuck_after`. An account that may not read the server's tables gets one
    line saying so.

    Raises:
        ConfigurationError: ``BATCHFLAG_STUCK_AFTER`` is set to no whole number of seconds.
    """
    if older_than is None:
        older_than = stuck_after()
    report = find_lock_holders(link, inst, older_than=older_than)
    if report.unreadable is not None:
        return [f"note: {report.unreadable}"]
    return [
        f"WARNING: a transaction has held locks for {h.open_seconds} s, blocking flips: "
        + h.describe()
        for h in report.holders
    ]
