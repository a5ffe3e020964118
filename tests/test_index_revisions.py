"""Revision 0006: a flip held open blocks no unrelated writer.

0006 makes the UNIQUE key index descending, so a new batch's ``(NULL, id)`` entry no
longer lands in the gap a flip's unique check locks before the ``(1, id)`` entries.
It is built online and reversible, and touches no row.
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

from batchflag_db import _catalog, migrate, set_current_batch
from batchflag_db._schema import KEY_INDEX, TABLE
from tests.conftest import check_table, client_args, connect, current_rows, insert_batches
from tests.test_dirty_migration import NULLABLE, make_table, table

LOGGER = "batchflag_db.migrations"
NEXT_INDEX = "uq_batchStatus_currentBatchKey_next"
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


def descending(url: URL, index: str) -> bool | None:
    """What the server's catalog says about ``index``: see _catalog.index_is_descending."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return _catalog.index_is_descending(conn, index)
    finally:
        engine.dispose()


def index_rows(url: URL) -> dict[str, list[tuple[str, str | None, int]]]:
    """index name -> [(column, COLLATION, NON_UNIQUE)] of batchStatus."""
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT INDEX_NAME, COLUMN_NAME, COLLATION, NON_UNIQUE "
                "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME = 'batchStatus' ORDER BY INDEX_NAME, SEQ_IN_INDEX"
            )
            out: dict[str, list[tuple[str, str | None, int]]] = {}
            for name, column, collation, non_unique in cur.fetchall():
                out.setdefault(str(name), []).append((str(column), collation, int(non_unique)))
            return out
    finally:
        conn.close()


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
def open_flip(
    connect_db: Callable[..., pymysql.Connection],
) -> Iterator[Callable[[str, int], pymysql.Connection]]:
    """Factory: a flip to a batch, CALLed with autocommit off under a level and not committed."""
    holders: list[pymysql.Connection] = []

    def factory(isolation: str, batch_id: int) -> pymysql.Connection:
        conn = connect_db(autocommit=False)
        holders.append(conn)
        with conn.cursor() as cur:
            cur.execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {isolation}")
            cur.execute(f"CALL set_current_batch({batch_id})")
            drain(cur)
        return conn

    yield factory
    for conn in holders:
        conn.rollback()


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
        holder = open_flip(isolation, ids[-1])
        other = writer(migrated_url, isolation)
        took = timed(other, INSERT_NEW_BATCH)
        print(
            f"\nINSERT with a flip open ({isolation}, {'old holder' if old_holder else 'first flip'}): {took * 1000:.1f} ms"
        )
        assert took < BUDGET_S
        holder.commit()
        assert current_rows(other) == [ids[-1]]
        other.close()

    @pytest.mark.parametrize("isolation", ISOLATION_LEVELS)
    def test_update_of_another_batch_does_not_wait(
        self, migrated_url: URL, open_flip: Any, isolation: str
    ) -> None:
        """An UPDATE of a non-current batch's status completes within 0.5 s while a flip is open."""
        ids = flagged_table(migrated_url)
        holder = open_flip(isolation, ids[-1])
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


@pytest.mark.slow
class TestControlAtRevision0005:
    """Before 0006 (ascending key index) the same INSERT waits for the open flip."""

    @pytest.mark.parametrize("isolation", ISOLATION_LEVELS)
    def test_insert_waits_for_the_open_flip(self, db_url: URL, isolation: str) -> None:
        """At 0005, with an old holder, the INSERT times out (1205) while the flip is open.

        (At 0005 under READ COMMITTED a first flip, with no old holder, does not block
        the INSERT: only the old holder's delete-marked (1, id) entry carries the gap
        lock then. The old-holder case is the pipeline's: every flip after the first.)
        """
        migrate.upgrade(db_url, "0005")
        assert descending(db_url, KEY_INDEX) is False
        ids = flagged_table(db_url)
        holder = connect(db_url, autocommit=False)
        try:
            with holder.cursor() as cur:
                cur.execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {isolation}")
                cur.execute(f"CALL set_current_batch({ids[-1]})")
                drain(cur)
            other = writer(db_url, isolation)
            started = time.monotonic()
            with pytest.raises(pymysql.err.OperationalError) as caught:
                timed(other, INSERT_NEW_BATCH)
            print(
                f"\n0005 control ({isolation}): {caught.value.args[0]} after {time.monotonic() - started:.2f} s"
            )
            assert caught.value.args[0] == ER_LOCK_WAIT_TIMEOUT
            other.close()
        finally:
            holder.rollback()
            holder.close()


class TestDescendingKeyIndex:
    def test_head_has_one_unique_descending_key_index(self, migrated_url: URL) -> None:
        """At head the key index is UNIQUE on (currentBatchKey DESC), and no swap index is left."""
        found = index_rows(migrated_url)
        assert found[KEY_INDEX] == [("currentBatchKey", "D", 0)]
        assert NEXT_INDEX not in found
        assert descending(migrated_url, KEY_INDEX) is True

    def test_every_step_runs_online_both_ways(
        self, db_url: URL, caplog: pytest.LogCaptureFixture
    ) -> None:
        """0005 -> head -> 0005: no ALTER of 0006 falls back from INPLACE, LOCK=NONE."""
        migrate.upgrade(db_url, "0005")
        with caplog.at_level(logging.INFO, logger=LOGGER):
            migrate.upgrade(db_url)
            assert descending(db_url, KEY_INDEX) is True
            migrate.downgrade(db_url, "0005")
        assert refused_online(caplog) == []
        assert descending(db_url, KEY_INDEX) is False
        assert index_rows(db_url)[KEY_INDEX] == [("currentBatchKey", "A", 0)]

    @pytest.mark.slow
    def test_invariant_never_lapses_during_the_swap(self, db_url: URL) -> None:
        """A writer flagging a second row all through up/down/up of 0006 is refused every time."""
        migrate.upgrade(db_url, "0005")
        ids = flagged_table(db_url)
        done = threading.Event()
        outcomes: dict[str, int] = {"refused": 0, "accepted": 0}
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
                migrate.upgrade(db_url, "0006")
                migrate.downgrade(db_url, "0005")
            migrate.upgrade(db_url, "0006")
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
        assert descending(db_url, KEY_INDEX) is True

    @pytest.mark.parametrize("stopped_after", ["add", "drop"])
    def test_a_stopped_upgrade_finishes(self, db_url: URL, stopped_after: str) -> None:
        """An upgrade stopped after adding (or after dropping) finishes when run again."""
        migrate.upgrade(db_url, "0005")
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
        migrate.downgrade(migrated_url, "0005")
        found = index_rows(migrated_url)
        assert found[KEY_INDEX] == [("currentBatchKey", "A", 0)]
        assert NEXT_INDEX not in found

    def test_a_server_that_ignores_desc_keeps_the_ascending_index(
        self, db_url: URL, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Where DESC is ignored (simulated: the catalog reads 'A'), 0006 warns and keeps the old index.

        None of the three servers tested ignores DESC; the catalog's answer for the new
        index is replaced to take the branch MariaDB before 10.8 would take.
        """
        migrate.upgrade(db_url, "0005")
        real = _catalog.index_is_descending

        def built_ascending(conn: Any, index: str, table_name: str = TABLE) -> bool | None:
            found = real(conn, index, table_name)
            return False if index == NEXT_INDEX and found is not None else found

        monkeypatch.setattr(_catalog, "index_is_descending", built_ascending)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            migrate.upgrade(db_url, "0006")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("ignores DESC" in message for message in warnings), warnings
        found = index_rows(db_url)
        assert found[KEY_INDEX] == [("currentBatchKey", "A", 0)]
        assert NEXT_INDEX not in found
        assert migrate.current_revision(db_url) == "0006"

    def test_catalog_reads_none_for_a_missing_index(self, migrated_url: URL) -> None:
        """index_is_descending: True for the DESC key index, False for an ascending one, None if missing."""
        assert descending(migrated_url, KEY_INDEX) is True
        assert descending(migrated_url, "PRIMARY") is False
        assert descending(migrated_url, "no_such_index") is None


class TestRowsAndFlagsSurvive:
    def test_dirty_table_up_and_down(self, db_url: URL) -> None:
        """A flagged table with NULL and odd flags: 0005 -> head -> 0005 -> head changes no row or value."""
        ids = make_table(db_url, [None, 0, 7, 0, None, 0], NULLABLE)
        migrate.upgrade(db_url, "0005")
        before = table(db_url)
        assert before[ids[2]][4] == 7
        migrate.upgrade(db_url)
        assert table(db_url) == before
        migrate.downgrade(db_url, "0005")
        assert table(db_url) == before
        migrate.upgrade(db_url)
        assert table(db_url) == before
        conn = connect(db_url, autocommit=True)
        set_current_batch(conn, ids[4])
        flipped = table(db_url)
        migrate.downgrade(db_url, "0005")
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
        """`--sql 0005:head`: add DESC under the next name, drop, rename; online clauses."""
        script = self.script("0005:head")
        online = ", ALGORITHM=INPLACE, LOCK=NONE;"
        steps = [
            f"ADD UNIQUE INDEX `{NEXT_INDEX}` (`currentBatchKey` DESC){online}",
            f"DROP INDEX `{KEY_INDEX}`{online}",
            f"RENAME INDEX `{NEXT_INDEX}` TO `{KEY_INDEX}`{online}",
        ]
        positions = [script.find(step) for step in steps]
        assert all(p >= 0 for p in positions), script
        assert positions == sorted(positions)
        migrate.upgrade(db_url, "0005")
        self.apply(db_url, script)
        found = index_rows(db_url)
        assert found[KEY_INDEX] == [("currentBatchKey", "D", 0)]
        assert migrate.current_revision(db_url) == migrate.head_revision()

    def test_downgrade_script_reverses_it(self, migrated_url: URL) -> None:
        """`downgrade --sql head:0005` applied with the client gives 0005's indexes back."""
        self.apply(migrated_url, self.script(f"{migrate.head_revision()}:0005", downgrade=True))
        found = index_rows(migrated_url)
        assert found[KEY_INDEX] == [("currentBatchKey", "A", 0)]
        assert NEXT_INDEX not in found
        assert migrate.current_revision(migrated_url) == "0005"
