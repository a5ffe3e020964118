"""The flip history: one row per flip that changed something, in the flip's own transaction."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy.engine import URL, Engine

from batchflag_db import (
    BatchNotFoundError,
    SchemaNotReadyError,
    get_current_batch,
    migrate,
    set_current_batch,
    unset_current_batch,
)
from batchflag_db.cli import cli
from batchflag_db.dashboard import HistoryEntry, history, prune_history, take_snapshot
from tests.conftest import call_procedure, check_table, client_args, connect, current_rows

PASSWORD = "history-test-pw"  # noqa: S105 - throwaway account on the test server


def history_rows(conn: pymysql.Connection) -> list[tuple[Any, ...]]:
    """Every history row, oldest first: (id, batchId, previousBatchId, action, account, connectionId)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, batchId, previousBatchId, `action`, account, connectionId "
            "FROM currentBatchHistory ORDER BY id"
        )
        return list(cur.fetchall())


def replay(rows: list[tuple[Any, ...]], start: int | None = None) -> int | None:
    """Replay history rows (oldest first) from ``start``; check each row's "before" on the way.

    Returns the current batch the history ends with.
    """
    state = start
    for row_id, batch_id, previous, action, *_ in rows:
        before = previous if action == "set" else batch_id
        assert before == state, (
            f"row {row_id}: history says {before} was current, replay says {state}"
        )
        state = batch_id if action == "set" else None
    return state


def scalar(conn: pymysql.Connection, sql: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
        while cur.nextset():
            pass
    return None if row is None else row[0]


@pytest.fixture
def make_account(server_url: URL) -> Iterator[Callable[[str], str]]:
    """Factory: a fresh account ``bfh_<hex>@%`` granted the given statements' privileges.

    The factory takes GRANT clauses with ``{account}`` and returns the user name.
    Accounts are dropped afterwards.
    """
    created: list[str] = []
    admin = connect(server_url, autocommit=True)

    def factory(*grants: str) -> str:
        user = f"bfh_{uuid.uuid4().hex[:10]}"
        account = f"'{user}'@'%'"
        with admin.cursor() as cur:
            cur.execute(f"CREATE USER {account} IDENTIFIED BY '{PASSWORD}'")
            created.append(account)
            for clause in grants:
                cur.execute(clause.format(account=account))
        return user

    yield factory
    with admin.cursor() as cur:
        for account in created:
            cur.execute(f"DROP USER IF EXISTS {account}")
    admin.close()


class TestRecording:
    def test_set_writes_one_row_saying_who_and_when(
        self, db: pymysql.Connection, add_batches: Callable[[int], list[int]]
    ) -> None:
        """A set that changes the current batch writes one row: ids, action, UTC time, caller."""
        a, b = add_batches(2)
        call_procedure(db, f"CALL set_current_batch({a})")
        call_procedure(db, f"CALL set_current_batch({b})")
        me = scalar(db, "SELECT USER()")
        connection_id = scalar(db, "SELECT CONNECTION_ID()")
        assert history_rows(db) == [
            (1, a, None, "set", me, connection_id),
            (2, b, a, "set", me, connection_id),
        ]
        age = scalar(
            db,
            "SELECT TIMESTAMPDIFF(MICROSECOND, MAX(changedAt), UTC_TIMESTAMP(6)) "
            "FROM currentBatchHistory",
        )
        assert 0 <= age < 60_000_000  # written in UTC, within the last minute
        precision = scalar(
            db,
            "SELECT DATETIME_PRECISION FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
            "DATABASE() AND TABLE_NAME = 'currentBatchHistory' AND COLUMN_NAME = 'changedAt'",
        )
        assert precision == 6  # microseconds

    def test_unset_writes_one_row(
        self, db: pymysql.Connection, add_batches: Callable[[int], list[int]]
    ) -> None:
        """An unset that clears the flag writes action 'unset' with the cleared batch as both ids."""
        (a,) = add_batches(1)
        call_procedure(db, f"CALL set_current_batch({a})")
        call_procedure(db, f"CALL unset_current_batch({a})")
        assert [r[1:4] for r in history_rows(db)] == [(a, None, "set"), (a, a, "unset")]

    def test_a_no_op_writes_nothing(
        self, db: pymysql.Connection, add_batches: Callable[[int], list[int]]
    ) -> None:
        """Setting the current batch again, or unsetting one that is not current, records nothing."""
        a, b = add_batches(2)
        call_procedure(db, f"CALL set_current_batch({a})")
        call_procedure(db, f"CALL set_current_batch({a})")
        call_procedure(db, f"CALL unset_current_batch({b})")
        assert len(history_rows(db)) == 1

    def test_a_failed_call_writes_nothing(
        self, engine: Engine, db: pymysql.Connection, add_batches: Callable[[int], list[int]]
    ) -> None:
        """A call that fails (missing batch) leaves neither a flip nor a history row."""
        (a,) = add_batches(1)
        set_current_batch(engine, a)
        with pytest.raises(BatchNotFoundError):
            set_current_batch(engine, a + 1000)
        with pytest.raises(BatchNotFoundError):
            unset_current_batch(engine, a + 1000)
        with pytest.raises(pymysql.err.MySQLError):
            call_procedure(db, "CALL set_current_batch(0)")
        assert len(history_rows(db)) == 1
        assert current_rows(db) == [a]

    def test_the_row_shares_the_callers_transaction(
        self,
        connect_db: Callable[..., pymysql.Connection],
        db: pymysql.Connection,
        add_batches: Callable[[int], list[int]],
    ) -> None:
        """Rolled back, the flip and its row vanish together; committed, both appear together."""
        a, b = add_batches(2)
        caller = connect_db(autocommit=False)
        set_current_batch(caller, a)
        assert history_rows(db) == []  # not committed yet: invisible
        caller.rollback()
        assert history_rows(db) == []
        assert current_rows(db) == []
        set_current_batch(caller, a)
        set_current_batch(caller, b)
        caller.commit()
        assert [r[1:4] for r in history_rows(db)] == [(a, None, "set"), (b, a, "set")]
        assert current_rows(db) == [b]

    def test_account_is_the_caller_not_the_definer(
        self,
        migrated_url: URL,
        db: pymysql.Connection,
        add_batches: Callable[[int], list[int]],
        make_account: Callable[..., str],
    ) -> None:
        """An account with only EXECUTE flips, and the row names it: USER(), not the definer."""
        (a,) = add_batches(1)
        database = migrated_url.database
        user = make_account(
            f"GRANT EXECUTE ON PROCEDURE `{database}`.`set_current_batch` TO {{account}}"
        )
        app = connect(migrated_url.set(username=user, password=PASSWORD), autocommit=True)
        try:
            call_procedure(app, f"CALL set_current_batch({a})")
            with pytest.raises(pymysql.err.MySQLError) as denied:  # it cannot read the history
                call_procedure(app, "SELECT * FROM currentBatchHistory")
            assert denied.value.args[0] == 1142
            app_connection = scalar(app, "SELECT CONNECTION_ID()")
        finally:
            app.close()
        ((_, batch_id, _, action, account, connection_id),) = history_rows(db)
        assert (batch_id, action, connection_id) == (a, "set", app_connection)
        assert account.startswith(f"{user}@")
        definer = scalar(
            db,
            "SELECT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() "
            "AND ROUTINE_NAME = 'set_current_batch'",
        )
        assert not definer.startswith(f"{user}@")

    def test_direct_update_is_not_recorded(
        self, engine: Engine, db: pymysql.Connection, add_batches: Callable[[int], list[int]]
    ) -> None:
        """A direct UPDATE of currentBatch writes no row; the watch snapshot notices the mismatch."""
        a, b = add_batches(2)
        set_current_batch(engine, a)
        assert take_snapshot(engine).unrecorded_change is False
        with db.cursor() as cur:
            cur.execute(f"UPDATE batchStatus SET currentBatch = 0 WHERE id = {a}")
            cur.execute(f"UPDATE batchStatus SET currentBatch = 1 WHERE id = {b}")
        assert len(history_rows(db)) == 1
        assert current_rows(db) == [b]
        assert take_snapshot(engine).unrecorded_change is True
        # The next flip through the procedures records what it saw as current.
        set_current_batch(engine, a)
        assert [r[1:4] for r in history_rows(db)][-1] == (a, b, "set")
        assert take_snapshot(engine).unrecorded_change is False


def _fetch(conn: pymysql.Connection, sql: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


class TestReading:
    def test_history_is_newest_first_and_limited(
        self, engine: Engine, add_batches: Callable[[int], list[int]]
    ) -> None:
        """history(conn, limit) returns the last `limit` flips, newest first, as typed entries."""
        a, b, c = add_batches(3)
        for batch in (a, b, c):
            set_current_batch(engine, batch)
        unset_current_batch(engine, c)
        entries = history(engine, 3)
        assert [(e.action, e.batch_id, e.previous_batch_id) for e in entries] == [
            ("unset", c, c),
            ("set", c, b),
            ("set", b, a),
        ]
        assert [e.current_after for e in entries] == [None, c, b]
        assert entries[0].changed_at.tzinfo == dt.timezone.utc
        assert entries[0].id > entries[1].id > entries[2].id
        assert len(history(engine)) == 4
        assert history(engine, 1) == entries[:1]

    def test_history_on_each_kind_of_connection(
        self, engine: Engine, db: pymysql.Connection, add_batches: Callable[[int], list[int]]
    ) -> None:
        """Engine, Connection and PEP 249 connection all read the same rows."""
        (a,) = add_batches(1)
        set_current_batch(engine, a)
        with engine.connect() as conn:
            from_connection = history(conn)
        assert history(engine) == from_connection == history(db)
        assert len(from_connection) == 1

    @pytest.mark.parametrize("bad", [0, -1, True, "5", 2.0])
    def test_invalid_limit(self, engine: Engine, bad: object) -> None:
        """A limit that is not a positive int is refused before anything runs."""
        with pytest.raises(ValueError, match="limit must be a positive integer"):
            history(engine, bad)  # type: ignore[arg-type]

    def test_prune_before(
        self, engine: Engine, db: pymysql.Connection, add_batches: Callable[[int], list[int]]
    ) -> None:
        """prune_history deletes rows older than the cutoff (UTC) and returns how many."""
        ids = add_batches(4)
        for batch in ids:
            set_current_batch(engine, batch)
        with db.cursor() as cur:  # spread the four rows over four days
            for row_id, day in zip((1, 2, 3, 4), (1, 2, 3, 4), strict=True):
                cur.execute(
                    "UPDATE currentBatchHistory SET changedAt = %s WHERE id = %s",
                    (dt.datetime(2026, 11, day, 12, 0, 0, 500), row_id),
                )
        assert prune_history(engine, dt.date(2026, 11, 1)) == 0  # midnight: nothing before
        assert prune_history(engine, dt.date(2026, 11, 2)) == 1
        aware = dt.datetime(2026, 11, 3, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
        assert prune_history(engine, aware) == 1  # 12:00 UTC is not before 12:00 UTC
        assert prune_history(engine, dt.datetime(2026, 11, 3, 12, 0, 1)) == 1  # naive: UTC
        remaining = history_rows(db)
        assert [r[0] for r in remaining] == [4]
        # Still replayable: the oldest remaining row says what was current before it.
        assert replay(remaining, start=remaining[0][2]) == get_current_batch(engine) == ids[3]

    def test_prune_refuses_other_types(self, engine: Engine) -> None:
        """A cutoff that is not a date or datetime is a ValueError."""
        with pytest.raises(ValueError, match="date or datetime"):
            prune_history(engine, "2026-11-01")  # type: ignore[arg-type]

    def test_entry_json(self) -> None:
        """HistoryEntry.to_json gives plain values and an ISO 8601 UTC time."""
        when = dt.datetime(2026, 11, 28, 9, 30, 0, 123456, tzinfo=dt.timezone.utc)
        entry = HistoryEntry(7, 42, None, "set", when, "app@10.0.0.5", 99)
        assert entry.to_json() == {
            "id": 7,
            "batch_id": 42,
            "previous_batch_id": None,
            "action": "set",
            "changed_at": "2026-11-28T09:30:00.123456+00:00",
            "account": "app@10.0.0.5",
            "connection_id": 99,
        }


class TestCommandLine:
    @staticmethod
    def run(url: URL, *args: str) -> Any:
        return CliRunner().invoke(cli, ["--url", url.render_as_string(hide_password=False), *args])

    def test_history_json_and_table(
        self, migrated_url: URL, engine: Engine, add_batches: Callable[[int], list[int]]
    ) -> None:
        """`batchflag history [--limit N] [--json]` shows the newest flips first."""
        a, b = add_batches(2)
        set_current_batch(engine, a)
        set_current_batch(engine, b)
        done = self.run(migrated_url, "history", "--json", "--limit", "1")
        assert done.exit_code == 0, done.output
        (only,) = json.loads(done.output)
        assert (only["action"], only["batch_id"], only["previous_batch_id"]) == ("set", b, a)
        assert only["changed_at"].endswith("+00:00")
        done = self.run(migrated_url, "history")
        assert done.exit_code == 0, done.output
        header, newest, oldest = done.output.splitlines()
        assert header.split()[:3] == ["id", "changedAt", "(UTC)"]
        assert newest.split()[3:6] == ["set", str(b), str(a)]
        assert oldest.split()[3:6] == ["set", str(a), "NULL"]

    def test_history_empty(self, migrated_url: URL) -> None:
        """No flips yet: a sentence, or an empty JSON list."""
        assert self.run(migrated_url, "history").output == "no flips recorded\n"
        assert json.loads(self.run(migrated_url, "history", "--json").output) == []

    def test_prune_before(
        self,
        migrated_url: URL,
        engine: Engine,
        db: pymysql.Connection,
        add_batches: Callable[[int], list[int]],
    ) -> None:
        """`batchflag history --prune-before DATE` deletes the older rows and says how many."""
        a, b = add_batches(2)
        set_current_batch(engine, a)
        set_current_batch(engine, b)
        call_procedure(
            db, "UPDATE currentBatchHistory SET changedAt = '2020-01-01 00:00:00' WHERE id = 1"
        )
        done = self.run(migrated_url, "history", "--prune-before", "2021-01-01", "--json")
        assert done.exit_code == 0, done.output
        assert json.loads(done.output) == {"pruned": 1, "before": "2021-01-01T00:00:00"}
        assert [r[0] for r in history_rows(db)] == [2]

    def test_limit_and_prune_do_not_mix(self, migrated_url: URL) -> None:
        """--limit with --prune-before is a usage error (exit 2); so is a bad date."""
        done = self.run(migrated_url, "history", "--limit", "3", "--prune-before", "2021-01-01")
        assert done.exit_code == 2
        assert "do not go together" in done.output
        done = self.run(migrated_url, "history", "--prune-before", "yesterday")
        assert done.exit_code == 2

    def test_not_migrated(self, db_url: URL) -> None:
        """At revision 0003 there is no history: one line saying to upgrade, exit 1."""
        migrate.upgrade(db_url, "0003")
        done = self.run(db_url, "history")
        assert done.exit_code == 1
        assert "batchflag upgrade" in done.output
        with pytest.raises(SchemaNotReadyError):
            history(connect(db_url))


class TestMigration:
    def test_downgrade_keeps_rows_and_restores_v1(
        self, migrated_url: URL, engine: Engine, add_batches: Callable[[int], list[int]]
    ) -> None:
        """0004 -> 0003 keeps the rows and restores v1 (no recording); 0004 again continues."""
        a, b = add_batches(2)
        set_current_batch(engine, a)
        migrate.downgrade(migrated_url, "0003")
        conn = connect(migrated_url, autocommit=True)
        comments = _fetch(
            conn,
            "SELECT ROUTINE_NAME, ROUTINE_COMMENT FROM information_schema.ROUTINES "
            "WHERE ROUTINE_SCHEMA = DATABASE() ORDER BY ROUTINE_NAME",
        )
        assert comments == [
            ("set_current_batch", "batchflag-db v1"),
            ("unset_current_batch", "batchflag-db v1"),
        ]
        set_current_batch(engine, b)  # v1: not recorded
        assert [r[1] for r in history_rows(conn)] == [a]
        migrate.upgrade(migrated_url)
        unset_current_batch(engine, b)
        assert [r[1:4] for r in history_rows(conn)] == [(a, None, "set"), (b, b, "unset")]

    def test_downgrade_drops_an_empty_history(self, migrated_url: URL) -> None:
        """With no rows recorded, downgrade removes the table."""
        migrate.downgrade(migrated_url, "0003")
        conn = connect(migrated_url)
        assert _fetch(conn, "SHOW TABLES LIKE 'currentBatchHistory'") == []

    def test_offline_script_through_the_client(self, db_url: URL) -> None:
        """`--sql` from 0003 to 0004, fed to the mariadb/mysql client, records flips."""
        migrate.upgrade(db_url, "0003")
        buffer = io.StringIO()
        config = migrate.alembic_config(None)
        config.output_buffer = buffer
        command.upgrade(config, "0003:0004", sql=True)
        script = buffer.getvalue()
        assert "DELIMITER //" in script
        done = subprocess.run(
            client_args(db_url),
            input=script,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        conn = connect(db_url, autocommit=True)
        call_procedure(
            conn, "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-11-28', 1)"
        )
        call_procedure(conn, "CALL set_current_batch(1)")
        assert [r[1:4] for r in history_rows(conn)] == [(1, None, "set")]
        assert scalar(conn, "SELECT version_num FROM batchflag_alembic_version") == "0004"


@pytest.mark.stress
class TestStress:
    CALLERS = 32
    FLIPS = 200

    def test_history_matches_the_flips(
        self,
        connect_db: Callable[..., pymysql.Connection],
        add_batches: Callable[[int], list[int]],
    ) -> None:
        """32 callers x 200 flips: one history row per changing flip, per connection; replay of the
        history ends at the final current batch; no errors; CHECK TABLE ... EXTENDED is OK."""
        add_batches(12)
        admin = connect_db(autocommit=True)
        ids = [r[0] for r in _fetch(admin, "SELECT id FROM batchStatus")]
        changed_by_connection: dict[int, int] = {}
        calls = 0
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(self.CALLERS)

        def caller(seed: int) -> None:
            nonlocal calls
            rng = random.Random(seed)
            conn = connect_db(autocommit=True)
            connection_id = scalar(conn, "SELECT CONNECTION_ID()")
            changed = done = 0
            try:
                start.wait()
                for _ in range(self.FLIPS):
                    batch = rng.choice(ids)
                    if rng.random() < 0.7:
                        flip = set_current_batch(conn, batch)
                    else:
                        flip = unset_current_batch(conn, batch)
                    done += 1
                    changed += flip.changed
            except BaseException as exc:  # collected and reported below
                with lock:
                    errors.append(exc)
            with lock:
                changed_by_connection[connection_id] = changed
                calls += done

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(self.CALLERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        assert calls == self.CALLERS * self.FLIPS
        rows = history_rows(admin)
        assert len(rows) == sum(changed_by_connection.values())
        recorded: dict[int, int] = {}
        for row in rows:
            recorded[row[5]] = recorded.get(row[5], 0) + 1
        assert recorded == {c: n for c, n in changed_by_connection.items() if n}
        final = current_rows(admin)
        assert replay(rows) == (final[0] if final else None)
        assert len(final) <= 1
        for table in ("batchStatus", "currentBatchHistory"):
            assert check_table(admin, table)[-1][-1] == "OK"
