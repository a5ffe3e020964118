"""A flip blocked by a forgotten commit: a bounded wait, and an error that names the holder."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterator

import pymysql
import pytest
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import create_async_engine

import batchflag_db
from batchflag_db import RetryPolicy, SchemaNotReadyError, TransactionConflictError, aio, migrate
from batchflag_db.dashboard import render_watch, take_snapshot
from batchflag_db.doctor import diagnose
from batchflag_db.errors import ER_LOCK_WAIT_TIMEOUT, ConfigurationError
from batchflag_db.installation import Installation
from batchflag_db.locks import STUCK_AFTER, STUCK_AFTER_VARIABLE, stuck_after
from batchflag_db.status import read_status, status_lines
from tests.conftest import connect, run_cli, url_text
from tests.test_aio import ASYNC_DRIVERS
from tests.test_scope import SCOPED, make_table

pytestmark = pytest.mark.slow

#: The documented bound of the default policy: deadline 8 s + one 2 s lock wait.
DEFAULT_BOUND_S = 10.0

#: The stuck threshold the reports' test injects (BATCHFLAG_STUCK_AFTER), not to wait 10 s.
SHORT_STUCK_AFTER = 1


def _forgotten_flip(connect_db: Callable[..., pymysql.Connection], batch: int) -> int:
    """A PyMySQL connection (autocommit off, the driver's default) flips and never commits."""
    holder = connect_db()
    with holder.cursor() as cur:
        cur.execute("CALL set_current_batch(%s)", (batch,))
        while cur.nextset():
            pass
        cur.execute("SELECT CONNECTION_ID()")
        return int(cur.fetchone()[0])


def _no_process_account(url: URL) -> Iterator[URL]:
    """An account that may flip and read the database, but not other accounts' transactions."""
    admin = connect(url, autocommit=True)
    # One account per test database: tests run in parallel on one server.
    user = "bf_np_" + hashlib.sha256(str(url.database).encode()).hexdigest()[:12]
    with admin.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS '{user}'@'%%'")
        cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY 'pw-1-Xy'")
        cur.execute(f"GRANT SELECT ON `{url.database}`.* TO '{user}'@'%%'")
        for routine in ("set_current_batch", "unset_current_batch"):
            cur.execute(f"GRANT EXECUTE ON PROCEDURE `{url.database}`.`{routine}` TO '{user}'@'%%'")
    try:
        yield url.set(username=user, password="pw-1-Xy")  # noqa: S106 - a throwaway server
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER '{user}'@'%%'")
        admin.close()


@pytest.fixture
def no_process_url(migrated_url: URL) -> Iterator[URL]:
    """:func:`_no_process_account` on the migrated database, dropped afterwards."""
    yield from _no_process_account(migrated_url)


def _is_mariadb(url: URL) -> bool:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            return "mariadb" in str(cur.fetchone()[0]).lower()
    finally:
        conn.close()


class TestForgottenCommit:
    def test_wrapper_gives_up_within_the_bound_naming_the_holder(
        self,
        migrated_url: URL,
        connect_db: Callable[..., pymysql.Connection],
        add_batches: Callable[[int], list[int]],
    ) -> None:
        """Another caller through an Engine fails in under 10 s, naming the holder's id."""
        a, b = add_batches(2)
        holder_id = _forgotten_flip(connect_db, a)
        engine = create_engine(migrated_url, poolclass=pool.NullPool)
        started = time.monotonic()
        try:
            with pytest.raises(TransactionConflictError) as info:
                batchflag_db.set_current_batch(engine, b)
        finally:
            engine.dispose()
        took = time.monotonic() - started
        assert took <= DEFAULT_BOUND_S + 1.0, took
        error = info.value
        assert error.errno == ER_LOCK_WAIT_TIMEOUT
        assert holder_id in error.holders
        assert f"connection {holder_id} (" in str(error)
        assert f"KILL {holder_id}" in str(error)
        assert "idle for" in str(error)
        print(f"\ngave up after {took:.1f} s, {error.attempts} attempts: {error}")

    def test_the_bound_is_configurable(
        self,
        migrated_url: URL,
        connect_db: Callable[..., pymysql.Connection],
        add_batches: Callable[[int], list[int]],
    ) -> None:
        """A policy with a 1 s lock wait and a 1 s deadline gives up in about 2 s."""
        a, b = add_batches(2)
        _forgotten_flip(connect_db, a)
        engine = create_engine(migrated_url, poolclass=pool.NullPool)
        started = time.monotonic()
        try:
            with pytest.raises(TransactionConflictError):
                batchflag_db.set_current_batch(
                    engine, b, retry=RetryPolicy(lock_wait_timeout=1, deadline=1.0)
                )
        finally:
            engine.dispose()
        assert time.monotonic() - started < 3.5

    def test_the_sessions_own_lock_wait_is_put_back(
        self, migrated_url: URL, add_batches: Callable[[int], list[int]]
    ) -> None:
        """The flip sets innodb_lock_wait_timeout for itself only."""
        (a,) = add_batches(1)
        conn = connect(migrated_url, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SET SESSION innodb_lock_wait_timeout = 33")
        batchflag_db.set_current_batch(conn, a)
        with conn.cursor() as cur:
            cur.execute("SELECT @@SESSION.innodb_lock_wait_timeout")
            assert cur.fetchone()[0] == 33
        conn.close()

    def test_on_mariadb_the_lock_wait_rides_in_the_call(
        self, migrated_url: URL, add_batches: Callable[[int], list[int]]
    ) -> None:
        """MariaDB: one statement per flip (SET STATEMENT ... FOR CALL); MySQL: SET, CALL, SET.

        Counted by the session's own ``Questions`` (statements its client sent; the
        ``SHOW STATUS`` that reads it is one). Through an Engine the session's own lock
        wait stays as it was.
        """
        a, b = add_batches(2)
        conn = connect(migrated_url, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            mariadb = "MariaDB" in cur.fetchone()[0]

        sent = 2 if mariadb else 4  # the flip's statements and one SHOW STATUS

        def questions() -> int:
            with conn.cursor() as cur:
                cur.execute("SHOW SESSION STATUS LIKE 'Questions'")
                return int(cur.fetchone()[1])

        before = questions()
        batchflag_db.set_current_batch(conn, a)
        assert questions() - before == sent
        conn.close()
        engine = create_engine(migrated_url, poolclass=pool.StaticPool)
        try:
            with engine.connect() as sa:
                sa.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 33")
                sa.commit()
            batchflag_db.set_current_batch(engine, b)
            with engine.connect() as sa:
                assert (
                    sa.exec_driver_sql("SELECT @@SESSION.innodb_lock_wait_timeout").scalar() == 33
                )
        finally:
            engine.dispose()

    def test_cli_says_the_same(
        self,
        migrated_url: URL,
        connect_db: Callable[..., pymysql.Connection],
        add_batches: Callable[[int], list[int]],
    ) -> None:
        """`batchflag set-current` fails within the bound and prints the holder."""
        a, b = add_batches(2)
        holder_id = _forgotten_flip(connect_db, a)
        started = time.monotonic()
        result = run_cli(
            "--url", migrated_url.render_as_string(hide_password=False), "set-current", str(b)
        )
        assert time.monotonic() - started <= DEFAULT_BOUND_S + 3.0
        assert result.returncode != 0
        assert f"connection {holder_id} (" in result.stderr, result.stderr
        assert f"KILL {holder_id}" in result.stderr

    def test_an_account_without_process_privilege_is_told_what_it_could_not_read(
        self,
        no_process_url: URL,
        connect_db: Callable[..., pymysql.Connection],
        add_batches: Callable[[int], list[int]],
    ) -> None:
        """Without PROCESS the error says which tables it could not read."""
        a, b = add_batches(2)
        _forgotten_flip(connect_db, a)
        low = connect(no_process_url, autocommit=True)
        try:
            with pytest.raises(TransactionConflictError) as info:
                batchflag_db.set_current_batch(
                    low, b, retry=RetryPolicy(lock_wait_timeout=1, deadline=0.5)
                )
        finally:
            low.close()
        assert "could not read information_schema.INNODB_TRX" in str(info.value)
        assert "PROCESS" in str(info.value)
        assert info.value.holders == ()


@pytest.fixture(params=ASYNC_DRIVERS)
def async_driver(request: pytest.FixtureRequest) -> str:
    """The async driver a test of :mod:`batchflag_db.aio` runs with."""
    return str(request.param)


class TestForgottenCommitAsync:
    """The same stuck flip, met through :mod:`batchflag_db.aio`: the same bound, the same error."""

    def test_aio_gives_up_within_the_bound_naming_the_holder(
        self,
        migrated_url: URL,
        async_driver: str,
        connect_db: Callable[..., pymysql.Connection],
        add_batches: Callable[[int], list[int]],
    ) -> None:
        """Another caller through an AsyncEngine fails in under 10 s, naming the holder's id."""
        a, b = add_batches(2)
        holder_id = _forgotten_flip(connect_db, a)

        async def flip() -> None:
            engine = create_async_engine(
                migrated_url.set(drivername=f"mysql+{async_driver}"), poolclass=pool.NullPool
            )
            try:
                await aio.set_current_batch(engine, b)
            finally:
                await engine.dispose()

        started = time.monotonic()
        with pytest.raises(TransactionConflictError) as info:
            asyncio.run(flip())
        took = time.monotonic() - started
        assert took <= DEFAULT_BOUND_S + 1.0, took
        error = info.value
        assert error.errno == ER_LOCK_WAIT_TIMEOUT
        assert error.attempts > 1
        assert error.holders[0] == holder_id
        assert f"connection {holder_id} (" in str(error)
        assert f"KILL {holder_id}" in str(error)
        assert "idle for" in str(error)
        assert "(another transaction holds a lock the flip needs)" in str(error)

    def test_aio_inside_the_callers_transaction_names_the_holder(
        self,
        migrated_url: URL,
        async_driver: str,
        connect_db: Callable[..., pymysql.Connection],
        add_batches: Callable[[int], list[int]],
    ) -> None:
        """Through an AsyncConnection in a transaction: one lock wait, then the holder named."""
        a, b = add_batches(2)
        holder_id = _forgotten_flip(connect_db, a)

        async def flip() -> None:
            engine = create_async_engine(
                migrated_url.set(drivername=f"mysql+{async_driver}"), poolclass=pool.NullPool
            )
            try:
                async with engine.connect() as conn:
                    await conn.begin()
                    await aio.set_current_batch(conn, b, retry=RetryPolicy(lock_wait_timeout=1))
            finally:
                await engine.dispose()

        with pytest.raises(TransactionConflictError) as info:
            asyncio.run(flip())
        assert info.value.attempts == 1
        assert info.value.holders[0] == holder_id
        assert "inside your transaction" in str(info.value)
        assert f"KILL {holder_id}" in str(info.value)

    def test_an_account_without_process_privilege_is_told_what_it_could_not_read(
        self,
        no_process_url: URL,
        async_driver: str,
        connect_db: Callable[..., pymysql.Connection],
        add_batches: Callable[[int], list[int]],
    ) -> None:
        """Without PROCESS the aio error says which tables it could not read, as the sync one."""
        a, b = add_batches(2)
        _forgotten_flip(connect_db, a)

        async def flip() -> None:
            engine = create_async_engine(
                no_process_url.set(drivername=f"mysql+{async_driver}"), poolclass=pool.NullPool
            )
            try:
                await aio.set_current_batch(
                    engine, b, retry=RetryPolicy(lock_wait_timeout=1, deadline=0.5)
                )
            finally:
                await engine.dispose()

        with pytest.raises(TransactionConflictError) as info:
            asyncio.run(flip())
        assert "could not read information_schema.INNODB_TRX" in str(info.value)
        assert "PROCESS" in str(info.value)
        assert info.value.holders == ()


#: An installation on other names, one current row in all (its lock row is currentBatchLock).
RENAMED = Installation(table="batch_status", flag_column="is_current", status_column="state")

SHORT = RetryPolicy(attempts=1, lock_wait_timeout=1)


class TestOtherNames:
    """On an installation's own names the holder is found on its tables (narrowed on MySQL)."""

    def test_a_lock_on_a_renamed_table_is_named(self, db_url: URL) -> None:
        """A session holding a row of batch_status FOR UPDATE is named, on the flag tables on MySQL."""
        ids = [i for scope in make_table(db_url).values() for i in scope]
        migrate.upgrade(db_url, installation=RENAMED)
        holder = connect(db_url, autocommit=False)
        other = connect(db_url, autocommit=True)
        try:
            with holder.cursor() as cur:
                cur.execute("SELECT id FROM batch_status WHERE id = %s FOR UPDATE", (ids[0],))
                cur.execute("SELECT CONNECTION_ID()")
                holder_id = int(cur.fetchone()[0])
            with pytest.raises(TransactionConflictError) as info:
                batchflag_db.set_current_batch(other, ids[0], retry=SHORT)
        finally:
            holder.close()
            other.close()
        assert info.value.holders == (holder_id,)
        assert f"KILL {holder_id}" in str(info.value)
        scope = "in this database" if _is_mariadb(db_url) else "on the flag tables"
        assert f"holding row locks {scope}" in str(info.value)

    def test_a_forgotten_flip_of_a_scope_is_named(self, db_url: URL, async_driver: str) -> None:
        """A scoped flip never committed (its scope lock row and rows of batch_status) is named,
        by the sync and the async wrapper."""
        by_scope = make_table(db_url)
        migrate.upgrade(db_url, installation=SCOPED)
        holder = connect(db_url, autocommit=False)
        other = connect(db_url, autocommit=True)
        try:
            with holder.cursor() as cur:
                cur.execute("CALL set_current_batch(%s)", (by_scope["p0"][0],))
                while cur.nextset():
                    pass
                cur.execute("SELECT CONNECTION_ID()")
                holder_id = int(cur.fetchone()[0])
            with pytest.raises(TransactionConflictError) as sync_info:
                batchflag_db.set_current_batch(other, by_scope["p0"][1], retry=SHORT)

            async def flip() -> None:
                engine = create_async_engine(
                    db_url.set(drivername=f"mysql+{async_driver}"), poolclass=pool.NullPool
                )
                try:
                    await aio.set_current_batch(engine, by_scope["p0"][1], retry=SHORT)
                finally:
                    await engine.dispose()

            with pytest.raises(TransactionConflictError) as async_info:
                asyncio.run(flip())
        finally:
            holder.close()
            other.close()
        scope = "in this database" if _is_mariadb(db_url) else "on the flag tables"
        for info in (sync_info, async_info):
            assert info.value.holders == (holder_id,)
            assert f"holding row locks {scope}: connection {holder_id} (" in str(info.value)


class TestMissingRoutine:
    def test_a_database_without_the_routines_fails_quickly(self, db_url: URL) -> None:
        """1305 is retried for half a second at most: a database never migrated still
        gets SchemaNotReadyError at once, not after a long wait."""
        conn = connect(db_url, autocommit=True)
        started = time.monotonic()
        with pytest.raises(SchemaNotReadyError):
            batchflag_db.set_current_batch(conn, 1)
        assert time.monotonic() - started < 1.5
        conn.close()


class TestReports:
    def test_status_doctor_and_watch_name_a_forgotten_flip(
        self,
        migrated_url: URL,
        connect_db: Callable[..., pymysql.Connection],
        add_batches: Callable[[int], list[int]],
        engine: Engine,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """After the stuck threshold (BATCHFLAG_STUCK_AFTER, here 1 s; 10 s by default),
        status, doctor and watch each name the holder; before it, none does."""
        (a,) = add_batches(1)
        assert diagnose(engine).healthy
        assert read_status(engine)["warnings"] == []
        holder_id = _forgotten_flip(connect_db, a)
        time.sleep(SHORT_STUCK_AFTER + 0.5)
        assert STUCK_AFTER > SHORT_STUCK_AFTER + 1  # the default still calls it young
        assert diagnose(engine).healthy
        assert read_status(engine)["warnings"] == []
        monkeypatch.setenv(STUCK_AFTER_VARIABLE, str(SHORT_STUCK_AFTER))
        report = diagnose(engine)
        assert not report.healthy
        (problem,) = [f for f in report.problems if f.check == "open transactions"]
        assert f"KILL {holder_id}" in (problem.fix or "")
        (warning,) = read_status(engine)["warnings"]
        assert f"connection {holder_id} (" in warning
        assert any(
            f"connection {holder_id} (" in line for line in status_lines(read_status(engine))
        )
        snapshot = take_snapshot(engine)
        assert any(f"KILL {holder_id}" in line for line in snapshot.warnings)
        assert f"KILL {holder_id}" in render_watch(snapshot, interval=1, width=10_000)
        cli = run_cli("--url", url_text(migrated_url), "doctor")
        assert cli.returncode == 3, cli.stdout + cli.stderr
        assert f"KILL {holder_id}" in cli.stdout


class TestStuckAfterSetting:
    """BATCHFLAG_STUCK_AFTER moves the threshold; a bad value is refused, saying what to set."""

    def test_default_and_override(self) -> None:
        """Unset or empty: the documented 10 s; set: its whole seconds."""
        assert stuck_after({}) == STUCK_AFTER == 10
        assert stuck_after({STUCK_AFTER_VARIABLE: " "}) == 10
        assert stuck_after({STUCK_AFTER_VARIABLE: "3"}) == 3

    @pytest.mark.parametrize("bad", ["0", "-1", "1.5", "soon"])
    def test_a_bad_value_is_refused(self, bad: str) -> None:
        """Not a whole number of seconds, 1 or more: ConfigurationError naming the variable."""
        with pytest.raises(ConfigurationError, match=STUCK_AFTER_VARIABLE):
            stuck_after({STUCK_AFTER_VARIABLE: bad})
