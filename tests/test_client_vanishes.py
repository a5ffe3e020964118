"""A client that vanishes mid-call: killed, its query or connection killed, or timed out.

Each test first makes the flip wait on a lock another session holds, at one of
three points of the procedure:

* ``lock-row``: before it has done anything (the serialization row is held);
* ``old-holder``: it holds the serialization row and waits to lock the current
  batch's row;
* ``mid-flip``: it has already cleared the old current batch and set the new one,
  and waits to write its history row (another session's next-key locks reach the
  end of ``currentBatchHistory``).

Then the client disappears in one of the ways above. The promise: never a
partial flip (the old batch stays current, or the new one is; never none and
never two), and never a lock left behind (the next caller succeeds at once,
far below ``innodb_lock_wait_timeout``).

Both transaction modes are covered: autocommit on (the procedure's own
transaction) and autocommit off (the caller's transaction, which a careless
client even COMMITs after the error).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sqlalchemy.engine import URL

from batchflag_db import BatchFlagError, DatabaseConnectionError, RetryPolicy, set_current_batch
from tests.conftest import check_table, connect, current_rows

pytestmark = pytest.mark.crash

# Far below the server default (50 s): a caller slower than this met a leftover lock.
PROMPT_SECONDS = 5.0
LOCK_WAIT_TIMEOUT = 50

BLOCK_POINTS = ["lock-row", "old-holder", "mid-flip"]
MODES = {"own-transaction": True, "callers-transaction": False}


@dataclass
class Scene:
    """Batches a (current) and b (the flip's target, b > a) and the holder of the blocking lock."""

    a: int
    b: int
    c: int
    observer: pymysql.Connection
    holder: pymysql.Connection
    url: URL


def _q(conn: pymysql.Connection, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def _trx(observer: pymysql.Connection, thread_id: int) -> list[tuple[Any, ...]]:
    """The InnoDB transaction of session ``thread_id`` (a snapshot at most 0.1 s old)."""
    return _q(
        observer,
        "SELECT trx_state, trx_rows_modified FROM information_schema.INNODB_TRX "
        "WHERE trx_mysql_thread_id = %s",
        (thread_id,),
    )


def wait_until_blocked(observer: pymysql.Connection, thread_id: int, timeout: float = 15) -> int:
    """Wait until ``thread_id``'s transaction waits for a lock; return its rows modified."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _trx(observer, thread_id)
        if rows and rows[0][0] == "LOCK WAIT":
            return int(rows[0][1])
        # InnoDB refreshes INNODB_TRX only when it was not read for 0.1 s: poll slower.
        time.sleep(0.25)
    pytest.fail(
        f"connection {thread_id} never waited for the lock: {_trx(observer, thread_id)}; "
        + str(_q(observer, "SELECT ID, COMMAND, STATE, INFO FROM information_schema.PROCESSLIST"))
    )


def wait_until_gone(observer: pymysql.Connection, thread_id: int, timeout: float = 15) -> float:
    """Wait until the server has ended session ``thread_id``; return how long it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not _q(
            observer, "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = %s", (thread_id,)
        ):
            return time.monotonic() - start
        time.sleep(0.05)
    pytest.fail(f"the server kept session {thread_id} for {timeout}s after its client vanished")


@pytest.fixture
def scene(
    migrated_url: URL,
    add_batches: Callable[[int], list[int]],
    connect_db: Callable[..., pymysql.Connection],
) -> Iterator[Callable[[str], Scene]]:
    """Factory: batch a current, and a holder session blocking a flip to b at ``point``."""
    holders: list[pymysql.Connection] = []

    def make(point: str) -> Scene:
        a, b, c = add_batches(3)
        observer = connect_db(autocommit=True)
        set_current_batch(observer, a)
        holder = connect_db(autocommit=False)
        holders.append(holder)
        _q(holder, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        _q(holder, "BEGIN")
        if point == "lock-row":
            _q(holder, "SELECT id FROM currentBatchLock WHERE id = 1 FOR UPDATE")
        elif point == "old-holder":
            _q(holder, "SELECT id FROM batchStatus WHERE id = %s FOR UPDATE", (a,))
        else:
            # mid-flip: both rows are written and the flip's history row waits, since
            # the holder's next-key locks reach the end of currentBatchHistory.
            _q(holder, "SELECT id FROM currentBatchHistory WHERE id >= 0 FOR UPDATE")
        return Scene(a, b, c, observer, holder, migrated_url)

    yield make
    for holder in holders:
        with contextlib.suppress(pymysql.err.Error):
            holder.rollback()


def assert_blocked_at(point: str, rows_modified: int) -> None:
    """The victim's transaction had done what the blocking point says, no more, no less."""
    if point == "mid-flip":
        assert rows_modified >= 3, (
            f"not mid-flip (lock row, old, new): {rows_modified} rows modified"
        )
    elif point == "lock-row":
        assert rows_modified == 0, rows_modified
    else:
        assert rows_modified == 1, rows_modified


def assert_next_caller_is_prompt(s: Scene) -> float:
    """A fresh caller flips to c at once; return how long it took."""
    conn = connect(s.url, autocommit=True)
    _q(conn, f"SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_TIMEOUT}")
    start = time.monotonic()
    flip = set_current_batch(conn, s.c)
    elapsed = time.monotonic() - start
    conn.close()
    assert flip.changed is True
    assert elapsed < PROMPT_SECONDS, f"next caller waited {elapsed:.1f}s: a lock was left behind"
    assert current_rows(s.observer) == [s.c]
    assert check_table(s.observer)[-1][-1] == "OK"
    return elapsed


VICTIM = r"""
import sys, time, pymysql
from batchflag_db import set_current_batch
host, port, user, db, autocommit, batch, after = sys.argv[1:8]
conn = pymysql.connect(host=host, port=int(port), user=user, password=sys.argv[8], database=db,
                       autocommit=autocommit == "1")
with conn.cursor() as cur:
    cur.execute("SELECT CONNECTION_ID()")
    print(cur.fetchone()[0], flush=True)
set_current_batch(conn, int(batch))
print("called", flush=True)
if after == "sleep":
    time.sleep(3600)
"""


def sigkill(proc: subprocess.Popen[str]) -> None:
    """Kill the client process as a crash would: no goodbye to the server."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture
def start_victim(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[str], int]]]:
    """Factory: a client process that flips ``batch``; returns it and its connection id.

    Every process it started is killed and reaped afterwards, even when a test fails.
    """
    started: list[subprocess.Popen[str]] = []

    def start(
        s: Scene, autocommit: bool, batch: int, after: str
    ) -> tuple[subprocess.Popen[str], int]:
        url = s.url
        errors = (tmp_path / f"victim-{len(started)}.err").open("w")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                VICTIM,
                url.host or "127.0.0.1",
                str(url.port or 3306),
                url.username or "root",
                url.database or "",
                "1" if autocommit else "0",
                str(batch),
                after,
                url.password or "",
            ],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        errors.close()
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"victim did not start: {line!r}"
        return proc, int(line)

    yield start
    for proc in started:
        if proc.poll() is None:
            sigkill(proc)
        elif proc.stdout is not None:
            proc.stdout.close()
    for path in sorted(tmp_path.glob("victim-*.err")):
        text = path.read_text()
        if text.strip():
            print(f"\n{path.name}:\n{text[-3000:]}")


class TestClientProcessKilled:
    @pytest.mark.parametrize("mode", list(MODES))
    @pytest.mark.parametrize("point", BLOCK_POINTS)
    def test_sigkill_while_waiting(
        self,
        scene: Callable[[str], Scene],
        start_victim: Callable[..., tuple[subprocess.Popen[str], int]],
        point: str,
        mode: str,
    ) -> None:
        """A client SIGKILLed while its CALL waits: a, or (own transaction only) b; no lock left."""
        s = scene(point)
        proc, thread_id = start_victim(s, MODES[mode], s.b, "exit")
        assert_blocked_at(point, wait_until_blocked(s.observer, thread_id))
        sigkill(proc)
        assert current_rows(s.observer) == [s.a]  # the holder still blocks it
        s.holder.rollback()
        gone = wait_until_gone(s.observer, thread_id)
        outcome = current_rows(s.observer)
        allowed = [[s.a], [s.b]] if MODES[mode] else [[s.a]]
        assert outcome in allowed, f"partial or phantom flip: {outcome}"
        took = assert_next_caller_is_prompt(s)
        print(
            f"\n{point}/{mode}: outcome {'old' if outcome == [s.a] else 'new'}, "
            f"session ended {gone:.2f}s after release, next caller {took * 1000:.0f} ms"
        )

    def test_sigkill_after_call_before_commit(
        self,
        scene: Callable[[str], Scene],
        start_victim: Callable[..., tuple[subprocess.Popen[str], int]],
    ) -> None:
        """A client killed between its CALL and its COMMIT: nothing committed, lock released."""
        s = scene("lock-row")
        s.holder.rollback()  # nothing blocks: the CALL completes inside the client's transaction
        proc, thread_id = start_victim(s, autocommit=False, batch=s.b, after="sleep")
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "called"
        time.sleep(0.25)  # let INNODB_TRX refresh
        assert _trx(s.observer, thread_id), "the victim's transaction should be open"
        sigkill(proc)
        wait_until_gone(s.observer, thread_id)
        assert current_rows(s.observer) == [s.a]
        assert_next_caller_is_prompt(s)


#: The server's own lock wait, no deadline: the victim waits until the test acts.
PATIENT = RetryPolicy(lock_wait_timeout=None, deadline=None)


def _call_in_thread(
    conn: pymysql.Connection, batch: int
) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            # Wait as long as the server lets it (50 s): the test ends the wait itself.
            result["flip"] = set_current_batch(conn, batch, retry=PATIENT)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


class TestKilledFromAnotherSession:
    @pytest.mark.parametrize("mode", list(MODES))
    @pytest.mark.parametrize("point", BLOCK_POINTS)
    def test_kill_query(self, scene: Callable[[str], Scene], point: str, mode: str) -> None:
        """KILL QUERY mid-call: the caller gets an error, the old batch stays, no lock is left.

        In the caller's transaction, even a careless COMMIT after the error commits
        no half of the flip.
        """
        s = scene(point)
        victim = connect(s.url, autocommit=MODES[mode])
        thread_id = victim.thread_id()
        thread, result = _call_in_thread(victim, s.b)
        assert_blocked_at(point, wait_until_blocked(s.observer, thread_id))
        _q(s.observer, f"KILL QUERY {thread_id}")
        thread.join(10)
        assert not thread.is_alive()
        error = result.get("error")
        assert isinstance(error, BatchFlagError), result
        assert error.errno == 1317  # ER_QUERY_INTERRUPTED
        if not MODES[mode]:
            victim.commit()  # careless: commits whatever is left of its transaction
        assert current_rows(victim) == [s.a]
        assert current_rows(s.observer) == [s.a]
        s.holder.rollback()
        assert_next_caller_is_prompt(s)
        # the killed session still works
        assert _q(victim, "SELECT 1") == [(1,)]
        victim.close()

    @pytest.mark.parametrize("mode", list(MODES))
    @pytest.mark.parametrize("point", BLOCK_POINTS)
    def test_kill_connection(self, scene: Callable[[str], Scene], point: str, mode: str) -> None:
        """KILL CONNECTION mid-call: the caller sees a lost connection; the old batch stays."""
        s = scene(point)
        victim = connect(s.url, autocommit=MODES[mode])
        thread_id = victim.thread_id()
        thread, result = _call_in_thread(victim, s.b)
        assert_blocked_at(point, wait_until_blocked(s.observer, thread_id))
        _q(s.observer, f"KILL CONNECTION {thread_id}")
        thread.join(10)
        assert not thread.is_alive()
        error = result.get("error")
        assert isinstance(error, DatabaseConnectionError), result
        wait_until_gone(s.observer, thread_id)
        assert current_rows(s.observer) == [s.a]
        s.holder.rollback()
        assert_next_caller_is_prompt(s)


class TestNetworkTimeout:
    @pytest.mark.parametrize("mode", list(MODES))
    @pytest.mark.parametrize("point", BLOCK_POINTS)
    def test_read_timeout(self, scene: Callable[[str], Scene], point: str, mode: str) -> None:
        """The client gives up (read_timeout) while the CALL waits; the server cleans up.

        The client cannot know whether its flip happened: in its own transaction
        the server may still finish it after the holder lets go. Either way it is
        whole, and the next caller is not held up.
        """
        s = scene(point)
        victim = connect(s.url, autocommit=MODES[mode], read_timeout=1)
        thread_id = victim.thread_id()
        start = time.monotonic()
        with pytest.raises(DatabaseConnectionError) as info:
            set_current_batch(victim, s.b)
        assert time.monotonic() - start < 5
        assert info.value.errno == 2013
        assert current_rows(s.observer) == [s.a]
        s.holder.rollback()
        wait_until_gone(s.observer, thread_id)
        outcome = current_rows(s.observer)
        allowed = [[s.a], [s.b]] if MODES[mode] else [[s.a]]
        assert outcome in allowed, f"partial or phantom flip: {outcome}"
        assert_next_caller_is_prompt(s)


class TestClosedConnection:
    def test_a_closed_connection_is_a_connection_error(
        self, migrated_url: URL, add_batches: Callable[[int], list[int]]
    ) -> None:
        """A flip on a PyMySQL connection already closed (e.g. lost to a killed server)
        raises DatabaseConnectionError saying to open a new one, not an errno-0 BatchFlagError."""
        (a,) = add_batches(1)
        conn = connect(migrated_url, autocommit=True)
        conn.close()
        with pytest.raises(DatabaseConnectionError, match="open a new one"):
            set_current_batch(conn, a)
