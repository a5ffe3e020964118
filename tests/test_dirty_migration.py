"""Dirty data at migration time: the production table as it really is.

Several current rows, flag values other than 0 and 1, a nullable flag with NULLs,
and a million rows. The promises: no row is lost, no column but the flag of the
rows it clears is touched, and every change is reported (logged with the row's
id and old value on the ``batchflag_db.migrations`` logger).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sqlalchemy.engine import URL

from batchflag_db import get_current_batch, migrate, set_current_batch, unset_current_batch
from batchflag_db.errors import MigrationRefusedError
from batchflag_db.migrate import current_revision, head_revision
from tests.conftest import check_table, connect

LOGGER = "batchflag_db.migrations"
REPO = Path(__file__).resolve().parent.parent

# The user's table as it exists before batchflag-db: no key column, no index on the
# flag, an updatedAt the server bumps on every UPDATE, and a column of its own.
USER_TABLE = """
CREATE TABLE batchStatus (
    id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    batchDate DATE NOT NULL,
    batchNumber INT NOT NULL,
    batchStatus VARCHAR(32) NOT NULL DEFAULT 'Pending',
    currentBatch TINYINT(1) {flag} ,
    payload VARCHAR(100) NULL,
    updatedAt DATETIME(6) NOT NULL DEFAULT '2020-01-01 00:00:00'
        ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB
"""
NOT_NULL = "NOT NULL DEFAULT 0"
NULLABLE = "NULL DEFAULT NULL"


def _rows(conn: pymysql.Connection, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def make_table(url: URL, flags: list[int | None], flag_definition: str = NOT_NULL) -> list[int]:
    """Create the user's table with one row per flag value; return the ids."""
    conn = connect(url, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(USER_TABLE.format(flag=flag_definition))
        cur.executemany(
            "INSERT INTO batchStatus (batchDate, batchNumber, currentBatch, payload) "
            "VALUES ('2026-11-01', %s, %s, %s)",
            [(i, flag, f"payload {i} ' \" \\ ;") for i, flag in enumerate(flags)],
        )
    ids = [int(r[0]) for r in _rows(conn, "SELECT id FROM batchStatus ORDER BY id")]
    conn.close()
    return ids


def table(url: URL) -> dict[int, tuple[Any, ...]]:
    """id -> (batchDate, batchNumber, batchStatus, payload, currentBatch, updatedAt)."""
    conn = connect(url)
    rows = _rows(
        conn,
        "SELECT id, batchDate, batchNumber, batchStatus, payload, currentBatch, updatedAt "
        "FROM batchStatus ORDER BY id",
    )
    conn.close()
    return {int(r[0]): tuple(r[1:]) for r in rows}


def cleared_ids(caplog: pytest.LogCaptureFixture) -> dict[int, str]:
    """The ids the migration reported clearing, with the reported old value."""
    out: dict[int, str] = {}
    for record in caplog.records:
        if record.name == LOGGER and record.getMessage().startswith(
            "cleared currentBatch on batch"
        ):
            words = record.getMessage().split()
            out[int(words[4])] = words[6].rstrip("):")
    return out


def assert_only_flags_changed(
    before: dict[int, tuple[Any, ...]], after: dict[int, tuple[Any, ...]], cleared: set[int]
) -> None:
    """Same ids; other columns equal; flag and updatedAt changed only on cleared rows."""
    assert after.keys() == before.keys(), "rows lost or added"
    for row_id, old in before.items():
        new = after[row_id]
        assert new[:4] == old[:4], f"row {row_id}: other columns changed {old} -> {new}"
        if row_id in cleared:
            assert new[4] == 0, f"row {row_id} reported cleared but is {new[4]}"
        else:
            assert new[4] == old[4], f"row {row_id}: flag changed without a report"
            assert new[5] == old[5], f"row {row_id}: updatedAt changed without a report"


class TestSeveralCurrentRows:
    def test_newest_is_kept_and_each_cleared_row_is_reported(
        self, db_url: URL, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Three current rows: the newest stays, the two others are cleared and logged by id."""
        ids = make_table(db_url, [0, 1, 0, 1, 0, 1, 0])
        before = table(db_url)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            migrate.upgrade(db_url)
        reported = cleared_ids(caplog)
        assert reported == {ids[1]: "1", ids[3]: "1"}
        assert all(
            f"kept batch {ids[5]}" in r.getMessage()
            for r in caplog.records
            if r.getMessage().startswith("cleared")
        )
        after = table(db_url)
        assert_only_flags_changed(before, after, set(reported))
        # the clearing UPDATE is a real UPDATE: an ON UPDATE column moves on cleared rows
        assert all(after[i][5] > before[i][5] for i in reported)
        conn = connect(db_url)
        assert get_current_batch(conn) == ids[5]
        assert check_table(conn)[-1][-1] == "OK"
        conn.close()

    def test_keep_current_names_the_survivor(
        self, db_url: URL, caplog: pytest.LogCaptureFixture
    ) -> None:
        """keep_current picks which of the current rows stays current."""
        ids = make_table(db_url, [1, 1, 1])
        before = table(db_url)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            migrate.upgrade(db_url, keep_current=ids[0])
        assert cleared_ids(caplog) == {ids[1]: "1", ids[2]: "1"}
        assert_only_flags_changed(before, table(db_url), {ids[1], ids[2]})
        conn = connect(db_url)
        assert get_current_batch(conn) == ids[0]
        conn.close()

    def test_bad_keep_current_changes_nothing(self, db_url: URL) -> None:
        """keep_current naming a row that is not current fails before any change; a retry works."""
        ids = make_table(db_url, [1, 0, 1])
        before = table(db_url)
        with pytest.raises(
            MigrationRefusedError, match=f"batch {ids[1]} is not one of the current"
        ):
            migrate.upgrade(db_url, keep_current=ids[1])
        assert table(db_url) == before
        assert current_revision(db_url) is None
        conn = connect(db_url)
        columns = [r[0] for r in _rows(conn, "SHOW COLUMNS FROM batchStatus")]
        assert "currentBatchKey" not in columns
        conn.close()
        migrate.upgrade(db_url, keep_current=ids[0])
        assert current_revision(db_url) == head_revision()
        assert_only_flags_changed(before, table(db_url), {ids[2]})


def database_state(url: URL) -> dict[str, Any]:
    """Every table of the database with its SHOW CREATE and rows, and every routine."""
    conn = connect(url)
    try:
        state: dict[str, Any] = {}
        for name, _ in _rows(conn, "SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'"):
            state[f"table {name}"] = _rows(conn, f"SHOW CREATE TABLE `{name}`")[0][1]
            state[f"rows {name}"] = _rows(conn, f"SELECT * FROM `{name}`")
        state["routines"] = _rows(
            conn,
            "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()",
        )
        return state
    finally:
        conn.close()


class TestRefusedKeepCurrentChangesNothing:
    """A keep_current that 0002 would refuse is refused before revision 0001 runs too."""

    @pytest.mark.parametrize("start", [None, "0001"])
    def test_refused_before_any_revision_runs(self, db_url: URL, start: str | None) -> None:
        """Two current rows, keep_current naming neither: refused; the database is as it was.

        From a never-migrated table no version table, no column and no table of
        batchflag-db's is created; from 0001 the database stays at 0001, unchanged.
        """
        ids = make_table(db_url, [1, 0, 1])
        if start is not None:
            migrate.upgrade(db_url, start)
        before = database_state(db_url)
        assert ("batchflag_alembic_version" in str(before)) == (start is not None)
        with pytest.raises(
            MigrationRefusedError, match=f"batch {ids[1]} is not one of the current"
        ):
            migrate.upgrade(db_url, keep_current=ids[1])
        assert database_state(db_url) == before
        assert current_revision(db_url) == start

    def test_alembic_command_refuses_before_any_revision_runs(self, db_url: URL) -> None:
        """The same through the `alembic` command and -x keep_current=ID."""
        ids = make_table(db_url, [1, 0, 1])
        before = database_state(db_url)
        url = db_url.render_as_string(hide_password=False)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "alembic",
                "-x",
                f"url={url}",
                "-x",
                f"keep_current={ids[1]}",
                "upgrade",
                "head",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode != 0
        assert "not one of the current batches" in done.stderr
        assert "Running upgrade" not in done.stderr
        assert database_state(db_url) == before

    def test_no_refusal_when_0002_does_not_run(self, db_url: URL) -> None:
        """An upgrade that stops at 0001 clears nothing, so it has nothing to refuse."""
        ids = make_table(db_url, [1, 0, 1])
        migrate.upgrade(db_url, "0001", keep_current=ids[1])
        assert current_revision(db_url) == "0001"


class TestOddFlagValues:
    def test_every_non_zero_value_counts_as_current(
        self, db_url: URL, caplog: pytest.LogCaptureFixture
    ) -> None:
        """2, -1 and 127 are current like 1: the newest stays (value kept), the others are cleared."""
        ids = make_table(db_url, [2, 0, -1, 0, 127, 0])
        before = table(db_url)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            migrate.upgrade(db_url)
        assert cleared_ids(caplog) == {ids[0]: "2", ids[2]: "-1"}
        after = table(db_url)
        assert_only_flags_changed(before, after, {ids[0], ids[2]})
        assert after[ids[4]][4] == 127  # kept as it was, not rewritten to 1
        conn = connect(db_url, autocommit=True)
        assert get_current_batch(conn) == ids[4]
        flip = set_current_batch(conn, ids[1])
        assert flip.previous_batch_id == ids[4]
        assert table(db_url)[ids[4]][4] == 0
        conn.close()

    def test_single_odd_value_is_left_alone(
        self, db_url: URL, caplog: pytest.LogCaptureFixture
    ) -> None:
        """One row holding -1 is the current batch; the migration changes and reports nothing."""
        ids = make_table(db_url, [0, -1, 0])
        before = table(db_url)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            migrate.upgrade(db_url)
        assert cleared_ids(caplog) == {}
        assert table(db_url) == before
        conn = connect(db_url)
        assert get_current_batch(conn) == ids[1]
        conn.close()


class TestNullableFlag:
    def test_nulls_are_not_current_and_stay_null(
        self, db_url: URL, caplog: pytest.LogCaptureFixture
    ) -> None:
        """NULL is "not current": NULL rows are untouched; flips and unsets work around them."""
        ids = make_table(db_url, [None, 1, None, 0, 1, None], NULLABLE)
        before = table(db_url)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            migrate.upgrade(db_url)
        assert cleared_ids(caplog) == {ids[1]: "1"}
        after = table(db_url)
        assert_only_flags_changed(before, after, {ids[1]})
        assert [after[i][4] for i in (ids[0], ids[2], ids[5])] == [None, None, None]
        conn = connect(db_url, autocommit=True)
        assert get_current_batch(conn) == ids[4]
        assert set_current_batch(conn, ids[0]).previous_batch_id == ids[4]  # a NULL row
        assert unset_current_batch(conn, ids[0]).changed is True
        assert get_current_batch(conn) is None
        assert table(db_url)[ids[0]][4] == 0  # unset writes 0, not NULL
        with conn.cursor() as cur:  # a writer may still store NULL: it is simply not current
            cur.execute("UPDATE batchStatus SET currentBatch = NULL WHERE id = %s", (ids[4],))
        set_current_batch(conn, ids[2])
        assert get_current_batch(conn) == ids[2]
        assert check_table(conn)[-1][-1] == "OK"
        conn.close()


@pytest.mark.stress
class TestMillionRows:
    def test_million_rows_with_dirty_flags(
        self, db_url: URL, caplog: pytest.LogCaptureFixture
    ) -> None:
        """1,000,000 rows, four of them current with odd values: one stays, nothing else moves."""
        conn = connect(db_url, autocommit=True)
        with conn.cursor() as cur:
            cur.execute(USER_TABLE.format(flag=NOT_NULL))
            cur.execute("CREATE TABLE digits (d INT NOT NULL)")
            cur.execute("INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)")
            cur.execute(
                "INSERT INTO batchStatus (batchDate, batchNumber, batchStatus, payload) "
                "SELECT DATE_ADD('2020-01-01', INTERVAL n MOD 2000 DAY), n, "
                "ELT(1 + n MOD 3, 'Pending', 'Done', 'Failed'), CONCAT('p', n) FROM ("
                "SELECT a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d + 100000*g.d AS n "
                "FROM digits a, digits b, digits c, digits e, digits f, digits g) AS numbers"
            )
            cur.execute("DROP TABLE digits")
            dirty = {17: 1, 250_000: 2, 600_000: -1, 999_999: 127}
            for row_id, value in dirty.items():
                cur.execute(
                    "UPDATE batchStatus SET currentBatch = %s WHERE id = %s", (value, row_id)
                )
        checksum_sql = (
            "SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, batchDate, batchNumber, batchStatus, "
            "payload))), SUM(CRC32(CONCAT_WS('|', id, updatedAt)) * (currentBatch = 0)) "
            "FROM batchStatus"
        )
        (count, other_columns, untouched_times) = _rows(conn, checksum_sql)[0]
        assert count == 1_000_000
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger=LOGGER):
            migrate.upgrade(db_url)
        took = time.monotonic() - started
        reported = cleared_ids(caplog)
        assert reported == {17: "1", 250_000: "2", 600_000: "-1"}
        after = _rows(conn, checksum_sql)[0]
        assert after[0] == count, "rows lost"
        assert after[1] == other_columns, "other columns changed"
        # rows that were not current (and are still not) kept their updatedAt
        restricted = _rows(
            conn,
            "SELECT SUM(CRC32(CONCAT_WS('|', id, updatedAt))) FROM batchStatus "
            "WHERE currentBatch = 0 AND id NOT IN (17, 250000, 600000)",
        )[0][0]
        assert restricted == untouched_times
        assert get_current_batch(conn) == 999_999
        flip_started = time.monotonic()
        set_current_batch(conn, 123_456)
        flip_ms = (time.monotonic() - flip_started) * 1000
        check_started = time.monotonic()
        assert check_table(conn)[-1][-1] == "OK"
        check_s = time.monotonic() - check_started
        print(
            f"\n1M rows: migration {took:.1f}s, cleared {sorted(reported)}, "
            f"a flip afterwards {flip_ms:.1f} ms, CHECK TABLE EXTENDED {check_s:.1f}s"
        )
        assert flip_ms < 1000, f"a flip on 1M rows took {flip_ms:.0f} ms: not an index lookup"
        conn.close()
