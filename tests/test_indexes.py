"""Revision 0007 (index layout 2): a flip held open blocks no unrelated writer, and the
user's own ``WHERE currentBatch = 1`` is an index lookup.

0007 makes the UNIQUE key index descending, so a new batch's ``(NULL, id)`` entry no
longer lands in the gap a flip's unique check locks before the ``1`` entries, and adds
an index on the flag column. Both are built online and reversibly, and touch no row.
"""

from __future__ import annotations

import io
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
from alembic import command
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from batchflag_db import _install, migrate, set_current_batch
from batchflag_db.doctor import Report, diagnose, server_keeps_desc
from batchflag_db.installation import DEFAULT
from batchflag_db.testing.explain import explain
from tests.conftest import check_table, client_args, connect, current_rows, insert_batches
from tests.test_dirty_migration import NULLABLE, make_table, table
from tests.test_scope import SCOPED
from tests.test_scope import make_table as make_scoped_table

LOGGER = "batchflag_db.migrations"
KEY_INDEX = DEFAULT.key_index
NEXT_INDEX = DEFAULT.key_index_next
FLAG_INDEX = DEFAULT.flag_index
ISOLATION_LEVELS = ["REPEATABLE READ", "READ COMMITTED"]
BUDGET_S = 0.5
ER_LOCK_WAIT_TIMEOUT = 1205
ER_DUP_ENTRY = 1062

VERIFICATION = (
    "SELECT id, batchDate, currentBatch, batchStatus FROM batchStatus WHERE currentBatch = 1"
)
ANY_CURRENT = (
    "SELECT id, batchDate, currentBatch, batchStatus FROM batchStatus WHERE currentBatch <> 0"
)
INSERT_NEW_BATCH = "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-12-02', 99)"


def drain(cur: Any) -> None:
    while cur.nextset():
        pass


def index_rows(url: URL, table_name: str = "batchStatus") -> dict[str, list[tuple[str, str, int]]]:
    """index name -> [(column, COLLATION, NON_UNIQUE)] of the table, in key order."""
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT INDEX_NAME, COLUMN_NAME, COLLATION, NON_UNIQUE "
                "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME = %s ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                (table_name,),
            )
            out: dict[str, list[tuple[str, str, int]]] = {}
            for name, column, collation, non_unique in cur.fetchall():
                out.setdefault(str(name), []).append((str(column), str(collation), int(non_unique)))
            return out
    finally:
        conn.close()


def doctor(url: URL) -> Report:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        return diagnose(engine)
    finally:
        engine.dispose()


def refused_online(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Messages of _ddl.alter_online falling back to the default algorithm."""
    return [r.getMessage() for r in caplog.records if "server refused" in r.getMessage()]


def exec_sql(url: URL, *statements: str) -> None:
    conn = connect(url, autocommit=True)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


@pytest.fixture
def scoped_db(db_url: URL) -> URL:
    """``batch_status`` installed on other names, one current row per pipeline."""
    make_scoped_table(db_url)
    migrate.upgrade(db_url, installation=SCOPED)
    return db_url


@pytest.fixture
def open_flip() -> Iterator[Callable[[URL, str, str], pymysql.Connection]]:
    """Factory: a CALL made with autocommit off under an isolation level and not committed."""
    holders: list[pymysql.Connection] = []

    def factory(url: URL, isolation: str, call: str) -> pymysql.Connection:
        conn = connect(url, autocommit=False)
        holders.append(conn)
        with conn.cursor() as cur:
            cur.execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {isolation}")
            cur.execute(call)
            drain(cur)
        return conn

    yield factory
    for conn in holders:
        conn.rollback()
        conn.close()


def writer(url: URL, isolation: str) -> pymysql.Connection:
    """A second session: autocommit, the level asked for, a 1 s lock wait (fails fast)."""
    conn = connect(url, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {isolation}")
        cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
    return conn


def timed(conn: pymysql.Connection, sql: str) -> float:
    """Run ``sql``; return how long it took in seconds (a lock-wait timeout raises)."""
    started = time.monotonic()
    with conn.cursor() as cur:
        cur.execute(sql)
    return time.monotonic() - started


def flagged_table(url: URL) -> list[int]:
    """Five batches, the first of them current (committed): a flip then has an old holder."""
    conn = connect(url, autocommit=True)
    try:
        ids = insert_batches(conn, 5)
        with conn.cursor() as cur:
            cur.execute(f"CALL set_current_batch({ids[0]})")
            drain(cur)
        return ids
    finally:
        conn.close()


class TestOpenFlipBlocksNoWriter:
    """At head, while a flip's transaction is open, unrelated writers do not wait."""

    @pytest.mark.parametrize("isolation", ISOLATION_LEVELS)
    @pytest.mark.parametrize("old_holder", [True, False], ids=["old-holder", "first-flip"])
    def test_insert_of_a_new_batch_does_not_wait(
        self, migrated_url: URL, open_flip: Any, isolation: str, old_holder: bool
    ) -> None:
        """An INSERT of a new batch completes within 0.5 s while a flip is held open."""
        if old_holder:
            ids = flagged_table(migrated_url)
        else:
            conn = connect(migrated_url, autocommit=True)
            ids = insert_batches(conn, 5)
            conn.close()
        holder = open_flip(migrated_url, isolation, f"CALL set_current_batch({ids[-1]})")
        other = writer(migrated_url, isolation)
        took = timed(other, INSERT_NEW_BATCH)
        kind = "old holder" if old_holder else "first flip"
        print(f"\nINSERT with a flip open ({isolation}, {kind}): {took * 1000:.1f} ms")
        assert took < BUDGET_S
        holder.commit()
        assert current_rows(other) == [ids[-1]]
        other.close()

    @pytest.mark.parametrize("isolation", ISOLATION_LEVELS)
    def test_insert_does_not_wait_for_an_open_unset(
        self, migrated_url: URL, open_flip: Any, isolation: str
    ) -> None:
        """An INSERT of a new batch completes within 0.5 s while an unset is held open."""
        ids = flagged_table(migrated_url)
        holder = open_flip(migrated_url, isolation, f"CALL unset_current_batch({ids[0]})")
        other = writer(migrated_url, isolation)
        assert timed(other, INSERT_NEW_BATCH) < BUDGET_S
        holder.commit()
        assert current_rows(other) == []
        other.close()

    @pytest.mark.parametrize("isolation", ISOLATION_LEVELS)
    def test_update_of_another_batch_does_not_wait(
        self, migrated_url: URL, open_flip: Any, isolation: str
    ) -> None:
        """An UPDATE of a non-current batch's status completes within 0.5 s while a flip is open."""
        ids = flagged_table(migrated_url)
        holder = open_flip(migrated_url, isolation, f"CALL set_current_batch({ids[-1]})")
        other = writer(migrated_url, isolation)
        took = timed(
            other, f"UPDATE batchStatus SET batchStatus = 'InProgress' WHERE id = {ids[2]}"
        )
        print(f"\nUPDATE of another batch with a flip open ({isolation}): {took * 1000:.1f} ms")
        assert took < BUDGET_S
        holder.commit()
        with other.cursor() as cur:
            cur.execute(f"SELECT batchStatus FROM batchStatus WHERE id = {ids[2]}")
            assert cur.fetchone() == ("InProgress",)
        assert current_rows(other) == [ids[-1]]
        other.close()

    def test_a_new_batch_of_the_same_pipeline_does_not_wait(
        self, scoped_db: URL, open_flip: Any
    ) -> None:
        """Scoped: with a flip of pipeline p1 held open, a new batch of p1 goes in at once."""
        conn = connect(scoped_db, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM batch_status WHERE pipeline = 'p1' ORDER BY id")
            p1 = [int(r[0]) for r in cur.fetchall()]
            cur.execute(f"CALL set_current_batch({p1[0]})")
            drain(cur)
        holder = open_flip(scoped_db, "REPEATABLE READ", f"CALL set_current_batch({p1[-1]})")
        other = writer(scoped_db, "REPEATABLE READ")
        assert timed(other, "INSERT INTO batch_status (pipeline) VALUES ('p1')") < BUDGET_S
        holder.commit()
        with other.cursor() as cur:
            cur.execute("SELECT id FROM batch_status WHERE pipeline = 'p1' AND is_current = 1")
            assert cur.fetchall() == ((p1[-1],),)
        other.close()
        conn.close()


class TestScopedLimit:
    def test_an_open_flip_of_the_next_pipeline_holds_up_an_insert(
        self, scoped_db: URL, open_flip: Any
    ) -> None:
        """The limit docs/adopting.md states: an open flip of p2 holds up an INSERT into p1.

        The new (p1, NULL, id) entry lands just before p2's (p2, 1, id) entries, in the
        gap the open flip's unique check locks.
        """
        conn = connect(scoped_db, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM batch_status WHERE pipeline = 'p2' ORDER BY id")
            p2 = [int(r[0]) for r in cur.fetchall()]
            cur.execute(f"CALL set_current_batch({p2[0]})")
            drain(cur)
        conn.close()
        open_flip(scoped_db, "REPEATABLE READ", f"CALL set_current_batch({p2[-1]})")
        other = writer(scoped_db, "REPEATABLE READ")
        with pytest.raises(pymysql.err.OperationalError) as caught:
            timed(other, "INSERT INTO batch_status (pipeline) VALUES ('p1')")
        assert caught.value.args[0] == ER_LOCK_WAIT_TIMEOUT
        assert timed(other, "INSERT INTO batch_status (pipeline) VALUES ('p3')") < BUDGET_S
        other.close()


@pytest.mark.slow
class TestControlAtRevision0006:
    """Before 0007 (ascending key index) the same INSERT waits for the open flip."""

    @pytest.mark.parametrize("isolation", ISOLATION_LEVELS)
    def test_insert_waits_for_the_open_flip(
        self, db_url: URL, open_flip: Any, isolation: str
    ) -> None:
        """At 0006, with an old holder, the INSERT times out (1205) while the flip is open."""
        migrate.upgrade(db_url, "0006")
        assert index_rows(db_url)[KEY_INDEX] == [("currentBatchKey", "A", 0)]
        ids = flagged_table(db_url)
        open_flip(db_url, isolation, f"CALL set_current_batch({ids[-1]})")
        other = writer(db_url, isolation)
        started = time.monotonic()
        with pytest.raises(pymysql.err.OperationalError) as caught:
            timed(other, INSERT_NEW_BATCH)
        print(
            f"\n0006 control ({isolation}): {caught.value.args[0]} after {time.monotonic() - started:.2f} s"
        )
        assert caught.value.args[0] == ER_LOCK_WAIT_TIMEOUT
        other.close()


class TestLayout:
    def test_head_has_the_descending_key_index_and_the_flag_index(self, migrated_url: URL) -> None:
        """At head: UNIQUE (currentBatchKey DESC), a plain index on currentBatch, no swap index."""
        found = index_rows(migrated_url)
        assert found[KEY_INDEX] == [("currentBatchKey", "D", 0)]
        assert found[FLAG_INDEX] == [("currentBatch", "A", 1)]
        assert NEXT_INDEX not in found

    def test_every_step_runs_online_both_ways(
        self, db_url: URL, caplog: pytest.LogCaptureFixture
    ) -> None:
        """0006 -> head -> 0006: no ALTER of 0007 falls back from INPLACE, LOCK=NONE."""
        migrate.upgrade(db_url, "0006")
        with caplog.at_level(logging.INFO, logger=LOGGER):
            migrate.upgrade(db_url)
            assert index_rows(db_url)[KEY_INDEX] == [("currentBatchKey", "D", 0)]
            migrate.downgrade(db_url, "0006")
        assert refused_online(caplog) == []
        found = index_rows(db_url)
        assert found[KEY_INDEX] == [("currentBatchKey", "A", 0)]
        assert FLAG_INDEX not in found

    @pytest.mark.slow
    def test_invariant_never_lapses_during_the_swap(self, db_url: URL) -> None:
        """A writer flagging a second row all through up/down/up of 0007 is refused every time."""
        migrate.upgrade(db_url, "0006")
        ids = flagged_table(db_url)
        done = threading.Event()
        outcomes = {"refused": 0, "accepted": 0}
        errors: list[BaseException] = []
        refusals: set[int] = set()

        def flag_a_second_row() -> None:
            conn = connect(db_url, autocommit=True)
            try:
                with conn.cursor() as cur:
                    while not done.is_set():
                        try:
                            cur.execute(
                                f"UPDATE batchStatus SET currentBatch = 1 WHERE id = {ids[3]}"
                            )
                            outcomes["accepted"] += 1
                            cur.execute(
                                f"UPDATE batchStatus SET currentBatch = 0 WHERE id = {ids[3]}"
                            )
                        except pymysql.err.IntegrityError as exc:
                            refusals.add(exc.args[0])
                            outcomes["refused"] += 1
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)
            finally:
                conn.close()

        thread = threading.Thread(target=flag_a_second_row)
        thread.start()
        try:
            for _ in range(2):
                migrate.upgrade(db_url, "0007")
                migrate.downgrade(db_url, "0006")
            migrate.upgrade(db_url, "0007")
        finally:
            done.set()
            thread.join(timeout=60)
        assert errors == []
        print(f"\nwriter during 5 swaps: {outcomes}")
        assert outcomes["accepted"] == 0, "a second row became current during the swap"
        assert outcomes["refused"] > 0
        assert refusals == {ER_DUP_ENTRY}
        conn = connect(db_url)
        assert current_rows(conn) == [ids[0]]
        assert check_table(conn)[-1][-1] == "OK"
        conn.close()
        assert index_rows(db_url)[KEY_INDEX] == [("currentBatchKey", "D", 0)]

    @pytest.mark.parametrize("stopped_after", ["add", "drop"])
    def test_a_stopped_upgrade_finishes(self, db_url: URL, stopped_after: str) -> None:
        """An upgrade stopped after adding (or after dropping) finishes when run again."""
        migrate.upgrade(db_url, "0006")
        exec_sql(
            db_url,
            f"ALTER TABLE batchStatus ADD UNIQUE INDEX {NEXT_INDEX} (currentBatchKey DESC)",
        )
        if stopped_after == "drop":
            exec_sql(db_url, f"ALTER TABLE batchStatus DROP INDEX {KEY_INDEX}")
        migrate.upgrade(db_url)
        found = index_rows(db_url)
        assert found[KEY_INDEX] == [("currentBatchKey", "D", 0)]
        assert NEXT_INDEX not in found

    @pytest.mark.parametrize("stopped_after", ["add", "drop"])
    def test_a_stopped_downgrade_finishes(self, migrated_url: URL, stopped_after: str) -> None:
        """A downgrade stopped after adding (or after dropping) finishes when run again."""
        exec_sql(
            migrated_url, f"ALTER TABLE batchStatus ADD UNIQUE INDEX {NEXT_INDEX} (currentBatchKey)"
        )
        if stopped_after == "drop":
            exec_sql(migrated_url, f"ALTER TABLE batchStatus DROP INDEX {KEY_INDEX}")
        migrate.downgrade(migrated_url, "0006")
        found = index_rows(migrated_url)
        assert found[KEY_INDEX] == [("currentBatchKey", "A", 0)]
        assert NEXT_INDEX not in found

    def test_a_server_that_ignores_desc_keeps_the_ascending_index(
        self, db_url: URL, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Where DESC is ignored (simulated: the catalog reads 'A'), 0007 warns and keeps the old index.

        None of the three servers tested ignores DESC; the catalog's answer for the new
        index is replaced to take the branch MariaDB before 10.8 would take.
        """
        migrate.upgrade(db_url, "0006")
        real = _install._index_descending

        def built_ascending(table_name: str, index: str) -> bool | None:
            found = real(table_name, index)
            return False if index == NEXT_INDEX and found is not None else found

        monkeypatch.setattr(_install, "_index_descending", built_ascending)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            migrate.upgrade(db_url, "0007")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("ignores DESC" in message for message in warnings), warnings
        found = index_rows(db_url)
        assert found[KEY_INDEX] == [("currentBatchKey", "A", 0)]
        assert NEXT_INDEX not in found
        assert migrate.current_revision(db_url) == "0007"

    def test_an_index_of_the_users_own_on_the_flag_serves(self, db_url: URL) -> None:
        """A user's index leading with currentBatch: 0007 adds none, and its downgrade keeps the user's."""
        migrate.upgrade(db_url, "0006")
        exec_sql(db_url, "ALTER TABLE batchStatus ADD INDEX my_flag (currentBatch, batchDate)")
        migrate.upgrade(db_url)
        found = index_rows(db_url)
        assert FLAG_INDEX not in found
        assert "my_flag" in found
        assert doctor(db_url).healthy
        migrate.downgrade(db_url, "0006")
        assert "my_flag" in index_rows(db_url)

    def test_scoped_layout(self, scoped_db: URL) -> None:
        """On other names with a scope: UNIQUE (pipeline, currentBatchKey DESC), flag index, doctor healthy."""
        found = index_rows(scoped_db, "batch_status")
        assert found[SCOPED.key_index] == [("pipeline", "A", 0), ("currentBatchKey", "D", 0)]
        assert found[SCOPED.flag_index] == [("is_current", "A", 1)]
        assert doctor(scoped_db).healthy
        migrate.downgrade(scoped_db, "0006")
        found = index_rows(scoped_db, "batch_status")
        assert found[SCOPED.key_index] == [("pipeline", "A", 0), ("currentBatchKey", "A", 0)]
        assert SCOPED.flag_index not in found
        migrate.upgrade(scoped_db)
        assert doctor(scoped_db).healthy


class TestDoctor:
    def test_an_ascending_key_index_is_a_problem_with_a_fix(self, migrated_url: URL) -> None:
        """Rebuilt ascending by hand on a server that keeps DESC: a problem whose fix restores it."""
        exec_sql(
            migrated_url,
            f"ALTER TABLE batchStatus DROP INDEX {KEY_INDEX}, "
            f"ADD UNIQUE INDEX {KEY_INDEX} (currentBatchKey)",
        )
        report = doctor(migrated_url)
        problems = [f for f in report.problems if "ascending" in f.message]
        assert len(problems) == 1, report.lines()
        assert problems[0].fix == "batchflag downgrade 0006 && batchflag upgrade"
        migrate.downgrade(migrated_url, "0006")
        migrate.upgrade(migrated_url)
        assert doctor(migrated_url).healthy

    def test_a_missing_flag_index_is_a_problem_with_a_fix(self, migrated_url: URL) -> None:
        exec_sql(migrated_url, f"ALTER TABLE batchStatus DROP INDEX {FLAG_INDEX}")
        report = doctor(migrated_url)
        problems = [f for f in report.problems if "currentBatch = 1" in f.message]
        assert len(problems) == 1, report.lines()
        assert problems[0].fix == "batchflag downgrade 0006 && batchflag upgrade"
        migrate.downgrade(migrated_url, "0006")
        migrate.upgrade(migrated_url)
        assert doctor(migrated_url).healthy

    @pytest.mark.parametrize(
        ("version", "keeps"),
        [
            ("10.6.21-MariaDB", False),
            ("10.8.1-MariaDB-log", True),
            ("10.11.19-MariaDB-0+deb12u1", True),
            ("11.8.9-MariaDB", True),
            ("5.7.44", False),
            ("8.0.40", True),
            ("9.7.4", True),
        ],
    )
    def test_which_servers_keep_desc(self, version: str, keeps: bool) -> None:
        assert server_keeps_desc(version) is keeps


class TestTheUsersQueries:
    ROWS = 20_000

    def test_verification_and_any_current_use_an_index(self, migrated_url: URL) -> None:
        """EXPLAIN of `WHERE currentBatch = 1` and `<> 0` on 20k rows: an index, never a scan."""
        conn = connect(migrated_url, autocommit=True)
        try:
            with conn.cursor() as cur:  # PyMySQL sends these as multi-row INSERTs
                cur.executemany(
                    "INSERT INTO batchStatus (batchDate, batchNumber) VALUES (%s, %s)",
                    [("2026-11-28", number) for number in range(1, self.ROWS + 1)],
                )
                cur.execute("SELECT COUNT(*), MAX(id) FROM batchStatus")
                count, newest = cur.fetchone()
            assert count == self.ROWS
            ids = [int(newest)]
            set_current_batch(conn, ids[-1])
            with conn.cursor() as cur:
                cur.execute("ANALYZE TABLE batchStatus")
                cur.fetchall()
            for sql in (VERIFICATION, ANY_CURRENT):
                (step,) = explain(conn, sql)
                assert step["type"] in ("ref", "range"), (sql, step)
                assert step["key"] == FLAG_INDEX, (sql, step)
                with conn.cursor() as cur:
                    cur.execute(sql)
                    assert [r[0] for r in cur.fetchall()] == [ids[-1]]
        finally:
            conn.close()


class TestRowsAndFlagsSurvive:
    def test_dirty_table_up_and_down(self, db_url: URL) -> None:
        """A flagged table with NULL and odd flags: 0006 -> head -> 0006 -> head changes no row or value."""
        ids = make_table(db_url, [None, 0, 7, 0, None, 0], NULLABLE)
        migrate.upgrade(db_url, "0006")
        before = table(db_url)
        assert before[ids[2]][4] == 7
        migrate.upgrade(db_url)
        assert table(db_url) == before
        migrate.downgrade(db_url, "0006")
        assert table(db_url) == before
        migrate.upgrade(db_url)
        assert table(db_url) == before
        conn = connect(db_url, autocommit=True)
        set_current_batch(conn, ids[4])
        flipped = table(db_url)
        migrate.downgrade(db_url, "0006")
        assert table(db_url) == flipped
        assert current_rows(conn) == [ids[4]]
        conn.close()


class TestOfflineScript:
    def script(self, revisions: str, *, downgrade: bool = False) -> str:
        buffer = io.StringIO()
        config = migrate.alembic_config(None)
        config.output_buffer = buffer
        if downgrade:
            command.downgrade(config, revisions, sql=True)
        else:
            command.upgrade(config, revisions, sql=True)
        return buffer.getvalue()

    def apply(self, url: URL, script: str) -> None:
        done = subprocess.run(
            client_args(url), input=script, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr

    def test_upgrade_script_swaps_then_adds(self, db_url: URL) -> None:
        """`--sql 0006:head`: add DESC under the next name, drop, rename, add the flag index."""
        script = self.script("0006:head")
        online = ", ALGORITHM=INPLACE, LOCK=NONE;"
        steps = [
            f"ADD UNIQUE INDEX `{NEXT_INDEX}` (`currentBatchKey` DESC){online}",
            f"DROP INDEX `{KEY_INDEX}`{online}",
            f"RENAME INDEX `{NEXT_INDEX}` TO `{KEY_INDEX}`{online}",
            f"ADD INDEX `{FLAG_INDEX}` (`currentBatch`){online}",
        ]
        positions = [script.find(step) for step in steps]
        assert all(p >= 0 for p in positions), script
        assert positions == sorted(positions)
        migrate.upgrade(db_url, "0006")
        self.apply(db_url, script)
        found = index_rows(db_url)
        assert found[KEY_INDEX] == [("currentBatchKey", "D", 0)]
        assert found[FLAG_INDEX] == [("currentBatch", "A", 1)]
        assert migrate.current_revision(db_url) == migrate.head_revision()

    def test_downgrade_script_reverses_it(self, migrated_url: URL) -> None:
        """`downgrade --sql head:0006` applied with the client gives 0006's indexes back."""
        self.apply(migrated_url, self.script(f"{migrate.head_revision()}:0006", downgrade=True))
        found = index_rows(migrated_url)
        assert found[KEY_INDEX] == [("currentBatchKey", "A", 0)]
        assert NEXT_INDEX not in found
        assert FLAG_INDEX not in found
        assert migrate.current_revision(migrated_url) == "0006"
