"""Hostile and careless input: every bad value or bad setting gets a clear, typed error
and changes nothing.

Through the Python API (all connection kinds), through a plain SQL ``CALL`` (what a
non-Python application sends), and through the ``batchflag`` command line.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pymysql
import pytest
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Engine

from batchflag_db import (
    BatchNotFoundError,
    ConfigurationError,
    DatabaseConnectionError,
    InvalidBatchIdError,
    SchemaNotReadyError,
    aio,
    get_current_batch,
    migrate,
    set_current_batch,
    unset_current_batch,
)
from batchflag_db.config import normalize_url, resolve_url
from batchflag_db.errors import NotAConnectionError
from batchflag_db.testing.server import ThrowawayServer, free_port
from tests.conftest import check_table, connect, current_rows, run_cli

PASSWORD = "bf-hostile-pw"  # noqa: S105 - throwaway account


class EvilInt(int):
    """An int whose text forms are SQL: the wrapper must send the number, never str()."""

    def __str__(self) -> str:
        return "1); UPDATE batchStatus SET currentBatch = 1; -- "

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return str(self)


class IndexLike:
    """Not an int, but an integer by protocol (like numpy.int64): accepted."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


BAD_IDS: list[Any] = [
    None,
    0,
    -1,
    -(2**63),
    2**63,
    2**64,
    10**30,
    True,
    False,
    1.0,
    1.5,
    -0.0,
    float("nan"),
    float("inf"),
    Decimal("1"),
    Fraction(1, 1),
    complex(1, 0),
    "1",
    " 1",
    "0x1",
    "1e3",
    "",
    "abc",
    "1; DROP TABLE batchStatus",
    "1) OR 1=1 -- ",
    "1'; UPDATE batchStatus SET currentBatch = 1; --",
    "9" * 100_000,
    "x" * 1_000_000,
    "\x00",
    "\uff11",  # FULLWIDTH DIGIT ONE: int() would accept it, the wrapper must not
    b"1",
    bytearray(b"1"),
    [1],
    (1,),
    {1: 1},
    object(),
]


def _ids(values: list[Any]) -> list[str]:
    out = []
    for v in values:
        shown = repr(v)
        out.append(f"{type(v).__name__}:{shown[:20]}" + ("..." if len(shown) > 20 else ""))
    return out


def snapshot(conn: pymysql.Connection) -> tuple[object, ...]:
    """Every row and column of batchStatus, and the flip counter: what 'nothing changed' means."""
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM batchStatus ORDER BY id")
        rows = tuple(cur.fetchall())
        cur.execute("SELECT flipCount FROM currentBatchLock")
        counter = cur.fetchall()
    return rows, counter


@pytest.fixture
def every_conn(migrated_url: URL) -> Iterator[dict[str, Any]]:
    """Each kind of connection the wrapper accepts, by name."""
    eng = create_engine(migrated_url, poolclass=pool.NullPool)
    sa_conn = create_engine(migrated_url, poolclass=pool.NullPool).connect()
    conns = {
        "engine": eng,
        "sqlalchemy-connection": sa_conn,
        "pep249-autocommit": connect(migrated_url, autocommit=True),
        "pep249-txn": connect(migrated_url, autocommit=False),
    }
    yield conns
    sa_conn.rollback()
    sa_conn.close()
    sa_conn.engine.dispose()
    eng.dispose()
    conns["pep249-autocommit"].close()
    conns["pep249-txn"].close()


class TestHostileBatchIds:
    @pytest.mark.parametrize("bad", BAD_IDS, ids=_ids(BAD_IDS))
    def test_refused_with_one_line_and_nothing_changed(
        self,
        every_conn: dict[str, Any],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        bad: Any,
    ) -> None:
        """None, 0, negatives, beyond BIGINT, floats, strings, SQL, huge strings: InvalidBatchIdError.

        Through every kind of connection; each stays usable afterwards.
        """
        a, _ = add_batches(2)
        observer = connect_db(autocommit=True)
        set_current_batch(observer, a)
        before = snapshot(observer)
        for kind, conn in every_conn.items():
            for call in (set_current_batch, unset_current_batch):
                with pytest.raises(InvalidBatchIdError, match=r"^invalid batch id ") as info:
                    call(conn, bad)
                message = str(info.value)
                assert "\n" not in message, kind
                assert len(message) < 300, (kind, len(message))
                assert isinstance(info.value, ValueError)
            assert get_current_batch(conn) == a, kind
        assert snapshot(observer) == before

    def test_gigantic_int(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """An int with 5000 digits is refused with InvalidBatchIdError like any other."""
        (a,) = add_batches(1)
        set_current_batch(engine, a)
        with pytest.raises(InvalidBatchIdError, match="invalid batch id"):
            set_current_batch(engine, 10**5000)
        assert current_rows(connect_db()) == [a]

    def test_int_subclass_cannot_inject_sql(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """An int subclass whose str() is SQL flips the batch it numbers, and nothing else."""
        a, b, c = add_batches(3)
        set_current_batch(engine, a)
        flip = set_current_batch(engine, EvilInt(b))
        assert flip.batch_id == b
        assert type(flip.batch_id) is int
        conn = connect_db(autocommit=True)
        set_current_batch(conn, EvilInt(c))
        assert current_rows(conn) == [c]
        assert check_table(conn)[-1][-1] == "OK"

    def test_integer_by_protocol_is_accepted(
        self, engine: Engine, add_batches: Callable[[int], list[int]]
    ) -> None:
        """An object with __index__ (e.g. numpy.int64) is an integer and works."""
        _, b = add_batches(2)
        # typed int, but any __index__ integer is accepted: passing one is the point
        assert set_current_batch(engine, IndexLike(b)).batch_id == b  # type: ignore[arg-type]
        assert get_current_batch(engine) == b

    def test_largest_id_is_valid_but_missing(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """2**63-1 passes validation and reaches the server, which says it does not exist."""
        (a,) = add_batches(1)
        set_current_batch(engine, a)
        before = snapshot(connect_db())
        with pytest.raises(BatchNotFoundError, match=f"batch {2**63 - 1} does not exist"):
            set_current_batch(engine, 2**63 - 1)
        assert snapshot(connect_db())[0] == before[0]


class TestSqlLevelCall:
    """What an application in another language gets when it CALLs with bad arguments."""

    @pytest.mark.parametrize(
        ("arg", "errno"),
        [
            (None, 31001),
            (0, 31001),
            (-1, 31001),
            (2**64, 1264),
            ("abc", 1366),
            ("2abc", 1265),
            ("1; DROP TABLE batchStatus", 1265),
            ("1 OR 1=1", 1265),
            ("9" * 10_000, 1264),
        ],
        ids=["NULL", "0", "-1", "2**64", "abc", "2abc", "sql", "or", "long"],
    )
    def test_bad_arguments_are_refused(
        self,
        connect_db: Callable[..., pymysql.Connection],
        add_batches: Callable[[int], list[int]],
        arg: Any,
        errno: int,
    ) -> None:
        """NULL, non-positive, out-of-range and non-numeric arguments raise an error; nothing changes."""
        a, _ = add_batches(2)
        conn = connect_db(autocommit=True)
        set_current_batch(conn, a)
        before = snapshot(conn)
        for procedure in ("set_current_batch", "unset_current_batch"):
            with conn.cursor() as cur, pytest.raises(pymysql.err.MySQLError) as info:
                cur.execute(f"CALL {procedure}(%s)", (arg,))
            assert int(info.value.args[0]) == errno, info.value
        assert snapshot(conn) == before

    def test_decimal_argument_is_rounded_by_the_server(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """A known limit at the SQL level: CALL set_current_batch(1.7) rounds to 2, like any BIGINT.

        The Python wrapper refuses floats before the server sees them; SQL callers
        must pass integers.
        """
        a, b = add_batches(2)
        assert b == a + 1
        conn = connect_db(autocommit=True)
        with conn.cursor() as cur:
            cur.execute(f"CALL set_current_batch({a}.7)")
            assert cur.fetchall()[0][0] == b
            while cur.nextset():
                pass
        assert current_rows(conn) == [b]


@pytest.fixture
def password_account(server_url: URL, migrated_url: URL) -> Iterator[str]:
    """An account with a password and full rights on the migrated database."""
    user = f"bf_{uuid.uuid4().hex[:10]}"
    admin = connect(server_url, autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'")
        cur.execute(f"GRANT ALL ON `{migrated_url.database}`.* TO '{user}'@'%'")
    yield user
    with admin.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
    admin.close()


class TestBadSchema:
    def test_unmigrated_database(self, db_url: URL) -> None:
        """An empty database: every call says to run the migrations, and creates nothing."""
        eng = create_engine(db_url, poolclass=pool.NullPool)
        for call in (
            lambda: set_current_batch(eng, 1),
            lambda: unset_current_batch(eng, 1),
            lambda: get_current_batch(eng),
        ):
            with pytest.raises(SchemaNotReadyError, match="run `batchflag upgrade`"):
                call()
        eng.dispose()
        conn = connect(db_url)
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            assert cur.fetchall() == ()
        conn.close()

    def test_table_without_procedures(self, db_url: URL) -> None:
        """Migrated to 0002 only: reading works, flipping says to migrate; nothing changes."""
        migrate.upgrade(db_url, "0002")
        conn = connect(db_url, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-01-01', 1)")
        assert get_current_batch(conn) is None
        with pytest.raises(SchemaNotReadyError, match="batchflag upgrade"):
            set_current_batch(conn, 1)
        assert current_rows(conn) == []
        conn.close()

    def test_lock_row_deleted(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """Someone deleted the serialization row: flips fail with 31003 and change nothing."""
        a, b = add_batches(2)
        set_current_batch(engine, a)
        conn = connect_db(autocommit=True)
        with conn.cursor() as cur:
            cur.execute("DELETE FROM currentBatchLock")
        with pytest.raises(SchemaNotReadyError, match="batchflag doctor") as info:
            set_current_batch(engine, b)
        assert info.value.errno == 31003
        assert current_rows(conn) == [a]


class TestBadConnectionSettings:
    @pytest.mark.parametrize(
        "url",
        [
            "",
            "not a url",
            "postgresql://u:p@h/db",
            "sqlite:///x.db",
            "://",
            "mysql+nosuchdriver://u@h/db",
        ],
    )
    def test_malformed_urls(self, url: str) -> None:
        """A URL that is not a MySQL/MariaDB URL is a ConfigurationError with the expected form."""
        with pytest.raises(ConfigurationError):
            normalize_url(url)
        with pytest.raises(ConfigurationError):
            migrate.upgrade(url)

    def test_no_url_anywhere(self) -> None:
        """No URL, no environment: the error says every way to give one."""
        with pytest.raises(ConfigurationError, match="--url") as info:
            resolve_url(None, None, environ={})
        assert "BATCHFLAG_DATABASE_URL" in str(info.value)

    def test_unknown_database(self, migrated_url: URL) -> None:
        """A URL naming a database that does not exist: DatabaseConnectionError (1049)."""
        eng = create_engine(migrated_url.set(database="bf_no_such_db"), poolclass=pool.NullPool)
        with pytest.raises(DatabaseConnectionError) as info:
            set_current_batch(eng, 1)
        assert info.value.errno == 1049
        eng.dispose()

    def test_wrong_password(
        self,
        migrated_url: URL,
        password_account: str,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """A wrong password: DatabaseConnectionError (1045), and the password is not echoed."""
        (a,) = add_batches(1)
        set_current_batch(connect_db(autocommit=True), a)
        wrong = "not-the-password-xyz"
        eng = create_engine(
            migrated_url.set(username=password_account, password=wrong), poolclass=pool.NullPool
        )
        for call in (lambda: set_current_batch(eng, a), lambda: get_current_batch(eng)):
            with pytest.raises(DatabaseConnectionError) as info:
                call()
            assert info.value.errno == 1045
            assert wrong not in str(info.value)
        eng.dispose()
        # the right password works: the account is fine
        good = create_engine(
            migrated_url.set(username=password_account, password=PASSWORD), poolclass=pool.NullPool
        )
        assert get_current_batch(good) == a
        good.dispose()

    def test_nothing_listening(self) -> None:
        """A port nobody listens on: DatabaseConnectionError (2003)."""
        eng = create_engine(
            f"mysql+pymysql://root@127.0.0.1:{free_port()}/x", poolclass=pool.NullPool
        )
        with pytest.raises(DatabaseConnectionError) as info:
            set_current_batch(eng, 1)
        assert info.value.errno == 2003
        eng.dispose()

    def test_migrate_with_wrong_password(self, migrated_url: URL, password_account: str) -> None:
        """migrate.upgrade with a wrong password raises DatabaseConnectionError."""
        wrong = migrated_url.set(username=password_account, password="wrong")  # noqa: S106
        with pytest.raises(DatabaseConnectionError):
            migrate.upgrade(wrong)


@pytest.mark.slow
class TestStoppedServer:
    def test_stopped_and_killed_server(
        self, throwaway_server: Callable[..., ThrowawayServer]
    ) -> None:
        """A server that stopped (cleanly or by SIGKILL) under an open connection or an Engine.

        Every call raises DatabaseConnectionError; none hangs.
        """
        server = throwaway_server(keep_datadir=True)
        try:
            server.start()
            admin = server.connect(autocommit=True)
            with admin.cursor() as cur:
                cur.execute("CREATE DATABASE bf")
            admin.close()
            url = normalize_url(server.url).set(database="bf")
            migrate.upgrade(url)
            conn = server.connect("bf", autocommit=True, read_timeout=10)
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-01-01', 1)"
                )
            set_current_batch(conn, 1)
            eng = create_engine(url, poolclass=pool.NullPool)
            server.kill()
            with pytest.raises(DatabaseConnectionError) as info:
                set_current_batch(conn, 1)
            assert info.value.errno in (2006, 2013)
            with pytest.raises(DatabaseConnectionError) as info:
                get_current_batch(eng)
            assert info.value.errno == 2003
            # after a restart the flip made before the kill is still there
            server.start()
            assert get_current_batch(eng) == 1
            eng.dispose()
        finally:
            server.keep_datadir = False
            server.stop()


CLI_BAD_IDS = [
    "0",
    "-1",
    "9223372036854775808",
    "99999999999999999999999999",
    "1.5",
    "1e3",
    "abc",
    "",
    " ",
    "0x10",
    "1; DROP TABLE batchStatus",
    "1' OR '1'='1",
    "NULL",
    "9" * 100_000,
]


@pytest.mark.slow
class TestCliHostileInput:
    """The same hostile input through the ``batchflag`` command line."""

    @pytest.mark.parametrize("bad", CLI_BAD_IDS, ids=[b[:12] or "empty" for b in CLI_BAD_IDS])
    def test_bad_ids(
        self,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        bad: str,
    ) -> None:
        """Non-zero exit, a one-line message, no traceback, nothing changed."""
        (a,) = add_batches(1)
        conn = connect_db(autocommit=True)
        set_current_batch(conn, a)
        before = snapshot(conn)
        url = migrated_url.render_as_string(hide_password=False)
        for command in ("set-current", "unset-current"):
            done = run_cli("--url", url, command, "--", bad)
            assert done.returncode != 0, (command, bad, done.stdout)
            _assert_clean_error(done)
        assert snapshot(conn) == before

    def test_unmigrated_database(self, db_url: URL) -> None:
        """An empty database: non-zero exit, says to migrate."""
        done = run_cli("--url", db_url.render_as_string(hide_password=False), "set-current", "1")
        assert done.returncode != 0
        _assert_clean_error(done)
        assert "upgrade" in done.stderr + done.stdout

    @pytest.mark.parametrize(
        "url",
        ["not a url", "postgresql://u:p@h/db", "mysql+pymysql://root@127.0.0.1:{port}/x"],
    )
    def test_bad_url_or_nothing_listening(self, url: str) -> None:
        """A malformed URL or a port nobody listens on: non-zero exit, one line, no traceback."""
        done = run_cli("--url", url.format(port=free_port()), "set-current", "1")
        assert done.returncode != 0
        _assert_clean_error(done)

    def test_wrong_password(self, migrated_url: URL, password_account: str) -> None:
        """A wrong password: non-zero exit, one line, the password not echoed."""
        wrong = "not-the-password-xyz"
        url = migrated_url.set(username=password_account, password=wrong)
        done = run_cli("--url", url.render_as_string(hide_password=False), "set-current", "1")
        assert done.returncode != 0
        _assert_clean_error(done)
        assert wrong not in done.stderr + done.stdout


class TestUrlsThatHideTheirPassword:
    """A password with '@' or '/', a port that is not a number: exit 2, one line, no password."""

    @pytest.mark.parametrize(
        ("url", "says"),
        [
            ("mysql+pymysql://app:se@cret-PW9@127.0.0.1:3306/db", "percent-encoded"),
            ("mysql+pymysql://app:se@cr/et-PW9@127.0.0.1:3306/db", "percent-encoded"),
            ("mysql+pymysql://app:secret-PW9@127.0.0.1:abc/db", "port is not a number"),
        ],
    )
    def test_exit_2_with_one_line(self, url: str, says: str) -> None:
        """The command line exits 2 with one line naming the problem, never the password."""
        done = run_cli("--url", url, "status")
        assert done.returncode == 2, done.stderr
        _assert_clean_error(done)
        assert says in done.stderr
        assert "cret" not in done.stderr + done.stdout

    def test_percent_encoded_password_parses(self) -> None:
        """The encoding the message asks for gives back the password as written."""
        url = normalize_url("mysql+pymysql://app:se%40cr%2Fet@127.0.0.1:3306/db")
        assert (url.password, url.host, url.database) == ("se@cr/et", "127.0.0.1", "db")


class TestMissingDrivers:
    """A driver or extra that is not installed: the error names the pip command."""

    def _run(self, code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )

    def test_mysqldb_without_mysqlclient(self) -> None:
        """mysql+mysqldb:// where MySQLdb cannot be imported: pip install mysqlclient."""
        done = self._run(
            "import sys; sys.modules['MySQLdb'] = None\n"
            "from batchflag_db.config import normalize_url\n"
            "normalize_url('mysql+mysqldb://app:pw@127.0.0.1/db')"
        )
        assert "ConfigurationError" in done.stderr
        assert "pip install mysqlclient" in done.stderr

    def test_aio_without_the_extra(self) -> None:
        """import batchflag_db.aio without greenlet: pip install 'batchflag-db[aio]'."""
        done = self._run("import sys; sys.modules['greenlet'] = None\nimport batchflag_db.aio")
        assert "ImportError" in done.stderr
        assert "pip install 'batchflag-db[aio]'" in done.stderr


class TestUrlWhereAConnectionGoes:
    """A URL string passed as ``conn``: a NotAConnectionError (a TypeError), no password."""

    def test_sync_wrappers(self, migrated_url: URL) -> None:
        """set_current_batch and get_current_batch refuse a URL string, naming create_engine."""
        text_url = migrated_url.render_as_string(hide_password=False)
        for call in (
            lambda: set_current_batch(text_url, 1),  # type: ignore[arg-type]  # the mistake tested
            lambda: get_current_batch(text_url),  # type: ignore[arg-type]  # likewise
        ):
            with pytest.raises(NotAConnectionError, match="create_engine") as info:
                call()
            assert isinstance(info.value, TypeError)
            assert text_url not in str(info.value)

    def test_async_wrappers(self, migrated_url: URL) -> None:
        """batchflag_db.aio refuses a URL string the same way."""
        with pytest.raises(NotAConnectionError, match="create_async_engine"):
            asyncio.run(aio.set_current_batch(str(migrated_url), 1))  # type: ignore[arg-type]


def _assert_clean_error(done: subprocess.CompletedProcess[str]) -> None:
    out = done.stderr.strip() or done.stdout.strip()
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-2000:]
    assert out, "no message at all"
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out[-2000:]
    assert len(lines[0]) < 500, lines[0][:600]
