"""Reading from an asynchronous replica: a dashboard there never sees a torn state.

A primary and a read-only replica of the run's kind (ROW binary log, GTIDs) are
started once for the module (:class:`~batchflag_db.testing.replica.ReplicaPair`);
every test gets a fresh database on the primary, migrated there by an account
with privileges on that database only (no SUPER, no READ_ONLY ADMIN), which the
replica receives through replication like everything else.

The storm: callers flip through :func:`batchflag_db.set_current_batch` on the
primary while a reader polls the replica. Each flip is one transaction and
reaches the replica as one transaction, so every poll must show exactly one
current row, by the key and by the flag, and that row must be the end of the
history the same poll shows. At the end the replica holds exactly what the
primary holds.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pymysql
import pytest
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from batchflag_db import BatchFlagError, migrate, set_current_batch, unset_current_batch
from batchflag_db._schema import VERSION_TABLE
from batchflag_db.dashboard import Resolution, resolve_dashboard_batch
from batchflag_db.grants import grant
from batchflag_db.testing.replica import ReplicaPair
from batchflag_db.testing.selection import SessionServer
from tests.conftest import connect, insert_batches

pytestmark = pytest.mark.replica

FLIPPERS = 4
FLIPS_EACH = 150
BATCHES = 30

LAG_FLIPS = 50
LAG_PACE = 0.02
"""Seconds between the paced flips whose replication delay is measured."""
LAG_LIMIT = 5.0
"""A paced flip that has not reached an idle replica after this long is a failure."""

ER_OPTION_PREVENTS_STATEMENT = 1290
"""The server's refusal under ``read_only`` / ``super_read_only``."""

MIGRATOR = "bf_migrator"
APP = "bf_app"
PASSWORD = "replica-test-pw"  # noqa: S105 - an account on a throwaway server

APPLIERS = {
    # name: (MariaDB slave_parallel_threads, mode), (MySQL replica_parallel_workers, mode)
    "serial": {"mariadb": (0, "optimistic"), "mysql": (1, "ON")},
    "parallel": {"mariadb": (4, "optimistic"), "mysql": (4, "ON")},
    "parallel-relaxed": {"mariadb": (4, "aggressive"), "mysql": (4, "OFF")},
}
"""The appliers the storm runs under. MariaDB's default applies with one thread; its
parallel applier (``optimistic``, the default mode, or ``aggressive``) commits in the
primary's order. MySQL's default is 4 workers with ``replica_preserve_commit_order = ON``;
with OFF, transactions that touch no common row may commit out of order, and every flip
writes the lock row."""


@pytest.fixture(scope="module")
def pair(batchflag_server: SessionServer) -> Iterator[ReplicaPair]:
    """A primary and a read-only replica of the run's kind, with the test accounts."""
    if batchflag_server.kind is None:
        pytest.fail(
            f"the run's server ({batchflag_server.version}) is of no known kind, "
            "so no replica pair of it can be started",
            pytrace=False,
        )
    with ReplicaPair(batchflag_server.kind) as started:
        admin = started.primary.connect(autocommit=True)
        try:
            with admin.cursor() as cur:
                for user in (MIGRATOR, APP):
                    cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
        finally:
            admin.close()
        yield started


def _url(pair: ReplicaPair, side: str, database: str, user: str = "root") -> URL:
    server = pair.primary if side == "primary" else pair.replica
    return URL.create(
        "mysql+pymysql",
        username=user,
        password=None if user == "root" else PASSWORD,
        host="127.0.0.1",
        port=server.port,
        database=database,
    )


@dataclass(frozen=True)
class _Database:
    """A fresh database on the pair, already on the replica.

    Attributes:
        name: Its name.
        ids: The batch ids, ascending (read from the table).
        pair: The pair.
    """

    name: str
    ids: tuple[int, ...]
    pair: ReplicaPair

    def connect(self, side: str, user: str = "root", **kwargs: Any) -> pymysql.Connection:
        """An autocommit connection to the primary or the replica, as ``user``."""
        kwargs.setdefault("autocommit", True)
        return connect(_url(self.pair, side, self.name, user), **kwargs)


def _fresh_database(pair: ReplicaPair, *, migrate_as: str = MIGRATOR) -> Iterator[_Database]:
    name = f"bfr_{uuid.uuid4().hex[:12]}"
    admin = pair.primary.connect(autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
            cur.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{MIGRATOR}'@'127.0.0.1'")
        migrate.upgrade(_url(pair, "primary", name, migrate_as))
        grant(admin, f"{APP}@127.0.0.1", name)
        admin.select_db(name)
        ids = tuple(insert_batches(admin, BATCHES))
        pair.wait_caught_up(30)
        yield _Database(name, ids, pair)
    finally:
        with contextlib.suppress(pymysql.MySQLError), admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
    pair.wait_caught_up(30)


@pytest.fixture
def db(pair: ReplicaPair) -> Iterator[_Database]:
    """A fresh database migrated by an account with privileges on it alone."""
    yield from _fresh_database(pair)


@pytest.fixture
def publish(
    capsys: pytest.CaptureFixture[str], record_property: Callable[[str, object], None]
) -> Callable[[str, str], None]:
    """Print a report line to the terminal even without ``-s``, and record it for JUnit XML."""

    def emit(name: str, text: str) -> None:
        record_property(name, text)
        with capsys.disabled():
            print(f"\n{text}", flush=True)

    return emit


# --------------------------------------------------------------------------
# Reading the replica
# --------------------------------------------------------------------------

_POLL = """
    SELECT
        (SELECT COUNT(*) FROM batchStatus WHERE currentBatchKey = 1),
        (SELECT COUNT(*) FROM batchStatus WHERE currentBatch <> 0),
        (SELECT MIN(id) FROM batchStatus WHERE currentBatch <> 0),
        (SELECT batchId FROM currentBatchHistory ORDER BY id DESC LIMIT 1),
        (SELECT COUNT(*) FROM currentBatchHistory),
        (SELECT flipCount FROM currentBatchLock WHERE id = 1)
"""
"""One statement, so one read view: current rows by key and by flag, the current id,
the batch of the newest history row, the history's length and the lock row's counter."""


@dataclass
class _Reader:
    """Polls the replica until told to stop; counts polls that show a torn state."""

    conn: pymysql.Connection
    stop: threading.Event = field(default_factory=threading.Event)
    polls: int = 0
    bad: list[str] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    crash: BaseException | None = None

    def run(self) -> None:
        last_history = last_flips = -1
        try:
            with self.conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute(_POLL)
                    by_key, by_flag, current, newest, history, flips = cur.fetchone()
                    self.polls += 1
                    problem = None
                    if by_key != 1 or by_flag != 1:
                        problem = f"{by_key} rows by the key, {by_flag} by the flag"
                    elif current != newest:
                        problem = f"current {current}, newest history row names {newest}"
                    elif history < last_history or flips < last_flips:
                        problem = (
                            f"went back: history {last_history} -> {history}, "
                            f"flipCount {last_flips} -> {flips}"
                        )
                    if problem is not None and len(self.bad) < 1000:
                        self.bad.append(f"poll {self.polls}: {problem}")
                    if current is not None:
                        self.seen.add(int(current))
                    last_history, last_flips = history, flips
        except BaseException as exc:  # reported by the test, not as a thread warning
            self.crash = exc


def _table_rows(conn: pymysql.Connection) -> dict[str, tuple[tuple[Any, ...], ...]]:
    """Every row of the three tables, in primary-key order."""
    out = {}
    with conn.cursor() as cur:
        for table, columns in (
            (
                "batchStatus",
                "id, batchDate, batchNumber, batchStatus, currentBatch, currentBatchKey, "
                "createdAt, updatedAt",
            ),
            (
                "currentBatchHistory",
                "id, batchId, previousBatchId, `action`, changedAt, account, connectionId",
            ),
            ("currentBatchLock", "id, flipCount"),
        ):
            cur.execute(f"SELECT {columns} FROM {table} ORDER BY id")
            out[table] = tuple(tuple(r) for r in cur.fetchall())
    return out


def _assert_replica_equals_primary(db: _Database) -> dict[str, tuple[tuple[Any, ...], ...]]:
    """After catching up, the replica's tables hold exactly the primary's rows."""
    db.pair.wait_caught_up(60)
    primary, replica = db.connect("primary"), db.connect("replica")
    try:
        on_primary, on_replica = _table_rows(primary), _table_rows(replica)
    finally:
        primary.close()
        replica.close()
    for table, rows in on_primary.items():
        assert rows, f"{table} is empty on the primary"
        assert on_replica[table] == rows, f"{table} differs between the replica and the primary"
    return on_primary


def _flip_on_primary(db: _Database, batch: int) -> None:
    conn = db.connect("primary", APP)
    try:
        set_current_batch(conn, batch)
    finally:
        conn.close()


# --------------------------------------------------------------------------
# The storm
# --------------------------------------------------------------------------


class TestStorm:
    @pytest.mark.parametrize("applier", list(APPLIERS))
    def test_a_reader_on_the_replica_never_sees_zero_or_two_current(
        self, db: _Database, applier: str, publish: Callable[[str, str], None]
    ) -> None:
        """4 callers x 150 flips on the primary; every poll on the replica shows exactly one current.

        Each poll also checks that the current row is the batch of the newest
        history row and that neither the history nor the lock row's counter
        goes back. Afterwards the replica equals the primary and the history is
        one unbroken chain of every flip that changed something.
        """
        pair = db.pair
        workers, mode = APPLIERS[applier][pair.flavour]
        before = pair.applier_state()
        try:
            state = pair.set_applier(workers, mode)
            assert (state.workers, state.mode) == (workers, mode)
            self._storm(db, applier, publish)
        finally:
            pair.set_applier(before.workers, before.mode)

    @staticmethod
    def _storm(db: _Database, applier: str, publish: Callable[[str, str], None]) -> None:
        pair = db.pair
        workers, mode = APPLIERS[applier][pair.flavour]

        _flip_on_primary(db, db.ids[0])  # the first flip, before the reader starts
        pair.wait_caught_up(30)

        retries_before = pair.applier_state().retries
        reader = _Reader(db.connect("replica"))
        reader_thread = threading.Thread(target=reader.run, name="replica-reader")
        barrier = threading.Barrier(FLIPPERS + 1)
        changed = [0] * FLIPPERS
        calls = [0] * FLIPPERS
        errors: list[str] = []

        def flipper(index: int) -> None:
            rng = random.Random(index)
            conn = db.connect("primary", APP)
            try:
                barrier.wait(timeout=60)
                for _ in range(FLIPS_EACH):
                    flip = set_current_batch(conn, rng.choice(db.ids))
                    calls[index] += 1
                    changed[index] += flip.changed
            except BaseException as exc:  # reported below, not as a thread warning
                errors.append(f"flipper {index}: {type(exc).__name__}: {exc}")
                barrier.abort()
            finally:
                conn.close()

        threads = [
            threading.Thread(target=flipper, args=(i,), name=f"flipper-{i}")
            for i in range(FLIPPERS)
        ]
        reader_thread.start()
        for t in threads:
            t.start()
        barrier.wait(timeout=60)
        started = time.monotonic()
        for t in threads:
            t.join(120)
        flipped = time.monotonic() - started
        catch_up = pair.wait_caught_up(60)
        time.sleep(0.05)  # a few polls of the final state
        reader.stop.set()
        reader_thread.join(30)
        reader.conn.close()
        retried = pair.applier_state().retries - retries_before

        publish(
            "replica_storm",
            f"replica storm on {pair.kind.name} ({applier} applier: workers {workers}, "
            f"mode {mode}): {FLIPPERS} callers x {FLIPS_EACH} flips = {sum(calls)} flips "
            f"({sum(changed)} changed) in {flipped:.1f} s on the primary; reader on the "
            f"replica: {reader.polls} polls, {len(reader.bad)} bad, {len(reader.seen)} "
            f"distinct current batches seen; caught up {catch_up * 1000:.0f} ms after the "
            f"last flip; the applier retried {retried} transactions",
        )
        assert errors == []
        assert not any(t.is_alive() for t in threads), "a flipper did not finish"
        assert reader.crash is None, f"the reader crashed: {reader.crash!r}"
        assert reader.bad == [], f"{len(reader.bad)} bad polls, first: {reader.bad[:5]}"
        assert reader.polls >= 100, f"only {reader.polls} polls: the check saw too little"
        assert len(reader.seen) > 1, "the reader never saw a flip arrive"

        rows = _assert_replica_equals_primary(db)
        history = rows["currentBatchHistory"]
        assert len(history) == 1 + sum(changed)
        previous = None
        for _, batch, before, action, *_ in history:
            assert action == "set"
            assert before == previous, f"history chain broken: {before} after {previous}"
            previous = batch
        current = [r[0] for r in rows["batchStatus"] if r[4] != 0]
        assert current == [previous]
        assert rows["currentBatchLock"] == ((1, 1 + sum(calls)),)

    def test_the_two_statement_flip_is_torn_on_the_replica_too(
        self, db: _Database, publish: Callable[[str, str], None]
    ) -> None:
        """The control: the reader above does catch a flip made of two transactions.

        300 flips the old way (``UPDATE ... SET currentBatch = 0`` then ``= 1 WHERE
        id = ?``, each its own autocommit transaction) on the primary: the replica
        applies them one transaction at a time, and the reader sees no current row
        in between.
        """
        pair = db.pair
        admin = db.connect("primary")
        with admin.cursor() as cur:
            cur.execute("UPDATE batchStatus SET currentBatch = 1 WHERE id = %s", (db.ids[0],))
        pair.wait_caught_up(30)
        reader = _Reader(db.connect("replica"))
        reader_thread = threading.Thread(target=reader.run, name="replica-reader")
        reader_thread.start()
        rng = random.Random(0)
        try:
            with admin.cursor() as cur:
                for _ in range(300):
                    cur.execute("UPDATE batchStatus SET currentBatch = 0")
                    cur.execute(
                        "UPDATE batchStatus SET currentBatch = 1 WHERE id = %s",
                        (rng.choice(db.ids),),
                    )
            pair.wait_caught_up(60)
        finally:
            reader.stop.set()
            reader_thread.join(30)
            reader.conn.close()
            admin.close()
        torn = [b for b in reader.bad if "rows by the key" in b]
        publish(
            "replica_control",
            f"replica control on {pair.kind.name}: 300 two-statement flips on the primary; "
            f"reader on the replica: {reader.polls} polls, {len(torn)} saw no current row",
        )
        assert reader.crash is None, f"the reader crashed: {reader.crash!r}"
        assert torn, "the reader never saw the gap between the two statements"

    def test_a_paced_flip_reaches_the_replica_quickly(
        self, db: _Database, publish: Callable[[str, str], None]
    ) -> None:
        """50 flips 20 ms apart: how long each takes to show on the replica (printed)."""
        pair = db.pair
        state = pair.applier_state()
        primary = db.connect("primary", APP)
        replica = db.connect("replica")
        delays: list[float] = []
        try:
            with replica.cursor() as cur:
                for n in range(LAG_FLIPS):
                    batch = db.ids[n % len(db.ids)]
                    set_current_batch(primary, batch)
                    acked = time.monotonic()
                    while True:
                        cur.execute("SELECT id FROM batchStatus WHERE currentBatchKey = 1")
                        row = cur.fetchone()
                        delay = time.monotonic() - acked
                        if row is not None and row[0] == batch:
                            break
                        assert delay < LAG_LIMIT, f"flip {n} to {batch} not on the replica"
                    delays.append(delay)
                    time.sleep(LAG_PACE)
        finally:
            primary.close()
            replica.close()
        delays.sort()
        publish(
            "replica_lag",
            f"replica lag on {pair.kind.name} (workers {state.workers}, mode {state.mode}): "
            f"{LAG_FLIPS} flips {LAG_PACE * 1000:.0f} ms apart, acknowledged on the primary "
            f"-> visible on the replica: median {statistics.median(delays) * 1000:.1f} ms, "
            f"p95 {delays[int(len(delays) * 0.95) - 1] * 1000:.1f} ms, "
            f"max {delays[-1] * 1000:.1f} ms",
        )
        assert len(delays) == LAG_FLIPS


# --------------------------------------------------------------------------
# The read-only replica
# --------------------------------------------------------------------------


class TestReadOnlyReplica:
    def test_the_replica_is_read_only(self, db: _Database) -> None:
        """The harness made the replica read-only (and super-read-only on MySQL)."""
        conn = db.connect("replica")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@global.read_only")
                assert cur.fetchone() == (1,)
                if db.pair.flavour == "mysql":
                    cur.execute("SELECT @@global.super_read_only")
                    assert cur.fetchone() == (1,)
        finally:
            conn.close()

    @pytest.mark.parametrize("mode", ["autocommit", "transaction", "engine"])
    def test_resolve_on_the_replica_answers_like_the_primary(
        self, db: _Database, mode: str
    ) -> None:
        """resolve_dashboard_batch(NULL) and (id) give the primary's answers on the replica.

        Through every reason it has: requested, current_flag, in_progress,
        incomplete, most_recent; from an autocommit connection (the procedure's
        own READ ONLY transaction), inside the caller's transaction, and through
        an Engine. The dashboard account holds only SELECT and EXECUTE.
        """
        admin = db.connect("primary")
        steps: list[tuple[str | None, str]] = [
            ("UPDATE batchStatus SET batchStatus = 'Completed'", "most_recent"),
            (f"UPDATE batchStatus SET batchStatus = 'Failed' WHERE id = {db.ids[3]}", "incomplete"),
            (
                f"UPDATE batchStatus SET batchStatus = 'InProgress' WHERE id = {db.ids[5]}",
                "in_progress",
            ),
            (None, "current_flag"),
        ]
        engine = create_engine(_url(db.pair, "replica", db.name, APP), poolclass=pool.NullPool)
        reader = db.connect("replica", APP, autocommit=mode == "autocommit")
        seen: list[str] = []
        try:
            for statement, _ in steps:
                if statement is None:
                    _flip_on_primary(db, db.ids[7])
                else:
                    with admin.cursor() as cur:
                        cur.execute(statement)
                db.pair.wait_caught_up(30)
                for requested in (None, db.ids[1]):
                    expected = resolve_dashboard_batch(admin, requested)
                    if mode == "engine":
                        answer = resolve_dashboard_batch(engine, requested)
                    else:
                        answer = resolve_dashboard_batch(reader, requested)
                        if mode == "transaction":
                            reader.rollback()  # the next step must see the new rows
                    assert answer == expected, f"{requested=}: replica {answer}, primary {expected}"
                    assert answer is not None
                    seen.append(answer.reason)
                assert expected == Resolution(db.ids[1], "requested")
        finally:
            admin.close()
            reader.close()
            engine.dispose()
        assert seen == [name for _, reason in steps for name in (reason, "requested")]

    @pytest.mark.parametrize("call", ["set", "unset"])
    def test_a_flip_on_the_replica_is_refused(self, db: _Database, call: str) -> None:
        """set/unset on the replica fail with 1290 (read-only), for the app account and root.

        Nothing changes on the replica, and it keeps replicating: a flip on the
        primary still arrives.
        """
        _flip_on_primary(db, db.ids[0])
        db.pair.wait_caught_up(30)
        procedure = set_current_batch if call == "set" else unset_current_batch
        target = db.ids[1] if call == "set" else db.ids[0]
        for user in (APP, "root"):
            conn = db.connect("replica", user)
            try:
                with pytest.raises(BatchFlagError) as refused:
                    procedure(conn, target)
            finally:
                conn.close()
            assert refused.value.errno == ER_OPTION_PREVENTS_STATEMENT, str(refused.value)
            assert "read-only" in str(refused.value)
        _flip_on_primary(db, db.ids[2])
        rows = _assert_replica_equals_primary(db)
        assert [r[0] for r in rows["batchStatus"] if r[4] != 0] == [db.ids[2]]
        assert db.pair.applier_state().running

    def test_migrations_replicate_without_trusting_function_creators(self, db: _Database) -> None:
        """The schema, the procedures and the revision reach the replica unchanged.

        The migrations ran on the primary with the binary log on, by an account
        without SUPER, and with log_bin_trust_function_creators off: CREATE
        PROCEDURE needs no such trust (only stored functions and triggers do).
        """
        primary, replica = db.connect("primary"), db.connect("replica")
        try:
            with primary.cursor() as cur:
                cur.execute("SELECT @@global.log_bin, @@global.log_bin_trust_function_creators")
                assert cur.fetchone() == (1, 0)
                cur.execute(f"SHOW GRANTS FOR '{MIGRATOR}'@'127.0.0.1'")
                grants = " ".join(str(r[0]) for r in cur.fetchall())
            assert "ON *.*" not in grants.replace("GRANT USAGE ON *.*", "")
            shown = {}
            for side, conn in (("primary", primary), ("replica", replica)):
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT ROUTINE_NAME, DEFINER, SECURITY_TYPE, SQL_DATA_ACCESS "
                        "FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() "
                        "ORDER BY ROUTINE_NAME"
                    )
                    routines = cur.fetchall()
                    bodies = []
                    for name, *_ in routines:
                        cur.execute(f"SHOW CREATE PROCEDURE `{name}`")
                        bodies.append(cur.fetchone()[2])
                    cur.execute(f"SELECT version_num FROM {VERSION_TABLE}")
                    revision = cur.fetchall()
                    cur.execute("SHOW CREATE TABLE batchStatus")
                    table = cur.fetchone()[1]
                shown[side] = (routines, bodies, revision, table)
        finally:
            primary.close()
            replica.close()
        routines = shown["primary"][0]
        assert [r[0] for r in routines] == [
            "resolve_dashboard_batch",
            "set_current_batch",
            "unset_current_batch",
        ]
        assert {r[1] for r in routines} == {f"{MIGRATOR}@127.0.0.1"}
        assert (
            "resolve_dashboard_batch",
            f"{MIGRATOR}@127.0.0.1",
            "DEFINER",
            "READS SQL DATA",
        ) in (tuple(r) for r in routines)
        assert shown["replica"] == shown["primary"]


class TestDefinerOnTheReplica:
    def test_read_only_binds_the_procedures_definer_not_the_caller(self, pair: ReplicaPair) -> None:
        """Procedures defined by root: a flip on the replica by the app account.

        The procedures run with their definer's privileges. On MySQL,
        super_read_only refuses the flip whoever the definer is. On MariaDB,
        read_only does not bind an account holding READ_ONLY ADMIN (part of ALL
        PRIVILEGES ON *.*), so the flip goes through, and the primary's next flip
        stops the replica's applier with 1062 on the unique index (the replica
        already has another current row). The test then repairs the replica:
        undoes the local flip and restarts the applier, which catches up.
        """
        for db in _fresh_database(pair, migrate_as="root"):
            _flip_on_primary(db, db.ids[0])
            pair.wait_caught_up(30)
            conn = db.connect("replica", APP)
            try:
                if pair.flavour == "mysql":
                    with pytest.raises(BatchFlagError) as refused:
                        set_current_batch(conn, db.ids[1])
                    assert refused.value.errno == ER_OPTION_PREVENTS_STATEMENT
                else:
                    before = _flag_rows(db)
                    assert set_current_batch(conn, db.ids[1]).changed
                    _flip_on_primary(db, db.ids[2])
                    _wait_applier_stopped(pair)
                    assert "1062" in pair.applier_state().last_error
                    _undo_local_flip(db, before)
            finally:
                conn.close()
            _assert_replica_equals_primary(db)
        assert pair.applier_state().running


def _wait_applier_stopped(pair: ReplicaPair, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while pair.applier_state().sql_running == "Yes":
        assert time.monotonic() < deadline, "the applier kept running"
        time.sleep(0.1)


def _flag_rows(db: _Database) -> list[tuple[Any, ...]]:
    """(currentBatch, updatedAt, id) of every batch, as the replica holds them."""
    conn = db.connect("replica")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT currentBatch, updatedAt, id FROM batchStatus ORDER BY id")
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def _undo_local_flip(db: _Database, before: list[tuple[Any, ...]]) -> None:
    """Undo one local flip on the replica, as root (read_only does not bind it on MariaDB).

    Restores the rows ``before`` held (updatedAt too, or it would differ from the
    primary's), drops the flip's history row and count, then restarts the applier.
    """
    conn = db.connect("replica")
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute("UPDATE batchStatus SET currentBatch = 0 WHERE currentBatch <> 0")
            for row in sorted(before, key=lambda r: r[0] != 0):  # clear before set
                cur.execute(
                    "UPDATE batchStatus SET currentBatch = %s, updatedAt = %s WHERE id = %s", row
                )
            cur.execute("DELETE FROM currentBatchHistory ORDER BY id DESC LIMIT 1")
            cur.execute("UPDATE currentBatchLock SET flipCount = flipCount - 1 WHERE id = 1")
            cur.execute("START SLAVE")
    finally:
        conn.close()
    db.pair.wait_running(30)
