"""Backup and restore: a logical dump with routines, loaded into a fresh server.

The invariant (generated column + UNIQUE index), the lock row, the version table
and the procedures must all come back working. The definer question is answered
here: a dump names the procedures' definer; on a server without that account
every CALL fails with error 1449 until the account exists there, or the dump is
loaded without its DEFINER clauses (the loading account becomes the definer).
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from sqlalchemy.engine import URL, make_url

from batchflag_db import (
    BatchFlagError,
    get_current_batch,
    migrate,
    set_current_batch,
    unset_current_batch,
)
from batchflag_db.migrate import current_revision, head_revision
from batchflag_db.testing.selection import SessionServer
from batchflag_db.testing.server import ThrowawayServer
from tests.conftest import (
    check_table,
    client_args,
    connect,
    current_rows,
    insert_batches,
    session_binaries,
)

PASSWORD = "bf-dump-pw"  # noqa: S105 - throwaway account
ER_DUP_ENTRY = 1062
ER_NO_SUCH_USER = 1449
DEFINER_CLAUSE = re.compile(r"\bDEFINER\s*=\s*`[^`]*`@`[^`]*`\s*")


def dump(url: URL, path: Path) -> str:
    """Dump ``url``'s database with routines, as an operator would; return the SQL text."""
    binaries = session_binaries()
    args = binaries.client(
        binaries.dump_name, url, "--routines", "--single-transaction", str(url.database)
    )
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    path.write_text(done.stdout)
    return done.stdout


def load(url: URL, sql: str) -> subprocess.CompletedProcess[str]:
    """Load SQL into ``url``'s database with the command-line client."""
    return subprocess.run(
        client_args(url), input=sql, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def target_server(batchflag_server: SessionServer) -> Iterator[URL]:
    """A fresh server of the run's kind the dumps are restored into: root and nothing else."""
    with ThrowawayServer(kind=batchflag_server.kind) as server:
        yield make_url(server.url)


@pytest.fixture
def target_url(target_server: URL) -> Iterator[URL]:
    """An empty database on the target server."""
    name = f"restored_{uuid.uuid4().hex[:8]}"
    admin = connect(target_server, autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    yield target_server.set(database=name)
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    admin.close()


def assert_restored_database_works(url: URL, current: int, other: int) -> None:
    """The restored database: healthy, same current batch, invariant enforced, procedures work."""
    conn = connect(url, autocommit=True)
    assert check_table(conn)[-1][-1] == "OK"
    assert check_table(conn, "currentBatchLock")[-1][-1] == "OK"
    assert get_current_batch(conn) == current
    assert current_rows(conn) == [current]
    with conn.cursor() as cur:
        cur.execute("SHOW CREATE TABLE batchStatus")
        ddl = cur.fetchone()[1]
    assert re.search(r"`currentBatchKey` tinyint.*GENERATED ALWAYS AS", ddl), ddl
    assert "UNIQUE KEY `uq_batchStatus_currentBatchKey`" in ddl, ddl
    with conn.cursor() as cur, pytest.raises(pymysql.err.IntegrityError) as info:
        cur.execute("UPDATE batchStatus SET currentBatch = 1 WHERE id = %s", (other,))
    assert info.value.args[0] == ER_DUP_ENTRY
    assert set_current_batch(conn, other).previous_batch_id == current
    assert unset_current_batch(conn, other).changed is True
    assert set_current_batch(conn, current).changed is True
    assert current_rows(conn) == [current]
    conn.close()


class TestDumpAndRestore:
    def test_restore_keeps_invariant_and_procedures(
        self, migrated_url: URL, target_url: URL, tmp_path: Path
    ) -> None:
        """mariadb-dump --routines, loaded into a fresh server: everything works there."""
        source = connect(migrated_url, autocommit=True)
        a, b, _ = insert_batches(source, 3)
        set_current_batch(source, b)
        source.close()
        sql = dump(migrated_url, tmp_path / "dump.sql")
        assert "CREATE DEFINER=" in sql
        assert "PROCEDURE `set_current_batch`" in sql
        done = load(target_url, sql)
        assert done.returncode == 0, done.stderr
        assert current_revision(target_url) == head_revision()
        assert_restored_database_works(target_url, current=b, other=a)
        # migrating the restored database again is a no-op
        migrate.upgrade(target_url)
        assert current_revision(target_url) == head_revision()


@pytest.fixture
def migrated_by_service_account(db_url: URL, server_url: URL) -> Iterator[tuple[URL, str, str]]:
    """The source database migrated by its own account, which the target server lacks.

    Yields (source URL, the account's user name, the account as 'user'@'%').
    """
    user = f"bf_mig_{uuid.uuid4().hex[:8]}"
    account = f"'{user}'@'%'"
    admin = connect(server_url, autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"CREATE USER {account} IDENTIFIED BY '{PASSWORD}'")
        cur.execute(f"GRANT ALL PRIVILEGES ON `{db_url.database}`.* TO {account}")
    migrate.upgrade(db_url.set(username=user, password=PASSWORD))
    yield db_url, user, account
    with admin.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS {account}")
    admin.close()


class TestMissingDefiner:
    def _source(self, url: URL, tmp_path: Path) -> tuple[str, int, int]:
        conn = connect(url, autocommit=True)
        a, b = insert_batches(conn, 2)
        set_current_batch(conn, a)
        conn.close()
        return dump(url, tmp_path / "dump.sql"), a, b

    def test_call_fails_with_1449_until_the_definer_exists(
        self,
        migrated_by_service_account: tuple[URL, str, str],
        target_url: URL,
        target_server: URL,
        tmp_path: Path,
    ) -> None:
        """Restored as-is on a server without the definer: 1449 on CALL, nothing changes.

        Fix: create the definer account on the target (it may stay locked, with
        DML on the tables and EXECUTE only); then the same restored procedures work.
        """
        source_url, user, definer = migrated_by_service_account
        sql, a, b = self._source(source_url, tmp_path)
        assert f"DEFINER=`{user}`@`%`" in sql
        done = load(target_url, sql)
        assert done.returncode == 0, done.stderr  # the restore itself succeeds (as root)
        conn = connect(target_url, autocommit=True)
        with pytest.raises(BatchFlagError, match="definer") as info:
            set_current_batch(conn, b)
        assert info.value.errno == ER_NO_SUCH_USER
        assert current_rows(conn) == [a]
        assert get_current_batch(conn) == a  # reads do not go through the definer
        admin = connect(target_server, autocommit=True)
        try:
            with admin.cursor() as cur:
                cur.execute(f"CREATE USER {definer} ACCOUNT LOCK")
                cur.execute(
                    f"GRANT SELECT, INSERT, UPDATE ON `{target_url.database}`.* TO {definer}"
                )
                cur.execute(f"GRANT EXECUTE ON `{target_url.database}`.* TO {definer}")
            assert_restored_database_works(target_url, current=a, other=b)
        finally:
            with admin.cursor() as cur:
                cur.execute(f"DROP USER IF EXISTS {definer}")
            admin.close()
        conn.close()

    def test_loading_without_definer_clauses(
        self, migrated_by_service_account: tuple[URL, str, str], target_url: URL, tmp_path: Path
    ) -> None:
        """The other fix: strip DEFINER=... from the dump; the loading account becomes the definer."""
        source_url, _, _ = migrated_by_service_account
        sql, a, b = self._source(source_url, tmp_path)
        stripped, count = DEFINER_CLAUSE.subn("", sql)
        assert count >= 2, "the dump should name a definer for each procedure"
        done = load(target_url, stripped)
        assert done.returncode == 0, done.stderr
        conn = connect(target_url, autocommit=True)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT DISTINCT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s",
                (target_url.database,),
            )
            definers = [r[0] for r in cur.fetchall()]
        conn.close()
        assert definers == [f"{target_url.username or 'root'}@{target_url.host}"], definers
        assert_restored_database_works(target_url, current=a, other=b)
