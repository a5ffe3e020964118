"""The `batchflag` command: every command, environments, and every error path as one line."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import click
import pymysql
import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import URL

from batchflag_db import migrate
from batchflag_db.cli import cli
from batchflag_db.testing.server import free_port
from tests.conftest import connect, current_rows, url_text

# Variables the command reads; the tests set them explicitly, never inherit them.
_URL_VARIABLES = (
    "BATCHFLAG_DATABASE_URL",
    "BATCHFLAG_STAGING_DATABASE_URL",
    "BATCHFLAG_PROD_DATABASE_URL",
)


def run(
    args: list[str],
    *,
    env: Mapping[str, str | None] | None = None,
    input: str | None = None,
) -> Result:
    """Invoke `batchflag ARGS` in-process, with no URL variable unless ``env`` sets one."""
    environment: dict[str, str | None] = dict.fromkeys(_URL_VARIABLES)
    environment.update(env or {})
    return CliRunner().invoke(cli, args, env=environment, input=input, prog_name="batchflag")


def assert_one_line_error(
    result: Result, code: int, *fragments: str, progress: bool = False
) -> None:
    """The command failed with ``code`` and one line on stderr containing every fragment.

    With ``progress``, the migration steps logged before the error may precede that line.
    """
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    if progress:
        assert all(line.startswith("Running ") for line in lines[:-1]), lines
        lines = lines[-1:]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.stdout == ""


def insert_batches(url: URL, n: int, *, flagged: bool = False) -> list[int]:
    conn = connect(url, autocommit=True)
    try:
        ids = []
        with conn.cursor() as cur:
            for i in range(n):
                cur.execute(
                    "INSERT INTO batchStatus (batchDate, batchNumber, batchStatus, currentBatch) "
                    "VALUES ('2026-11-28', %s, 'Pending', %s)",
                    (i + 1, int(flagged)),
                )
                ids.append(int(cur.lastrowid))
        return ids
    finally:
        conn.close()


def previous_revision(revision: str) -> str:
    """The revision just before ``revision``."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    script = ScriptDirectory.from_config(migrate.alembic_config()).get_revision(revision)
    assert script is not None
    assert isinstance(script.down_revision, str)
    return script.down_revision


class TestHelp:
    @pytest.mark.parametrize("command", sorted(cli.commands))
    def test_every_command_has_help(self, command: str) -> None:
        """`batchflag COMMAND --help` prints that command's usage and exits 0."""
        result = run([command, "--help"])
        assert result.exit_code == 0, result.output
        assert f"Usage: batchflag {command}" in result.stdout
        assert cli.commands[command].help

    def test_group_help_lists_every_command(self) -> None:
        """`batchflag --help` names every command, the global options and the exit codes."""
        result = run(["--help"])
        assert result.exit_code == 0
        for name in (
            "upgrade",
            "downgrade",
            "revision",
            "current",
            "set-current",
            "unset-current",
            "status",
            "doctor",
            "sql",
            "grant",
            "demo",
        ):
            assert name in result.stdout
        assert "--url" in result.stdout
        assert "--env" in result.stdout
        assert "3 doctor found problems" in result.stdout

    def test_no_arguments_shows_help(self) -> None:
        """`batchflag` alone shows the help instead of an error."""
        result = run([])
        assert "Usage: batchflag" in result.output
        assert "Traceback" not in result.output


class TestEnvironments:
    def test_env_reads_its_variable(self, migrated_url: URL) -> None:
        """--env staging reads BATCHFLAG_STAGING_DATABASE_URL (and not the default variable)."""
        result = run(
            ["--env", "staging", "revision", "--json"],
            env={
                "BATCHFLAG_STAGING_DATABASE_URL": url_text(migrated_url),
                "BATCHFLAG_DATABASE_URL": "mysql+pymysql://nobody@127.0.0.1:1/nowhere",
            },
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["at_head"] is True

    def test_env_name_is_upper_cased(self, migrated_url: URL) -> None:
        """--env Staging and --env staging name the same variable."""
        result = run(
            ["--env", "Staging", "current"],
            env={"BATCHFLAG_STAGING_DATABASE_URL": url_text(migrated_url)},
        )
        assert result.exit_code == 0, result.output

    def test_unknown_env_is_refused_naming_the_variable(self) -> None:
        """An environment without a URL is refused (usage error) naming the variable to set."""
        result = run(["--env", "qa", "current"])
        assert_one_line_error(result, 2, "unknown environment 'qa'", "BATCHFLAG_QA_DATABASE_URL")

    def test_default_variable_is_the_fallback(self, migrated_url: URL) -> None:
        """Without --url or --env the URL comes from BATCHFLAG_DATABASE_URL."""
        result = run(["revision"], env={"BATCHFLAG_DATABASE_URL": url_text(migrated_url)})
        assert result.exit_code == 0, result.output
        assert "up to date" in result.stdout

    def test_url_beats_env_and_default(self, migrated_url: URL) -> None:
        """--url wins over --env and over BATCHFLAG_DATABASE_URL."""
        dead = "mysql+pymysql://nobody@127.0.0.1:1/nowhere"
        result = run(
            ["--url", url_text(migrated_url), "--env", "staging", "revision"],
            env={"BATCHFLAG_STAGING_DATABASE_URL": dead, "BATCHFLAG_DATABASE_URL": dead},
        )
        assert result.exit_code == 0, result.output

    def test_no_url_at_all(self) -> None:
        """With no URL from anywhere the command says every way to give one."""
        result = run(["current"])
        assert_one_line_error(result, 2, "--url", "BATCHFLAG_DATABASE_URL", "--env")

    def test_url_without_database(self, server_url: URL) -> None:
        """A URL naming no database is refused before connecting."""
        result = run(["--url", url_text(server_url.set(database=None)), "current"])
        assert_one_line_error(result, 2, "names no database", "/DATABASE")


class TestMigrationCommands:
    def test_upgrade_an_empty_database(self, db_url: URL) -> None:
        """`upgrade` takes an empty database to head and says so; `revision` then agrees."""
        result = run(["--url", url_text(db_url), "upgrade"])
        assert result.exit_code == 0, result.output
        head = migrate.head_revision()
        assert f"to {head} (head)" in result.stdout
        assert migrate.current_revision(db_url) == head
        assert "Running upgrade" in result.stderr  # the migration steps are shown
        again = run(["--url", url_text(db_url), "upgrade"])
        assert again.exit_code == 0
        assert "already at" in again.stdout

    def test_upgrade_to_a_revision(self, db_url: URL) -> None:
        """`upgrade REV` stops at REV."""
        result = run(["--url", url_text(db_url), "upgrade", "0002"])
        assert result.exit_code == 0, result.output
        assert migrate.current_revision(db_url) == "0002"

    def test_upgrade_keep_current(self, db_url: URL) -> None:
        """--keep-current ID keeps that batch when several are current, and logs the others."""
        migrate.upgrade(db_url, "0001")
        a, b, c = insert_batches(db_url, 3, flagged=True)
        result = run(["--url", url_text(db_url), "upgrade", "--keep-current", str(a)])
        assert result.exit_code == 0, result.output
        conn = connect(db_url)
        try:
            assert current_rows(conn) == [a]
        finally:
            conn.close()
        assert f"cleared currentBatch on batch {b}" in result.stderr
        assert f"cleared currentBatch on batch {c}" in result.stderr

    def test_upgrade_keep_current_not_current(self, db_url: URL) -> None:
        """--keep-current naming a batch that is not current fails and changes nothing."""
        migrate.upgrade(db_url, "0001")
        insert_batches(db_url, 2, flagged=True)
        result = run(["--url", url_text(db_url), "upgrade", "--keep-current", "999"])
        assert_one_line_error(
            result, 1, "keep_current=999", "not one of the current batches", progress=True
        )
        assert migrate.current_revision(db_url) == "0001"

    def test_downgrade(self, migrated_url: URL) -> None:
        """`downgrade REV` goes back to REV."""
        result = run(["--url", url_text(migrated_url), "downgrade", "0002"])
        assert result.exit_code == 0, result.output
        assert migrate.current_revision(migrated_url) == "0002"
        assert "to 0002" in result.stdout

    def test_revision_behind_head(self, db_url: URL) -> None:
        """`revision` shows the database's revision, the head, and the command to catch up."""
        migrate.upgrade(db_url, "0001")
        result = run(["--url", url_text(db_url), "revision"])
        assert result.exit_code == 0
        assert "database: 0001" in result.stdout
        assert f"head:     {migrate.head_revision()}" in result.stdout
        assert "run `batchflag --url URL upgrade`" in result.stdout
        as_json = json.loads(run(["--url", url_text(db_url), "revision", "--json"]).stdout)
        assert as_json == {
            "database_revision": "0001",
            "head_revision": migrate.head_revision(),
            "at_head": False,
        }

    def test_revision_of_a_new_database(self, db_url: URL) -> None:
        """A database never migrated is at base."""
        result = run(["--url", url_text(db_url), "revision", "--json"])
        assert json.loads(result.stdout)["database_revision"] is None

    def test_upgrade_unknown_revision(self, db_url: URL) -> None:
        """An unknown revision is one line from Alembic, exit 1."""
        result = run(["--url", url_text(db_url), "upgrade", "nope"])
        assert_one_line_error(result, 1, "nope")


class TestProductionConfirmation:
    @pytest.mark.parametrize("env_name", ["prod", "production", "PROD"])
    def test_declined(self, migrated_url: URL, env_name: str) -> None:
        """Against prod/production, downgrade asks; "n" cancels and nothing changes."""
        variable = f"BATCHFLAG_{env_name.upper()}_DATABASE_URL"
        result = run(
            ["--env", env_name, "downgrade", "0002"],
            env={variable: url_text(migrated_url)},
            input="n\n",
        )
        assert result.exit_code == 1
        assert "Downgrade database" in result.stderr
        assert "cancelled; pass --yes" in result.stderr
        assert migrate.current_revision(migrated_url) == migrate.head_revision()

    def test_no_answer_cancels(self, migrated_url: URL) -> None:
        """With no input at all (a script, CI) the downgrade is cancelled, not run."""
        result = run(
            ["--env", "prod", "downgrade", "0002"],
            env={"BATCHFLAG_PROD_DATABASE_URL": url_text(migrated_url)},
            input="",
        )
        assert result.exit_code == 1
        assert migrate.current_revision(migrated_url) == migrate.head_revision()

    def test_confirmed(self, migrated_url: URL) -> None:
        """Answering "y" runs the downgrade."""
        result = run(
            ["--env", "prod", "downgrade", "0002"],
            env={"BATCHFLAG_PROD_DATABASE_URL": url_text(migrated_url)},
            input="y\n",
        )
        assert result.exit_code == 0, result.output
        assert migrate.current_revision(migrated_url) == "0002"

    def test_yes_skips_the_question(self, migrated_url: URL) -> None:
        """--yes downgrades prod without asking."""
        result = run(
            ["--env", "prod", "downgrade", "--yes", "0002"],
            env={"BATCHFLAG_PROD_DATABASE_URL": url_text(migrated_url)},
        )
        assert result.exit_code == 0, result.output
        assert "Downgrade database" not in result.output
        assert migrate.current_revision(migrated_url) == "0002"

    def test_other_environments_do_not_ask(self, migrated_url: URL) -> None:
        """Staging downgrades without a question."""
        result = run(
            ["--env", "staging", "downgrade", "0002"],
            env={"BATCHFLAG_STAGING_DATABASE_URL": url_text(migrated_url)},
        )
        assert result.exit_code == 0, result.output
        assert "?" not in result.stderr
        assert migrate.current_revision(migrated_url) == "0002"


class TestFlagCommands:
    def test_set_unset_current(self, migrated_url: URL) -> None:
        """set-current flips, reports the previous batch; unset-current clears; current reads."""
        a, b = insert_batches(migrated_url, 2)
        u = url_text(migrated_url)
        result = run(["--url", u, "set-current", str(a)])
        assert result.exit_code == 0, result.output
        assert result.stdout == f"batch {a} is now the current batch (no batch was current)\n"
        result = run(["--url", u, "set-current", str(b)])
        assert result.stdout == f"batch {b} is now the current batch (was batch {a})\n"
        result = run(["--url", u, "set-current", str(b)])
        assert "already the current batch" in result.stdout
        assert run(["--url", u, "current"]).stdout == f"{b}\n"
        result = run(["--url", u, "unset-current", str(a)])
        assert result.exit_code == 0
        assert "was not the current batch; nothing changed" in result.stdout
        result = run(["--url", u, "unset-current", str(b)])
        assert "no longer current" in result.stdout
        none = run(["--url", u, "current"])
        assert none.exit_code == 0
        assert none.stdout == ""

    def test_json_output(self, migrated_url: URL) -> None:
        """--json gives machine-readable results for current, set-current and unset-current."""
        a, b = insert_batches(migrated_url, 2)
        u = url_text(migrated_url)
        assert json.loads(run(["--url", u, "current", "--json"]).stdout) == {"current_batch": None}
        assert json.loads(run(["--url", u, "set-current", str(a), "--json"]).stdout) == {
            "batch_id": a,
            "previous_batch_id": None,
            "changed": True,
        }
        assert json.loads(run(["--url", u, "set-current", str(b), "--json"]).stdout) == {
            "batch_id": b,
            "previous_batch_id": a,
            "changed": True,
        }
        assert json.loads(run(["--url", u, "current", "--json"]).stdout) == {"current_batch": b}
        assert json.loads(run(["--url", u, "unset-current", str(b), "--json"]).stdout) == {
            "batch_id": b,
            "changed": True,
        }

    def test_status_table(self, migrated_url: URL) -> None:
        """status shows the current batch and the latest N batches, newest first."""
        ids = insert_batches(migrated_url, 4)
        u = url_text(migrated_url)
        run(["--url", u, "set-current", str(ids[1])])
        result = run(["--url", u, "status", "--limit", "3"])
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0] == f"current batch: {ids[1]} (2026-11-28, 2, Pending)"
        header = lines.index("latest 3 batches:") + 1
        assert lines[header].split() == [
            "id",
            "batchDate",
            "batchNumber",
            "batchStatus",
            "currentBatch",
        ]
        rows = [line.split() for line in lines[header + 1 :]]
        assert [int(r[0]) for r in rows] == [ids[3], ids[2], ids[1]]
        assert [r[4] for r in rows] == ["0", "0", "1"]

    def test_status_json_and_empty(self, migrated_url: URL) -> None:
        """status --json has the current batch and the rows; an empty table says so."""
        u = url_text(migrated_url)
        empty = run(["--url", u, "status"])
        assert empty.stdout.splitlines()[0] == "current batch: none"
        assert "no batches in batchStatus" in empty.stdout
        (a,) = insert_batches(migrated_url, 1)
        run(["--url", u, "set-current", str(a)])
        data = json.loads(run(["--url", u, "status", "--json"]).stdout)
        assert data["current_batch"] == {
            "id": a,
            "batchDate": "2026-11-28",
            "batchNumber": 1,
            "batchStatus": "Pending",
            "currentBatch": 1,
        }
        assert data["batches"] == [data["current_batch"]]


class TestErrors:
    """Each error: non-zero exit, one line on stderr, no traceback."""

    @pytest.mark.parametrize(
        ("value", "fragment"),
        [
            ("abc", "invalid batch id 'abc'"),
            ("0", "invalid batch id 0"),
            ("9223372036854775808", "no greater than 9223372036854775807"),
            ("1.5", "invalid batch id '1.5'"),
        ],
    )
    def test_bad_id(self, value: str, fragment: str) -> None:
        """A bad id is a usage error (exit 2), refused before any connection."""
        for command in ("set-current", "unset-current"):
            result = run(["--url", "mysql+pymysql://nobody@127.0.0.1:1/x", command, value])
            assert_one_line_error(result, 2, fragment, f"batchflag {command} --help")

    def test_negative_id_after_double_dash(self) -> None:
        """A negative id (passed after --) is refused as a bad id."""
        result = run(["--url", "mysql+pymysql://nobody@127.0.0.1:1/x", "set-current", "--", "-5"])
        assert_one_line_error(result, 2, "invalid batch id -5")

    def test_missing_id(self) -> None:
        """set-current without an id is a usage error."""
        assert_one_line_error(run(["set-current"]), 2, "Missing argument 'ID'")

    def test_unknown_batch(self, migrated_url: URL) -> None:
        """An id no row has: exit 1, the batch named, nothing changed."""
        (a,) = insert_batches(migrated_url, 1)
        u = url_text(migrated_url)
        run(["--url", u, "set-current", str(a)])
        for command in ("set-current", "unset-current"):
            result = run(["--url", u, command, "424242"])
            assert_one_line_error(result, 1, "batch 424242 does not exist in batchStatus")
        assert run(["--url", u, "current"]).stdout == f"{a}\n"

    def test_unreachable_server(self) -> None:
        """Nothing listens on the port: exit 1, "cannot connect", the address named."""
        port = free_port()
        url = f"mysql+pymysql://root@127.0.0.1:{port}/db"
        for args in (["current"], ["status"], ["upgrade"], ["doctor"], ["set-current", "1"]):
            result = run(["--url", url, *args])
            assert_one_line_error(result, 1, "cannot connect", f"127.0.0.1:{port}")

    def test_wrong_password(self, migrated_url: URL) -> None:
        """A refused login: exit 1, the server's "Access denied", never the password."""
        url = url_text(migrated_url.set(password="certainly-wrong-pw"))  # noqa: S106 - a test login
        result = run(["--url", url, "current"])
        assert_one_line_error(result, 1, "cannot connect", "Access denied")
        assert "certainly-wrong-pw" not in result.output

    def test_unknown_database(self, server_url: URL) -> None:
        """A database that does not exist: exit 1, named."""
        url = url_text(server_url.set(database="no_such_database_here"))
        result = run(["--url", url, "current"])
        assert_one_line_error(result, 1, "Unknown database 'no_such_database_here'")

    @pytest.mark.parametrize(
        "args", [["current"], ["status"], ["set-current", "1"], ["unset-current", "1"]]
    )
    def test_not_migrated(self, db_url: URL, args: list[str]) -> None:
        """A database never migrated: exit 1 and the command that fixes it."""
        result = run(["--url", url_text(db_url), *args])
        assert_one_line_error(result, 1, "schema not migrated", "batchflag upgrade")

    def test_unsupported_url(self) -> None:
        """A URL of another database kind is a usage error."""
        result = run(["--url", "postgresql://u@h/db", "current"])
        assert_one_line_error(result, 2, "unsupported database URL scheme")

    def test_unknown_command_and_option(self) -> None:
        """Typos are usage errors on one line."""
        assert_one_line_error(run(["sett-current"]), 2, "No such command")
        assert_one_line_error(run(["status", "--limitt", "3"]), 2, "No such option")
        assert_one_line_error(run(["status", "--limit", "0"]), 2, "--limit")

    def test_two_current_rows_hint(self, migrated_url: URL) -> None:
        """When the index is gone and two rows are current, set-current points at doctor."""
        a, _ = insert_batches(migrated_url, 2)
        conn = connect(migrated_url, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("ALTER TABLE batchStatus DROP INDEX uq_batchStatus_currentBatchKey")
                cur.execute("UPDATE batchStatus SET currentBatch = 1")
        finally:
            conn.close()
        result = run(["--url", url_text(migrated_url), "set-current", str(a)])
        assert_one_line_error(result, 1, "batchflag doctor")


class TestGrant:
    def test_sql_prints_the_statements(self, migrated_url: URL) -> None:
        """grant --sql prints the GRANTs for the URL's database, each ending with ';'."""
        result = run(["--url", url_text(migrated_url), "grant", "app@%", "--sql"])
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines
        assert all(line.startswith("GRANT ") and line.endswith(";") for line in lines)
        assert any(f"`{migrated_url.database}`.`batchStatus`" in line for line in lines)
        assert any("EXECUTE ON PROCEDURE" in line for line in lines)

    def test_sql_with_database_option_needs_no_url(self) -> None:
        """grant --sql --database NAME works without any URL configured."""
        result = run(["grant", "'app'@'10.0.0.%'", "--sql", "--database", "cofi"])
        assert result.exit_code == 0, result.output
        assert "`cofi`.`batchStatus`" in result.stdout

    def test_grant_lets_the_account_flip_but_not_write(self, migrated_url: URL) -> None:
        """After `grant`, the account can set-current through the CLI but not UPDATE the flag."""
        (a,) = insert_batches(migrated_url, 1)
        user = f"app_{migrated_url.database}"[:32]
        admin = connect(migrated_url, autocommit=True)
        try:
            with admin.cursor() as cur:
                cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'app-pw'")
            result = run(["--url", url_text(migrated_url), "grant", f"{user}@%"])
            assert result.exit_code == 0, result.output
            app_url = migrated_url.set(username=user, password="app-pw")  # noqa: S106 - test account
            flipped = run(["--url", url_text(app_url), "set-current", str(a)])
            assert flipped.exit_code == 0, flipped.output
            app = connect(app_url, autocommit=True)
            try:
                with app.cursor() as cur, pytest.raises(pymysql.err.MySQLError, match="denied"):
                    cur.execute("UPDATE batchStatus SET currentBatch = 0")
            finally:
                app.close()
        finally:
            with admin.cursor() as cur:
                cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            admin.close()

    def test_bad_account(self) -> None:
        """An account that is not user@host is refused on one line."""
        result = run(["grant", "no-host-part", "--sql", "--database", "cofi"])
        assert_one_line_error(result, 1, "invalid account")


@pytest.mark.slow
class TestDemo:
    def test_demo_on_a_given_database(self, db_url: URL) -> None:
        """demo upgrades the given database, runs the story, passes, and cleans up after itself."""
        migrate.upgrade(db_url)
        (kept,) = insert_batches(db_url, 1)
        u = url_text(db_url)
        run(["--url", u, "set-current", str(kept)])
        result = run(["--url", u, "demo"])
        assert result.exit_code == 0, result.output
        assert "is refused by the database" in result.stdout
        assert "Failed       1" in result.stdout  # status: the failed batch stays current
        assert result.stdout.splitlines()[-1].startswith("demo passed")
        # the database is as it was: the same current batch, no demo rows
        assert run(["--url", u, "current"]).stdout == f"{kept}\n"
        conn = connect(db_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT id FROM batchStatus")
                assert [r[0] for r in cur.fetchall()] == [kept]
        finally:
            conn.close()

    def test_demo_on_an_empty_database(self, db_url: URL) -> None:
        """demo migrates a database never migrated, and leaves no batch current."""
        result = run(["--url", url_text(db_url), "demo"])
        assert result.exit_code == 0, result.output
        assert migrate.current_revision(db_url) == migrate.head_revision()
        assert run(["--url", url_text(db_url), "current"]).stdout == ""

    def test_demo_starts_its_own_server(self) -> None:
        """With no database configured, demo runs on a throwaway server and exits 0."""
        result = run(["demo"])
        assert result.exit_code == 0, result.output
        assert "throwaway local server" in result.stdout
        assert "6. batchflag doctor" in result.stdout
        assert result.stdout.splitlines()[-1].startswith("demo passed")


def _console_script() -> list[str]:
    """The installed `batchflag` script: beside this interpreter (a venv), else on PATH."""
    beside = Path(sys.executable).parent / "batchflag"
    found = str(beside) if beside.is_file() else shutil.which("batchflag")
    if found is None:
        pytest.fail("the `batchflag` console script is not installed: pip install -e .")
    return [found]


def _script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _URL_VARIABLES}
    env.pop("BATCHFLAG_TRACEBACK", None)
    env.update(extra)
    return env


@pytest.mark.slow
class TestConsoleScript:
    """The installed `batchflag` script, as a user runs it: no traceback, ever."""

    def script(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_console_script(), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=_script_env(**env),
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def assert_error(
        self, done: subprocess.CompletedProcess[str], code: int, *fragments: str
    ) -> None:
        assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1, lines
        for fragment in fragments:
            assert fragment in lines[0]

    def test_help_and_success(self, migrated_url: URL) -> None:
        """--help and a successful command exit 0."""
        assert self.script("--help").returncode == 0
        done = self.script("--url", url_text(migrated_url), "revision")
        assert done.returncode == 0, done.stderr
        assert "up to date" in done.stdout

    def test_error_paths(self, migrated_url: URL, db_url: URL) -> None:
        """Unknown batch, unreachable server, not migrated, bad id, unknown env: one line each."""
        u = url_text(migrated_url)
        self.assert_error(
            self.script("--url", u, "set-current", "777"), 1, "batch 777 does not exist"
        )
        dead = f"mysql+pymysql://root@127.0.0.1:{free_port()}/x"
        self.assert_error(self.script("--url", dead, "status"), 1, "cannot connect")
        self.assert_error(
            self.script("--env", "staging", "current"), 2, "BATCHFLAG_STAGING_DATABASE_URL"
        )
        self.assert_error(self.script("--url", u, "unset-current", "x1"), 2, "invalid batch id")
        self.assert_error(self.script("current"), 2, "BATCHFLAG_DATABASE_URL")

    def test_not_migrated_via_default_variable(self, db_url: URL) -> None:
        """BATCHFLAG_DATABASE_URL pointing at an empty database: the fix is named."""
        done = self.script("current", BATCHFLAG_DATABASE_URL=url_text(db_url))
        self.assert_error(done, 1, "schema not migrated", "batchflag upgrade")

    def test_prod_downgrade_without_a_terminal(self, migrated_url: URL) -> None:
        """A prod downgrade with no one to answer is cancelled, exit 1, nothing changed."""
        done = self.script(
            "--env", "prod", "downgrade", "0002", BATCHFLAG_PROD_DATABASE_URL=url_text(migrated_url)
        )
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert "cancelled; pass --yes" in done.stderr
        assert migrate.current_revision(migrated_url) == migrate.head_revision()


def _fill_history(url: URL, rows: int) -> None:
    """Record ``rows`` flips in the history table directly (fast; the procedures do the same)."""
    conn = connect(url, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO currentBatchHistory "
                "(batchId, previousBatchId, action, changedAt, account, connectionId) "
                "VALUES (%s, NULL, 'set', UTC_TIMESTAMP(6), 'app@localhost', 1)",
                [(n + 1,) for n in range(rows)],
            )
    finally:
        conn.close()


class TestClosedStdout:
    """`batchflag history | head`: the reader closing the pipe ends the command quietly."""

    @pytest.mark.parametrize(
        ("flips", "lines_read"),
        [(3000, 3), (3, 0)],
        ids=["closed-while-writing", "closed-before-any-output"],
    )
    def test_closed_pipe_is_a_quiet_exit(
        self, migrated_url: URL, flips: int, lines_read: int
    ) -> None:
        """stdout piped to a reader that reads a few lines and closes it: no message on
        stderr, and exit status 141 (128 + SIGPIPE, what a shell shows for `cat` there).

        With 3000 flips the output is larger than the pipe, so the command is still
        writing when the pipe closes; with 3 the only write is the final flush.
        """
        _fill_history(migrated_url, flips)
        proc = subprocess.Popen(
            [*_console_script(), "--url", url_text(migrated_url), "history", "--limit", "5000"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_script_env(),
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        read = [proc.stdout.readline() for _ in range(lines_read)]
        proc.stdout.close()
        try:
            stderr = proc.stderr.read().decode()
            code = proc.wait(timeout=120)
        finally:
            proc.kill()
            proc.stderr.close()
        assert all(line for line in read)  # the reader did get output first
        assert stderr == ""
        assert code == 141


class TestExtensionHelpers:
    @pytest.mark.parametrize(
        ("module_name", "names"),
        [
            (
                "batchflag_db.cli.helpers",
                (
                    "get_settings",
                    "resolve_database_url",
                    "open_engine",
                    "command_prefix",
                    "echo_json",
                    "echo_table",
                    "BATCH_ID",
                ),
            ),
            ("batchflag_db.cli.group", ("describe_error", "fail")),
            ("batchflag_db.config", ("describe_url",)),
            ("batchflag_db.status", ("read_status", "status_lines")),
        ],
    )
    def test_helpers_are_importable(self, module_name: str, names: tuple[str, ...]) -> None:
        """The helpers other command modules reuse exist under their documented names."""
        module = importlib.import_module(module_name)
        for name in names:
            assert name in module.__all__
            assert callable(getattr(module, name)) or isinstance(
                getattr(module, name), click.ParamType
            )

    def test_a_refused_migration_is_a_message_a_runtime_error_is_not(self) -> None:
        """A migration's refusal is shown as written; any other RuntimeError is unexpected."""
        from batchflag_db.cli.group import describe_error  # noqa: PLC0415
        from batchflag_db.errors import MigrationRefusedError  # noqa: PLC0415

        assert describe_error(MigrationRefusedError("convert it first")) == ("convert it first", 1)
        message, code = describe_error(RuntimeError("boom"))
        assert code == 1
        assert message.startswith("unexpected RuntimeError: boom")
        assert "BATCHFLAG_TRACEBACK=1" in message

    def test_the_package_exposes_the_group_and_the_entry_point(self) -> None:
        """`batchflag_db.cli:cli` is the group (docs) and `batchflag_db.cli:main` the script."""
        from batchflag_db import cli as package  # noqa: PLC0415

        assert package.__all__ == ["cli", "main"]
        assert isinstance(package.cli, click.Group)
        assert callable(package.main)
        assert {"upgrade", "set-current", "doctor", "watch", "demo"} <= set(package.cli.commands)

    def test_an_added_command_gets_the_error_handling(self, db_url: URL) -> None:
        """A command added to the group turns a server error into one line, like the built-ins."""
        from batchflag_db.cli.helpers import open_engine  # noqa: PLC0415

        @cli.command("probe-for-test", hidden=True)
        def probe() -> None:
            with open_engine() as engine, engine.connect() as conn:
                conn.exec_driver_sql("SELECT * FROM no_such_table_here")

        try:
            result = run(["--url", url_text(db_url), "probe-for-test"])
            assert_one_line_error(result, 1, "no_such_table_here")
        finally:
            del cli.commands["probe-for-test"]
