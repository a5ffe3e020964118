"""Every client calls the procedures: standalone, and inside a transaction that commits or rolls back.

Clients: the ``mariadb`` command-line client, PyMySQL, mysqlclient (MySQLdb),
mysql-connector-python, SQLAlchemy (sync, three drivers) and SQLAlchemy asyncio
(aiomysql, asyncmy). Each test checks the effect from another connection.
Then the wrapper itself on the PEP 249 connections of mysqlclient and
mysql-connector-python, and on SQLAlchemy engines of every sync driver.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import mysql.connector
import MySQLdb
import pymysql
import pytest
import sqlalchemy.exc
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import create_async_engine

from batchflag_db import (
    BatchNotFoundError,
    Flip,
    current_batch,
    get_current_batch,
    set_current_batch,
    unset_current_batch,
)
from batchflag_db.dashboard import history, resolve_dashboard_batch, take_snapshot
from batchflag_db.doctor import diagnose
from batchflag_db.grants import column_write_statements, grant
from batchflag_db.status import read_status
from tests.conftest import client_args, current_rows


def _kwargs(url: URL) -> dict[str, Any]:
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 3306,
        "user": url.username or "root",
        "password": url.password or "",
        "database": url.database,
    }


@dataclass(frozen=True)
class Driver:
    """How one PEP 249 driver opens a connection and begins a transaction."""

    name: str
    open: Callable[[URL, bool], Any]
    begin: Callable[[Any], None]


def _open_pymysql(url: URL, autocommit: bool) -> Any:
    return pymysql.connect(**_kwargs(url), autocommit=autocommit)


def _open_mysqldb(url: URL, autocommit: bool) -> Any:
    kw = _kwargs(url)
    return MySQLdb.connect(
        host=kw["host"],
        port=kw["port"],
        user=kw["user"],
        passwd=kw["password"],
        db=kw["database"],
        autocommit=autocommit,
    )


def _open_connector(url: URL, autocommit: bool) -> Any:
    return mysql.connector.connect(**_kwargs(url), autocommit=autocommit)


def _begin_statement(conn: Any) -> None:
    cur = conn.cursor()
    cur.execute("START TRANSACTION")
    cur.close()


DRIVERS = [
    Driver("pymysql", _open_pymysql, _begin_statement),
    Driver("mysqlclient", _open_mysqldb, _begin_statement),
    Driver("mysql-connector", _open_connector, lambda conn: conn.start_transaction()),
]


def raw_call(conn: Any, procedure: str, batch_id: int) -> list[tuple[Any, ...]]:
    """CALL a procedure on a DB-API connection the way an application would, draining all results.

    CALL returns the procedure's result set and then a final status result;
    every driver here must read both (nextset) or the connection is out of sync.
    mysql-connector-python does this through execute() since 9.2.
    """
    cur = conn.cursor()
    try:
        cur.execute(f"CALL {procedure}(%s)", (batch_id,))
        rows = [tuple(r) for r in cur.fetchall()]
        while cur.nextset():
            if cur.description:
                cur.fetchall()
        return rows
    finally:
        cur.close()


@pytest.fixture(params=DRIVERS, ids=lambda d: d.name)
def driver(request: pytest.FixtureRequest) -> Driver:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def opened(migrated_url: URL) -> Iterator[Callable[[Driver, bool], Any]]:
    """Open driver connections to the migrated database; closed after the test."""
    conns: list[Any] = []

    def open_(driver: Driver, autocommit: bool) -> Any:
        conn = driver.open(migrated_url, autocommit)
        conns.append(conn)
        return conn

    yield open_
    for conn in conns:
        conn.close()


class TestCommandLineClient:
    def test_standalone(
        self,
        mysql_client: Callable[[str], subprocess.CompletedProcess[str]],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """The mariadb client (autocommit on) flips with CALL and prints the result row."""
        a, b = add_batches(2)
        out = mysql_client(f"CALL set_current_batch({a}); CALL set_current_batch({b});")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            "batch_id\tprevious_batch_id\tchanged",
            f"{a}\tNULL\t1",
            "batch_id\tprevious_batch_id\tchanged",
            f"{b}\t{a}\t1",
        ]
        assert current_rows(connect_db()) == [b]
        out = mysql_client(f"CALL unset_current_batch({b});")
        assert out.stdout.splitlines() == ["batch_id\tchanged", f"{b}\t1"]
        assert current_rows(connect_db()) == []

    @pytest.mark.parametrize("begin", ["START TRANSACTION", "SET autocommit = 0"])
    def test_transaction_commit_and_rollback(
        self,
        mysql_client: Callable[[str], subprocess.CompletedProcess[str]],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        begin: str,
    ) -> None:
        """Inside a client transaction the flip commits or rolls back with the caller's work."""
        a, b = add_batches(2)
        assert mysql_client(f"CALL set_current_batch({a});").returncode == 0
        out = mysql_client(
            f"{begin}; UPDATE batchStatus SET batchNumber = 41 WHERE id = {b};"
            f" CALL set_current_batch({b}); ROLLBACK;"
        )
        assert out.returncode == 0, out.stderr
        assert current_rows(connect_db()) == [a]
        out = mysql_client(
            f"{begin}; UPDATE batchStatus SET batchNumber = 42 WHERE id = {b};"
            f" CALL set_current_batch({b}); COMMIT;"
        )
        assert out.returncode == 0, out.stderr
        assert current_rows(connect_db()) == [b]
        with connect_db().cursor() as cur:
            cur.execute("SELECT batchNumber FROM batchStatus WHERE id = %s", (b,))
            assert cur.fetchone() == (42,)

    def test_error_exits_non_zero_with_the_message(
        self,
        mysql_client: Callable[[str], subprocess.CompletedProcess[str]],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """An unknown batch stops the client with the procedure's errno, SQLSTATE and message."""
        (a,) = add_batches(1)
        out = mysql_client(f"CALL set_current_batch({a + 100});")
        assert out.returncode == 1
        assert out.stderr.strip().splitlines()[-1] == (
            f"ERROR 31002 (45000) at line 1: batch {a + 100} does not exist in batchStatus"
        )
        assert current_rows(connect_db()) == []

    def test_error_inside_a_transaction_keeps_the_callers_work(
        self,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """With --force, a failed CALL undoes only itself; the rest of the transaction commits."""
        (a,) = add_batches(1)
        args = client_args(migrated_url)
        args.insert(-1, "--force")  # before the database name
        out = subprocess.run(
            args,
            input=(
                f"START TRANSACTION;\nUPDATE batchStatus SET batchNumber = 77 WHERE id = {a};\n"
                f"CALL set_current_batch({a + 100});\nCALL set_current_batch({a});\nCOMMIT;\n"
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "ERROR 31002 (45000) at line 3" in out.stderr
        assert current_rows(connect_db()) == [a]
        with connect_db().cursor() as cur:
            cur.execute("SELECT batchNumber FROM batchStatus WHERE id = %s", (a,))
            assert cur.fetchone() == (77,)


class TestDBAPIDrivers:
    def test_standalone(
        self,
        driver: Driver,
        opened: Callable[[Driver, bool], Any],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """Autocommit on: CALL commits on its own; the connection stays usable after the result sets."""
        a, b = add_batches(2)
        conn = opened(driver, True)
        assert raw_call(conn, "set_current_batch", a) == [(a, None, 1)]
        assert current_rows(connect_db()) == [a]
        assert raw_call(conn, "set_current_batch", b) == [(b, a, 1)]
        assert raw_call(conn, "unset_current_batch", a) == [(a, 0)]
        assert current_rows(connect_db()) == [b]
        cur = conn.cursor()
        cur.execute("SELECT 41 + 1")
        assert cur.fetchall() in ([(42,)], ((42,),))
        cur.close()

    @pytest.mark.parametrize("autocommit", [False, True], ids=["autocommit-off", "explicit-begin"])
    def test_transaction_commit(
        self,
        driver: Driver,
        opened: Callable[[Driver, bool], Any],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        autocommit: bool,
    ) -> None:
        """In a transaction the flip is invisible to others until COMMIT, then visible."""
        a, b = add_batches(2)
        raw_call(opened(driver, True), "set_current_batch", a)
        conn = opened(driver, autocommit)
        if autocommit:
            driver.begin(conn)
        assert raw_call(conn, "set_current_batch", b) == [(b, a, 1)]
        assert current_rows(connect_db()) == [a]
        conn.commit()
        assert current_rows(connect_db()) == [b]

    @pytest.mark.parametrize("autocommit", [False, True], ids=["autocommit-off", "explicit-begin"])
    def test_transaction_rollback(
        self,
        driver: Driver,
        opened: Callable[[Driver, bool], Any],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        autocommit: bool,
    ) -> None:
        """A rollback takes the flip back with the rest of the caller's transaction."""
        a, b = add_batches(2)
        raw_call(opened(driver, True), "set_current_batch", a)
        conn = opened(driver, autocommit)
        if autocommit:
            driver.begin(conn)
        cur = conn.cursor()
        cur.execute("UPDATE batchStatus SET batchNumber = 99 WHERE id = %s", (b,))
        cur.close()
        assert raw_call(conn, "set_current_batch", b) == [(b, a, 1)]
        conn.rollback()
        assert current_rows(connect_db()) == [a]
        with connect_db().cursor() as check:
            check.execute("SELECT batchNumber FROM batchStatus WHERE id = %s", (b,))
            assert check.fetchone() == (2,)

    def test_error_carries_errno(
        self,
        driver: Driver,
        opened: Callable[[Driver, bool], Any],
        add_batches: Callable[[int], list[int]],
    ) -> None:
        """Each driver reports the procedure's SIGNAL as errno 31002 with its message."""
        (a,) = add_batches(1)
        conn = opened(driver, True)
        with pytest.raises(Exception, match=f"batch {a + 5} does not exist") as info:
            raw_call(conn, "set_current_batch", a + 5)
        errno = getattr(info.value, "errno", None) or info.value.args[0]
        assert errno == 31002


class TestDBAPIWithTheWrapper:
    @pytest.mark.parametrize("autocommit", [True, False])
    def test_flips(
        self,
        driver: Driver,
        opened: Callable[[Driver, bool], Any],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        autocommit: bool,
    ) -> None:
        """The wrapper takes each driver's connection; autocommit off means the caller commits."""
        a, b = add_batches(2)
        conn = opened(driver, autocommit)
        assert set_current_batch(conn, a) == Flip(a, None, True)
        assert set_current_batch(conn, b) == Flip(b, a, True)
        assert get_current_batch(conn) == b
        assert current_rows(connect_db()) == ([b] if autocommit else [])
        conn.commit()
        assert current_rows(connect_db()) == [b]
        assert unset_current_batch(conn, b) == Flip(b, b, True)
        conn.commit()
        assert current_rows(connect_db()) == []

    def test_rollback(
        self,
        driver: Driver,
        opened: Callable[[Driver, bool], Any],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """With autocommit off, rolling back undoes the wrapper's flip."""
        (a,) = add_batches(1)
        conn = opened(driver, False)
        set_current_batch(conn, a)
        conn.rollback()
        assert current_rows(connect_db()) == []
        assert get_current_batch(conn) is None

    def test_typed_errors(
        self,
        driver: Driver,
        opened: Callable[[Driver, bool], Any],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """Each driver's error becomes BatchNotFoundError with errno 31002; the connection lives on."""
        (a,) = add_batches(1)
        conn = opened(driver, True)
        with pytest.raises(BatchNotFoundError, match=f"batch {a + 7} does not exist") as info:
            set_current_batch(conn, a + 7)
        assert info.value.errno == 31002
        assert info.value.sqlstate in (None, "45000")
        assert set_current_batch(conn, a).changed is True
        assert current_rows(connect_db()) == [a]

    def test_context_manager(
        self,
        driver: Driver,
        opened: Callable[[Driver, bool], Any],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """current_batch() works on each driver's autocommit connection."""
        (a,) = add_batches(1)
        conn = opened(driver, True)
        with current_batch(conn, a):
            assert current_rows(connect_db()) == [a]
        assert current_rows(connect_db()) == []


class TestEveryFunctionTakesEveryConnection:
    """The public functions beyond the flips accept each driver's PEP 249 connection too."""

    @pytest.mark.parametrize("autocommit", [True, False])
    def test_doctor(
        self, driver: Driver, opened: Callable[[Driver, bool], Any], autocommit: bool
    ) -> None:
        """diagnose() checks the database through the connection, healthy at head."""
        report = diagnose(opened(driver, autocommit))
        assert report.healthy, report.lines()
        assert report.revision == report.head

    def test_doctor_finds_a_problem(
        self,
        driver: Driver,
        opened: Callable[[Driver, bool], Any],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """Through a PEP 249 connection doctor still sees a dropped index, with its fix."""
        with connect_db(autocommit=True).cursor() as cur:
            cur.execute("ALTER TABLE batchStatus DROP INDEX uq_batchStatus_currentBatchKey")
        report = diagnose(opened(driver, True))
        assert [f.check for f in report.problems] == ["index"]
        assert report.problems[0].fix == "batchflag downgrade 0001 && batchflag upgrade"

    def test_doctor_leaves_the_callers_transaction_alone(
        self,
        driver: Driver,
        opened: Callable[[Driver, bool], Any],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """Doctor neither commits nor rolls back: the caller's pending flip stays pending."""
        (a,) = add_batches(1)
        conn = opened(driver, False)
        set_current_batch(conn, a)
        assert diagnose(conn).healthy
        assert current_rows(connect_db()) == []  # not committed by doctor
        assert get_current_batch(conn) == a  # not rolled back by doctor
        conn.commit()
        assert current_rows(connect_db()) == [a]

    def test_grants(
        self,
        driver: Driver,
        opened: Callable[[Driver, bool], Any],
        connect_db: Callable[..., pymysql.Connection],
        migrated_url: URL,
    ) -> None:
        """grant() and column_write_statements() work on the connection; '%' reaches the server."""
        user = f"bf_any_{driver.name.replace('-', '_')}"
        root = connect_db(autocommit=True)
        with root.cursor() as cur:
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-any'")
        try:
            conn = opened(driver, True)
            grant(conn, f"{user}@%", str(migrated_url.database))
            with root.cursor() as cur:
                cur.execute(f"SHOW GRANTS FOR '{user}'@'%'")
                shown = " ".join(str(r[0]) for r in cur.fetchall())
            assert "GRANT SELECT ON `" in shown
            assert "`set_current_batch`" in shown
            statements = column_write_statements(conn, f"{user}@%", str(migrated_url.database))
            assert len(statements) == 2
            assert "`batchNumber`" in statements[0]
            assert "`currentBatch`" not in statements[0]
        finally:
            with root.cursor() as cur:
                cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")

    def test_dashboard_and_status(
        self,
        driver: Driver,
        opened: Callable[[Driver, bool], Any],
        add_batches: Callable[[int], list[int]],
    ) -> None:
        """Resolution, history, the watch snapshot and the status view read through it."""
        a, b = add_batches(2)
        conn = opened(driver, True)
        set_current_batch(conn, a)
        resolution = resolve_dashboard_batch(conn)
        assert resolution is not None
        assert (resolution.batch_id, resolution.reason) == (a, "current_flag")
        requested = resolve_dashboard_batch(conn, b)
        assert requested is not None
        assert (requested.batch_id, requested.reason) == (b, "requested")
        assert [e.batch_id for e in history(conn, 5)] == [a]
        snapshot = take_snapshot(conn, 5)
        assert snapshot.current is not None
        assert snapshot.current.id == a
        view = read_status(conn, limit=5)
        assert view["current_batch"]["id"] == a
        assert [row["id"] for row in view["batches"]] == [b, a]
        # every result set was drained: the connection is still in step
        assert get_current_batch(conn) == a


SYNC_DIALECTS = ["pymysql", "mysqldb", "mysqlconnector"]


@pytest.fixture(params=SYNC_DIALECTS)
def dialect_engine(request: pytest.FixtureRequest, migrated_url: URL) -> Iterator[Engine]:
    """An Engine on the migrated database through each sync SQLAlchemy MySQL dialect."""
    eng = create_engine(
        migrated_url.set(drivername=f"mysql+{request.param}"), poolclass=pool.NullPool
    )
    yield eng
    eng.dispose()


class TestSQLAlchemySync:
    def test_standalone(
        self,
        dialect_engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """text('CALL ...') on an AUTOCOMMIT connection commits on its own."""
        (a,) = add_batches(1)
        with dialect_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            rows = conn.execute(text("CALL set_current_batch(:i)"), {"i": a}).all()
            assert [tuple(r) for r in rows] == [(a, None, 1)]
            assert current_rows(connect_db()) == [a]
        assert current_rows(connect_db()) == [a]

    @pytest.mark.parametrize(
        ("dialect", "desyncs"), [("pymysql", False), ("mysqldb", False), ("mysqlconnector", True)]
    )
    def test_two_calls_on_one_connection(
        self,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        dialect: str,
        desyncs: bool,
    ) -> None:
        """Through SQLAlchemy, mysql-connector-python leaves CALL's last result unread.

        SQLAlchemy reads the first result set and closes the cursor; PyMySQL and
        mysqlclient drain the rest on close, mysql-connector-python does not, so the
        next statement reads the leftover (empty) result. The wrapper avoids this by
        running CALL on the DB-API cursor and draining it (see test_wrapper below).
        If this test starts failing for mysqlconnector, the pitfall is gone: update the docs.
        """
        a, b = add_batches(2)
        eng = create_engine(
            migrated_url.set(drivername=f"mysql+{dialect}"), poolclass=pool.NullPool
        )
        outcome = "not run"
        try:
            with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("CALL set_current_batch(:i)"), {"i": a}).all()
                second = conn.execute(text("CALL set_current_batch(:i)"), {"i": b})
                outcome = (
                    f"rows {[tuple(r) for r in second.all()]}"
                    if second.returns_rows
                    else "no rows: the leftover result of the first CALL"
                )
        except (sqlalchemy.exc.DBAPIError, mysql.connector.errors.InternalError):
            pass  # closing the out-of-sync connection complains ("Unread result found")
        finally:
            eng.dispose()
        if desyncs:
            assert outcome == "no rows: the leftover result of the first CALL"
        else:
            assert outcome == f"rows {[(b, a, 1)]}"

    def test_transaction_commit_and_rollback(
        self,
        dialect_engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """In engine.begin() the flip commits with the block; conn.rollback() takes it back."""
        a, b = add_batches(2)
        with dialect_engine.begin() as conn:
            conn.execute(text("CALL set_current_batch(:i)"), {"i": a}).all()
            assert current_rows(connect_db()) == []
        assert current_rows(connect_db()) == [a]
        with dialect_engine.connect() as conn:
            conn.execute(text("CALL set_current_batch(:i)"), {"i": b}).all()
            conn.rollback()
        assert current_rows(connect_db()) == [a]

    def test_wrapper(
        self,
        dialect_engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """The wrapper works through every sync dialect: Engine, Connection, errors."""
        a, b = add_batches(2)
        assert set_current_batch(dialect_engine, a) == Flip(a, None, True)
        with dialect_engine.connect() as conn:
            assert set_current_batch(conn, b) == Flip(b, a, True)
            assert current_rows(connect_db()) == [a]
            conn.commit()
        assert current_rows(connect_db()) == [b]
        with pytest.raises(BatchNotFoundError) as info:
            unset_current_batch(dialect_engine, b + 3)
        assert info.value.errno == 31002
        assert get_current_batch(dialect_engine) == b


class TestSQLAlchemyAsync:
    @pytest.mark.parametrize("async_driver", ["aiomysql", "asyncmy"])
    def test_standalone_commit_and_rollback(
        self,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        async_driver: str,
    ) -> None:
        """The async drivers CALL through SQLAlchemy: autocommit, commit and rollback paths."""
        a, b, c = add_batches(3)
        seen: dict[str, Any] = {}

        async def main() -> None:
            engine = create_async_engine(
                migrated_url.set(drivername=f"mysql+{async_driver}"), poolclass=pool.NullPool
            )
            try:
                async with engine.connect() as conn:
                    auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    result = await auto.execute(text("CALL set_current_batch(:i)"), {"i": a})
                    seen["row"] = [tuple(r) for r in result.all()]
                    seen["standalone"] = current_rows(connect_db())
                async with engine.begin() as conn:
                    await conn.execute(text("CALL set_current_batch(:i)"), {"i": b})
                    seen["before_commit"] = current_rows(connect_db())
                seen["after_commit"] = current_rows(connect_db())
                async with engine.connect() as conn:
                    await conn.execute(text("CALL set_current_batch(:i)"), {"i": c})
                    await conn.rollback()
                    seen["usable"] = (await conn.execute(text("SELECT 7"))).scalar_one()
                seen["after_rollback"] = current_rows(connect_db())
            finally:
                await engine.dispose()

        asyncio.run(main())
        assert seen == {
            "row": [(a, None, 1)],
            "standalone": [a],
            "before_commit": [a],
            "after_commit": [b],
            "usable": 7,
            "after_rollback": [b],
        }
