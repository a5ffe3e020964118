"""What the dashboard needs: which batch to show, the flip history, and the watch screen.

* :func:`resolve_dashboard_batch` calls the stored procedure of the same name: the
  batch a dashboard shows (the requested one, else the current one, else the
  newest in progress, else the newest incomplete, else the newest) and why.
* :func:`history` reads ``currentBatchHistory``, newest first: one row per
  ``set_current_batch`` / ``unset_current_batch`` call that changed something,
  written by the procedures in the same transaction as the flip. Writes to
  ``currentBatch`` that bypass the procedures (a direct ``UPDATE``) are **not**
  recorded; :attr:`WatchSnapshot.unrecorded_change` notices when the flag no
  longer matches the last recorded flip. :func:`prune_history` trims old rows.
* :func:`take_snapshot` and :func:`render_watch` make one screen of
  ``batchflag watch``.

``conn`` is what every public function accepts (:mod:`batchflag_db._connection`):
a SQLAlchemy Engine (autocommit), a SQLAlchemy Connection (joins its transaction)
or a PEP 249 connection (runs in whatever mode it is in).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from batchflag_db._connection import Connectable, Link, connect
from batchflag_db._routines import RESOLVE_IN_SCOPE_PROCEDURE
from batchflag_db._schema import (
    HISTORY_TABLE,
    RESOLUTION_REASONS,
    RESOLVE_PROCEDURE,
)
from batchflag_db.errors import (
    ER_SP_DOES_NOT_EXIST,
    BatchFlagError,
    ConfigurationError,
    SchemaNotReadyError,
)
from batchflag_db.flag import validate_batch_id
from batchflag_db.installation import Installation, current_query
from batchflag_db.installation import read as read_installation
from batchflag_db.locks import stuck_warnings

__all__ = [
    "RESOLUTION_REASONS",
    "BatchRow",
    "HistoryEntry",
    "Resolution",
    "WatchSnapshot",
    "history",
    "prune_history",
    "render_watch",
    "resolve_dashboard_batch",
    "take_snapshot",
]

_HISTORY_COLUMNS = (
    "`id`, `batchId`, `previousBatchId`, `action`, `changedAt`, `account`, `connectionId`"
)


@dataclass(frozen=True)
class Resolution:
    """The batch a dashboard shows, and why.

    Attributes:
        batch_id: The batch's id.
        reason: One of :data:`RESOLUTION_REASONS`: ``requested``, ``current_flag``,
            ``in_progress``, ``incomplete`` or ``most_recent``.
    """

    batch_id: int
    reason: str


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded flip: a row of ``currentBatchHistory``.

    Attributes:
        id: The row's id; on one server, id order is the order the flips took effect.
        batch_id: The batch the call named.
        previous_batch_id: The batch current before the flip (None: none was).
            For ``unset`` it is the batch that was cleared, the same as ``batch_id``.
        action: ``"set"`` or ``"unset"``.
        changed_at: When the flip was written, timezone-aware UTC, microseconds.
        account: ``USER()`` of the calling session (``user@host`` as it logged in). For
            a flag the installation's data check cleared, followed by the reason and
            the batch kept: ``root@localhost (batchflag-db data check: several batches
            were current; kept batch 7)``.
        connection_id: ``CONNECTION_ID()`` of the calling session.
    """

    id: int
    batch_id: int
    previous_batch_id: int | None
    action: str
    changed_at: dt.datetime
    account: str
    connection_id: int

    @property
    def current_after(self) -> int | None:
        """The current batch right after this flip (None after an ``unset``)."""
        return self.batch_id if self.action == "set" else None

    def to_json(self) -> dict[str, Any]:
        """Return the entry as JSON-ready values (the time in ISO 8601 with ``+00:00``)."""
        return {
            "id": self.id,
            "batch_id": self.batch_id,
            "previous_batch_id": self.previous_batch_id,
            "action": self.action,
            "changed_at": self.changed_at.isoformat(),
            "account": self.account,
            "connection_id": self.connection_id,
        }


@dataclass(frozen=True)
class BatchRow:
    """The columns of a ``batchStatus`` row that the watch screen shows.

    ``batch_date`` and ``batch_number`` are None when an adopted table lacks them.
    """

    id: int
    status: str | None
    batch_date: dt.date | None = None
    batch_number: int | None = None


@dataclass(frozen=True)
class WatchSnapshot:
    """Everything one screen of ``batchflag watch`` shows, read in one transaction.

    Attributes:
        taken_at: The server's UTC time when the snapshot was read.
        database: The database's name.
        current: The batch flagged current, or None.
        resolution: What :func:`resolve_dashboard_batch` returns, or None (empty table).
        shown: The row of the resolved batch, or None.
        flips: The last recorded flips, newest first.
        warnings: Transactions holding row locks long enough to block flips.
    """

    taken_at: dt.datetime
    database: str
    current: BatchRow | None
    resolution: Resolution | None
    shown: BatchRow | None
    flips: list[HistoryEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def unrecorded_change(self) -> bool:
        """True when the flag differs from what the last recorded flip left.

        Then ``currentBatch`` was written without the procedures (a direct
        UPDATE, or a flip made while the schema was at revision 0003), which the
        history does not record. False when there is no history to compare with.
        """
        if not self.flips:
            return False
        current_id = None if self.current is None else self.current.id
        return self.flips[0].current_after != current_id


# --- resolution -----------------------------------------------------------------


def resolve_dashboard_batch(
    conn: Connectable, requested_id: int | None = None, *, scope: str | int | None = None
) -> Resolution | None:
    """Return the batch a dashboard shows and why (CALL resolve_dashboard_batch).

    In priority order: ``requested_id`` (``requested``); the current batch
    (``current_flag``); the newest batch with status ``InProgress``
    (``in_progress``); the newest batch whose status is not ``Completed``
    (``incomplete``); the newest batch (``most_recent``). Newest is the highest id.

    Args:
        conn: An Engine, a Connection or a PEP 249 connection.
        requested_id: A batch the user asked for (``?batch_id=``), or None.
        scope: With a scope column (one current batch per pipeline, say), the scope
            to resolve in (CALL resolve_dashboard_batch_in_scope): every step looks
            only at that scope's rows, and a requested batch must be in it.

    Returns:
        The resolution, or None when ``batchStatus`` has no rows.

    Raises:
        InvalidBatchIdError: ``requested_id`` is not a positive integer.
        BatchNotFoundError: No row of batchStatus has ``requested_id`` (in ``scope``).
        ConfigurationError: ``scope`` given without a scope column, or missing with one.
        SchemaNotReadyError: The procedure is missing: migrations not applied.
        BatchFlagError: Any other server error.
    """
    requested = None if requested_id is None else validate_batch_id(requested_id)
    with connect(conn) as link:
        return _resolve(link, requested, scope)


def _resolve(
    link: Link, requested_id: int | None, scope: str | int | None = None
) -> Resolution | None:
    if scope is None:
        rows = link.call(RESOLVE_PROCEDURE, requested_id)
    else:
        try:
            rows = link.call(RESOLVE_IN_SCOPE_PROCEDURE, requested_id, str(scope))
        except SchemaNotReadyError as exc:
            if exc.errno != ER_SP_DOES_NOT_EXIST:
                raise
            raise ConfigurationError(
                f"scope={scope!r}: this database's installation has no scope column "
                f"({RESOLVE_IN_SCOPE_PROCEDURE} does not exist), so one batch is current in all"
            ) from exc
    if not rows:
        return None
    batch_id, reason = rows[0][:2]
    reason = reason.decode() if isinstance(reason, bytes) else str(reason)
    return Resolution(int(batch_id), reason)


# --- history --------------------------------------------------------------------


def _as_utc(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise BatchFlagError(f"unexpected changedAt value {value!r} in {HISTORY_TABLE}")
    return value.replace(tzinfo=dt.timezone.utc)


def _entry(row: Sequence[Any]) -> HistoryEntry:
    row_id, batch_id, previous, action, changed_at, account, connection_id = row
    return HistoryEntry(
        id=int(row_id),
        batch_id=int(batch_id),
        previous_batch_id=None if previous is None else int(previous),
        action=action.decode() if isinstance(action, bytes) else str(action),
        changed_at=_as_utc(changed_at),
        account=account.decode() if isinstance(account, bytes) else str(account),
        connection_id=int(connection_id),
    )


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return value


def history(conn: Connectable, limit: int = 20) -> list[HistoryEntry]:
    """Return the last ``limit`` recorded flips, newest first.

    Only flips made through ``set_current_batch`` / ``unset_current_batch`` at
    revision 0004 or later are recorded, and only those that changed something.

    Args:
        conn: An Engine, a Connection or a PEP 249 connection.
        limit: How many rows at most (a positive integer).

    Raises:
        ValueError: ``limit`` is not a positive integer.
        SchemaNotReadyError: The history table is missing: migrations not applied.
        BatchFlagError: Any other server error.
    """
    count = _positive_int(limit, "limit")
    with connect(conn) as link:
        return _history(link, count)


def _history(
    link: Link, count: int, inst: Installation | None = None, scope: str | int | None = None
) -> list[HistoryEntry]:
    if inst is None or inst.scope_column is None or scope is None:
        result = link.run(
            f"SELECT {_HISTORY_COLUMNS} FROM `{HISTORY_TABLE}` ORDER BY `id` DESC LIMIT {count}"
        )
    else:  # the flips of batches now in that scope
        columns = ", ".join(f"h.{c.strip()}" for c in _HISTORY_COLUMNS.split(","))
        result = link.query(
            f"SELECT {columns} FROM `{HISTORY_TABLE}` AS h JOIN `{inst.table}` AS b "
            f"ON b.`{inst.id_column}` = h.`batchId` WHERE b.`{inst.scope_column}` = :scope "
            f"ORDER BY h.`id` DESC LIMIT {count}",
            scope=scope,
        )
    return [_entry(row) for row in result.rows]


def _utc_literal(before: dt.date | dt.datetime) -> str:
    """Render a cutoff as a UTC DATETIME(6) literal: a date means its midnight UTC."""
    if isinstance(before, dt.datetime):
        if before.tzinfo is not None:
            before = before.astimezone(dt.timezone.utc).replace(tzinfo=None)
        moment = before
    elif isinstance(before, dt.date):
        moment = dt.datetime(before.year, before.month, before.day)  # UTC by contract
    else:
        raise ValueError(f"before must be a date or datetime, not {before!r}")
    return f"'{moment:%Y-%m-%d %H:%M:%S.%f}'"


def prune_history(conn: Connectable, before: dt.date | dt.datetime) -> int:
    """Delete the recorded flips written before ``before``; return how many were deleted.

    The history stays replayable after pruning: the oldest remaining row's
    ``previous_batch_id`` says what was current before it.

    Args:
        conn: An Engine (commits at once), a Connection or a PEP 249 connection
            (the caller commits, unless it runs in autocommit mode).
        before: The cutoff, in UTC: a date means midnight UTC at its start; a naive
            datetime is taken as UTC; an aware one is converted.

    Raises:
        ValueError: ``before`` is not a date or datetime.
        SchemaNotReadyError: The history table is missing: migrations not applied.
        BatchFlagError: Any other server error.
    """
    cutoff = _utc_literal(before)
    with connect(conn) as link:
        result = link.run(f"DELETE FROM `{HISTORY_TABLE}` WHERE `changedAt` < {cutoff}")
    return max(result.rowcount, 0)


# --- the watch screen -----------------------------------------------------------


def _batch_row(inst: Installation, columns: Sequence[str], row: Sequence[Any]) -> BatchRow:
    values = dict(zip(columns, row, strict=True))
    status = values.get(inst.status_column)
    number = values.get("batchNumber")
    batch_date = values.get("batchDate")
    return BatchRow(
        id=int(values[inst.id_column]),
        status=None if status is None else str(status),
        batch_date=batch_date if isinstance(batch_date, dt.date) else None,
        batch_number=int(number) if isinstance(number, int) else None,
    )


def _read_batch(
    link: Link, inst: Installation, where: str, scope: str | int | None = None
) -> BatchRow | None:
    # SELECT *: an adopted table may lack batchDate or batchNumber.
    sql = f"SELECT * FROM `{inst.table}` WHERE {where}"
    result = link.query(sql, scope=scope) if scope is not None else link.run(sql)
    return _batch_row(inst, result.columns, result.rows[0]) if result.rows else None


def _snapshot_in(link: Link, flips: int, scope: str | int | None = None) -> WatchSnapshot:
    now, database = link.run("SELECT UTC_TIMESTAMP(6), DATABASE()").rows[0]
    inst = read_installation(link)
    if inst.scope_column is not None and scope is None:
        raise ConfigurationError(
            f"one batch is current per {inst.scope_column} in {inst.table}: pass the scope "
            "to watch (--scope)"
        )
    where = f"`{inst.key_column}` = 1"
    if scope is not None:
        current_query(inst, scope)  # refuses a scope where there is no scope column
        where = f"`{inst.scope_column}` = :scope AND {where}"
    current = _read_batch(link, inst, where, scope)
    resolution = _resolve(link, None, scope)
    if resolution is None:
        shown = None
    elif current is not None and resolution.batch_id == current.id:
        shown = current
    else:
        shown = _read_batch(link, inst, f"`{inst.id_column}` = {resolution.batch_id}")
    return WatchSnapshot(
        taken_at=_as_utc(now),
        database=str(database),
        current=current,
        resolution=resolution,
        shown=shown,
        flips=_history(link, flips, inst, scope),
        warnings=stuck_warnings(link, inst),
    )


def take_snapshot(
    conn: Connectable, flips: int = 5, *, scope: str | int | None = None
) -> WatchSnapshot:
    """Read what ``batchflag watch`` shows, all from one consistent snapshot.

    With an Engine, the reads run in one REPEATABLE READ transaction that is
    rolled back afterwards, so the current batch, the resolution and the history
    always agree with one another.

    Args:
        conn: An Engine, a Connection or a PEP 249 connection.
        flips: How many recorded flips to include.
        scope: With a scope column, the scope to show (required there): its current
            batch, its resolution and the flips of its batches.

    Raises:
        SchemaNotReadyError: Migrations not applied (revision 0004 or later needed).
        DatabaseConnectionError: The server cannot be reached.
        ConfigurationError: ``BATCHFLAG_STUCK_AFTER`` is not a whole number of seconds.
        BatchFlagError: Any other server error.
    """
    count = _positive_int(flips, "limit")
    with connect(conn, isolation_level="REPEATABLE READ") as link:
        return _snapshot_in(link, count, scope)


def _describe(row: BatchRow) -> str:
    parts = [f"batch {row.id}", f"status {row.status if row.status is not None else '-'}"]
    if row.batch_date is not None:
        parts.append(f"date {row.batch_date.isoformat()}")
    if row.batch_number is not None:
        parts.append(f"number {row.batch_number}")
    return "  ".join(parts)


def _flip_line(entry: HistoryEntry) -> str:
    when = entry.changed_at.strftime("%Y-%m-%d %H:%M:%S.%f")
    if entry.action == "set":
        was = "none" if entry.previous_batch_id is None else str(entry.previous_batch_id)
        what = f"set    {entry.batch_id:<8} (was {was})"
    else:
        what = f"unset  {entry.batch_id:<8}"
    return f"  {when}  {what:<28} {entry.account}  conn {entry.connection_id}"


def render_watch(
    snapshot: WatchSnapshot | None,
    *,
    interval: float,
    error: str | None = None,
    width: int = 100,
) -> str:
    """Return one screen of ``batchflag watch`` as text (no terminal control codes).

    Args:
        snapshot: The last snapshot read, or None if none could be read yet.
        interval: Seconds between refreshes, shown in the header.
        error: The error of the last refresh, if it failed; the older snapshot
            (if any) is still shown below it.
        width: Lines are cut to this many characters so the screen never wraps.
    """
    lines: list[str] = []
    if snapshot is None:
        lines.append(f"batchflag watch  (every {interval:g}s, Ctrl-C to stop)")
    else:
        lines.append(
            f"batchflag watch  {snapshot.database}  "
            f"{snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC  (every {interval:g}s, Ctrl-C to stop)"
        )
    lines.append("")
    if error is not None:
        lines.append(f"ERROR: {error}")
        lines.append("(retrying; the screen below may be out of date)" if snapshot else "")
    if snapshot is not None:
        current = _describe(snapshot.current) if snapshot.current else "none"
        lines.append(f"Current batch:    {current}")
        if snapshot.resolution is None:
            lines.append("Dashboard shows:  nothing (the table is empty)")
        elif snapshot.shown is not None:
            lines.append(
                f"Dashboard shows:  {_describe(snapshot.shown)}  ({snapshot.resolution.reason})"
            )
        else:
            lines.append(
                f"Dashboard shows:  batch {snapshot.resolution.batch_id}  "
                f"({snapshot.resolution.reason})"
            )
        lines += snapshot.warnings
        if snapshot.unrecorded_change:
            lines.append(
                "WARNING: the flag differs from the last recorded flip: it was changed "
                "without the procedures (not in the history)"
            )
        lines.append("")
        if snapshot.flips:
            lines.append("Last flips (newest first, UTC):")
            lines.extend(_flip_line(entry) for entry in snapshot.flips)
        else:
            lines.append("Last flips: none recorded")
    return "\n".join(line[:width] for line in lines) + "\n"
