"""Dashboard resolution: resolve_dashboard_batch in SQL, Python and the CLI, by index only."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pymysql
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import URL, Engine

from batchflag_db import (
    BatchNotFoundError,
    InvalidBatchIdError,
    SchemaNotReadyError,
    migrate,
    set_current_batch,
)
from batchflag_db._routines import head_source
from batchflag_db._schema import RESOLUTION_REASONS, RESOLVE_PROCEDURE
from batchflag_db.cli import cli
from batchflag_db.dashboard import Resolution, resolve_dashboard_batch
from batchflag_db.errors import MigrationRefusedError
from batchflag_db.testing.explain import explain
from tests.conftest import call_procedure, connect, insert_statuses

SQL = Path(__file__).resolve().parent.parent / "sql"


def server_error(conn: pymysql.Connection, sql: str) -> pymysql.err.MySQLError:
    with pytest.raises(pymysql.err.MySQLError) as info:
        call_procedure(conn, sql)
    return info.value


class TestReasons:
    def test_empty_table_gives_no_row(self, db: pymysql.Connection, engine: Engine) -> None:
        """An empty batchStatus: the procedure returns an empty result set, Python None."""
        with db.cursor() as cur:
            cur.execute(f"CALL {RESOLVE_PROCEDURE}(NULL)")
            assert [d[0] for d in cur.description] == ["batch_id", "reason"]
            assert cur.fetchall() == ()
            while cur.nextset():
                pass
        assert resolve_dashboard_batch(engine) is None

    def test_current_flag_comes_first(self, db: pymysql.Connection, engine: Engine) -> None:
        """The current batch wins over newer in-progress, incomplete and completed batches."""
        current, *_ = insert_statuses(db, "Completed", "InProgress", "Failed", "Completed")
        set_current_batch(engine, current)
        assert resolve_dashboard_batch(engine) == Resolution(current, "current_flag")
        assert call_procedure(db, f"CALL {RESOLVE_PROCEDURE}(NULL)") == [(current, "current_flag")]

    def test_in_progress_newest_wins(self, db: pymysql.Connection, engine: Engine) -> None:
        """No current batch: the newest InProgress batch, even with newer incomplete ones."""
        _, _, newest_in_progress, _, _ = insert_statuses(
            db, "InProgress", "Completed", "InProgress", "Failed", "Completed"
        )
        assert resolve_dashboard_batch(engine) == Resolution(newest_in_progress, "in_progress")

    def test_incomplete_is_any_status_but_completed(
        self, db: pymysql.Connection, engine: Engine
    ) -> None:
        """No current or in-progress batch: the newest whose status is not Completed."""
        # 'Failed' and 'Pending' sort after 'Completed', 'Aborted' before: both ranges count.
        _, failed, _ = insert_statuses(db, "Pending", "Failed", "Completed")
        assert resolve_dashboard_batch(engine) == Resolution(failed, "incomplete")
        aborted, _ = insert_statuses(db, "Aborted", "Completed")
        assert resolve_dashboard_batch(engine) == Resolution(aborted, "incomplete")

    def test_most_recent_when_all_completed(self, db: pymysql.Connection, engine: Engine) -> None:
        """Every batch Completed and none current: the newest batch."""
        *_, newest = insert_statuses(db, "Completed", "Completed", "Completed")
        assert resolve_dashboard_batch(engine) == Resolution(newest, "most_recent")

    def test_unset_falls_back(self, db: pymysql.Connection, engine: Engine) -> None:
        """Clearing the flag moves the dashboard to the next rule, as the seed describes."""
        a, b = insert_statuses(db, "InProgress", "Completed")
        set_current_batch(engine, b)
        assert resolve_dashboard_batch(engine) == Resolution(b, "current_flag")
        call_procedure(db, f"CALL unset_current_batch({b})")
        assert resolve_dashboard_batch(engine) == Resolution(a, "in_progress")

    def test_status_compares_with_the_column_collation(
        self, db: pymysql.Connection, engine: Engine
    ) -> None:
        """'completed' and 'inprogress' count as Completed / InProgress (case-insensitive)."""
        _, lower_in_progress, _ = insert_statuses(db, "Pending", "inprogress", "completed")
        assert resolve_dashboard_batch(engine) == Resolution(lower_in_progress, "in_progress")
        with db.cursor() as cur:
            cur.execute("UPDATE batchStatus SET batchStatus = 'COMPLETED' WHERE id > 1")
        assert resolve_dashboard_batch(engine) == Resolution(1, "incomplete")

    def test_null_status_is_incomplete(self, db: pymysql.Connection, engine: Engine) -> None:
        """An adopted table with a nullable status: NULL counts as incomplete, not as Completed."""
        with db.cursor() as cur:
            cur.execute("ALTER TABLE batchStatus MODIFY batchStatus VARCHAR(32) NULL")
        _, no_status, _ = insert_statuses(db, "Pending", None, "Completed")
        assert resolve_dashboard_batch(engine) == Resolution(no_status, "incomplete")

    def test_reasons_are_the_documented_ones(self) -> None:
        """The procedure file names exactly the reasons _schema lists, in priority order."""
        text = head_source(RESOLVE_PROCEDURE)
        used = re.findall(r"SET v_reason = '(\w+)'", text)
        assert used == list(RESOLUTION_REASONS)


class TestRequestedId:
    def test_requested_wins_over_everything(self, db: pymysql.Connection, engine: Engine) -> None:
        """An explicit request returns that batch, even a completed one while another is current."""
        old, current = insert_statuses(db, "Completed", "InProgress")
        set_current_batch(engine, current)
        assert resolve_dashboard_batch(engine, old) == Resolution(old, "requested")
        assert call_procedure(db, f"CALL {RESOLVE_PROCEDURE}({old})") == [(old, "requested")]

    def test_null_means_no_request(self, db: pymysql.Connection) -> None:
        """CALL ...(NULL) resolves by the rules, not as a request."""
        (only,) = insert_statuses(db, "Completed")
        assert call_procedure(db, f"CALL {RESOLVE_PROCEDURE}(NULL)") == [(only, "most_recent")]

    def test_missing_id_is_45000_31002(
        self,
        db: pymysql.Connection,
        engine: Engine,
        mysql_client: Callable[[str], subprocess.CompletedProcess[str]],
    ) -> None:
        """A requested id that does not exist: SQLSTATE 45000, errno 31002, message names it."""
        insert_statuses(db, "Completed")
        done = mysql_client(f"CALL {RESOLVE_PROCEDURE}(424242);")
        assert done.returncode != 0
        assert "ERROR 31002 (45000)" in done.stderr
        assert "batch 424242 does not exist in batchStatus" in done.stderr
        with pytest.raises(BatchNotFoundError, match="batch 424242 does not exist") as info:
            resolve_dashboard_batch(engine, 424242)
        assert info.value.errno == 31002

    def test_missing_id_on_empty_table_is_an_error_too(self, engine: Engine) -> None:
        """A request is checked even when there is nothing to fall back to."""
        with pytest.raises(BatchNotFoundError):
            resolve_dashboard_batch(engine, 1)

    @pytest.mark.parametrize("bad", [0, -1, -(2**63)])
    def test_invalid_id_is_31001(self, db: pymysql.Connection, engine: Engine, bad: int) -> None:
        """0 or a negative id: errno 31001 from the server; the wrapper refuses it first."""
        insert_statuses(db, "Completed")
        exc = server_error(db, f"CALL {RESOLVE_PROCEDURE}({bad})")
        assert exc.args[0] == 31001
        assert f"invalid batch id {bad}" in exc.args[1]
        with pytest.raises(InvalidBatchIdError):
            resolve_dashboard_batch(engine, bad)

    def test_error_leaves_no_transaction_open(self, db: pymysql.Connection) -> None:
        """After a failed request in autocommit mode, no transaction is left open."""
        server_error(db, f"CALL {RESOLVE_PROCEDURE}(99)")
        with db.cursor() as cur:
            # Fails with 1568 exactly when a transaction is open.
            cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")


class TestTransactions:
    def test_own_snapshot_then_committed(self, db: pymysql.Connection) -> None:
        """With autocommit on the procedure ends its own read-only transaction."""
        insert_statuses(db, "Completed")
        call_procedure(db, f"CALL {RESOLVE_PROCEDURE}(NULL)")
        with db.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")  # 1568 if one were open

    def test_joins_the_callers_snapshot(
        self, connect_db: Callable[..., pymysql.Connection], db: pymysql.Connection
    ) -> None:
        """Inside the caller's REPEATABLE READ transaction it sees the caller's snapshot."""
        a, b = insert_statuses(db, "InProgress", "Completed")
        reader = connect_db(autocommit=False)
        with reader.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        call_procedure(db, f"CALL set_current_batch({b})")  # committed by another session
        assert resolve_dashboard_batch(reader) == Resolution(a, "in_progress")
        reader.commit()
        assert resolve_dashboard_batch(reader) == Resolution(b, "current_flag")

    def test_sees_the_callers_uncommitted_rows(
        self, connect_db: Callable[..., pymysql.Connection], engine: Engine
    ) -> None:
        """A batch the caller inserted but has not committed resolves inside its transaction."""
        writer = connect_db(autocommit=False)
        (new,) = insert_statuses(writer, "InProgress")
        assert resolve_dashboard_batch(writer) == Resolution(new, "in_progress")
        assert resolve_dashboard_batch(engine) is None
        writer.rollback()

    def test_sqlalchemy_connection(self, engine: Engine, db: pymysql.Connection) -> None:
        """A SQLAlchemy Connection works and stays usable (the CALL's extra result is drained)."""
        (only,) = insert_statuses(db, "Failed")
        with engine.connect() as conn:
            assert resolve_dashboard_batch(conn) == Resolution(only, "incomplete")
            assert resolve_dashboard_batch(conn, only) == Resolution(only, "requested")


@pytest.mark.slow
class TestIndexUse:
    ROWS = 20_000

    @pytest.fixture
    def big(self, db: pymysql.Connection) -> pymysql.Connection:
        """20,000 batches: the oldest 8,000 Failed (three Pending, Aborted, Cancelled), the rest
        Completed. A range read of the incomplete ones, or a walk back from the newest until
        one is incomplete, would each read thousands of rows."""
        old = self.ROWS * 2 // 5
        with db.cursor() as cur:
            cur.executemany(
                "INSERT INTO batchStatus (batchDate, batchNumber, batchStatus) "
                "VALUES ('2026-11-28', %s, %s)",
                [(n, "Failed" if n <= old else "Completed") for n in range(1, self.ROWS + 1)],
            )
            cur.execute("UPDATE batchStatus SET batchStatus = 'Pending' WHERE id = 10")
            cur.execute("UPDATE batchStatus SET batchStatus = 'Aborted' WHERE id = 20")
            cur.execute("UPDATE batchStatus SET batchStatus = 'Cancelled' WHERE id = 30")
            cur.execute("ANALYZE TABLE batchStatus")
            cur.fetchall()
        return db

    @staticmethod
    def lookups() -> list[str]:
        """The procedure's lookups as plain SELECTs: each `SELECT ... INTO v_x[, v_y] FROM ...;`,
        with the parameter and the walk's variable replaced by values."""
        text = head_source(RESOLVE_PROCEDURE)
        text = "\n".join(line.split("--")[0] for line in text.splitlines())
        static = re.findall(
            r"SELECT\s+(.+?)\s+INTO\s+v_\w+(?:\s*,\s*v_\w+)*\s+(FROM\s+[^;]+?);", text, re.DOTALL
        )
        found = [f"SELECT {columns} {rest}" for columns, rest in static]
        values = {"p_requested_id": "12345", "v_last": "10"}
        return [
            " ".join(re.sub(r"\b(p_requested_id|v_last)\b", lambda m: values[m[1]], sql).split())
            for sql in found
        ]

    @staticmethod
    def rows_read(conn: pymysql.Connection, sql: str) -> int:
        """How many rows the server read for ``sql`` (the session's Handler_read_* counters)."""

        def counters() -> dict[str, int]:
            with conn.cursor() as cur:
                cur.execute("SHOW SESSION STATUS LIKE 'Handler_read%'")
                return {name: int(value) for name, value in cur.fetchall()}

        before = counters()
        call_procedure(conn, sql)
        after = counters()
        return sum(after[name] - before[name] for name in after)

    def test_every_lookup_is_an_index_lookup(self, big: pymysql.Connection) -> None:
        """EXPLAIN of each lookup on 20,000 rows names an index; none is a full table scan.

        Requested, current, in progress, NULL status, the walk's first and next
        probe, newest: seven. A probe with ORDER BY ... LIMIT 1 may show type
        "index" (it reads the index from one end and stops at the first row).
        """
        lookups = self.lookups()
        assert len(lookups) == 7, lookups
        for sql in lookups:
            for step in explain(big, sql):
                assert step["type"] != "ALL", (sql, step)
                if step["type"] == "index":
                    assert "LIMIT 1" in sql, (sql, step)
                if step["table"] is not None:
                    assert step["key"] is not None, (sql, step)

    def test_incomplete_reads_one_entry_per_status_whatever_the_statistics(
        self, db: pymysql.Connection
    ) -> None:
        """20,000 failed batches just inserted (statistics not refreshed): the "incomplete"
        step reads a handful of index entries, one probe per distinct status, on every server."""
        with db.cursor() as cur:
            cur.executemany(
                "INSERT INTO batchStatus (batchDate, batchNumber, batchStatus) "
                "VALUES ('2026-11-28', %s, 'Failed')",
                [(n,) for n in range(1, 20_001)],
            )
            cur.execute("UPDATE batchStatus SET batchStatus = 'Pending' WHERE id = 10")
            cur.execute(
                "INSERT INTO batchStatus (batchDate, batchNumber, batchStatus) "
                "VALUES ('2026-11-28', 0, 'Completed')"
            )
        for _ in range(3):
            assert call_procedure(db, f"CALL {RESOLVE_PROCEDURE}(NULL)") == [(20_000, "incomplete")]
            read = self.rows_read(db, f"CALL {RESOLVE_PROCEDURE}(NULL)")
            assert read < 100, read

    @pytest.mark.parametrize(
        ("prepare", "expected"),
        [
            ("UPDATE batchStatus SET batchStatus = 'Completed'", "most_recent"),
            ("", "incomplete"),
            ("UPDATE batchStatus SET batchStatus = 'InProgress' WHERE id = 40", "in_progress"),
            ("CALL set_current_batch(50)", "current_flag"),
        ],
    )
    def test_a_call_reads_a_handful_of_rows(
        self, big: pymysql.Connection, prepare: str, expected: str
    ) -> None:
        """Whatever the reason, one CALL reads under 100 rows of 20,000 (a scan reads them all)."""
        if prepare:
            call_procedure(big, prepare)
        assert call_procedure(big, f"CALL {RESOLVE_PROCEDURE}(NULL)")[0][1] == expected
        # Again and again in the same session: MariaDB plans a procedure's statements
        # differently once it has read the table in the session (see the SQL file).
        call_procedure(big, "CALL unset_current_batch(1)")
        for _ in range(3):
            assert self.rows_read(big, f"CALL {RESOLVE_PROCEDURE}(NULL)") < 100
            assert self.rows_read(big, f"CALL {RESOLVE_PROCEDURE}(12345)") < 100

    def test_the_counter_would_see_a_scan(self, big: pymysql.Connection) -> None:
        """Control: the naive newest-incomplete query reads most of the table, and is counted."""
        naive = (
            "SELECT id FROM batchStatus WHERE batchStatus <> 'Completed' ORDER BY id DESC LIMIT 1"
        )
        assert self.rows_read(big, naive) > self.ROWS / 2


class TestCommandLine:
    def test_resolve_json_and_text(self, migrated_url: URL, db: pymysql.Connection) -> None:
        """`batchflag resolve [--batch-id ID] [--json]` prints the id and the reason."""
        a, _ = insert_statuses(db, "InProgress", "Completed")
        url = migrated_url.render_as_string(hide_password=False)
        runner = CliRunner()
        done = runner.invoke(cli, ["--url", url, "resolve", "--json"])
        assert done.exit_code == 0, done.output
        assert json.loads(done.output) == {"batch_id": a, "reason": "in_progress"}
        done = runner.invoke(cli, ["--url", url, "resolve", "--batch-id", "2"])
        assert (done.exit_code, done.output) == (0, "batch 2 (requested)\n")

    def test_resolve_empty_table(self, migrated_url: URL) -> None:
        """An empty table: exit 0, JSON nulls."""
        url = migrated_url.render_as_string(hide_password=False)
        done = CliRunner().invoke(cli, ["--url", url, "resolve", "--json"])
        assert done.exit_code == 0, done.output
        assert json.loads(done.output) == {"batch_id": None, "reason": None}

    def test_resolve_missing_and_invalid_ids(self, migrated_url: URL) -> None:
        """A missing id: exit 1 naming it; an invalid id: usage error, exit 2."""
        url = migrated_url.render_as_string(hide_password=False)
        runner = CliRunner()
        done = runner.invoke(cli, ["--url", url, "resolve", "--batch-id", "77"])
        assert done.exit_code == 1
        assert "batch 77 does not exist in batchStatus" in done.output
        done = runner.invoke(cli, ["--url", url, "resolve", "--batch-id", "0"])
        assert done.exit_code == 2
        assert "invalid batch id 0" in done.output


class TestMigration:
    def test_not_migrated_says_so(self, db_url: URL) -> None:
        """At revision 0003 the procedure is missing: SchemaNotReadyError with the fix."""
        migrate.upgrade(db_url, "0003")
        conn = connect(db_url, autocommit=True)
        with pytest.raises(SchemaNotReadyError, match="batchflag upgrade"):
            resolve_dashboard_batch(conn)

    def test_index_added_and_removed(self, db_url: URL) -> None:
        """0004 adds the (batchStatus, id) index and the procedure; downgrade removes both."""
        migrate.upgrade(db_url)
        conn = connect(db_url, autocommit=True)

        def objects() -> tuple[set[str], set[str]]:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT INDEX_NAME FROM information_schema.STATISTICS "
                    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'batchStatus'"
                )
                indexes = {r[0] for r in cur.fetchall()}
                cur.execute(
                    "SELECT ROUTINE_NAME FROM information_schema.ROUTINES "
                    "WHERE ROUTINE_SCHEMA = DATABASE()"
                )
                return indexes, {r[0] for r in cur.fetchall()}

        indexes, routines = objects()
        assert "ix_batchStatus_batchStatus_id" in indexes
        assert RESOLVE_PROCEDURE in routines
        migrate.downgrade(db_url, "0003")
        indexes, routines = objects()
        assert "ix_batchStatus_batchStatus_id" not in indexes
        assert routines == {"set_current_batch", "unset_current_batch"}

    def test_table_without_status_column_is_refused_before_any_change(self, db_url: URL) -> None:
        """An adopted table without a batchStatus column: 0004 refuses, the db stays at 0003."""
        conn = connect(db_url, autocommit=True)
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE batchStatus (id INT AUTO_INCREMENT PRIMARY KEY, "
                "currentBatch TINYINT(1) NOT NULL DEFAULT 0) ENGINE=InnoDB"
            )
        with pytest.raises(MigrationRefusedError, match="no column `batchStatus`"):
            migrate.upgrade(db_url)
        assert migrate.current_revision(db_url) == "0003"
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES LIKE 'currentBatchHistory'")
            assert cur.fetchall() == ()
