"""SQL for DBAs: the script `batchflag sql` (and `alembic ... --sql`) prints, applied with the client.

The promise: applied as it is with the `mariadb`/`mysql` client to an empty database,
the script gives the same schema objects as an online `upgrade` (same SHOW CREATE
output for every table and routine, AUTO_INCREMENT counters aside), and `doctor`
then finds nothing wrong.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import URL

from batchflag_db import migrate
from batchflag_db._schema import CURRENT_ROUTINE_FILES, TABLE, VERSION_TABLE
from batchflag_db.cli import cli
from tests.conftest import apply_script, client_args, connect, current_rows, url_text

REPO = Path(__file__).resolve().parent.parent


def batchflag(*args: str) -> str:
    """Run `batchflag ARGS` with no database configured; return stdout (must exit 0)."""
    result = CliRunner().invoke(cli, list(args), env={"BATCHFLAG_DATABASE_URL": None})
    assert result.exit_code == 0, result.output
    return result.stdout


def apply_quietly(url: URL, script: str) -> None:
    """:func:`apply_script`, and the client printed nothing on stderr (no warning either)."""
    assert apply_script(url, script).stderr == ""


def snapshot(url: URL) -> dict[str, Any]:
    """SHOW CREATE of every table and routine, the version rows, the lock table's rows."""
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'")
            tables = sorted(str(r[0]) for r in cur.fetchall())
            result: dict[str, Any] = {}
            for table in tables:
                cur.execute(f"SHOW CREATE TABLE `{table}`")
                create = str(cur.fetchone()[1])
                result[f"table {table}"] = re.sub(r" AUTO_INCREMENT=\d+", "", create)
            cur.execute(
                "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES "
                "WHERE ROUTINE_SCHEMA = DATABASE() ORDER BY ROUTINE_NAME"
            )
            for kind, name in cur.fetchall():
                cur.execute(f"SHOW CREATE {kind} `{name}`")
                result[f"{kind.lower()} {name}"] = tuple(cur.fetchone())
            cur.execute(f"SELECT version_num FROM `{VERSION_TABLE}`")
            result["version"] = [r[0] for r in cur.fetchall()]
            cur.execute("SELECT * FROM currentBatchLock")
            result["lock rows"] = [tuple(r) for r in cur.fetchall()]
        return result
    finally:
        conn.close()


@pytest.fixture
def online_url(server_url: URL) -> Iterator[URL]:
    """A second fresh database, upgraded online to head (the reference)."""
    name = f"bfo_{uuid.uuid4().hex[:12]}"
    admin = connect(server_url, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
        url = server_url.set(database=name)
        migrate.upgrade(url)
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def assert_same_schema(script_db: URL, online_db: URL) -> None:
    script_side, online_side = snapshot(script_db), snapshot(online_db)
    assert set(script_side) == set(online_side)
    for key in online_side:
        assert script_side[key] == online_side[key], key
    # the comparison covered what matters, not an empty database
    assert f"table {TABLE}" in online_side
    for routine in CURRENT_ROUTINE_FILES:
        assert f"procedure {routine}" in online_side
    assert online_side["version"] == [migrate.head_revision()]


class TestBatchflagSql:
    def test_needs_no_database(self) -> None:
        """`batchflag sql` writes the script without any URL configured."""
        script = batchflag("sql")
        assert "CREATE TABLE IF NOT EXISTS `batchStatus`" in script
        assert f"-> {migrate.head_revision()}" in script.splitlines()[0]

    def test_routines_are_wrapped_in_delimiter(self) -> None:
        """Each CREATE PROCEDURE sits alone between DELIMITER // and //, after SET NAMES."""
        script = batchflag("sql")
        blocks = re.findall(
            r"SET NAMES utf8mb4;\nDELIMITER //\n(.*?)\n//\nDELIMITER ;\n", script, re.S
        )
        creates = re.findall(r"^CREATE PROCEDURE", script, re.M)
        assert len(blocks) == len(creates) >= len(CURRENT_ROUTINE_FILES)
        for block in blocks:
            assert block.startswith("CREATE PROCEDURE")
            assert block.rstrip().endswith("END")
            assert not re.search(r"^\s*--", block, re.M), "comments inside a routine"

    def test_applies_like_online_upgrade(self, db_url: URL, online_url: URL) -> None:
        """Applied with the client to an empty database: same SHOW CREATE as online `upgrade`."""
        apply_quietly(db_url, batchflag("sql"))
        assert_same_schema(db_url, online_url)

    def test_doctor_passes_and_flips_work(self, db_url: URL) -> None:
        """On the database the script built, doctor is healthy and the flag commands work."""
        apply_quietly(db_url, batchflag("sql"))
        apply_quietly(
            db_url,
            "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-11-28', 1);\n"
            "CALL set_current_batch(LAST_INSERT_ID());\n",
        )
        result = CliRunner().invoke(cli, ["--url", url_text(db_url), "doctor"])
        assert result.exit_code == 0, result.output
        assert "PROBLEM" not in result.stdout
        current = CliRunner().invoke(cli, ["--url", url_text(db_url), "current"])
        assert current.stdout.strip().isdigit()

    def test_from_a_revision(self, db_url: URL, online_url: URL) -> None:
        """`sql --from 0002` upgrades a database already at 0002 to the same schema as online."""
        migrate.upgrade(db_url, "0002")
        script = batchflag("sql", "--from", "0002")
        assert "CREATE TABLE IF NOT EXISTS `batchStatus`" not in script
        apply_quietly(db_url, script)
        assert_same_schema(db_url, online_url)

    @pytest.mark.parametrize("keep", ["first", "newest"])
    def test_several_current_rows(self, db_url: URL, keep: str) -> None:
        """The script keeps one current row: the newest, or the one named by --keep-current."""
        migrate.upgrade(db_url, "0001")
        conn = connect(db_url, autocommit=True)
        try:
            with conn.cursor() as cur:
                ids = []
                for n in range(3):
                    cur.execute(
                        "INSERT INTO batchStatus (batchDate, batchNumber, currentBatch) "
                        "VALUES ('2026-11-28', %s, 1)",
                        (n,),
                    )
                    ids.append(int(cur.lastrowid))
            args = ["sql", "--from", "0001"]
            if keep == "first":
                args += ["--keep-current", str(ids[0])]
            apply_quietly(db_url, batchflag(*args))
            assert current_rows(conn) == [ids[0] if keep == "first" else ids[-1]]
        finally:
            conn.close()


def seed_current_rows(url: URL, flags: list[int], *, start: str | None) -> list[int]:
    """batchStatus with one row per flag: the user's own table (never migrated), or at 0001."""
    conn = connect(url, autocommit=True)
    try:
        with conn.cursor() as cur:
            if start is None:
                cur.execute(
                    "CREATE TABLE batchStatus (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                    "batchDate DATE NOT NULL, batchNumber INT NOT NULL, "
                    "batchStatus VARCHAR(32) NOT NULL DEFAULT 'Pending', "
                    "currentBatch TINYINT(1) NOT NULL DEFAULT 0) ENGINE=InnoDB"
                )
            else:
                migrate.upgrade(url, start)
            ids = []
            for n, flag in enumerate(flags):
                cur.execute(
                    "INSERT INTO batchStatus (batchDate, batchNumber, currentBatch) "
                    "VALUES ('2026-11-28', %s, %s)",
                    (n, flag),
                )
                ids.append(int(cur.lastrowid))
        return ids
    finally:
        conn.close()


def database_state(url: URL) -> dict[str, Any]:
    """Every base table with its SHOW CREATE and rows."""
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'")
            state: dict[str, Any] = {}
            for name in sorted(str(r[0]) for r in cur.fetchall()):
                cur.execute(f"SHOW CREATE TABLE `{name}`")
                state[f"table {name}"] = cur.fetchone()[1]
                cur.execute(f"SELECT * FROM `{name}` ORDER BY 1")
                state[f"rows {name}"] = list(cur.fetchall())
        return state
    finally:
        conn.close()


def routines(url: URL) -> list[str]:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES "
                "WHERE ROUTINE_SCHEMA = DATABASE() ORDER BY ROUTINE_NAME"
            )
            return [str(r[0]) for r in cur.fetchall()]
    finally:
        conn.close()


class TestKeepCurrentInTheScript:
    """The script refuses a bad --keep-current as `batchflag upgrade` does: before any change."""

    @pytest.mark.parametrize("start", [None, "0001"])
    def test_bad_keep_current_stops_the_script_before_any_change(
        self, db_url: URL, start: str | None
    ) -> None:
        """Two current rows, --keep-current naming neither: the client stops with the
        refusal before the first change; tables and rows are as they were. The same
        script run again with a good id (the DBA's retry) applies and leaves no check behind.
        """
        ids = seed_current_rows(db_url, [1, 0, 1], start=start)
        before = database_state(db_url)
        args = ["sql", *(["--from", start] if start else []), "--keep-current"]
        done = subprocess.run(
            client_args(db_url),
            input=batchflag(*args, str(ids[1])),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode != 0
        assert f"keep_current={ids[1]}: batch {ids[1]} is not one of the current batches" in (
            done.stderr
        )
        assert f"[{ids[0]}, {ids[2]}]; name one of them" in done.stderr
        assert database_state(db_url) == before
        apply_quietly(db_url, batchflag(*args, str(ids[2])))
        conn = connect(db_url)
        try:
            assert current_rows(conn) == [ids[2]]
        finally:
            conn.close()
        assert migrate.current_revision(db_url) == migrate.head_revision()
        assert "batchflag_check_keep_current" not in routines(db_url)

    def test_one_current_row_is_kept_as_online(self, db_url: URL) -> None:
        """One current row and --keep-current naming another: nothing to choose, so the
        script keeps that row current, as `batchflag upgrade --keep-current` does."""
        ids = seed_current_rows(db_url, [0, 1, 0], start="0001")
        apply_quietly(db_url, batchflag("sql", "--from", "0001", "--keep-current", str(ids[0])))
        conn = connect(db_url)
        try:
            assert current_rows(conn) == [ids[1]]
        finally:
            conn.close()

    def test_no_check_without_keep_current_or_0002(self) -> None:
        """The check is in the script only when --keep-current is given and 0002 is in it."""
        assert "batchflag_check_keep_current" not in batchflag("sql")
        assert "batchflag_check_keep_current" not in batchflag(
            "sql", "--from", "0002", "--keep-current", "5"
        )
        script = batchflag("sql", "--keep-current", "5")
        assert script.index("CALL `batchflag_check_keep_current`()") < script.index("CREATE TABLE")

    def test_help_says_the_script_checks(self) -> None:
        """`batchflag sql --help` tells the DBA the script stops on a bad --keep-current."""
        text = " ".join(batchflag("sql", "--help").split())
        assert "stops before any change" in text


class TestAlembicSql:
    def test_alembic_offline_script_applies_like_online(self, db_url: URL, online_url: URL) -> None:
        """`alembic -x url=... upgrade head --sql` prints a script the client applies as it is."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "alembic",
                "-x",
                f"url={url_text(db_url)}",
                "upgrade",
                "head",
                "--sql",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "DELIMITER //" in done.stdout
        apply_quietly(db_url, done.stdout)
        assert_same_schema(db_url, online_url)
