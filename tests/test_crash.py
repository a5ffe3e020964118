"""Server crash: ``kill -9`` the server while clients flip, restart it, check what survived.

A private server runs with ``innodb_flush_log_at_trx_commit=1`` (the production
setting). Each cycle starts client processes that flip continuously (some in the
procedure's own transaction, some in their own transaction with COMMIT) and one
that inserts batches; each logs every call it starts and every call the server
acknowledged, with a per-process sequence number and a system-wide monotonic
clock. At a random moment the server is SIGKILLed; after the restart:

* ``CHECK TABLE ... EXTENDED`` reports OK for both tables;
* exactly one batch is current (one was set before the first cycle), by the
  flag and by the key index alike;
* no acknowledged flip is lost and none is invented: the flip counter of the
  lock row grew by at least the acknowledged flips and at most those plus the
  ones in flight at the kill;
* the current batch is the target of a flip that may have been the last one:
  an acknowledged flip that no later-started acknowledged flip followed, or a
  flip in flight at the kill;
* no row is lost: every original row is there with its other columns
  unchanged, and every acknowledged insert is there.

Run with ``pytest -m crash -s tests/test_crash.py`` to see the counts.
``BATCHFLAG_CRASH_CYCLES`` sets the number of cycles (default 20).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest

from batchflag_db import migrate
from batchflag_db.config import normalize_url
from batchflag_db.testing.server import ThrowawayServer

pytestmark = [pytest.mark.crash, pytest.mark.timeout(600)]

CYCLES = int(os.environ.get("BATCHFLAG_CRASH_CYCLES", "20"))
BATCHES = 40
FLIPPERS = (True, True, False)  # autocommit: the procedure's own transaction, or COMMIT
# Errors a client may see because the server died under it.
CONNECTION_LOST = {2002, 2003, 2006, 2013, 2055}

WORKER = r"""
import random, sys, time, pymysql
host, port, db, role, autocommit, lo, hi, seed, log_path = sys.argv[1:10]
rng = random.Random(int(seed))
log = open(log_path, "a", buffering=1)
seq = 0
try:
    conn = pymysql.connect(host=host, port=int(port), user="root", database=db,
                           autocommit=autocommit == "1", connect_timeout=5)
    cur = conn.cursor()
    while True:
        seq += 1
        if role == "flip":
            target = rng.randint(int(lo), int(hi))
            log.write(f"S {seq} {target} {time.monotonic_ns()}\n")
            cur.execute(f"CALL set_current_batch({target})")
            row = cur.fetchone()
            while cur.nextset():
                pass
            if autocommit != "1":
                conn.commit()
            log.write(f"A {seq} {target} {time.monotonic_ns()} {row[1]} {row[2]}\n")
        else:
            log.write(f"S {seq} 0 {time.monotonic_ns()}\n")
            cur.execute("INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-12-01', %s)",
                        (seq,))
            log.write(f"A {seq} {cur.lastrowid} {time.monotonic_ns()}\n")
except Exception as exc:
    errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else -1
    log.write(f"E {seq} {errno} {time.monotonic_ns()} {type(exc).__name__}\n")
"""


@dataclass
class Call:
    """One call a worker started: its target and, if acknowledged, when."""

    worker: int
    seq: int
    target: int
    started: int
    acked: int | None = None
    error: int | None = None
    changed: bool | None = None


@dataclass
class WorkerLog:
    """What one worker process wrote."""

    role: str
    calls: list[Call] = field(default_factory=list)

    @property
    def acknowledged(self) -> list[Call]:
        return [c for c in self.calls if c.acked is not None]

    @property
    def in_flight(self) -> list[Call]:
        return [c for c in self.calls if c.acked is None]


def parse_log(worker: int, role: str, path: Path) -> WorkerLog:
    """Read a worker's log; a call without an ack (error or nothing) was in flight."""
    log = WorkerLog(role)
    by_seq: dict[int, Call] = {}
    for line in path.read_text().splitlines():
        kind, seq, *rest = line.split()
        if kind == "S":
            call = Call(worker, int(seq), int(rest[0]), int(rest[1]))
            by_seq[call.seq] = call
            log.calls.append(call)
        elif kind == "A":
            call = by_seq[int(seq)]
            call.acked = int(rest[1])
            if role == "flip":
                call.changed = rest[3] == "1"
            if role == "insert":
                call.target = int(rest[0])  # the id the server gave the new row
        elif kind == "E" and int(seq) in by_seq:
            by_seq[int(seq)].error = int(rest[0])
    seqs = [c.seq for c in log.calls]
    assert seqs == list(range(1, len(seqs) + 1)), f"worker {worker}: sequence broken {seqs[:20]}"
    assert all(c.acked is not None for c in log.calls[:-1]), (
        f"worker {worker}: a gap before the end"
    )
    return log


@dataclass
class Totals:
    """What the whole test verified, reported at the end and in every failure."""

    cycles: int = 0
    acked_flips: int = 0
    acked_inserts: int = 0
    in_flight_flips: int = 0
    in_flight_committed: int = 0
    history_rows_checked: int = 0
    recovery_seconds: list[float] = field(default_factory=list)

    def __str__(self) -> str:
        worst = max(self.recovery_seconds, default=0.0)
        return (
            f"{self.cycles} crash cycles, {self.acked_flips} acknowledged flips verified, "
            f"{self.acked_inserts} acknowledged inserts verified, {self.in_flight_flips} flips "
            f"in flight at a kill ({self.in_flight_committed} of them committed), "
            f"{self.history_rows_checked} history rows checked, "
            f"restart after kill took at most {worst:.1f}s"
        )


def _rows(conn: pymysql.Connection, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def possible_last_targets(flips: list[Call]) -> set[int]:
    """Targets of the flips that may have been the last to commit.

    An acknowledged flip g that started after flip f was acknowledged committed after f,
    so f cannot be the last. Every other acknowledged flip, and every flip in flight
    at the kill, may be.
    """
    acked = [c for c in flips if c.acked is not None]
    latest_start = max((c.started for c in acked), default=-1)
    candidates = {c.target for c in flips if c.acked is None}
    candidates |= {c.target for c in acked if c.acked is not None and c.acked >= latest_start}
    # a flip f with f.acked < latest_start was followed by the flip that started last
    return candidates


@dataclass(frozen=True)
class Recovered:
    """The state found after a restart: the next cycle's starting point."""

    current: int
    flip_count: int
    history_count: int | None  # None: no history table (schema before revision 0004)


def read_history(conn: pymysql.Connection) -> tuple[int, int | None] | None:
    """(row count, batchId of the newest row) of currentBatchHistory, or None without it."""
    if not _rows(conn, "SHOW TABLES LIKE 'currentBatchHistory'"):
        return None
    count, last = _rows(
        conn,
        "SELECT COUNT(*), (SELECT batchId FROM currentBatchHistory ORDER BY id DESC LIMIT 1) "
        "FROM currentBatchHistory",
    )[0]
    return int(count), None if last is None else int(last)


def check_after_restart(
    conn: pymysql.Connection,
    *,
    logs: list[WorkerLog],
    before: Recovered,
    original: list[tuple[Any, ...]],
    inserted: set[int],
    totals: Totals,
    cycle: int,
) -> Recovered:
    """Check the recovered state against the logs and the state the cycle started from."""
    previous_current, previous_count = before.current, before.flip_count
    where = f"cycle {cycle} ({totals})"
    for table in ("batchStatus", "currentBatchLock"):
        result = _rows(conn, f"CHECK TABLE `{table}` EXTENDED")
        assert result[-1][-1] == "OK", f"{where}: CHECK TABLE {table}: {result}"

    by_flag = [r[0] for r in _rows(conn, "SELECT id FROM batchStatus WHERE currentBatch <> 0")]
    by_key = [r[0] for r in _rows(conn, "SELECT id FROM batchStatus WHERE currentBatchKey = 1")]
    assert len(by_flag) == 1, f"{where}: current rows by flag {by_flag}"
    assert by_key == by_flag, f"{where}: key index {by_key} disagrees with flag {by_flag}"
    current = int(by_flag[0])

    flips = [c for log in logs if log.role == "flip" for c in log.calls]
    acked = [c for c in flips if c.acked is not None]
    in_flight = [c for c in flips if c.acked is None]
    for c in in_flight:
        assert c.error is None or c.error in CONNECTION_LOST, f"{where}: flip failed: {c}"
    (count,) = _rows(conn, "SELECT flipCount FROM currentBatchLock WHERE id = 1")[0]
    committed = int(count) - previous_count
    assert len(acked) <= committed, (
        f"{where}: {len(acked)} flips acknowledged but only {committed} committed: lost flips"
    )
    assert committed <= len(acked) + len(in_flight), (
        f"{where}: {committed} flips committed, more than {len(acked)} acknowledged "
        f"+ {len(in_flight)} in flight"
    )
    if committed == 0:
        assert current == previous_current, f"{where}: nothing committed yet current changed"
    else:
        allowed = possible_last_targets(flips)
        assert current in allowed, (
            f"{where}: current batch {current} is not the target of a flip that could "
            f"have been last {sorted(allowed)}"
        )

    # the flip history (revision 0004+) is written in the flip's transaction: it must
    # hold a row for every acknowledged flip that changed something, and end with
    # the batch that is current
    history = read_history(conn)
    history_count = None
    if history is not None and before.history_count is not None:
        history_count, last = history
        written = history_count - before.history_count
        changed = sum(1 for c in acked if c.changed)
        assert changed <= written <= changed + len(in_flight), (
            f"{where}: {written} history rows for {changed} acknowledged changing flips "
            f"and {len(in_flight)} in flight"
        )
        if history_count:
            assert last == current, f"{where}: history ends at {last}, current is {current}"
        totals.history_rows_checked += written

    # no row lost: the originals unchanged but for the flag, every acknowledged insert there
    now = _rows(
        conn,
        "SELECT id, batchDate, batchNumber, batchStatus, createdAt FROM batchStatus "
        "WHERE id <= %s ORDER BY id",
        (original[-1][0],),
    )
    assert now == original, f"{where}: original rows changed or lost"
    inserts = [c for log in logs if log.role == "insert" for c in log.calls]
    inserted |= {c.target for c in inserts if c.acked is not None}
    present = {
        int(r[0])
        for r in _rows(conn, "SELECT id FROM batchStatus WHERE id > %s", (original[-1][0],))
    }
    missing = inserted - present
    assert not missing, f"{where}: acknowledged inserts lost: {sorted(missing)[:10]}"
    unacked_inserts = sum(1 for c in inserts if c.acked is None)
    extra = present - inserted
    assert len(extra) <= unacked_inserts, f"{where}: rows nobody inserted: {sorted(extra)}"
    inserted |= extra  # an in-flight insert that committed is a row from now on

    totals.cycles += 1
    totals.acked_flips += len(acked)
    totals.acked_inserts += sum(1 for c in inserts if c.acked is not None)
    totals.in_flight_flips += len(in_flight)
    totals.in_flight_committed += committed - len(acked)
    return Recovered(current, int(count), history_count)


def start_workers(
    server: ThrowawayServer,
    db: str,
    *,
    ids: tuple[int, int],
    log_dir: Path,
    cycle: int,
    rng: random.Random,
) -> list[tuple[subprocess.Popen[bytes], str, Path]]:
    """Start the flippers and the inserter for one cycle."""
    workers = []
    roles = [("flip", ac) for ac in FLIPPERS] + [("insert", True)]
    for index, (role, autocommit) in enumerate(roles):
        path = log_dir / f"cycle{cycle:03d}-worker{index}.log"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                "127.0.0.1",
                str(server.port),
                db,
                role,
                "1" if autocommit else "0",
                str(ids[0]),
                str(ids[1]),
                str(rng.randrange(2**32)),
                str(path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        workers.append((proc, role, path))
    return workers


def wait_for_acks(paths: list[Path], timeout: float = 20.0) -> None:
    """Wait until every worker has had at least one call acknowledged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.exists() and "\nA " in "\n" + p.read_text() for p in paths):
            return
        time.sleep(0.02)
    pytest.fail(
        "workers did not get going: " + "; ".join(p.read_text()[-200:] for p in paths if p.exists())
    )


def test_kill_9_during_flips(
    tmp_path: Path, throwaway_server: Callable[..., ThrowawayServer]
) -> None:
    """kill -9 the server at random moments under flipping clients: nothing acknowledged is lost."""
    seed = int(os.environ.get("BATCHFLAG_CRASH_SEED", str(time.time_ns())))
    rng = random.Random(seed)
    server = throwaway_server(durable=True, keep_datadir=True)
    totals = Totals()
    try:
        server.start()
        admin = server.connect(autocommit=True)
        _rows(admin, "CREATE DATABASE bf_crash")
        admin.close()
        migrate.upgrade(normalize_url(server.url).set(database="bf_crash"))
        conn = server.connect("bf_crash", autocommit=True)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-11-28', %s)",
                [(i,) for i in range(BATCHES)],
            )
        original = _rows(
            conn,
            "SELECT id, batchDate, batchNumber, batchStatus, createdAt FROM batchStatus ORDER BY id",
        )
        lo, hi = int(original[0][0]), int(original[-1][0])
        _rows(conn, f"CALL set_current_batch({lo})")
        history = read_history(conn)
        state = Recovered(
            lo,
            int(_rows(conn, "SELECT flipCount FROM currentBatchLock")[0][0]),
            None if history is None else history[0],
        )
        conn.close()
        inserted: set[int] = set()

        for cycle in range(CYCLES):
            workers = start_workers(
                server, "bf_crash", ids=(lo, hi), log_dir=tmp_path, cycle=cycle, rng=rng
            )
            try:
                wait_for_acks([path for _, _, path in workers])
                time.sleep(rng.uniform(0.0, 0.6))
                server.kill()
            finally:
                for proc, _, _ in workers:
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                    assert proc.stderr is not None
                    err = proc.stderr.read().decode(errors="replace")
                    proc.stderr.close()
                    assert not err.strip(), f"worker crashed: {err[-2000:]}"
            logs = [parse_log(i, role, path) for i, (_, role, path) in enumerate(workers)]
            started = time.monotonic()
            server.start(timeout=120)
            totals.recovery_seconds.append(time.monotonic() - started)
            conn = server.connect("bf_crash", autocommit=True)
            try:
                state = check_after_restart(
                    conn,
                    logs=logs,
                    before=state,
                    original=original,
                    inserted=inserted,
                    totals=totals,
                    cycle=cycle,
                )
            finally:
                conn.close()
    except BaseException:
        print(
            f"\ncrash test failed (BATCHFLAG_CRASH_SEED={seed}) after: {totals}\n"
            f"server log tail:\n{server.log_tail()}"
        )
        raise
    finally:
        server.keep_datadir = False
        server.stop()
    print(f"\ncrash test (BATCHFLAG_CRASH_SEED={seed}): {totals}")
    assert totals.cycles == CYCLES, str(totals)
    assert totals.acked_flips > totals.cycles, f"too few flips to mean anything: {totals}"


class TestCandidates:
    """The rule deciding which flip may have been last, on hand-made histories."""

    def test_followed_flip_is_excluded(self) -> None:
        """A flip acknowledged before another acknowledged flip started cannot be last."""
        flips = [Call(0, 1, 10, started=0, acked=5), Call(1, 1, 20, started=6, acked=9)]
        assert possible_last_targets(flips) == {20}

    def test_overlapping_flips_are_both_possible(self) -> None:
        """Two flips that overlap in time may have committed in either order."""
        flips = [Call(0, 1, 10, started=0, acked=8), Call(1, 1, 20, started=5, acked=9)]
        assert possible_last_targets(flips) == {10, 20}

    def test_in_flight_flip_is_possible(self) -> None:
        """A flip never acknowledged may have committed just before the kill."""
        flips = [Call(0, 1, 10, started=0, acked=5), Call(1, 1, 30, started=6)]
        assert possible_last_targets(flips) == {10, 30}
