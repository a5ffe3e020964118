"""The benchmark's measuring functions; ``bench.run`` strings them together.

Two databases on one server hold the same rows in the same ``batchStatus`` table
(created by the baseline revision 0001, then filled by one generator):

* the *seed* database stays at revision 0001: no key column, no procedures; it is
  flipped the way the user's seed does it;
* the *batchflag* database is migrated to head: key column, unique index, procedures.

Every latency is measured from the client (PyMySQL over TCP), so a round trip is
part of every number, on both sides alike.
"""

from __future__ import annotations

import math
import multiprocessing
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pymysql
from pymysql.constants import CLIENT
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine

from batchflag_db import migrate, set_current_batch
from batchflag_db.testing.explain import explain_statement
from bench import _workers
from bench._workers import APPROACHES, BATCHFLAG, SEED, connect, drain

BASELINE = "0001"
"""Revision with the user's table only: the seed side stays here."""

INVARIANT = "0002"
"""Revision that adds the key column and its unique index: the migration measured."""

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    """Default logger: say nothing."""


# --------------------------------------------------------------------------- statistics


def percentile(sorted_values: list[int], fraction: float) -> int:
    """Nearest-rank percentile of already sorted values (p99 of 20 samples is the max)."""
    if not sorted_values:
        raise ValueError("no samples")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(samples_ns: list[int]) -> dict[str, float]:
    """Median, p99, mean, min and max of latencies given in ns, returned in ms."""
    ordered = sorted(samples_ns)
    return {
        "n": len(ordered),
        "median_ms": statistics.median(ordered) / 1e6,
        "p99_ms": percentile(ordered, 0.99) / 1e6,
        "mean_ms": statistics.fmean(ordered) / 1e6,
        "min_ms": ordered[0] / 1e6,
        "max_ms": ordered[-1] / 1e6,
    }


@dataclass(frozen=True)
class Plan:
    """How many times to run each measured operation.

    Attributes:
        warmup: Unmeasured runs of each operation first (capped at ``warmup_budget_s``).
        reps: Measured runs of each operation, at most.
        min_reps: Measured runs at least, even past the time budget.
        budget_s: Time budget of each operation: once spent (and ``min_reps`` reached)
            the operation stops; slow operations (a full-table UPDATE on 1M rows) get
            fewer samples than fast ones, and the JSON says how many (``n``).
        block: Runs of one operation in a row before the next one's turn: the operations
            of a group alternate in blocks, so that a busy spell on the machine hits
            all of them, not one.
        warmup_budget_s: Time cap of each operation's warm-up.
    """

    warmup: int = 100
    reps: int = 1000
    min_reps: int = 5
    budget_s: float = 6.0
    block: int = 20
    warmup_budget_s: float = 2.0


def interleave(ops: dict[str, Callable[[], None]], plan: Plan) -> dict[str, list[int]]:
    """Run the operations in alternating blocks; return each one's latencies in ns."""
    for op in ops.values():
        stop = time.monotonic() + plan.warmup_budget_s
        for _ in range(plan.warmup):
            op()
            if time.monotonic() > stop:
                break
    samples: dict[str, list[int]] = {name: [] for name in ops}
    spent = dict.fromkeys(ops, 0)
    budget_ns = int(plan.budget_s * 1e9)

    def done(name: str) -> bool:
        count = len(samples[name])
        return count >= plan.reps or (spent[name] >= budget_ns and count >= plan.min_reps)

    active = list(ops)
    turn = 0
    while active:
        shift = turn % len(active)
        for name in active[shift:] + active[:shift]:
            op = ops[name]
            for _ in range(plan.block):
                t0 = time.perf_counter_ns()
                op()
                elapsed = time.perf_counter_ns() - t0
                samples[name].append(elapsed)
                spent[name] += elapsed
                if done(name):
                    break
        active = [name for name in active if not done(name)]
        turn += 1
    return samples


# --------------------------------------------------------------------------- databases


def connect_params(url: URL) -> dict[str, Any]:
    """PyMySQL connect parameters for ``url`` (picklable, for the caller processes)."""
    params: dict[str, Any] = {
        "host": url.host or "127.0.0.1",
        "port": url.port or 3306,
        "user": url.username or "root",
        "password": url.password or "",
    }
    if url.database:
        params["database"] = url.database
    socket_path = url.query.get("unix_socket")
    if isinstance(socket_path, str):
        params["unix_socket"] = socket_path
    return params


def _execute(params: dict[str, Any], *statements: str) -> None:
    conn = connect(params, autocommit=True)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def _query(params: dict[str, Any], sql: str, args: Any = None) -> list[dict[str, Any]]:
    conn = connect(params, autocommit=True, cursorclass=pymysql.cursors.DictCursor)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def server_version(params: dict[str, Any]) -> str:
    """The server's ``SELECT VERSION()``, e.g. ``10.11.19-MariaDB-0+deb12u1`` or ``9.7.0``."""
    admin = {k: v for k, v in params.items() if k != "database"}
    return str(next(iter(_query(admin, "SELECT VERSION() AS version")[0].values())))


def server_info(params: dict[str, Any]) -> dict[str, Any]:
    """Server version and the settings that decide what a commit costs.

    A variable the server does not have (``tx_isolation`` on MySQL 8 and later) is
    left out.
    """
    names = (
        "version",
        "version_comment",
        "innodb_flush_log_at_trx_commit",
        "sync_binlog",
        "log_bin",
        "innodb_doublewrite",
        "innodb_buffer_pool_size",
        "innodb_log_file_size",
        "innodb_flush_method",
        "tx_isolation",
        "transaction_isolation",
        "innodb_autoinc_lock_mode",
    )
    admin = {k: v for k, v in params.items() if k != "database"}
    placeholders = ", ".join(["%s"] * len(names))
    rows = _query(
        admin,
        f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({placeholders})",
        names,
    )
    return {row["Variable_name"]: row["Value"] for row in rows}


def create_database(server_params: dict[str, Any], name: str) -> None:
    """Drop ``name`` if it exists, then create it empty."""
    _execute(server_params, f"DROP DATABASE IF EXISTS `{name}`", f"CREATE DATABASE `{name}`")


def drop_database(server_params: dict[str, Any], name: str) -> None:
    """Drop ``name`` if it exists."""
    _execute(server_params, f"DROP DATABASE IF EXISTS `{name}`")


def load_rows(params: dict[str, Any], rows: int, chunk: int = 250_000) -> None:
    """Fill the empty ``batchStatus`` with ids 1..rows, none current, set-based.

    A 1,000-row digits table cross-joined with itself yields up to a million numbers
    per statement; each chunk is one ``INSERT ... SELECT`` (no row-by-row inserts).
    Ids are given explicitly, so they are exactly 1..rows with no gaps.
    """
    conn = connect(params, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS `_bench_digits`")
            cur.execute("CREATE TABLE `_bench_digits` (d INT NOT NULL PRIMARY KEY) ENGINE=InnoDB")
            cur.executemany(
                "INSERT INTO `_bench_digits` (d) VALUES (%s)", [(d,) for d in range(1000)]
            )
            start = 0
            while start < rows:
                end = min(rows, start + chunk)
                thousands = math.ceil((end - start) / 1000)
                cur.execute(
                    "INSERT INTO batchStatus (id, batchDate, batchNumber, batchStatus, currentBatch) "
                    "SELECT k + 1, DATE '2020-01-01' + INTERVAL (k DIV 20) DAY, k MOD 20 + 1, "
                    "'Completed', 0 FROM ("
                    "  SELECT %s + a.d * 1000 + b.d AS k FROM `_bench_digits` a "
                    "  JOIN `_bench_digits` b WHERE a.d < %s"
                    ") AS numbers WHERE k < %s ORDER BY k",
                    (start, thousands, end),
                )
                start = end
            cur.execute("DROP TABLE `_bench_digits`")
    finally:
        conn.close()


def copy_rows(source_db: str, params: dict[str, Any], rows: int, chunk: int = 500_000) -> None:
    """Copy every row of ``source_db``.batchStatus into ``params``' empty batchStatus."""
    conn = connect(params, autocommit=True)
    try:
        with conn.cursor() as cur:
            for low in range(1, rows + 1, chunk):
                cur.execute(
                    f"INSERT INTO batchStatus SELECT * FROM `{source_db}`.batchStatus "
                    "WHERE id BETWEEN %s AND %s",
                    (low, low + chunk - 1),
                )
    finally:
        conn.close()


_QUIESCE_SETTINGS = (
    # (variable, value while settling); set in this order, restored in reverse
    ("innodb_io_capacity_max", 100_000),
    ("innodb_io_capacity", 50_000),
    ("innodb_max_dirty_pages_pct", 0),
)


def quiesce(params: dict[str, Any], timeout_s: float = 90.0, dirty_pages: int = 200) -> float:
    """Let InnoDB write back the dirty pages a bulk load left, so they don't flush mid-run.

    While it waits, it lets the page cleaner flush everything at full speed
    (``innodb_max_dirty_pages_pct=0``, a high ``innodb_io_capacity``), then restores
    the server's values. On a server where SET GLOBAL is refused it only waits.
    Returns the seconds waited.
    """
    t0 = time.monotonic()
    conn = connect({k: v for k, v in params.items() if k != "database"}, autocommit=True)
    changed: list[tuple[str, Any]] = []
    try:
        with conn.cursor() as cur:
            try:
                for name, value in _QUIESCE_SETTINGS:
                    cur.execute(f"SELECT @@GLOBAL.{name}")
                    original = cur.fetchone()[0]
                    cur.execute(f"SET GLOBAL {name} = %s", (value,))
                    changed.append((name, original))
            except pymysql.err.MySQLError:
                pass  # no privilege on a shared server: just wait
            try:
                while time.monotonic() - t0 < timeout_s:
                    cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
                    row = cur.fetchone()
                    if row is None or int(row[1]) <= dirty_pages:
                        break
                    time.sleep(0.2)
            finally:
                for name, original in reversed(changed):
                    cur.execute(f"SET GLOBAL {name} = %s", (original,))
    finally:
        conn.close()
    return time.monotonic() - t0


@dataclass
class Pair:
    """The two databases of one table size: the seed's and batchflag-db's.

    Attributes:
        server_url: The server, without a database.
        rows: Rows in each ``batchStatus``.
        seed_db: Database whose table stays at revision 0001 (no key column).
        batchflag_db: Database migrated to head.
        timings: Seconds spent loading, copying, settling.
        migration: What :func:`measure_migration` saw while 0001 -> 0002 ran here.
    """

    server_url: URL
    rows: int
    seed_db: str
    batchflag_db: str
    timings: dict[str, float] = field(default_factory=dict)
    migration: dict[str, Any] = field(default_factory=dict)

    def url(self, which: str) -> URL:
        """URL of the ``seed`` or ``batchflag`` database."""
        return self.server_url.set(database=self._name(which))

    def params(self, which: str) -> dict[str, Any]:
        """PyMySQL connect parameters of the ``seed`` or ``batchflag`` database."""
        return connect_params(self.url(which))

    def _name(self, which: str) -> str:
        if which == SEED:
            return self.seed_db
        if which == BATCHFLAG:
            return self.batchflag_db
        raise ValueError(f"unknown side {which!r}: expected {SEED!r} or {BATCHFLAG!r}")

    def drop(self) -> None:
        """Drop both databases."""
        server = connect_params(self.server_url)
        drop_database(server, self.seed_db)
        drop_database(server, self.batchflag_db)


def prepare_pair(
    server_url: URL,
    rows: int,
    *,
    prefix: str = "batchflag_bench",
    measure_migration_writer: bool = True,
    log: Log = _quiet,
) -> Pair:
    """Create both databases with ``rows`` identical rows; migrate batchflag's to head.

    Both tables come from revision 0001, so they are the same table; the seed's
    stays there. The batchflag side goes 0001 -> 0002 under :func:`measure_migration`
    (a concurrent writer), then to head. Row ``rows`` starts current on both sides.
    """
    pair = Pair(server_url, rows, f"{prefix}_seed", f"{prefix}_batchflag")
    server = connect_params(server_url)
    for name in (pair.seed_db, pair.batchflag_db):
        create_database(server, name)
    migrate.upgrade(pair.url(SEED), BASELINE)
    migrate.upgrade(pair.url(BATCHFLAG), BASELINE)

    t0 = time.monotonic()
    load_rows(pair.params(SEED), rows)
    _execute(pair.params(SEED), f"UPDATE batchStatus SET currentBatch = 1 WHERE id = {rows}")
    pair.timings["load_s"] = time.monotonic() - t0
    log(f"loaded {rows:,} rows in {pair.timings['load_s']:.1f}s")

    t0 = time.monotonic()
    copy_rows(pair.seed_db, pair.params(BATCHFLAG), rows)
    pair.timings["copy_s"] = time.monotonic() - t0
    pair.timings["settle_s"] = quiesce(pair.params(SEED))

    if measure_migration_writer:
        pair.migration = measure_migration(pair.url(BATCHFLAG), rows)
        # The writer added rows: delete them, so both tables hold exactly `rows` rows.
        _execute(pair.params(BATCHFLAG), f"DELETE FROM batchStatus WHERE id > {rows}")
        log(
            f"migration {BASELINE}->{INVARIANT} on {rows:,} rows: "
            f"{pair.migration['duration_s']:.2f}s, longest concurrent write "
            f"{pair.migration['max_stall_ms']:.1f} ms"
        )
    migrate.upgrade(pair.url(BATCHFLAG))
    for which in (SEED, BATCHFLAG):
        _execute(pair.params(which), "ANALYZE TABLE batchStatus")
    pair.timings["settle_s"] += quiesce(pair.params(SEED))
    return pair


# --------------------------------------------------------------------------- migration


@contextmanager
def _statement_timer(records: list[dict[str, Any]], min_ms: float = 1.0) -> Iterator[None]:
    """Record every SQLAlchemy statement that takes at least ``min_ms`` while active."""

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info.setdefault("_bench_t0", []).append(time.perf_counter_ns())

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        elapsed_ms = (time.perf_counter_ns() - conn.info["_bench_t0"].pop()) / 1e6
        if elapsed_ms >= min_ms:
            records.append({"statement": " ".join(statement.split())[:120], "ms": elapsed_ms})

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)
    try:
        yield
    finally:
        event.remove(Engine, "before_cursor_execute", before)
        event.remove(Engine, "after_cursor_execute", after)


def measure_migration(
    url: URL, rows: int, *, revision: str = INVARIANT, settle_s: float = 0.5
) -> dict[str, Any]:
    """Upgrade ``url`` to ``revision`` while a writer INSERTs/UPDATEs batchStatus in a loop.

    The writer (one thread, its own autocommit connection) alternates a one-row
    INSERT and a one-row UPDATE by primary key, timing each. Returns the migration's
    duration, the slowest write that overlapped it (the longest stall a writer saw),
    the writer's median/p99 during it, its slowest write before it (the baseline),
    and every statement of the migration that took 1 ms or more.
    """
    params = connect_params(url)
    ops: list[tuple[int, int]] = []
    errors: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        rng = random.Random(7)
        conn = connect(params, autocommit=True)
        try:
            with conn.cursor() as cur:
                i = 0
                while not stop.is_set():
                    t0 = time.perf_counter_ns()
                    try:
                        if i % 2:
                            cur.execute(
                                "INSERT INTO batchStatus (batchDate, batchNumber, batchStatus) "
                                "VALUES ('2031-01-01', %s, 'Pending')",
                                (i,),
                            )
                        else:
                            cur.execute(
                                "UPDATE batchStatus SET batchStatus = %s WHERE id = %s",
                                ("Running" if i % 4 else "Completed", rng.randint(1, rows)),
                            )
                    except pymysql.err.MySQLError as exc:
                        errors.append(f"{exc.args[0]}: {exc.args[1]}")
                    ops.append((t0, time.perf_counter_ns()))
                    i += 1
        finally:
            conn.close()

    thread = threading.Thread(target=writer, name="bench-migration-writer", daemon=True)
    statements: list[dict[str, Any]] = []
    thread.start()
    try:
        time.sleep(settle_s)
        with _statement_timer(statements):
            m0 = time.perf_counter_ns()
            migrate.upgrade(url, revision)
            m1 = time.perf_counter_ns()
        time.sleep(settle_s)
    finally:
        stop.set()
        thread.join(timeout=120)
    during = [end - start for start, end in ops if end > m0 and start < m1]
    before = [end - start for start, end in ops if end <= m0]
    if not during:
        raise RuntimeError("the writer completed no write while the migration ran")
    stats = summarize(during)
    return {
        "rows": rows,
        "revision": revision,
        "duration_s": (m1 - m0) / 1e9,
        "writer_ops_during": len(during),
        "max_stall_ms": stats["max_ms"],
        "writer_median_ms": stats["median_ms"],
        "writer_p99_ms": stats["p99_ms"],
        "baseline_max_ms": max(before) / 1e6 if before else None,
        "writer_errors": errors[:20],
        "statements": statements,
    }


# --------------------------------------------------------------------------- latency


class _Holder:
    """Which batch is current on the batchflag side, as the benchmark last set it."""

    def __init__(self, rows: int, current: int, rng: random.Random) -> None:
        self.rows = rows
        self.current = current
        self.rng = rng

    def other(self) -> int:
        """A random batch that is not the current one (so every flip changes two rows)."""
        while True:
            candidate = self.rng.randint(1, self.rows)
            if candidate != self.current:
                return candidate


def _check_previous(expected: int, got: object) -> None:
    if got != expected:
        raise RuntimeError(f"flip reported previous batch {got!r}, expected {expected}")


def measure_flips(pair: Pair, plan: Plan, seed: int = 1) -> dict[str, dict[str, float]]:
    """Latency of the three ways to flip on the batchflag table, interleaved.

    * ``flip``: bare ``CALL set_current_batch(id)`` through PyMySQL (autocommit);
    * ``wrapper``: ``batchflag_db.set_current_batch(conn, id)`` on a PyMySQL autocommit
      connection (the same CALL, plus validation and result handling in Python);
    * ``floor``: the physical floor: ``START TRANSACTION; UPDATE .. = 0 WHERE id = old;
      UPDATE .. = 1 WHERE id = new; COMMIT`` sent in one round trip (multi-statement),
      the same two row writes (and unique-index updates) and one commit, nothing else.
    """
    params = pair.params(BATCHFLAG)
    call_conn = connect(params, autocommit=True)
    wrapper_conn = connect(params, autocommit=True)
    floor_conn = connect(params, autocommit=True, client_flag=CLIENT.MULTI_STATEMENTS)
    try:
        with call_conn.cursor() as cur:
            cur.execute("SELECT id FROM batchStatus WHERE currentBatchKey = 1")
            (current,) = cur.fetchone()
        holder = _Holder(pair.rows, int(current), random.Random(seed))
        call_cur = call_conn.cursor()
        floor_cur = floor_conn.cursor()

        def flip() -> None:
            target = holder.other()
            call_cur.execute("CALL set_current_batch(%s)", (target,))
            rows = drain(call_cur)
            _check_previous(holder.current, rows[0][1])
            holder.current = target

        def wrapper() -> None:
            target = holder.other()
            result = set_current_batch(wrapper_conn, target)
            _check_previous(holder.current, result.previous_batch_id)
            holder.current = target

        def floor() -> None:
            target = holder.other()
            floor_cur.execute(
                "START TRANSACTION; "
                f"UPDATE batchStatus SET currentBatch = 0 WHERE id = {holder.current}; "
                f"UPDATE batchStatus SET currentBatch = 1 WHERE id = {target}; "
                "COMMIT"
            )
            while floor_cur.nextset():
                pass
            holder.current = target

        samples = interleave({"flip": flip, "wrapper": wrapper, "floor": floor}, plan)
    finally:
        for conn in (call_conn, wrapper_conn, floor_conn):
            conn.close()
    return {name: summarize(values) for name, values in samples.items()}


def measure_seed_flips(pair: Pair, plan: Plan, seed: int = 2) -> dict[str, dict[str, float]]:
    """Latency of the seed's flip on the table without the key column.

    * ``seed``: ``UPDATE batchStatus SET currentBatch = 0`` then ``UPDATE batchStatus
      SET currentBatch = 1 WHERE id = ?``, two autocommit statements (two transactions),
      exactly as the seed's ``set_as_current_batch`` runs them;
    * ``seed_one_txn``: the same two statements inside one explicit transaction
      (what the seed would need to be atomic), for comparison.
    """
    conn = connect(pair.params(SEED), autocommit=True)
    holder = _Holder(pair.rows, pair.rows, random.Random(seed))
    try:
        cur = conn.cursor()

        def seed_flip() -> None:
            target = holder.other()
            cur.execute("UPDATE batchStatus SET currentBatch = 0")
            cur.execute("UPDATE batchStatus SET currentBatch = 1 WHERE id = %s", (target,))
            holder.current = target

        def seed_one_txn() -> None:
            target = holder.other()
            conn.begin()
            cur.execute("UPDATE batchStatus SET currentBatch = 0")
            cur.execute("UPDATE batchStatus SET currentBatch = 1 WHERE id = %s", (target,))
            conn.commit()
            holder.current = target

        samples = interleave({"seed": seed_flip, "seed_one_txn": seed_one_txn}, plan)
    finally:
        conn.close()
    return {name: summarize(values) for name, values in samples.items()}


VERIFICATION_QUERY = (
    "SELECT id, batchDate, currentBatch, batchStatus FROM batchStatus WHERE currentBatch = 1"
)
"""The dashboard's priority 1 and the pipeline's own check of the current batch."""

LOOKUPS = {
    "lookup_key": (BATCHFLAG, "SELECT id FROM batchStatus WHERE currentBatchKey = 1"),
    "lookup_flag": (SEED, VERIFICATION_QUERY),
    "lookup_flag_keyed": (BATCHFLAG, VERIFICATION_QUERY),
}
"""Finding the current batch: this project's lookup (by key), and the user's own
Verification query (by flag) on the plain table (a scan) and on the migrated one (a
lookup on the flag index revision 0007 adds)."""


def measure_lookups(pair: Pair, plan: Plan) -> dict[str, dict[str, float]]:
    """Latency of each query of :data:`LOOKUPS`, interleaved; each must find one row."""
    conns = {side: connect(pair.params(side), autocommit=True) for side in (SEED, BATCHFLAG)}
    try:
        cursors = {side: conn.cursor() for side, conn in conns.items()}

        def lookup(side: str, sql: str) -> Callable[[], None]:
            cur = cursors[side]

            def run() -> None:
                cur.execute(sql)
                found = cur.fetchall()
                if len(found) != 1:
                    raise RuntimeError(f"{sql!r} found {len(found)} rows, expected 1")

            return run

        ops = {name: lookup(side, sql) for name, (side, sql) in LOOKUPS.items()}
        samples = interleave(ops, plan)
    finally:
        for conn in conns.values():
            conn.close()
    return {name: summarize(values) for name, values in samples.items()}


def explain(pair: Pair) -> dict[str, list[dict[str, Any]]]:
    """The server's plan for each lookup and for the seed's full-table UPDATE.

    Asked for in the tabular form on every server (MySQL 9 may default to another
    ``explain_format``), so each row has the same columns (``type``, ``key``, ``rows``).
    """
    version = server_version(pair.params(SEED))
    statements = {name: (side, sql) for name, (side, sql) in LOOKUPS.items()}
    statements["seed_clear_all"] = (SEED, "UPDATE batchStatus SET currentBatch = 0")
    return {
        name: _query(pair.params(side), explain_statement(sql, version))
        for name, (side, sql) in statements.items()
    }


def measure_size(pair: Pair, plan: Plan) -> dict[str, Any]:
    """Every single-caller measurement of one table size: lookups, flips, the seed's flips.

    Returns ``ops`` (operation -> latency summary), ``timings`` (load, copy, settle)
    and ``explain`` (the server's plans for the lookups and the seed's UPDATE).
    """
    ops: dict[str, dict[str, float]] = {}
    ops.update(measure_lookups(pair, plan))
    ops.update(measure_flips(pair, plan))
    ops.update(measure_seed_flips(pair, plan))
    return {"ops": ops, "timings": dict(pair.timings), "explain": explain(pair)}


# --------------------------------------------------------------------------- concurrency


POLL_INTERVAL_S = 0.002
"""The concurrent reader's pause between polls (up to ~500 polls/s)."""


def _mp_context() -> Any:
    """Fork where available (nothing to re-import per process), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def current_count(params: dict[str, Any]) -> int:
    """Rows whose flag is set, counted by a scan of the flag itself."""
    return int(next(iter(_query(params, _workers.READER_SQL)[0].values())))


def run_callers(
    pair: Pair,
    approach: str,
    callers: int,
    duration_s: float,
    *,
    poll_interval_s: float = POLL_INTERVAL_S,
    seed: int = 0,
) -> dict[str, Any]:
    """Run ``callers`` processes flipping with ``approach`` and one reader, for ``duration_s``.

    Processes, not threads: each caller has its own interpreter, so Python's GIL
    never limits how many calls reach the server at once.

    Raises:
        RuntimeError: A caller or the reader failed, or did not report in time.
    """
    side = BATCHFLAG if approach == BATCHFLAG else SEED
    params = pair.params(side)
    ctx = _mp_context()
    barrier = ctx.Barrier(callers + 2)
    results = ctx.Queue()
    shared = {"duration_s": duration_s, "barrier": barrier, "results": results}
    processes = [
        ctx.Process(
            target=_workers.caller_process,
            args=(params, approach),
            kwargs={"max_id": pair.rows, "seed": seed * 1000 + i, **shared},
            daemon=True,
        )
        for i in range(callers)
    ]
    processes.append(
        ctx.Process(
            target=_workers.reader_process,
            args=(params,),
            kwargs={"interval_s": poll_interval_s, **shared},
            daemon=True,
        )
    )
    for process in processes:
        process.start()
    reports: list[dict[str, Any]] = []
    try:
        barrier.wait(timeout=120)
        deadline = time.monotonic() + duration_s + 120
        while len(reports) < len(processes):
            reports.append(results.get(timeout=max(1.0, deadline - time.monotonic())))
    except Exception as exc:
        raise RuntimeError(
            f"{approach} with {callers} callers: only {len(reports)} of {len(processes)} "
            f"processes reported ({type(exc).__name__}: {exc}); reports: "
            f"{[r.get('failure') for r in reports]}"
        ) from exc
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    failures = [r["failure"] for r in reports if "failure" in r]
    if failures:
        raise RuntimeError(f"{approach} with {callers} callers failed: {failures}")
    caller_reports = [r for r in reports if r["role"] == "caller"]
    (reader,) = [r for r in reports if r["role"] == "reader"]
    ok = sum(r["ok"] for r in caller_reports)
    errors: dict[str, int] = {}
    for r in caller_reports:
        for errno, count in r["errors"].items():
            errors[str(errno)] = errors.get(str(errno), 0) + count
    elapsed = max(r["elapsed_s"] for r in caller_reports)
    latencies = [ns for r in caller_reports for ns in r["latencies_ns"]]
    return {
        "approach": approach,
        "callers": callers,
        "rows": pair.rows,
        "duration_s": elapsed,
        "flips_ok": ok,
        "flips_per_s": ok / elapsed if elapsed > 0 else 0.0,
        "errors": errors,
        "latency": summarize(latencies) if latencies else None,
        "polls": reader["polls"],
        "bad_polls": reader["bad"],
        "bad_poll_share": reader["bad"] / reader["polls"] if reader["polls"] else None,
        "poll_counts": {str(k): v for k, v in sorted(reader["counts"].items())},
        "current_rows_after": current_count(params),
    }


def measure_concurrency(
    pair: Pair,
    callers: tuple[int, ...] = (1, 8, 32),
    duration_s: float = 5.0,
    *,
    approaches: tuple[str, ...] = APPROACHES,
    poll_interval_s: float = POLL_INTERVAL_S,
    log: Log = _quiet,
) -> list[dict[str, Any]]:
    """Throughput and reader-visible anomalies for each approach and caller count.

    For each caller count the approaches run back to back, so a busy spell on the
    machine hits both sides of a comparison alike.
    """
    out = []
    for i, count in enumerate(callers):
        for approach in approaches:
            result = run_callers(
                pair, approach, count, duration_s, poll_interval_s=poll_interval_s, seed=i + 1
            )
            share = result["bad_poll_share"]
            log(
                f"{approach:>9} x{count:<3} {result['flips_per_s']:8.0f} flips/s, "
                f"errors {result['errors'] or 0}, reader saw not-exactly-one in "
                f"{result['bad_polls']}/{result['polls']} polls"
                + (f" ({share:.0%})" if share is not None else "")
            )
            out.append(result)
    return out
