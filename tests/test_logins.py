"""Logins with a password, through every driver the project supports, then a flip.

On MySQL the account uses MySQL's default plugin, caching_sha2_password; on MariaDB
its default (mysql_native_password). PyMySQL is tried with TLS (MySQL offers it by
default) and without (where it needs the `cryptography` package that the
`PyMySQL[rsa]` dependency brings); aiomysql runs without TLS.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import mysql.connector
import MySQLdb
import pymysql
import pytest
from sqlalchemy import pool
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

import batchflag_db
from batchflag_db import aio, grants
from batchflag_db.testing.selection import SessionServer
from tests.conftest import connect, current_rows

PASSWORD = "bf-Login-pw-1"  # noqa: S105 - a throwaway account in a throwaway database


@pytest.fixture
def account(migrated_url: URL, batchflag_server: SessionServer) -> Iterator[URL]:
    """An account with a password and the least privilege to flip; dropped afterwards."""
    user = f"bf_login_{uuid.uuid4().hex[:8]}"
    mysql_kind = "MariaDB" not in batchflag_server.version
    admin = connect(migrated_url, autocommit=True)
    with admin.cursor() as cur:
        plugin = "WITH caching_sha2_password " if mysql_kind else ""
        cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED {plugin}BY %s", (PASSWORD,))
        grants.grant(admin, f"'{user}'@'%'", str(migrated_url.database))
        cur.execute("SELECT plugin FROM mysql.user WHERE user = %s", (user,))
        (used,) = cur.fetchone()
    assert used == ("caching_sha2_password" if mysql_kind else "mysql_native_password")
    try:
        yield migrated_url.set(username=user, password=PASSWORD)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER '{user}'@'%'")
        admin.close()


def _kwargs(url: URL) -> dict[str, Any]:
    return {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "database": url.database,
    }


def _pymysql_tls(url: URL) -> Any:
    return pymysql.connect(**_kwargs(url), autocommit=True)


def _pymysql_plain(url: URL) -> Any:
    return pymysql.connect(**_kwargs(url), autocommit=True, ssl_disabled=True)


def _mysqlclient(url: URL) -> Any:
    kw = _kwargs(url)
    return MySQLdb.connect(
        host=kw["host"], port=kw["port"], user=kw["user"], passwd=kw["password"], db=kw["database"]
    )


def _connector(url: URL) -> Any:
    return mysql.connector.connect(**_kwargs(url))


OPENERS: dict[str, Callable[[URL], Any]] = {
    "pymysql-tls": _pymysql_tls,
    "pymysql-no-tls": _pymysql_plain,
    "mysqlclient": _mysqlclient,
    "mysql-connector": _connector,
}


@pytest.fixture
def two_batches(migrated_url: URL) -> list[int]:
    conn = connect(migrated_url, autocommit=True)
    with conn.cursor() as cur:
        ids = []
        for n in (1, 2):
            cur.execute(
                "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-12-01', %s)", (n,)
            )
            ids.append(int(cur.lastrowid))
    conn.close()
    return ids


class TestPasswordLogins:
    @pytest.mark.parametrize("driver", sorted(OPENERS))
    def test_driver_logs_in_and_flips(
        self, driver: str, account: URL, two_batches: list[int], migrated_url: URL
    ) -> None:
        """The account logs in with its password through the driver, and its flips land."""
        first, second = two_batches
        conn = OPENERS[driver](account)
        try:
            cur = conn.cursor()
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone()[0].startswith(cast(str, account.username) + "@")
            cur.close()
            assert batchflag_db.set_current_batch(conn, first).batch_id == first
            flip = batchflag_db.set_current_batch(conn, second)
            assert flip.previous_batch_id == first
            conn.commit()
        finally:
            conn.close()
        check = connect(migrated_url, autocommit=True)
        assert current_rows(check) == [second]
        check.close()

    def test_aiomysql_logs_in_and_flips(
        self, account: URL, two_batches: list[int], migrated_url: URL
    ) -> None:
        """aiomysql (no TLS), through an AsyncEngine, logs in with the password and flips through batchflag_db.aio."""
        first, second = two_batches

        async def flip() -> int | None:
            engine = create_async_engine(
                account.set(drivername="mysql+aiomysql"), poolclass=pool.NullPool
            )
            try:
                await aio.set_current_batch(engine, first)
                done = await aio.set_current_batch(engine, second)
                return done.previous_batch_id
            finally:
                await engine.dispose()

        assert asyncio.run(flip()) == first
        check = connect(migrated_url, autocommit=True)
        assert current_rows(check) == [second]
        check.close()

    def test_wrong_password_is_refused(self, account: URL) -> None:
        """Control: the same login with a wrong password is refused (1045)."""
        with pytest.raises(pymysql.err.OperationalError) as info:
            _pymysql_tls(account.set(password="wrong"))  # noqa: S106 - the wrong one on purpose
        assert info.value.args[0] == 1045
