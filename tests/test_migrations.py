"""The migrations: empty database, adopting the user's table, dirty flags, up and down."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sqlalchemy.engine import URL

from batchflag_db import migrate
from batchflag_db.errors import MigrationRefusedError
from tests.conftest import connect, current_rows

REPO = Path(__file__).resolve().parent.parent

# The user's production table as cofi-service created it: no key column, no procedures.
SEED_TABLE = """
CREATE TABLE batchStatus (
    id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    batchDate DATE NOT NULL,
    batchNumber INT NOT NULL,
    batchStatus VARCHAR(50) NOT NULL DEFAULT 'Pending',
    currentBatch TINYINT(1) NOT NULL DEFAULT 0,
    notes TEXT NULL
) ENGINE=InnoDB
"""


def snapshot(conn: pymysql.Connection) -> list[tuple[Any, ...]]:
    """Every row's id, date, number, status and flag, in id order."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, batchDate, batchNumber, batchStatus, currentBatch FROM batchStatus ORDER BY id"
        )
        return list(cur.fetchall())


def objects(conn: pymysql.Connection) -> dict[str, set[str]]:
    """Tables, procedures and batchStatus columns/indexes that exist in the database."""
    out: dict[str, set[str]] = {}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        )
        out["tables"] = {r[0] for r in cur.fetchall()}
        cur.execute(
            "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()"
        )
        out["routines"] = {r[0] for r in cur.fetchall()}
        cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = 'batchStatus'"
        )
        out["columns"] = {r[0] for r in cur.fetchall()}
        cur.execute(
            "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'batchStatus'"
        )
        out["indexes"] = {r[0] for r in cur.fetchall()}
    return out


def seed_table(url: URL, rows: list[tuple[str, int, str, int]]) -> pymysql.Connection:
    conn = connect(url, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(SEED_TABLE)
        cur.executemany(
            "INSERT INTO batchStatus (batchDate, batchNumber, batchStatus, currentBatch) "
            "VALUES (%s, %s, %s, %s)",
            rows,
        )
    return conn


def alembic_cli(
    url: URL | None, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `alembic` command from the repository root."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BATCHFLAG_")}
    environ.update(env or {})
    cmd = [sys.executable, "-m", "alembic", *args]
    if url is not None and "-x" not in args and env is None:
        cmd = [
            sys.executable,
            "-m",
            "alembic",
            "-x",
            f"url={url.render_as_string(hide_password=False)}",
            *args,
        ]
    return subprocess.run(
        cmd, cwd=REPO, env=environ, capture_output=True, text=True, timeout=120, check=False
    )


THREE_CURRENT = [
    ("2026-11-01", 1, "Completed", 1),
    ("2026-11-02", 1, "Completed", 0),
    ("2026-11-03", 1, "Failed", 1),
    ("2026-11-04", 1, "InProgress", 0),
    ("2026-11-05", 1, "InProgress", 1),
    ("2026-11-06", 1, "Pending", 0),
]


class TestEmptyDatabase:
    def test_upgrade_creates_everything(self, db_url: URL) -> None:
        """An empty database goes to head: table, key column, unique index, lock table, procedures."""
        migrate.upgrade(db_url)
        found = objects(connect(db_url))
        assert {"batchStatus", "currentBatchLock", "batchflag_alembic_version"} <= found["tables"]
        assert {"set_current_batch", "unset_current_batch"} <= found["routines"]
        assert {"currentBatch", "currentBatchKey"} <= found["columns"]
        assert "uq_batchStatus_currentBatchKey" in found["indexes"]
        assert migrate.current_revision(db_url) == migrate.head_revision()

    def test_downgrade_base_of_an_empty_created_table_removes_everything(self, db_url: URL) -> None:
        """Down to base on a table with no rows leaves nothing of batchflag-db but its version table."""
        migrate.upgrade(db_url)
        migrate.downgrade(db_url, "base")
        found = objects(connect(db_url))
        assert found["tables"] <= {"batchflag_alembic_version"}
        assert found["routines"] == set()


class TestAdoptingTheUsersTable:
    def test_three_current_rows_keep_the_newest(self, db_url: URL) -> None:
        """A seed-shaped table with three current rows: head keeps the newest, reports the others."""
        conn = seed_table(db_url, THREE_CURRENT)
        before = snapshot(conn)
        done = alembic_cli(db_url, "upgrade", "head")
        assert done.returncode == 0, done.stderr
        after = snapshot(conn)
        assert [r[0] for r in after] == [r[0] for r in before], "no row lost"
        assert current_rows(conn) == [5]
        assert "cleared currentBatch on batch 1" in done.stderr
        assert "cleared currentBatch on batch 3" in done.stderr
        assert "kept batch 5" in done.stderr
        assert "batch 5 (was" not in done.stderr
        # every other column is untouched
        assert [r[:4] for r in after] == [r[:4] for r in before]
        # the user's own column survives
        assert "notes" in objects(conn)["columns"]

    def test_keep_current_chooses_another(self, db_url: URL) -> None:
        """-x keep_current=ID keeps that batch instead of the newest."""
        conn = seed_table(db_url, THREE_CURRENT)
        url = db_url.render_as_string(hide_password=False)
        done = alembic_cli(db_url, "-x", f"url={url}", "-x", "keep_current=3", "upgrade", "head")
        assert done.returncode == 0, done.stderr
        assert current_rows(conn) == [3]
        assert "cleared currentBatch on batch 5" in done.stderr

    def test_keep_current_must_name_a_current_row(self, db_url: URL) -> None:
        """keep_current naming a batch that is not current fails before any DDL, changing nothing."""
        conn = seed_table(db_url, THREE_CURRENT)
        before = snapshot(conn)
        with pytest.raises(MigrationRefusedError, match="not one of the current batches"):
            migrate.upgrade(db_url, keep_current=2)
        assert snapshot(conn) == before
        assert "currentBatchKey" not in objects(conn)["columns"]

    def test_table_without_current_batch_gets_the_column(self, db_url: URL) -> None:
        """An adopted table without currentBatch gets it (0 everywhere); downgrade removes only it."""
        conn = connect(db_url, autocommit=True)
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE batchStatus (id INT AUTO_INCREMENT PRIMARY KEY, batchDate DATE, "
                "batchStatus VARCHAR(20)) ENGINE=InnoDB"
            )
            cur.execute(
                "INSERT INTO batchStatus (batchDate, batchStatus) VALUES ('2026-01-01', 'Done')"
            )
        migrate.upgrade(db_url)
        assert "currentBatch" in objects(conn)["columns"]
        migrate.downgrade(db_url, "base")
        found = objects(conn)
        assert "batchStatus" in found["tables"]
        assert "currentBatch" not in found["columns"]
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM batchStatus")
            assert cur.fetchone() == (1,)

    def test_myisam_table_is_refused_unchanged(self, db_url: URL) -> None:
        """A non-InnoDB table cannot give atomic flips: refused with the fix, nothing changed."""
        conn = connect(db_url, autocommit=True)
        with conn.cursor() as cur:
            cur.execute(SEED_TABLE.replace("InnoDB", "MyISAM"))
        with pytest.raises(MigrationRefusedError, match="ENGINE=InnoDB"):
            migrate.upgrade(db_url)
        assert objects(conn)["columns"] == {
            "id",
            "batchDate",
            "batchNumber",
            "batchStatus",
            "currentBatch",
            "notes",
        }


class TestRoundTrips:
    def test_head_base_head_keeps_rows_and_flags(self, db_url: URL) -> None:
        """head -> base -> head keeps every row and every currentBatch value."""
        conn = seed_table(
            db_url, [("2026-11-01", 1, "Completed", 0), ("2026-11-02", 1, "InProgress", 1)]
        )
        migrate.upgrade(db_url)
        before = snapshot(conn)
        migrate.downgrade(db_url, "base")
        assert snapshot(conn) == before
        assert "currentBatchKey" not in objects(conn)["columns"]
        migrate.upgrade(db_url)
        assert snapshot(conn) == before
        assert current_rows(conn) == [2]

    def test_created_table_with_rows_survives_downgrade(
        self, migrated_url: URL, add_batches: Callable[[int], list[int]]
    ) -> None:
        """A table the baseline created is kept on downgrade once it holds rows."""
        ids = add_batches(3)
        conn = connect(migrated_url, autocommit=True)
        with conn.cursor() as cur:
            cur.execute(f"CALL set_current_batch({ids[1]})")
        before = snapshot(conn)
        migrate.downgrade(migrated_url, "base")
        assert snapshot(conn) == before
        migrate.upgrade(migrated_url)
        assert snapshot(conn) == before

    def test_upgrade_is_idempotent_after_a_half_applied_invariant(self, db_url: URL) -> None:
        """If the key column exists but the index does not (a stopped migration), upgrade finishes."""
        migrate.upgrade(db_url, "0001")
        conn = connect(db_url, autocommit=True)
        with conn.cursor() as cur:
            cur.execute(
                "ALTER TABLE batchStatus ADD COLUMN currentBatchKey TINYINT "
                "GENERATED ALWAYS AS (IF(currentBatch <> 0, 1, NULL)) VIRTUAL"
            )
        migrate.upgrade(db_url)
        assert "uq_batchStatus_currentBatchKey" in objects(conn)["indexes"]


class TestAlembicCommandLine:
    def test_no_url_is_a_one_line_error(self, db_url: URL) -> None:
        """Without a URL, alembic fails with one line saying how to give one."""
        done = alembic_cli(None, "upgrade", "head", env={})
        assert done.returncode != 0
        assert "no database URL" in done.stderr
        assert "BATCHFLAG_DATABASE_URL" in done.stderr
        assert "Traceback" not in done.stderr

    def test_url_from_the_environment(self, db_url: URL) -> None:
        """BATCHFLAG_DATABASE_URL=URL alembic upgrade head works."""
        url = db_url.render_as_string(hide_password=False)
        done = alembic_cli(None, "upgrade", "head", env={"BATCHFLAG_DATABASE_URL": url})
        assert done.returncode == 0, done.stderr
        assert migrate.current_revision(db_url) == migrate.head_revision()

    def test_named_environment(self, db_url: URL) -> None:
        """-x env=staging reads BATCHFLAG_STAGING_DATABASE_URL; an unknown one names its variable."""
        url = db_url.render_as_string(hide_password=False)
        done = alembic_cli(
            None,
            "-x",
            "env=staging",
            "upgrade",
            "head",
            env={"BATCHFLAG_STAGING_DATABASE_URL": url},
        )
        assert done.returncode == 0, done.stderr
        assert migrate.current_revision(db_url) == migrate.head_revision()
        done = alembic_cli(None, "-x", "env=qa", "upgrade", "head", env={})
        assert done.returncode != 0
        assert "BATCHFLAG_QA_DATABASE_URL" in done.stderr

    def test_no_credentials_in_files(self) -> None:
        """alembic.ini carries no URL."""
        text = (REPO / "alembic.ini").read_text()
        assert "sqlalchemy.url" not in text
        assert "mysql" not in text.lower().replace("mysql/mariadb", "")


def test_migration_logs_with_the_python_runner(
    db_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    """The Python runner reports cleared ids through the batchflag_db.migrations logger."""
    seed_table(db_url, THREE_CURRENT)
    with caplog.at_level(logging.INFO, logger="batchflag_db.migrations"):
        migrate.upgrade(db_url)
    cleared = [r.getMessage() for r in caplog.records if "cleared currentBatch" in r.getMessage()]
    assert len(cleared) == 2
