"""`batchflag doctor`: healthy on a fresh database; each test breaks one on purpose.

Every broken database must give exit 3 and one PROBLEM line naming what is wrong
and the command that fixes it; the tests then run that command and check that
doctor is satisfied again, so the printed fixes are proven, not just printed.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import uuid
from collections.abc import Iterator

import pytest
from alembic import command as alembic_command
from alembic.script import Script, ScriptDirectory
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from batchflag_db import migrate
from batchflag_db._ddl import strip_sql_comments
from batchflag_db._resources import read_sql
from batchflag_db._routines import head_source, render
from batchflag_db._schema import (
    CURRENT_ROUTINE_FILES,
    KEY_COLUMN,
    KEY_INDEX,
    LOCK_TABLE,
    SET_PROCEDURE,
    TABLE,
)
from batchflag_db.cli import cli
from batchflag_db.doctor import diagnose, routine_body
from batchflag_db.installation import DEFAULT
from tests.conftest import connect, current_rows, url_text


def doctor(url: URL, *extra: str) -> Result:
    return CliRunner().invoke(
        cli, ["--url", url_text(url), "doctor", *extra], env={"BATCHFLAG_DATABASE_URL": None}
    )


def problems(result: Result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]


def execute(url: URL, *statements: str) -> None:
    conn = connect(url, autocommit=True)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def add_batches(url: URL, n: int) -> list[int]:
    conn = connect(url, autocommit=True)
    try:
        ids = []
        with conn.cursor() as cur:
            for i in range(n):
                cur.execute(
                    "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-11-28', %s)",
                    (i + 1,),
                )
                ids.append(int(cur.lastrowid))
        return ids
    finally:
        conn.close()


def run_fix(url: URL, problem_line: str) -> None:
    """Run the `batchflag ...` commands after "fix:" on ``problem_line`` against ``url``."""
    fix = problem_line.split(" -- fix: ", 1)[1]
    for command in fix.split(" && "):
        words = shlex.split(command)
        assert words[0] == "batchflag", command
        args = words[1:]
        if args[:2] == ["--url", "URL"]:
            args = args[2:]
        result = CliRunner().invoke(
            cli, ["--url", url_text(url), *args], env={"BATCHFLAG_DATABASE_URL": None}
        )
        assert result.exit_code == 0, (command, result.output)


def assert_healthy(url: URL) -> Result:
    result = doctor(url)
    assert result.exit_code == 0, result.output
    assert problems(result) == []
    return result


class TestHealthy:
    def test_fresh_database_at_head(self, migrated_url: URL) -> None:
        """A database just upgraded to head passes every check: exit 0, every line ok."""
        result = assert_healthy(migrated_url)
        lines = result.stdout.splitlines()
        assert lines[-1].startswith("healthy:")
        assert all(line.startswith("ok ") for line in lines[:-1]), lines
        checks = {line.split()[1].rstrip(":") for line in lines[:-1]}
        assert {"revision", "index", "procedure", "definer", "current"} <= checks
        for routine in CURRENT_ROUTINE_FILES:
            assert f"{routine} matches {CURRENT_ROUTINE_FILES[routine]}" in result.stdout

    def test_json(self, migrated_url: URL) -> None:
        """--json reports healthy, the revision and one finding per check."""
        data = json.loads(doctor(migrated_url, "--json").stdout)
        assert data["healthy"] is True
        assert data["revision"] == data["head"] == migrate.head_revision()
        assert {f["status"] for f in data["findings"]} == {"ok"}

    def test_with_a_current_batch(self, migrated_url: URL) -> None:
        """One current batch is healthy, and doctor names it."""
        a, _ = add_batches(migrated_url, 2)
        execute(migrated_url, f"CALL set_current_batch({a})")
        result = assert_healthy(migrated_url)
        assert f"at most one batch is current (batch {a})" in result.stdout


class TestCatchesBrokenDatabases:
    def test_not_at_head(self, migrated_url: URL) -> None:
        """A database one revision behind head: problem "revision", fix `batchflag upgrade`."""
        head = migrate.head_revision()
        behind = migrate.alembic_config()
        from alembic.script import ScriptDirectory  # noqa: PLC0415

        script = ScriptDirectory.from_config(behind).get_revision(head)
        assert script is not None
        previous = str(script.down_revision)
        migrate.downgrade(migrated_url, previous)
        result = doctor(migrated_url)
        assert result.exit_code == 3, result.output
        (line,) = problems(result)
        assert f"at revision {previous}, this version's head is {head}" in line
        assert line.endswith("-- fix: batchflag --url URL upgrade")
        run_fix(migrated_url, line)
        assert_healthy(migrated_url)

    def test_never_migrated(self, db_url: URL) -> None:
        """An empty database: problem "never migrated", fix upgrade."""
        result = doctor(db_url)
        assert result.exit_code == 3
        assert any("never migrated" in line for line in problems(result))
        run_fix(db_url, problems(result)[0])
        assert_healthy(db_url)

    def test_index_dropped(self, migrated_url: URL) -> None:
        """The UNIQUE index dropped by hand: problem "index", and its fix restores it."""
        execute(migrated_url, "ALTER TABLE batchStatus DROP INDEX uq_batchStatus_currentBatchKey")
        result = doctor(migrated_url)
        assert result.exit_code == 3, result.output
        (line,) = problems(result)
        assert "UNIQUE index uq_batchStatus_currentBatchKey is missing" in line
        assert "downgrade" in line
        run_fix(migrated_url, line)
        assert_healthy(migrated_url)

    def test_index_not_unique(self, migrated_url: URL) -> None:
        """The index replaced by a non-unique one of the same name is caught."""
        execute(
            migrated_url,
            "ALTER TABLE batchStatus DROP INDEX uq_batchStatus_currentBatchKey",
            "ALTER TABLE batchStatus ADD INDEX uq_batchStatus_currentBatchKey (currentBatchKey)",
        )
        result = doctor(migrated_url)
        assert result.exit_code == 3
        (line,) = problems(result)
        assert "is not UNIQUE" in line
        run_fix(migrated_url, line)
        assert_healthy(migrated_url)

    def test_procedure_body_altered(self, migrated_url: URL) -> None:
        """A procedure re-created with another body: problem naming it and its SQL file."""
        execute(
            migrated_url,
            f"DROP PROCEDURE {SET_PROCEDURE}",
            f"CREATE PROCEDURE {SET_PROCEDURE}(IN p_batch_id BIGINT) SQL SECURITY DEFINER "
            "BEGIN UPDATE batchStatus SET currentBatch = 0; "
            "UPDATE batchStatus SET currentBatch = 1 WHERE id = p_batch_id; END",
        )
        result = doctor(migrated_url)
        assert result.exit_code == 3, result.output
        (line,) = problems(result)
        assert f"{SET_PROCEDURE} differs from this version's SQL" in line
        assert CURRENT_ROUTINE_FILES[SET_PROCEDURE] in line
        run_fix(migrated_url, line)
        assert_healthy(migrated_url)

    def test_procedure_changed_by_one_statement(self, migrated_url: URL) -> None:
        """A body that differs from the file by one statement only is still caught."""
        source = strip_sql_comments(head_source(SET_PROCEDURE))
        assert "SET v_changed = 1;" in source
        edited = source.replace("SET v_changed = 1;", "SET v_changed = 1; SET v_changed = 1;", 1)
        execute(migrated_url, f"DROP PROCEDURE {SET_PROCEDURE}", edited)
        result = doctor(migrated_url)
        assert result.exit_code == 3
        assert any(SET_PROCEDURE in line for line in problems(result))

    def test_procedure_missing(self, migrated_url: URL) -> None:
        """A dropped procedure: problem "is missing", fix re-creates it."""
        execute(migrated_url, f"DROP PROCEDURE {SET_PROCEDURE}")
        result = doctor(migrated_url)
        (line,) = problems(result)
        assert f"{SET_PROCEDURE} is missing" in line
        run_fix(migrated_url, line)
        assert_healthy(migrated_url)

    def test_two_current_rows(self, migrated_url: URL) -> None:
        """Index dropped, then two rows current: both caught; the fix keeps the batch named."""
        a, b = add_batches(migrated_url, 2)
        execute(
            migrated_url,
            "ALTER TABLE batchStatus DROP INDEX uq_batchStatus_currentBatchKey",
            "UPDATE batchStatus SET currentBatch = 1",
        )
        result = doctor(migrated_url)
        assert result.exit_code == 3, result.output
        found = problems(result)
        rows_line = next(line for line in found if "batches are current" in line)
        assert f"2 batches are current (ids {a}, {b})" in rows_line
        assert f"--keep-current {b}" in rows_line
        assert any("index" in line for line in found)
        # Keep the older batch instead of the suggested newest one: edit the id, as a user would.
        run_fix(migrated_url, rows_line.replace(f"--keep-current {b}", f"--keep-current {a}"))
        assert_healthy(migrated_url)
        conn = connect(migrated_url)
        try:
            assert current_rows(conn) == [a]
        finally:
            conn.close()

    def test_lock_row_missing(self, migrated_url: URL) -> None:
        """The serialization row deleted: every flip would fail; doctor says so and fixes it."""
        execute(migrated_url, "DELETE FROM currentBatchLock")
        result = doctor(migrated_url)
        (line,) = problems(result)
        assert "row id=1 of currentBatchLock is missing" in line
        run_fix(migrated_url, line)
        assert_healthy(migrated_url)

    def test_key_column_wrong_expression(self, migrated_url: URL) -> None:
        """A key column generated from another expression is caught."""
        execute(
            migrated_url,
            "ALTER TABLE batchStatus DROP INDEX uq_batchStatus_currentBatchKey",
            "ALTER TABLE batchStatus MODIFY currentBatchKey TINYINT "
            "GENERATED ALWAYS AS (IF(currentBatch = 1, 1, NULL)) VIRTUAL",
            "ALTER TABLE batchStatus ADD UNIQUE INDEX uq_batchStatus_currentBatchKey "
            "(currentBatchKey DESC)",
        )
        result = doctor(migrated_url)
        (line,) = problems(result)
        assert "key column" in line
        assert "expected IF(`currentBatch` <> 0, 1, NULL)" in line
        run_fix(migrated_url, line)
        assert_healthy(migrated_url)

    def test_definer_missing(self, migrated_url: URL) -> None:
        """Procedures whose definer account does not exist (after a restore) are caught."""
        ghost = f"ghost_{uuid.uuid4().hex[:8]}"
        source = strip_sql_comments(head_source(SET_PROCEDURE))
        with_definer = source.replace(
            "CREATE PROCEDURE", f"CREATE DEFINER = '{ghost}'@'localhost' PROCEDURE", 1
        )
        execute(migrated_url, f"DROP PROCEDURE {SET_PROCEDURE}", with_definer)
        result = doctor(migrated_url)
        assert result.exit_code == 3, result.output
        (line,) = problems(result)
        assert f"definer {ghost}@localhost of {SET_PROCEDURE} does not exist" in line
        run_fix(migrated_url, line)
        assert_healthy(migrated_url)


class TestLimitedAccount:
    @pytest.fixture
    def monitor_url(self, migrated_url: URL) -> Iterator[URL]:
        """An account with SELECT and EXECUTE on the database only (no mysql.user, no bodies)."""
        user = f"mon_{uuid.uuid4().hex[:8]}"
        database = migrated_url.database
        execute(
            migrated_url,
            f"CREATE USER '{user}'@'%' IDENTIFIED BY 'monitor-pw'",
            f"GRANT SELECT, EXECUTE ON `{database}`.* TO '{user}'@'%'",
        )
        yield migrated_url.set(username=user, password="monitor-pw")  # noqa: S106 - test account
        execute(migrated_url, f"DROP USER IF EXISTS '{user}'@'%'")

    def test_unreadable_checks_are_notes(self, monitor_url: URL) -> None:
        """What the account may not read is a note ("could not"), not a problem: exit 0."""
        result = doctor(monitor_url)
        assert result.exit_code == 0, result.output
        notes = [line for line in result.stdout.splitlines() if line.startswith("note")]
        assert any("could not check that the definer" in line for line in notes), notes
        assert problems(result) == []

    def test_account_without_select(self, migrated_url: URL) -> None:
        """An account that cannot read the version table gets an error, not a false diagnosis."""
        user = f"nosel_{uuid.uuid4().hex[:8]}"
        database = migrated_url.database
        execute(
            migrated_url,
            f"CREATE USER '{user}'@'%' IDENTIFIED BY 'nosel-pw'",
            f"GRANT EXECUTE ON `{database}`.* TO '{user}'@'%'",
        )
        try:
            result = doctor(migrated_url.set(username=user, password="nosel-pw"))  # noqa: S106
            assert result.exit_code == 1, result.output
            assert "doctor cannot check this database" in result.stderr
            assert "Traceback" not in result.output
        finally:
            execute(migrated_url, f"DROP USER IF EXISTS '{user}'@'%'")


class TestBodyComparison:
    @pytest.mark.parametrize("routine", sorted(CURRENT_ROUTINE_FILES))
    def test_file_body_matches_server_body(self, migrated_url: URL, routine: str) -> None:
        """The BEGIN...END part of each head file equals SHOW CREATE's body, once normalized."""
        conn = connect(migrated_url)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SHOW CREATE PROCEDURE `{routine}`")
                definition = cur.fetchone()[2]
        finally:
            conn.close()
        expected = routine_body(head_source(routine))
        assert routine_body(definition) == expected
        assert expected.startswith("BEGIN ")
        assert expected.endswith("END")
        assert "--" not in re.sub(r"'[^']*'", "''", expected)

    def test_diagnose_accepts_a_connection(self, migrated_url: URL) -> None:
        """diagnose() works on a Connection as well as an Engine."""
        engine = create_engine(migrated_url, poolclass=pool.NullPool)
        try:
            with engine.connect() as conn:
                assert diagnose(conn).healthy
            assert diagnose(engine).healthy
        finally:
            engine.dispose()


class TestWhatRevisionsCreate:
    """Doctor learns from each revision's ``creates`` which revision re-creates what."""

    @staticmethod
    def scripts() -> list[Script]:
        directory = ScriptDirectory.from_config(migrate.alembic_config())
        return list(reversed(list(directory.walk_revisions())))

    @staticmethod
    def offline_upgrade(script: Script) -> str:
        config = migrate.alembic_config()
        config.output_buffer = io.StringIO()
        down = script.down_revision
        alembic_command.upgrade(
            config, f"{down}:{script.revision}" if down else script.revision, sql=True
        )
        return config.output_buffer.getvalue()

    def test_every_revision_declares_what_it_creates(self) -> None:
        """Each revision has a non-empty ``creates`` tuple of names and routine files."""
        for script in self.scripts():
            creates = script.module.creates
            assert isinstance(creates, tuple), script.revision
            assert creates, script.revision
            assert all(isinstance(name, str) and name for name in creates), script.revision

    def test_each_declared_name_is_in_the_revisions_upgrade(self) -> None:
        """A name a revision declares appears in its upgrade script; a routine file's body too."""
        for script in self.scripts():
            upgrade_sql = self.offline_upgrade(script)
            for name in script.module.creates:
                if name.endswith(".sql"):
                    # From 0006 on the files are templates, written rendered.
                    source = render(name, DEFAULT) if "${" in read_sql(name) else read_sql(name)
                    assert strip_sql_comments(source) in upgrade_sql, (
                        script.revision,
                        name,
                    )
                else:
                    assert f"`{name}`" in upgrade_sql, (script.revision, name)

    def test_head_routine_files_and_schema_objects_are_declared(self) -> None:
        """What doctor looks up (head routine files, index, lock table) is declared somewhere."""
        declared = {name for script in self.scripts() for name in script.module.creates}
        assert set(CURRENT_ROUTINE_FILES.values()) <= declared
        assert {KEY_INDEX, LOCK_TABLE, KEY_COLUMN, TABLE} <= declared
