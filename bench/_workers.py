"""Code that runs in the benchmark's caller and reader processes.

Kept apart from ``bench.core`` and light on imports (PyMySQL only), so that a
process started with the ``spawn`` method imports little; on Linux the
benchmark forks, and nothing is imported at all.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pymysql

# The two ways to make a batch current, as each caller runs them.
BATCHFLAG = "batchflag"
"""``CALL set_current_batch(id)``: one round trip, one transaction (the procedure's own)."""

SEED = "seed"
"""The seed's two statements, each in its own autocommit transaction, as cofi-service runs them."""

APPROACHES = (BATCHFLAG, SEED)

READER_SQL = "SELECT COUNT(*) FROM batchStatus WHERE currentBatch <> 0"
"""What the concurrent reader polls: the flag itself (not the key), the same query on both sides."""

_RETRYABLE = (1205, 1213)  # lock wait timeout, deadlock: counted, then the caller goes on


def connect(params: dict[str, Any], **kwargs: Any) -> pymysql.Connection:
    """Open a PyMySQL connection from plain connect parameters (picklable, unlike a URL)."""
    return pymysql.connect(**params, **kwargs)


def drain(cursor: Any) -> list[tuple[Any, ...]]:
    """Fetch the first result set and discard the rest (CALL returns an extra, empty one)."""
    rows = [tuple(r) for r in cursor.fetchall()] if cursor.description else []
    while cursor.nextset():
        if cursor.description:
            cursor.fetchall()
    return rows


def flip_once(cursor: Any, approach: str, batch_id: int) -> None:
    """Make ``batch_id`` current the way ``approach`` does it (autocommit connection)."""
    if approach == BATCHFLAG:
        cursor.execute("CALL set_current_batch(%s)", (batch_id,))
        drain(cursor)
    elif approach == SEED:
        cursor.execute("UPDATE batchStatus SET currentBatch = 0")
        cursor.execute("UPDATE batchStatus SET currentBatch = 1 WHERE id = %s", (batch_id,))
    else:
        raise ValueError(f"unknown approach {approach!r}: expected one of {APPROACHES}")


def caller_process(
    params: dict[str, Any],
    approach: str,
    *,
    max_id: int,
    duration_s: float,
    seed: int,
    barrier: Any,
    results: Any,
    ids: list[int] | None = None,
) -> None:
    """Flip random batches for ``duration_s`` seconds after the barrier; report counts.

    The batches are ids 1 to ``max_id``, or, given ``ids``, those (one scope's, say).

    Puts on ``results`` one dict: role, ok, errors (errno -> count), elapsed_s and
    the latency of every successful flip in nanoseconds.
    """
    rng = random.Random(seed)
    errors: dict[int, int] = {}
    latencies: list[int] = []
    conn = connect(params, autocommit=True)
    try:
        cursor = conn.cursor()
        barrier.wait()
        start = time.monotonic()
        deadline = start + duration_s
        end = start
        while True:
            t0 = time.perf_counter_ns()
            if time.monotonic() >= deadline:
                break
            try:
                flip_once(cursor, approach, rng.choice(ids) if ids else rng.randint(1, max_id))
            except pymysql.err.OperationalError as exc:
                errno = int(exc.args[0])
                if errno not in _RETRYABLE:
                    raise
                errors[errno] = errors.get(errno, 0) + 1
                continue
            finally:
                end = time.monotonic()
            latencies.append(time.perf_counter_ns() - t0)
        results.put(
            {
                "role": "caller",
                "ok": len(latencies),
                "errors": errors,
                "elapsed_s": end - start,
                "latencies_ns": latencies,
            }
        )
    except Exception as exc:  # reported to the parent, which raises
        results.put({"role": "caller", "failure": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


def reader_process(
    params: dict[str, Any],
    *,
    duration_s: float,
    interval_s: float,
    barrier: Any,
    results: Any,
) -> None:
    """Poll :data:`READER_SQL` every ``interval_s`` for ``duration_s``; count what it sees.

    A fixed pace (not as fast as it can) gives the reader the same share of the
    machine on both sides, so it does not tilt the throughput comparison; the share
    of bad polls estimates the share of time a bad state is visible, whatever the pace.

    Puts on ``results`` one dict: role, polls, bad (polls whose count was not
    exactly 1) and counts (count seen -> number of polls).
    """
    counts: dict[int, int] = {}
    conn = connect(params, autocommit=True)
    try:
        cursor = conn.cursor()
        barrier.wait()
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            cursor.execute(READER_SQL)
            seen = int(cursor.fetchone()[0])
            counts[seen] = counts.get(seen, 0) + 1
            if interval_s > 0:
                time.sleep(interval_s)
        polls = sum(counts.values())
        results.put(
            {
                "role": "reader",
                "polls": polls,
                "bad": polls - counts.get(1, 0),
                "counts": counts,
            }
        )
    except Exception as exc:  # reported to the parent, which raises
        results.put({"role": "reader", "failure": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()
