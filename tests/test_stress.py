"""Concurrency: many callers flipping at once never deadlock and never show 0 or 2 current rows."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from sqlalchemy.engine import URL

from batchflag_db import set_current_batch
from tests.conftest import check_table, connect, current_rows

CALLERS = 32
FLIPS_EACH = 200


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
                        # by the flag (a scan), not the key, so a broken key could not hide a second row
                        cur.execute("SELECT COUNT(*) FROM batchStatus WHERE currentBatch <> 0")
                        (count,) = cur.fetchone()
                        polls["total"] += 1
                        if count != 1:
                            polls["bad"] += 1
                            polls["bad_examples"].append(count)
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
        assert polls["bad"] == 0, f"reader saw {polls['bad_examples'][:10]}"
        conn = connect(migrated_url, autocommit=True)
        assert len(current_rows(conn)) == 1
        assert check_table(conn)[-1][-1] == "OK"

    def test_storm_with_unsets_and_inserts(
        self, migrated_url: URL, add_batches: Callable[[int], list[int]]
    ) -> None:
        """Sets, unsets and new batches mixed: no deadlock surfaces, never two current rows."""
        ids = add_batches(20)
        errors: list[BaseException] = []
        bad: list[int] = []
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
                    cur.execute("SELECT COUNT(*) FROM batchStatus WHERE currentBatch <> 0")
                    (count,) = cur.fetchone()
                    if count > 1:
                        bad.append(count)
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
        assert bad == []
        conn = connect(migrated_url, autocommit=True)
        assert len(current_rows(conn)) <= 1
        assert check_table(conn)[-1][-1] == "OK"
