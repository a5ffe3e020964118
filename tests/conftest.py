"""Fixtures: one server per session, a fresh database per test."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
from sqlalchemy import create_engine, make_url, pool
from sqlalchemy.engine import URL, Engine

from batchflag_db import migrate
from tests._servers import acquire_server


def pytest_report_header(config: pytest.Config) -> list[str]:
    return ["batchflag-db: server from BATCHFLAG_TEST_DATABASE_URL, else a throwaway local server"]


@pytest.fixture(scope="session")
def server_url() -> Iterator[URL]:
    """The session's server, as a URL without a database."""
    with acquire_server() as (url, how):
        print(f"\nbatchflag-db tests use: {how}")
        yield make_url(url)


def connect(url: URL, **kwargs: Any) -> pymysql.Connection:
    """A PyMySQL connection to ``url`` (its database, if any)."""
    return pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        database=url.database,
        **kwargs,
    )


@pytest.fixture
def db_url(server_url: URL) -> Iterator[URL]:
    """A fresh, empty database for this test only; dropped afterwards."""
    name = f"bft_{uuid.uuid4().hex[:12]}"
    admin = connect(server_url, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
        yield server_url.set(database=name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture
def migrated_url(db_url: URL) -> URL:
    """A fresh database upgraded to head."""
    migrate.upgrade(db_url)
    return db_url


@pytest.fixture
def engine(migrated_url: URL) -> Iterator[Engine]:
    eng = create_engine(migrated_url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture
def connect_db(migrated_url: URL) -> Iterator[Callable[..., pymysql.Connection]]:
    """Factory of PyMySQL connections to the migrated database; all closed afterwards."""
    opened: list[pymysql.Connection] = []

    def factory(**kwargs: Any) -> pymysql.Connection:
        conn = connect(migrated_url, **kwargs)
        opened.append(conn)
        return conn

    yield factory
    for conn in opened:
        with contextlib.suppress(pymysql.err.Error):  # already closed by the test
            conn.close()


@pytest.fixture
def add_batches(connect_db: Callable[..., pymysql.Connection]) -> Callable[[int], list[int]]:
    """Insert N batches (not current) and return their ids."""

    def factory(n: int) -> list[int]:
        return insert_batches(connect_db(autocommit=True), n)

    return factory


def client_args(url: URL) -> list[str]:
    """Arguments for the `mariadb`/`mysql` command-line client to reach ``url``."""
    binary = shutil.which("mariadb") or shutil.which("mysql")
    if binary is None:
        pytest.fail(
            "the mariadb/mysql command-line client is not installed (apt-get install mariadb-client)"
        )
    args = [
        binary,
        "--protocol=TCP",
        f"--host={url.host or '127.0.0.1'}",
        f"--port={url.port or 3306}",
        f"--user={url.username or 'root'}",
        "--batch",
    ]
    if url.password:
        args.append(f"--password={url.password}")
    if url.database:
        args.append(url.database)
    return args


@pytest.fixture
def mysql_client(migrated_url: URL) -> Callable[[str], subprocess.CompletedProcess[str]]:
    """Run SQL through the mariadb/mysql command-line client against the migrated database."""

    def run(sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            client_args(migrated_url),
            input=sql,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


def insert_batches(conn: pymysql.Connection, n: int) -> list[int]:
    """Insert ``n`` batches (not current) through ``conn`` and return their ids."""
    ids = []
    with conn.cursor() as cur:
        for i in range(n):
            cur.execute(
                "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-11-28', %s)",
                (i + 1,),
            )
            ids.append(int(cur.lastrowid))
    return ids


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``batchflag ARGS`` in a fresh interpreter (the same code as the console script)."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from batchflag_db.cli import main; raise SystemExit(main())",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def current_rows(conn: pymysql.Connection) -> list[int]:
    """Ids of every row flagged current, read by a full scan of the flag (not the key)."""
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM batchStatus WHERE currentBatch <> 0 ORDER BY id")
        return [int(r[0]) for r in cur.fetchall()]


def check_table(conn: pymysql.Connection, table: str = "batchStatus") -> list[tuple[Any, ...]]:
    """Run CHECK TABLE ... EXTENDED and return its rows (the last says OK when healthy)."""
    with conn.cursor() as cur:
        cur.execute(f"CHECK TABLE `{table}` EXTENDED")
        return list(cur.fetchall())
