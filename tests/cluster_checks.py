"""What the cluster tests (``test_galera.py``, ``test_grouprepl.py``) read and check on a node.

A node's state is read in as few statements as can be (a snapshot in one statement, so
one read view) through a connection the caller opened with the topology's own read
guarantee (``wsrep_sync_wait`` on Galera, ``group_replication_consistency`` on Group
Replication); the checks compare what every node shows. The retry-log capture and the
report printer are shared too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pymysql
import pytest

__all__ = [
    "Snapshot",
    "Tables",
    "assert_tables_agree",
    "inconsistency",
    "publisher",
    "quiet_retry_log",
    "read_tables",
    "snapshot",
]

_ROW_COLUMNS = (
    "id, batchDate, batchNumber, batchStatus, currentBatch, createdAt, updatedAt, currentBatchKey"
)
_HISTORY_COLUMNS = "id, batchId, previousBatchId, `action`, changedAt, account, connectionId"


@dataclass(frozen=True)
class Snapshot:
    """What one node shows in one read view.

    Attributes:
        current: Ids of rows whose flag is set, by a scan of the flag (not the key,
            so a broken key could not hide a second row).
        mine: History rows of the asking caller's batches.
        net: Per batch with a non-zero value: times it became current minus
            times it stopped being current, from the history.
        flip_count: The lock row's counter (every successful call adds one).
    """

    current: tuple[int, ...]
    mine: int
    net: dict[int, int]
    flip_count: int


def snapshot(conn: pymysql.connections.Connection[Any], mine: Sequence[int]) -> Snapshot:
    """Read a :class:`Snapshot` in a single statement, hence a single read view."""
    ids = ", ".join(str(int(i)) for i in mine) or "NULL"
    sql = f"""
        SELECT 'current', id, NULL FROM batchStatus WHERE currentBatch <> 0
        UNION ALL
        SELECT 'mine', COUNT(*), NULL FROM currentBatchHistory WHERE batchId IN ({ids})
        UNION ALL
        SELECT 'net', moves.batch, SUM(moves.d) FROM (
            SELECT batchId AS batch, 1 AS d FROM currentBatchHistory WHERE `action` = 'set'
            UNION ALL
            SELECT previousBatchId, -1 FROM currentBatchHistory WHERE previousBatchId IS NOT NULL
        ) AS moves GROUP BY moves.batch HAVING SUM(moves.d) <> 0
        UNION ALL
        SELECT 'flips', flipCount, NULL FROM currentBatchLock WHERE id = 1
    """
    with conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
    return Snapshot(
        tuple(sorted(int(a) for k, a, _ in rows if k == "current")),
        next(int(a) for k, a, _ in rows if k == "mine"),
        {int(a): int(b) for k, a, b in rows if k == "net"},
        next((int(a) for k, a, _ in rows if k == "flips"), -1),
    )


def inconsistency(snap: Snapshot) -> str | None:
    """Say what is wrong if the state is not the end of the history, else None."""
    if snap.net != dict.fromkeys(snap.current, 1):
        return f"history net {snap.net} does not match current rows {list(snap.current)}"
    return None


@dataclass(frozen=True)
class Tables:
    """Everything the end-of-test checks compare across nodes.

    Attributes:
        node: The node's index.
        rows: ``batchStatus``, every column, by id.
        history: ``currentBatchHistory``, by id.
        snapshot: The node's :class:`Snapshot` (no caller's batches).
        check: The rows of ``CHECK TABLE ... EXTENDED`` over the three tables.
        checksums: ``CHECKSUM TABLE`` of the history and lock tables, where asked for.
    """

    node: int
    rows: tuple[tuple[Any, ...], ...]
    history: tuple[tuple[Any, ...], ...]
    snapshot: Snapshot
    check: tuple[tuple[Any, ...], ...]
    checksums: tuple[tuple[Any, ...], ...] = ()


def read_tables(
    conn: pymysql.connections.Connection[Any], node: int, *, checksums: bool = False
) -> Tables:
    """Read a node's tables through ``conn`` (opened on the node's database).

    ``CHECKSUM TABLE batchStatus`` is never used: on MariaDB 10.11 its value for a table
    with a generated column changes with the server's internal state (after ``FLUSH
    TABLES``, and from node to node with identical rows), so the rows themselves are
    compared instead; with ``checksums`` the history and lock tables, which have no
    generated column, are compared by ``CHECKSUM TABLE`` too.
    """
    with conn.cursor() as cur:
        cur.execute(f"SELECT {_ROW_COLUMNS} FROM batchStatus ORDER BY id")
        rows = tuple(tuple(r) for r in cur.fetchall())
        cur.execute(f"SELECT {_HISTORY_COLUMNS} FROM currentBatchHistory ORDER BY id")
        history = tuple(tuple(r) for r in cur.fetchall())
        snap = snapshot(conn, ())
        sums: tuple[tuple[Any, ...], ...] = ()
        if checksums:
            cur.execute("CHECKSUM TABLE currentBatchHistory, currentBatchLock")
            sums = tuple((str(t).split(".", 1)[1], c) for t, c in cur.fetchall())
        cur.execute("CHECK TABLE batchStatus, currentBatchHistory, currentBatchLock EXTENDED")
        check = tuple(tuple(r) for r in cur.fetchall())
    return Tables(node, rows, history, snap, check, sums)


def assert_tables_agree(states: Sequence[Tables], what: str = "node") -> None:
    """Every node: same rows and history as the first, exactly one current row, CHECK TABLE OK."""
    first = states[0]
    for state in states:
        name = f"{what} {state.node}"
        assert len(state.snapshot.current) == 1, f"{name}: current rows {state.snapshot.current}"
        assert state.snapshot.current == first.snapshot.current, (
            f"{name} has current {state.snapshot.current}, "
            f"{what} {first.node} has {first.snapshot.current}"
        )
        assert inconsistency(state.snapshot) is None, f"{name}: {inconsistency(state.snapshot)}"
        assert state.rows == first.rows, (
            f"batchStatus differs between {what} {first.node} and {name}"
        )
        assert state.history == first.history, (
            f"currentBatchHistory differs between {what} {first.node} and {name}"
        )
        assert state.snapshot.flip_count == first.snapshot.flip_count
        assert state.checksums == first.checksums, (
            f"CHECKSUM TABLE: {what} {first.node} {first.checksums}, {name} {state.checksums}"
        )
        bad = [r for r in state.check if r[2] in ("error", "warning")]
        statuses = {r[0]: r[3] for r in state.check if r[2] == "status"}
        assert bad == [], f"{name}: CHECK TABLE reported {bad}"
        assert len(statuses) == 3, f"{name}: CHECK TABLE said {state.check}"
        assert set(statuses.values()) == {"OK"}, f"{name}: CHECK TABLE said {statuses}"


@contextlib.contextmanager
def quiet_retry_log(handler: logging.Handler) -> Iterator[None]:
    """Send logger ``batchflag_db``'s INFO records to ``handler`` only, while active.

    The logger is set to INFO and kept from propagating, so thousands of per-flip INFO
    records do not pile up in pytest's capture.
    """
    logger = logging.getLogger("batchflag_db")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def publisher(
    capsys: pytest.CaptureFixture[str], record_property: Callable[[str, object], None]
) -> Callable[[str, list[str]], None]:
    """Print report lines to the terminal even without ``-s``, and record them for JUnit XML."""

    def emit(name: str, lines: list[str]) -> None:
        text = "\n".join(lines)
        record_property(name, text)
        with capsys.disabled():
            print(f"\n{text}", flush=True)

    return emit
