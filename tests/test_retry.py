"""Deadlocks and lock wait timeouts: retried when the wrapper owns the transaction, raised when not.

Every conflict here is real: a second session holds the lock row of
currentBatchLock (lock wait timeout, 1205) or closes a genuine lock cycle with
the wrapper's call (deadlock, 1213). The number of attempts is read from the
wrapper's own log events and from ``Flip.attempts``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import mysql.connector
import MySQLdb
import pymysql
import pytest
from mysql.connector.abstracts import MySQLConnectionAbstract
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import URL, Engine

from batchflag_db import (
    BatchNotFoundError,
    DatabaseConnectionError,
    Flip,
    RetryPolicy,
    TransactionConflictError,
    set_current_batch,
    unset_current_batch,
)
from batchflag_db._retry import DEFAULT_RETRY, RETRY_EVENT, RetryState, owns_transaction
from batchflag_db.errors import BatchFlagError
from tests.conftest import connect, current_rows

SHORT_WAIT = "SET SESSION innodb_lock_wait_timeout = 1"
FAST = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05)


# --- helpers: real conflicts, driven by a second session -------------------------------


class LockHolder:
    """A session that holds the row of currentBatchLock, so every flip waits for it."""

    def __init__(self, url: URL):
        self.conn = connect(url)  # autocommit off: the lock lasts until release()
        with self.conn.cursor() as cur:
            cur.execute("SELECT id FROM currentBatchLock WHERE id = 1 FOR UPDATE")
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.conn.rollback()
            self.released = True

    def close(self) -> None:
        self.release()
        self.conn.close()


def waiting_session(url: URL, timeout: float = 10) -> int:
    """Wait until a session of ``url``'s database waits for a row lock; return its id.

    Raises:
        AssertionError: No session waited within ``timeout`` seconds.
    """
    monitor = connect(url, autocommit=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with monitor.cursor() as cur:
                cur.execute(
                    "SELECT t.trx_mysql_thread_id FROM information_schema.INNODB_TRX t "
                    "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
                    "WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()"
                )
                row = cur.fetchone()
            if row is not None:
                return int(row[0])
            if time.monotonic() > deadline:
                raise AssertionError("the wrapper's flip never waited for the lock")
            # InnoDB refreshes INNODB_TRX only after 0.1 s without readers:
            # polling faster would read the same stale snapshot forever.
            time.sleep(0.15)
    finally:
        monitor.close()


class DeadlockPartner:
    """Closes a genuine lock cycle with the next flip of ``target``.

    The partner updates many rows (so InnoDB picks the wrapper's lighter
    transaction as the victim) and locks ``target``. The wrapper's flip then locks
    the row of currentBatchLock and waits for ``target``; a thread sees it waiting
    and asks for the currentBatchLock row: a cycle, which InnoDB breaks with
    ER_LOCK_DEADLOCK (1213) in the wrapper's session. The partner then rolls back.
    """

    def __init__(self, url: URL, target: int, ballast: list[int]):
        self.url = url
        # Record locks only (one row per statement, READ COMMITTED): no gap lock that
        # could block the caller's own inserts; and never a long wait of its own.
        self.conn = connect(url)
        self.error: BaseException | None = None
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cur.execute("SET SESSION innodb_lock_wait_timeout = 10")
            for batch in ballast:
                cur.execute(
                    "UPDATE batchStatus SET batchNumber = batchNumber + 1000 WHERE id = %s",
                    (batch,),
                )
                assert cur.rowcount == 1
            cur.execute("SELECT id FROM batchStatus WHERE id = %s FOR UPDATE", (target,))
        self.thread = threading.Thread(target=self._close_the_cycle, daemon=True)
        self.thread.start()

    def _close_the_cycle(self) -> None:
        try:
            self._wait_until_the_wrapper_waits()
            with self.conn.cursor() as cur:
                cur.execute("SELECT id FROM currentBatchLock WHERE id = 1 FOR UPDATE")
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            self.conn.rollback()  # whatever happened, free the wrapper

    def _wait_until_the_wrapper_waits(self) -> None:
        waiting_session(self.url)

    def join(self) -> None:
        self.thread.join(30)
        self.conn.close()
        if self.error is not None:
            raise self.error


class RetryEvents(logging.Handler):
    """Collects the wrapper's retry events; optionally runs a callback on the first."""

    def __init__(self, on_first: Callable[[], None] | None = None):
        super().__init__(logging.INFO)
        # LogRecords, read for the event's extra fields (attempt, errno) set as attributes
        self.records: list[Any] = []
        self.on_first = on_first

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) != RETRY_EVENT:
            return
        self.records.append(record)
        if self.on_first is not None and len(self.records) == 1:
            self.on_first()


def watch_retry_events() -> Iterator[Callable[..., RetryEvents]]:
    """Body of the ``retry_events`` fixture (also used by test_aio): attach, yield, detach."""
    logger = logging.getLogger("batchflag_db")
    attached: list[RetryEvents] = []
    old_level = logger.level
    logger.setLevel(logging.INFO)

    def attach(on_first: Callable[[], None] | None = None) -> RetryEvents:
        handler = RetryEvents(on_first)
        logger.addHandler(handler)
        attached.append(handler)
        return handler

    yield attach
    for handler in attached:
        logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.fixture
def retry_events() -> Iterator[Callable[..., RetryEvents]]:
    """Attach RetryEvents handlers to the library's logger for the test only."""
    yield from watch_retry_events()


@pytest.fixture
def short_wait_engine(migrated_url: URL) -> Iterator[Engine]:
    """An engine whose sessions give up waiting for a lock after 1 s."""
    eng = create_engine(
        migrated_url, poolclass=pool.NullPool, connect_args={"init_command": SHORT_WAIT}
    )
    yield eng
    eng.dispose()


@pytest.fixture
def holder(migrated_url: URL) -> Iterator[LockHolder]:
    h = LockHolder(migrated_url)
    yield h
    h.close()


# --- the policy itself (pure: no connection involved) -----------------------------------


class TestRetryPolicy:
    def test_default_is_bounded(self) -> None:
        """The default policy makes 5 attempts and sleeps under a second in total at worst."""
        assert DEFAULT_RETRY.attempts == 5
        worst = sum(DEFAULT_RETRY.ceiling(n) for n in range(1, DEFAULT_RETRY.attempts))
        assert 0 < worst < 1.0

    def test_ceiling_doubles_then_caps(self) -> None:
        """Each wait's bound doubles from base_delay until max_delay caps it."""
        policy = RetryPolicy(attempts=10, base_delay=0.1, max_delay=0.5)
        assert [policy.ceiling(n) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
        assert policy.ceiling(10_000) == 0.5

    def test_delays_are_jittered_within_the_bound(self) -> None:
        """Waits are spread over [0, bound], so colliding callers do not retry in step."""
        policy = RetryPolicy(attempts=5, base_delay=0.2, max_delay=1.0)
        rng = random.Random(7)
        delays = [policy.delay(2, rng) for _ in range(500)]
        assert all(0 <= d <= 0.4 for d in delays)
        assert min(delays) < 0.05
        assert max(delays) > 0.35
        assert len(set(delays)) > 450

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"attempts": 0}, ValueError),
            ({"attempts": -1}, ValueError),
            ({"attempts": 2.5}, TypeError),
            ({"attempts": True}, TypeError),
            ({"base_delay": -0.1}, ValueError),
            ({"max_delay": float("nan")}, ValueError),
        ],
    )
    def test_nonsense_is_refused(self, kwargs: dict[str, Any], error: type[Exception]) -> None:
        """A policy that could never call, or wait a negative time, is refused at construction."""
        with pytest.raises(error):
            RetryPolicy(**kwargs)

    def test_other_errors_are_not_retried(self) -> None:
        """Only 1213 and 1205 are retried; any other error is raised unchanged at once."""
        state = RetryState(FAST, True, "set_current_batch", 7)
        error = BatchNotFoundError("batch 7 does not exist", errno=31002)
        with pytest.raises(BatchNotFoundError) as info:
            state.failed(error)
        assert info.value is error
        assert state.attempt == 1


# --- who owns the transaction: read from real driver connections ------------------------


class TestOwnsTransaction:
    def test_pymysql(self, migrated_url: URL) -> None:
        """PyMySQL: owned only with autocommit on and no BEGIN; read from the status flags."""
        auto = connect(migrated_url, autocommit=True)
        manual = connect(migrated_url, autocommit=False)
        try:
            assert owns_transaction(auto) is True
            assert owns_transaction(manual) is False
            auto.begin()
            assert owns_transaction(auto) is False
            auto.commit()
            assert owns_transaction(auto) is True
        finally:
            auto.close()
            manual.close()

    def test_mysql_connector(self, migrated_url: URL) -> None:
        """mysql-connector-python: read from in_transaction and the autocommit property."""
        # no pool arguments: a plain connection, not the pooled half of connect()'s union
        conn = cast(
            MySQLConnectionAbstract,
            mysql.connector.connect(**_connector_kwargs(migrated_url), autocommit=True),
        )
        try:
            assert owns_transaction(conn) is True
            conn.start_transaction()
            assert owns_transaction(conn) is False
            conn.rollback()
            conn.autocommit = False
            assert owns_transaction(conn) is False
        finally:
            conn.close()

    def test_mysqlclient_needs_a_probe(self, migrated_url: URL) -> None:
        """mysqlclient knows autocommit but not whether a transaction is open: None means probe."""
        conn = MySQLdb.connect(**_mysqldb_kwargs(migrated_url), autocommit=True)
        try:
            assert owns_transaction(conn) is None
            conn.autocommit(False)
            assert owns_transaction(conn) is False
        finally:
            conn.close()


def _connector_kwargs(url: URL) -> dict[str, Any]:
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 3306,
        "user": url.username or "root",
        "password": url.password or "",
        "database": url.database,
    }


def _mysqldb_kwargs(url: URL) -> dict[str, Any]:
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 3306,
        "user": url.username or "root",
        "passwd": url.password or "",
        "db": url.database,
    }


# --- lock wait timeout (1205), induced by a session holding the lock row ----------------


@pytest.mark.slow
class TestLockWaitWithEngine:
    def test_retried_until_the_lock_is_free(
        self,
        short_wait_engine: Engine,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        retry_events: Callable[..., RetryEvents],
    ) -> None:
        """A 1205 is retried; once the other session lets go, the second attempt lands."""
        a, b = add_batches(2)
        set_current_batch(short_wait_engine, a)
        holder = LockHolder(migrated_url)
        try:
            events = retry_events(on_first=holder.release)
            flip = set_current_batch(short_wait_engine, b, retry=FAST)
        finally:
            holder.close()
        assert flip == Flip(b, a, True)
        assert flip.attempts == 2
        assert [(r.attempt, r.errno) for r in events.records] == [(1, 1205)]
        assert current_rows(connect_db()) == [b]

    def test_gives_up_after_the_policy_attempts(
        self,
        short_wait_engine: Engine,
        holder: LockHolder,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        retry_events: Callable[..., RetryEvents],
    ) -> None:
        """With the lock never freed, exactly `attempts` calls are made, then a typed error."""
        (a,) = add_batches(1)
        events = retry_events()
        started = time.monotonic()
        with pytest.raises(TransactionConflictError, match="gave up after 3 attempts") as info:
            set_current_batch(short_wait_engine, a, retry=RetryPolicy(attempts=3, base_delay=0.01))
        assert time.monotonic() - started >= 3  # three 1 s waits for the lock
        assert info.value.errno == 1205
        assert info.value.attempts == 3
        assert isinstance(info.value.__cause__, pymysql.err.OperationalError)
        assert [r.attempt for r in events.records] == [1, 2]
        holder.release()
        assert current_rows(connect_db()) == []

    def test_attempts_1_never_retries(
        self,
        short_wait_engine: Engine,
        holder: LockHolder,
        add_batches: Callable[[int], list[int]],
        retry_events: Callable[..., RetryEvents],
    ) -> None:
        """RetryPolicy(attempts=1) turns retrying off: one call, one error."""
        (a,) = add_batches(1)
        events = retry_events()
        with pytest.raises(TransactionConflictError, match="gave up after 1 attempt in"):
            unset_current_batch(short_wait_engine, a, retry=RetryPolicy(attempts=1))
        assert events.records == []


def _pymysql(url: URL, autocommit: bool, begin: bool) -> Any:
    conn = connect(url, autocommit=autocommit, init_command=SHORT_WAIT)
    if begin:
        conn.begin()
    return conn


def _mysqldb(url: URL, autocommit: bool, begin: bool) -> Any:
    conn = MySQLdb.connect(**_mysqldb_kwargs(url), autocommit=autocommit, init_command=SHORT_WAIT)
    if begin:
        conn.begin()
    return conn


def _connector(url: URL, autocommit: bool, begin: bool) -> Any:
    conn = mysql.connector.connect(**_connector_kwargs(url), autocommit=autocommit)
    cur = conn.cursor()
    cur.execute(SHORT_WAIT)
    cur.close()
    if begin:
        conn.start_transaction()
    return conn


DRIVERS = {"pymysql": _pymysql, "mysqlclient": _mysqldb, "mysql-connector": _connector}


@pytest.mark.slow
class TestLockWaitWithPEP249:
    @pytest.mark.parametrize("driver", sorted(DRIVERS))
    def test_autocommit_connection_is_retried(
        self,
        *,
        migrated_url: URL,
        holder: LockHolder,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        retry_events: Callable[..., RetryEvents],
        driver: str,
    ) -> None:
        """Autocommit on, no transaction open: the procedure owns its transaction; retried."""
        (a,) = add_batches(1)
        conn = DRIVERS[driver](migrated_url, autocommit=True, begin=False)
        try:
            events = retry_events(on_first=holder.release)
            flip = set_current_batch(conn, a, retry=FAST)
            assert flip.attempts == 2
            assert [r.errno for r in events.records] == [1205]
            assert current_rows(connect_db()) == [a]
        finally:
            conn.close()

    @pytest.mark.parametrize("driver", sorted(DRIVERS))
    @pytest.mark.parametrize(
        ("autocommit", "begin"),
        [(False, False), (True, True)],
        ids=["autocommit-off", "explicit-begin"],
    )
    def test_callers_transaction_raises_at_once(
        self,
        *,
        migrated_url: URL,
        holder: LockHolder,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        retry_events: Callable[..., RetryEvents],
        driver: str,
        autocommit: bool,
        begin: bool,
    ) -> None:
        """In the caller's transaction 1205 is not retried: the error says retry the transaction."""
        (a,) = add_batches(1)
        conn = DRIVERS[driver](migrated_url, autocommit=autocommit, begin=begin)
        try:
            events = retry_events()
            with pytest.raises(
                TransactionConflictError, match="retry the whole transaction"
            ) as info:
                set_current_batch(conn, a, retry=FAST)
            assert info.value.errno == 1205
            assert events.records == []
            conn.rollback()
        finally:
            conn.close()
        holder.release()
        assert current_rows(connect_db()) == []


@pytest.mark.slow
class TestLockWaitWithSQLAlchemyConnection:
    def test_transaction_raises(
        self,
        short_wait_engine: Engine,
        holder: LockHolder,
        add_batches: Callable[[int], list[int]],
        retry_events: Callable[..., RetryEvents],
    ) -> None:
        """A Connection in a transaction is the caller's: 1205 raises at once, no retry."""
        (a,) = add_batches(1)
        events = retry_events()
        with short_wait_engine.connect() as conn:
            with pytest.raises(TransactionConflictError, match="inside your transaction"):
                set_current_batch(conn, a, retry=FAST)
            conn.rollback()
        assert events.records == []

    def test_autocommit_connection_is_retried(
        self,
        short_wait_engine: Engine,
        holder: LockHolder,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        retry_events: Callable[..., RetryEvents],
    ) -> None:
        """A Connection in AUTOCOMMIT isolation owns nothing the flip could lose: it is retried."""
        (a,) = add_batches(1)
        events = retry_events(on_first=holder.release)
        with short_wait_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            flip = set_current_batch(conn, a, retry=FAST)
        assert flip.attempts == 2
        assert len(events.records) == 1
        assert current_rows(connect_db()) == [a]


# --- deadlock (1213): a genuine lock cycle with a second session ------------------------


class TestDeadlock:
    def test_engine_retries_a_deadlock(
        self,
        engine: Engine,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        retry_events: Callable[..., RetryEvents],
    ) -> None:
        """A real deadlock in a flip the wrapper owns is retried; the second attempt succeeds."""
        ids = add_batches(40)
        target = ids[0]
        set_current_batch(engine, ids[1])
        events = retry_events()
        partner = DeadlockPartner(migrated_url, target, ballast=ids[2:])
        flip = set_current_batch(engine, target, retry=FAST)
        partner.join()
        assert flip == Flip(target, ids[1], True)
        assert flip.attempts == 2
        assert [(r.attempt, r.errno) for r in events.records] == [(1, 1213)]
        assert current_rows(connect_db()) == [target]

    def test_deadlock_in_callers_transaction(
        self,
        engine: Engine,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        retry_events: Callable[..., RetryEvents],
    ) -> None:
        """In the caller's transaction a deadlock raises at once: the server rolled it all back."""
        ids = add_batches(40)
        target = ids[0]
        events = retry_events()
        with engine.connect() as conn:
            conn.execute(
                text("INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-12-01', 99)")
            )
            mine = conn.execute(text("SELECT LAST_INSERT_ID()")).scalar_one()
            partner = DeadlockPartner(migrated_url, target, ballast=ids[2:])
            with pytest.raises(
                TransactionConflictError, match="rolled back your whole transaction"
            ) as info:
                set_current_batch(conn, target, retry=FAST)
            partner.join()
            assert info.value.errno == 1213
            assert "retry the whole transaction" in str(info.value)
            # The caller's own insert is gone: retrying only the flip would have lost it.
            assert (
                conn.execute(
                    text("SELECT COUNT(*) FROM batchStatus WHERE id = :i"), {"i": mine}
                ).scalar_one()
                == 0
            )
            conn.rollback()
        assert events.records == []
        assert current_rows(connect_db()) == []

    def test_pymysql_autocommit_retries_a_deadlock(
        self,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        retry_events: Callable[..., RetryEvents],
    ) -> None:
        """A PyMySQL connection in autocommit mode is retried after a real deadlock too."""
        ids = add_batches(40)
        conn = connect(migrated_url, autocommit=True)
        try:
            events = retry_events()
            partner = DeadlockPartner(migrated_url, ids[0], ballast=ids[2:])
            flip = unset_current_batch(conn, ids[0], retry=FAST)
            partner.join()
            assert flip == Flip(ids[0], None, False)
            assert flip.attempts == 2
            assert [r.errno for r in events.records] == [1213]
        finally:
            conn.close()
        assert current_rows(connect_db()) == []


@pytest.mark.slow
class TestMessages:
    def test_conflict_is_a_batchflag_error_with_the_driver_cause(
        self, short_wait_engine: Engine, holder: LockHolder, add_batches: Callable[[int], list[int]]
    ) -> None:
        """The conflict error is a BatchFlagError carrying errno, SQLSTATE and the driver error."""
        (a,) = add_batches(1)
        with short_wait_engine.connect() as conn, pytest.raises(TransactionConflictError) as info:
            set_current_batch(conn, a)
        assert isinstance(info.value, BatchFlagError)
        assert info.value.errno == 1205
        assert info.value.sqlstate == "HY000"
        assert f"set_current_batch({a})" in str(info.value)
        assert info.value.__cause__ is not None


class TestLostConnection:
    def test_not_retried_and_not_returned_to_the_pool(
        self,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        retry_events: Callable[..., RetryEvents],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A connection lost mid-flip is not retried (the outcome is the server's) and is discarded.

        The next flip on the same one-connection pool gets a fresh connection, and
        SQLAlchemy logs no failed reset of the dead one.
        """
        a, b = add_batches(2)
        eng = create_engine(migrated_url, pool_size=1, max_overflow=0)
        holder = None
        try:
            set_current_batch(eng, a)
            holder = LockHolder(migrated_url)
            events = retry_events()

            def kill_the_waiting_flip() -> None:
                victim = waiting_session(migrated_url)
                with connect_db(autocommit=True).cursor() as cur:
                    cur.execute(f"KILL CONNECTION {victim}")

            killer = threading.Thread(target=kill_the_waiting_flip)
            killer.start()
            with (
                caplog.at_level(logging.WARNING, logger="sqlalchemy"),
                pytest.raises(DatabaseConnectionError) as info,
            ):
                set_current_batch(eng, b, retry=FAST)
            killer.join(30)
            assert info.value.errno == 2013
            assert events.records == []
            holder.release()
            assert current_rows(connect_db()) == [a]  # the killed flip did not commit
            assert set_current_batch(eng, b) == Flip(b, a, True)
            assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy")] == []
        finally:
            if holder is not None:
                holder.close()
            eng.dispose()
