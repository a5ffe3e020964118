"""Your names and one current row per scope, through the standalone ``batchflag upgrade``.

The same installation as the Alembic operation (``op.create_current_flag``), made by
revision 0006 when ``batchflag upgrade`` is given ``--table`` and the column options.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from typing import Any

import pymysql
import pytest
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from batchflag_db import RetryPolicy, migrate, set_current_batch
from batchflag_db.doctor import diagnose
from batchflag_db.errors import MigrationRefusedError, TransactionConflictError
from batchflag_db.installation import Installation
from batchflag_db.testing.kinds import DEFAULT_KIND, KIND_VARIABLE
from tests.conftest import (
    TORN_SNAPSHOT_KINDS,
    check_table,
    client_args,
    connect,
    run_cli,
    torn_snapshot,
)

SCOPED = Installation(
    table="batch_status", flag_column="is_current", status_column="state", scope_column="pipeline"
)
PIPELINES = ("p0", "p1", "p2", "p3")

_TABLE = """
CREATE TABLE batch_status (
    id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    pipeline VARCHAR(32) {null} NULL,
    state VARCHAR(16) NOT NULL DEFAULT 'Pending',
    is_current TINYINT(1) NOT NULL DEFAULT 0
) ENGINE=InnoDB
"""


def make_table(url: URL, *, per_pipeline: int = 10, nullable: bool = False) -> dict[str, list[int]]:
    """Create ``batch_status`` with ``per_pipeline`` batches in each of :data:`PIPELINES`."""
    conn = connect(url, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(_TABLE.format(null="" if nullable else "NOT"))
            by_scope: dict[str, list[int]] = {}
            for n in range(per_pipeline * len(PIPELINES)):
                pipeline = PIPELINES[n % len(PIPELINES)]
                cur.execute("INSERT INTO batch_status (pipeline) VALUES (%s)", (pipeline,))
                by_scope.setdefault(pipeline, []).append(int(cur.lastrowid))
        return by_scope
    finally:
        conn.close()


def current_by_scope(conn: pymysql.Connection) -> dict[str, int]:
    """Scope -> number of current rows, by a scan of the flag (not the key)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pipeline, COUNT(*) FROM batch_status WHERE is_current <> 0 GROUP BY pipeline"
        )
        return {str(p): int(n) for p, n in cur.fetchall()}


@pytest.fixture
def scoped_url(db_url: URL) -> URL:
    """A database whose ``batch_status`` is installed with one current row per pipeline."""
    make_table(db_url)
    migrate.upgrade(db_url, installation=SCOPED)
    return db_url


class TestStandaloneUpgrade:
    def test_refuses_to_create_batch_status_beside_the_users_table(self, db_url: URL) -> None:
        """A database with batch_status and no batchStatus: refused, naming --table; nothing made."""
        make_table(db_url)
        url = db_url.render_as_string(hide_password=False)
        done = run_cli("--url", url, "upgrade")
        assert done.returncode != 0
        assert "--table batch_status" in done.stderr
        assert "--create-table" in done.stderr
        conn = connect(db_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW TABLES")
                assert [r[0] for r in cur.fetchall()] == ["batch_status"]  # no version table
        finally:
            conn.close()

    def test_refuses_a_schema_with_other_tables_unless_asked(self, db_url: URL) -> None:
        """Tables that do not look like batchStatus: refused unless --create-table."""
        conn = connect(db_url, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE orders (id INT PRIMARY KEY)")
        finally:
            conn.close()
        url = db_url.render_as_string(hide_password=False)
        done = run_cli("--url", url, "upgrade")
        assert done.returncode != 0
        assert "orders" in done.stderr
        assert "--create-table" in done.stderr
        done = run_cli("--url", url, "upgrade", "--create-table")
        assert done.returncode == 0, done.stderr
        assert migrate.current_revision(db_url) == migrate.head_revision()

    def test_cli_installs_on_the_named_table(self, db_url: URL) -> None:
        """`upgrade --table ... --scope-column` installs on batch_status; doctor is healthy."""
        by_scope = make_table(db_url)
        url = db_url.render_as_string(hide_password=False)
        done = run_cli(
            "--url", url, "upgrade", "--table", "batch_status", "--flag-column", "is_current",
            "--status-column", "state", "--scope-column", "pipeline",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        conn = connect(db_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW TABLES LIKE 'batchStatus'")
                assert cur.fetchall() == ()  # no second table beside the user's
        finally:
            conn.close()
        done = run_cli("--url", url, "set-current", str(by_scope["p1"][0]))
        assert done.returncode == 0, done.stderr
        done = run_cli("--url", url, "current", "--scope", "p1")
        assert done.stdout.strip() == str(by_scope["p1"][0])
        report = diagnose(create_engine(db_url, poolclass=pool.NullPool))
        assert report.healthy, report.lines()
        # a routine dropped by hand: doctor's fix, run as printed, puts it back
        conn = connect(db_url, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("DROP PROCEDURE unset_current_batch")
        finally:
            conn.close()
        report = diagnose(create_engine(db_url, poolclass=pool.NullPool), command="batchflag")
        (problem,) = report.problems
        assert problem.fix == (
            "batchflag downgrade 0005 && batchflag upgrade --table batch_status --flag-column "
            "is_current --status-column state --scope-column pipeline"
        )
        for step in problem.fix.split(" && "):
            done = run_cli("--url", url, *step.split()[1:])
            assert done.returncode == 0, done.stderr
        assert diagnose(create_engine(db_url, poolclass=pool.NullPool)).healthy
        done = run_cli("--url", url, "current", "--scope", "p1")
        assert done.stdout.strip() == str(by_scope["p1"][0])  # the flag survived the fix
        # and back down: every row and flag stays, batchflag-db's objects go
        done = run_cli("--url", url, "downgrade", "base")
        assert done.returncode == 0, done.stderr
        conn = connect(db_url)
        try:
            assert current_by_scope(conn) == {"p1": 1}
            with conn.cursor() as cur:
                cur.execute("SHOW TABLES")
                assert sorted(r[0] for r in cur.fetchall()) == [
                    "batch_status",
                    "batchflag_alembic_version",
                    "currentBatchHistory",  # it holds the flip's row
                ]
                cur.execute("SHOW CREATE TABLE batch_status")
                assert "currentBatchKey" not in cur.fetchone()[1]
        finally:
            conn.close()

    def test_a_nullable_scope_column_is_refused(self, db_url: URL) -> None:
        """NULL scopes would escape the UNIQUE index: refused before any change, naming the fix."""
        make_table(db_url, nullable=True)
        with pytest.raises(MigrationRefusedError, match=r"allows NULL.*NOT NULL"):
            migrate.upgrade(db_url, installation=SCOPED)
        conn = connect(db_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW CREATE TABLE batch_status")
                assert "currentBatchKey" not in cur.fetchone()[1]
                cur.execute(
                    "SELECT COUNT(*) FROM information_schema.ROUTINES "
                    "WHERE ROUTINE_SCHEMA = DATABASE()"
                )
                assert cur.fetchone()[0] == 0
        finally:
            conn.close()

    def test_a_missing_column_is_refused(self, db_url: URL) -> None:
        """A flag column the table does not have: refused, naming the option."""
        make_table(db_url)
        wrong = Installation(table="batch_status", flag_column="current", status_column="state")
        with pytest.raises(MigrationRefusedError, match="no column `current` \\(flag_column\\)"):
            migrate.upgrade(db_url, installation=wrong)


class TestScopes:
    def test_flips_of_other_scopes_do_not_wait(self, scoped_url: URL) -> None:
        """A flip held open in one scope does not stop a flip in another (one lock row each)."""
        by_scope = make_ids(scoped_url)
        holder = connect(scoped_url, autocommit=False)
        other = connect(scoped_url, autocommit=True)
        try:
            with holder.cursor() as cur:
                cur.execute("CALL set_current_batch(%s)", (by_scope["p0"][1],))
                while cur.nextset():
                    pass
            started = time.monotonic()
            flip = set_current_batch(
                other, by_scope["p1"][1], retry=RetryPolicy(attempts=1, lock_wait_timeout=1)
            )
            assert flip.changed
            assert time.monotonic() - started < 0.5
            # the same scope does wait: the held flip has its lock row
            with pytest.raises(TransactionConflictError, match="lock wait timeout"):
                set_current_batch(
                    other, by_scope["p0"][2], retry=RetryPolicy(attempts=1, lock_wait_timeout=1)
                )
            holder.rollback()
        finally:
            holder.close()
            other.close()

    def test_a_batch_that_moves_scope_is_flipped_in_its_new_scope(self, scoped_url: URL) -> None:
        """Moving a current batch to another pipeline by hand: flips then follow its new scope."""
        by_scope = make_ids(scoped_url)
        conn = connect(scoped_url, autocommit=True)
        try:
            set_current_batch(conn, by_scope["p0"][0])
            set_current_batch(conn, by_scope["p1"][0])
            moved = by_scope["p2"][0]
            with conn.cursor() as cur:
                cur.execute("UPDATE batch_status SET pipeline = 'p3' WHERE id = %s", (moved,))
            flip = set_current_batch(conn, moved)
            assert flip.previous_batch_id is None  # p3 had no current batch
            assert current_by_scope(conn) == {"p0": 1, "p1": 1, "p3": 1}
        finally:
            conn.close()


def make_ids(url: URL) -> dict[str, list[int]]:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pipeline, id FROM batch_status ORDER BY id")
            found: dict[str, list[int]] = {}
            for pipeline, row_id in cur.fetchall():
                found.setdefault(str(pipeline), []).append(int(row_id))
        return found
    finally:
        conn.close()


CALLERS = 16
FLIPS_EACH = 150


@pytest.mark.stress
class TestScopedStorm:
    def test_16_callers_over_4_scopes(self, scoped_url: URL) -> None:
        """16 callers x 150 flips over 4 pipelines: 0 errors; a reader always sees 1 per pipeline."""
        by_scope = make_ids(scoped_url)
        seed_conn = connect(scoped_url, autocommit=True)
        for pipeline in PIPELINES:
            set_current_batch(seed_conn, by_scope[pipeline][0])
        seed_conn.close()
        all_ids = [i for ids in by_scope.values() for i in ids]
        errors: list[BaseException] = []
        done_flips = [0] * CALLERS
        stop = threading.Event()
        polls: dict[str, Any] = {"total": 0, "bad": []}
        start = threading.Barrier(CALLERS + 1)

        def caller(n: int) -> None:
            rng = random.Random(n)
            conn = connect(scoped_url, autocommit=True)
            try:
                start.wait()
                for _ in range(FLIPS_EACH):
                    try:
                        set_current_batch(conn, rng.choice(all_ids))
                        done_flips[n] += 1
                    except Exception as exc:
                        errors.append(exc)
            finally:
                conn.close()

        def reader() -> None:
            conn = connect(scoped_url, autocommit=True)
            try:
                with conn.cursor() as cur:
                    while not stop.is_set():
                        # one snapshot: each pipeline's current rows, and its newest flip
                        cur.execute(
                            "SELECT pipeline, GROUP_CONCAT(id ORDER BY id), COUNT(*), "
                            "(SELECT COALESCE(MAX(id), 0) FROM currentBatchHistory) "
                            "FROM batch_status WHERE is_current <> 0 GROUP BY pipeline"
                        )
                        seen = {str(r[0]): (r[1], int(r[2]), int(r[3])) for r in cur.fetchall()}
                        polls["total"] += 1
                        if {p: n for p, (_, n, _) in seen.items()} != dict.fromkeys(PIPELINES, 1):
                            polls["bad"].append(seen)
            finally:
                conn.close()

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(CALLERS)]
        watcher = threading.Thread(target=reader)
        watcher.start()
        for t in threads:
            t.start()
        t0 = time.monotonic()
        start.wait()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        stop.set()
        watcher.join()
        total = sum(done_flips)
        print(
            f"\n{CALLERS} callers x {FLIPS_EACH} flips over {len(PIPELINES)} pipelines: "
            f"{total} ok, {len(errors)} errors, {total / elapsed:.0f} flips/s; reader: "
            f"{polls['total']} polls, {len(polls['bad'])} bad"
        )
        assert errors == [], f"{len(errors)} errors, first: {errors[:3]!r}"
        assert total == CALLERS * FLIPS_EACH
        assert polls["total"] > 100, "the reader must actually have polled during the storm"
        conn = connect(scoped_url, autocommit=True)
        if os.environ.get(KIND_VARIABLE, DEFAULT_KIND) in TORN_SNAPSHOT_KINDS:
            # There every bad poll must be the server's torn snapshot (see test_stress.py).
            unexplained = [
                poll
                for poll in polls["bad"]
                if set(poll) != set(PIPELINES)  # a pipeline with none current: not torn
                or not all(torn_snapshot(conn, *seen) for seen in poll.values() if seen[1] != 1)
            ]
            assert unexplained == [], f"reader saw {unexplained[:5]}"
        else:
            assert polls["bad"] == [], f"reader saw {polls['bad'][:5]}"
        assert current_by_scope(conn) == dict.fromkeys(PIPELINES, 1)
        assert check_table(conn, "batch_status")[-1][-1] == "OK"


class TestViews:
    def test_status_and_watch_know_the_names_and_the_scope(self, scoped_url: URL) -> None:
        """`status` lists each scope's current batch; `watch --once --scope` shows one scope."""
        by_scope = make_ids(scoped_url)
        conn = connect(scoped_url, autocommit=True)
        try:
            set_current_batch(conn, by_scope["p0"][1])
            set_current_batch(conn, by_scope["p2"][3])
        finally:
            conn.close()
        url = scoped_url.render_as_string(hide_password=False)
        done = run_cli("--url", url, "status", "-n", "3")
        assert done.returncode == 0, done.stderr
        assert "current batch per pipeline:" in done.stdout
        assert f"pipeline p0: {by_scope['p0'][1]} (Pending)" in done.stdout
        assert f"pipeline p2: {by_scope['p2'][3]} (Pending)" in done.stdout
        done = run_cli("--url", url, "status", "--scope", "p2", "-n", "2")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"current batch: {by_scope['p2'][3]} (Pending)")
        assert "latest 2 batches" in done.stdout
        done = run_cli("--url", url, "watch", "--once", "--scope", "p2")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"Current batch:    batch {by_scope['p2'][3]}  status Pending" in done.stdout
        assert f"set    {by_scope['p2'][3]}" in done.stdout
        assert f"set    {by_scope['p0'][1]}" not in done.stdout  # another pipeline's flip
        assert "WARNING" not in done.stdout
        done = run_cli("--url", url, "watch", "--once")
        assert done.returncode == 1
        assert "--scope" in done.stdout


def test_sql_script_with_the_names_applies_like_online(db_url: URL) -> None:
    """`batchflag sql --table ... --scope-column ... --scope-type ...` installs the same way."""
    by_scope = make_table(db_url)
    done = run_cli(
        "sql", "--table", "batch_status", "--flag-column", "is_current", "--status-column",
        "state", "--scope-column", "pipeline", "--scope-type", "varchar(32)",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    script = done.stdout
    assert "CREATE TABLE IF NOT EXISTS `batchStatus`" not in script  # 0001-0005 do nothing
    applied = subprocess.run(
        client_args(db_url), input=script, capture_output=True, text=True, timeout=120, check=False
    )
    assert applied.returncode == 0, applied.stderr
    assert migrate.current_revision(db_url) == migrate.head_revision()
    report = diagnose(create_engine(db_url, poolclass=pool.NullPool))
    assert report.healthy, report.lines()
    conn = connect(db_url, autocommit=True)
    try:
        set_current_batch(conn, by_scope["p3"][2])
        assert current_by_scope(conn) == {"p3": 1}
    finally:
        conn.close()
