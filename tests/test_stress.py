"""Concurrency: many callers flipping at once never deadlock and never show 0 or 2 current rows."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from sqlalchemy.engine import URL

from batchflag_db import set_current_batch
from batchflag_db.testing.kinds import DEFAULT_KIND, KIND_VARIABLE
from tests.conftest import TORN_SNAPSHOT_KINDS, check_table, connect, current_rows, torn_snapshot

CALLERS = 32
FLIPS_EACH = 200

READER_SQL = (
    "SELECT GROUP_CONCAT(id ORDER BY id), COUNT(*), "
    "(SELECT COALESCE(MAX(id), 0) FROM currentBatchHistory) "
    "FROM batchStatus WHERE currentBatch <> 0"
)
"""The reader's poll: the current rows by the flag, and the newest flip its snapshot holds."""


@pytest.mark.stress
class TestConcurrentFlips:
    def test_32_callers_no_errors_reader_always_sees_one(
        self, migrated_url: URL, add_batches: Callable[[int], list[int]]
    ) -> None:
        """32 callers x 200 flips: zero errors, and a concurrent reader always sees exactly one current."""
        ids = add_batches(100)
        set_current_batch(connect(migrated_url, autocommit=True), ids[0])

        errors: list[BaseException] = []
        done_flips = [0] * CALLERS
        stop = threading.Event()
        polls: dict[str, Any] = {"total": 0, "bad": 0, "bad_examples": []}
        start = threading.Barrier(CALLERS + 1)

        def caller(n: int) -> None:
            rng = random.Random(n)
            conn = connect(migrated_url, autocommit=True)
            try:
                start.wait()
                for _ in range(FLIPS_EACH):
                    try:
                        set_current_batch(conn, rng.choice(ids))
                        done_flips[n] += 1
                    except Exception as exc:
                        errors.append(exc)
            finally:
                conn.close()

        def reader() -> None:
            conn = connect(migrated_url, autocommit=True)
            try:
                with conn.cursor() as cur:
                    while not stop.is_set():
                        # By the flag (a scan), not the key, so a broken key could not hide a
                        # second row; with the newest history row the same snapshot sees.
                        cur.execute(READER_SQL)
                        ids, count, newest = cur.fetchone()
                        polls["total"] += 1
                        if count != 1:
                            polls["bad"] += 1
                            polls["bad_examples"].append((ids, count, newest))
            finally:
                conn.close()

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(CALLERS)]
        watcher = threading.Thread(target=reader)
        watcher.start()
        for t in threads:
            t.start()
        t0 = time.monotonic()
        start.wait()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        stop.set()
        watcher.join()

        total = sum(done_flips)
        print(
            f"\n{CALLERS} callers x {FLIPS_EACH} flips: {total} ok, {len(errors)} errors, "
            f"{total / elapsed:.0f} flips/s; reader: {polls['total']} polls, {polls['bad']} bad"
        )
        assert errors == [], f"{len(errors)} errors, first: {errors[:3]!r}"
        assert total == CALLERS * FLIPS_EACH
        assert polls["total"] > 100, "the reader must actually have polled during the storm"
        conn = connect(migrated_url, autocommit=True)
        torn = [poll for poll in polls["bad_examples"] if torn_snapshot(conn, *poll)]
        if torn:
            print(f"  torn snapshots (the server's, see docs/guarantees.md): {torn}")
        if os.environ.get(KIND_VARIABLE, DEFAULT_KIND) in TORN_SNAPSHOT_KINDS:
            # Every bad poll there must be the server's torn snapshot, none a state we made.
            assert len(torn) == polls["bad"], f"reader saw {polls['bad_examples'][:10]}"
        else:
            assert polls["bad"] == 0, f"reader saw {polls['bad_examples'][:10]}"
        assert len(current_rows(conn)) == 1
        assert check_table(conn)[-1][-1] == "OK"

    def test_storm_with_unsets_and_inserts(
        self, migrated_url: URL, add_batches: Callable[[int], list[int]]
    ) -> None:
        """Sets, unsets and new batches mixed: no deadlock surfaces, never two current rows."""
        ids = add_batches(20)
        errors: list[BaseException] = []
        bad: list[tuple[str, int, int]] = []
        stop = threading.Event()

        def worker(n: int) -> None:
            rng = random.Random(1000 + n)
            conn = connect(migrated_url, autocommit=True)
            try:
                with conn.cursor() as cur:
                    for i in range(100):
                        try:
                            r = rng.random()
                            if r < 0.6:
                                cur.execute(f"CALL set_current_batch({rng.choice(ids)})")
                            elif r < 0.9:
                                cur.execute(f"CALL unset_current_batch({rng.choice(ids)})")
                            else:
                                cur.execute(
                                    "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-12-24', %s)",
                                    (n * 1000 + i,),
                                )
                            while cur.nextset():
                                pass
                        except pymysql.MySQLError as exc:
                            errors.append(exc)
            finally:
                conn.close()

        def reader() -> None:
            conn = connect(migrated_url, autocommit=True)
            with conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute(READER_SQL)
                    ids, count, newest = cur.fetchone()
                    if count > 1:
                        bad.append((ids, count, newest))
            conn.close()

        watcher = threading.Thread(target=reader)
        watcher.start()
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        watcher.join()
        assert errors == [], f"{len(errors)} errors, first: {errors[:3]!r}"
        conn = connect(migrated_url, autocommit=True)
        if os.environ.get(KIND_VARIABLE, DEFAULT_KIND) in TORN_SNAPSHOT_KINDS:
            assert [p for p in bad if not torn_snapshot(conn, *p)] == [], bad
        else:
            assert bad == []
        assert len(current_rows(conn)) <= 1
        assert check_table(conn)[-1][-1] == "OK"


class TestTornSnapshotCheck:
    def test_tells_a_torn_snapshot_from_two_committed_current_rows(self, migrated_url: URL) -> None:
        """The check blames the server only where the snapshot contradicts the history."""
        conn = connect(migrated_url, autocommit=True)
        with conn.cursor() as cur:
            for batch, previous in ((58, 33), (33, 58), (14, 33), (5, None), (6, None)):
                cur.execute(
                    "INSERT INTO currentBatchHistory (batchId, previousBatchId, `action`, "
                    "changedAt, account, connectionId) VALUES (%s, %s, 'set', NOW(6), 'x', 1)",
                    (batch, previous),
                )
            cur.execute("SELECT id FROM currentBatchHistory ORDER BY id")
            h = [int(r[0]) for r in cur.fetchall()]
        # 33 -> 58, 58 -> 33, 33 -> 14: a snapshot holding the third flip but showing 58 missed the second
        assert torn_snapshot(conn, "14,58", 2, h[2]) is True
        # the same rows seen before the second flip: 58 was still current then
        assert torn_snapshot(conn, "58", 1, h[0]) is False
        # two batches each set and never cleared: two committed current rows, not torn
        assert torn_snapshot(conn, "5,6", 2, h[4]) is False
        assert torn_snapshot(conn, None, 0, h[4]) is False
        conn.close()
