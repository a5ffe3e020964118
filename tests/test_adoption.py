"""Adopting batchflag-db in a team's own Alembic project: its chain, its names, a scope.

Each test builds the team's project in a temporary directory: its own ``alembic.ini``,
an ``env.py`` with its models and batchflag-db's ``include_object``, and its own chain
(``t001`` creates ``batch_status`` with an INT id, flag ``is_current``, status ``state``
and scope ``pipeline``). Dirty data goes in, then the revision ``t002`` that calls
``op.create_current_flag(...)`` is applied, online or as a ``--sql`` script fed to the
server's command-line client.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import re
import subprocess
import sys
import textwrap
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from alembic.config import CommandLine, Config
from alembic.operations import Operations
from sqlalchemy import Column, Index, Integer, MetaData, Table, create_engine, pool
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from batchflag_db import aio, get_current_batch
from batchflag_db.alembic import FlagOperations, include_object
from batchflag_db.dashboard import resolve_dashboard_batch
from batchflag_db.doctor import diagnose
from batchflag_db.errors import ConfigurationError
from tests.conftest import apply_script, connect, isolated_logging, run_cli, url_text

SCOPE_TYPE = "varchar(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
NAMES = (
    'table="batch_status", flag_column="is_current", status_column="state", scope_column="pipeline"'
)

ENV_PY = """
from alembic import context
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, create_engine, pool, text
from sqlalchemy.dialects.mysql import TINYINT, VARCHAR

from alembic.operations import Operations

from batchflag_db.alembic import FlagOperations, include_object

metadata = MetaData()
Table(
    "batch_status",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline", VARCHAR(32, charset="utf8mb4", collation="utf8mb4_bin"), nullable=False),
    Column("state", VARCHAR(16), nullable=False, server_default="Pending"),
    Column("is_current", TINYINT(1), nullable=False, server_default=text("0")),
    Column("created_at", DateTime, nullable=False, server_default=text("CURRENT_TIMESTAMP")),
    mysql_engine="InnoDB",
)

url = context.config.get_main_option("sqlalchemy.url")
options = dict(target_metadata=metadata, include_object=include_object)
if context.is_offline_mode():
    context.configure(url=url, literal_binds=True, **options)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
"""

INIT_LOGGING = """
[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
datefmt = %H:%M:%S
"""
"""The logging sections of the alembic.ini that ``alembic init`` writes."""

INIT_FILECONFIG = """
from logging.config import fileConfig

import batchflag_db.alembic  # imported before fileConfig(), as a team's env.py may
from alembic import context

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name)  # disable_existing_loggers=True
"""
"""The head of the env.py that ``alembic init`` writes: fileConfig() with its defaults."""

T001 = '''
"""the team's table"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import TINYINT, VARCHAR

revision = "t001"
down_revision = None

def upgrade():
    op.create_table(
        "batch_status",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pipeline", VARCHAR(32, charset="utf8mb4", collation="utf8mb4_bin"),
                  nullable=False),
        sa.Column("state", VARCHAR(16), nullable=False, server_default="Pending"),
        sa.Column("is_current", TINYINT(1), nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", sa.DateTime, nullable=False,
                  server_default=sa.text("CURRENT_TIMESTAMP")),
        mysql_engine="InnoDB",
    )

def downgrade():
    pass  # the team keeps its table and its rows
'''

T002 = f'''
"""batchflag-db on batch_status: one current batch per pipeline"""
from alembic import op

import batchflag_db.alembic  # noqa: F401  (registers the operations)

revision = "t002"
down_revision = "t001"

def upgrade():
    op.create_current_flag({NAMES}, scope_type="{SCOPE_TYPE}")

def downgrade():
    op.drop_current_flag({NAMES})
'''

# (pipeline, state, is_current): ingest has three current rows, export two, audit none.
DIRTY = [
    ("ingest", "Completed", 1),
    ("ingest", "Completed", 1),
    ("export", "Completed", 1),
    ("ingest", "InProgress", 1),
    ("export", "Failed", 1),
    ("audit", "Completed", 0),
    ("audit", "Failed", 0),
    ("audit", "Completed", 0),
]


class TeamProject:
    """The team's Alembic project on one database."""

    def __init__(self, root: Path, url: URL, *, as_alembic_init_writes: bool = False) -> None:
        self.root = root
        self.url = url
        (root / "versions").mkdir(parents=True)
        rendered = url.render_as_string(hide_password=False)
        ini = f"[alembic]\nscript_location = {root}\nsqlalchemy.url = {rendered}\n"
        env = ENV_PY
        if as_alembic_init_writes:  # its logging sections, and fileConfig() with its defaults
            ini += INIT_LOGGING
            env = INIT_FILECONFIG + ENV_PY
        (root / "alembic.ini").write_text(ini)
        (root / "env.py").write_text(env)
        (root / "script.py.mako").write_text(
            '"""${message}"""\nfrom alembic import op\nimport sqlalchemy as sa\n'
            "revision = ${repr(up_revision)}\ndown_revision = ${repr(down_revision)}\n"
            "def upgrade():\n    ${upgrades if upgrades else 'pass'}\n"
            "def downgrade():\n    ${downgrades if downgrades else 'pass'}\n"
        )
        (root / "versions" / "t001_table.py").write_text(textwrap.dedent(T001))

    def add_flag_revision(self) -> None:
        (self.root / "versions" / "t002_batchflag.py").write_text(textwrap.dedent(T002))

    def alembic(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the team's ``alembic ARGS`` in this process, as its command line would.

        Alembic's own ``CommandLine`` parses the arguments and runs the command; what it
        prints (the ``--sql`` script, its ``FAILED: ...`` line) is the stdout, an escaped
        exception's traceback the stderr, with the exit code a process would have.
        """
        argv = ["-c", str(self.root / "alembic.ini"), *args]
        line = CommandLine(prog="alembic")
        options = line.parser.parse_args(argv)
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with isolated_logging(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                toml, ini = line._inis_from_config(options)  # as CommandLine.main() does
                config = Config(
                    file_=ini,
                    toml_file=toml,
                    ini_section=options.name,
                    cmd_opts=options,
                    stdout=out,
                )
                line.run_cmd(config, options)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            except Exception:  # shown as the interpreter would show it
                code = 1
                err.write(traceback.format_exc())
        return subprocess.CompletedProcess(argv, code & 0xFF, out.getvalue(), err.getvalue())

    def ok(self, *args: str) -> str:
        done = self.alembic(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


def call(url: URL, statement: str, *args: Any) -> tuple[Any, ...] | None:
    """Run one CALL on its own autocommit connection; return its first row (None: none)."""
    conn = connect(url, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args or None)
            row = cur.fetchone()
            while cur.nextset():
                pass
            return None if row is None else tuple(row)
    finally:
        conn.close()


def seed(url: URL) -> list[int]:
    conn = connect(url, autocommit=True)
    try:
        with conn.cursor() as cur:
            ids = []
            for pipeline, state, flag in DIRTY:
                cur.execute(
                    "INSERT INTO batch_status (pipeline, state, is_current) VALUES (%s, %s, %s)",
                    (pipeline, state, flag),
                )
                ids.append(int(cur.lastrowid))
        return ids
    finally:
        conn.close()


def rows(url: URL) -> list[tuple[Any, ...]]:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, pipeline, state, is_current FROM batch_status ORDER BY id")
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def current_per_pipeline(url: URL) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for row_id, pipeline, _, flag in rows(url):
        if flag:
            found.setdefault(pipeline, []).append(row_id)
    return found


def objects(url: URL) -> dict[str, Any]:
    """SHOW CREATE of every table and routine, and the record row (its time aside)."""
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'")
            found: dict[str, Any] = {}
            for table, _ in cur.fetchall():
                cur.execute(f"SHOW CREATE TABLE `{table}`")
                found[table] = re.sub(r" AUTO_INCREMENT=\d+", "", str(cur.fetchone()[1]))
            cur.execute(
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES "
                "WHERE ROUTINE_SCHEMA = DATABASE() ORDER BY ROUTINE_NAME"
            )
            for (name,) in cur.fetchall():
                cur.execute(f"SHOW CREATE PROCEDURE `{name}`")
                found[f"procedure {name}"] = tuple(cur.fetchone())
            if "currentBatchInstallation" in found:
                cur.execute(
                    "SELECT tableName, idColumn, flagColumn, statusColumn, scopeColumn, "
                    "scopeType FROM currentBatchInstallation"
                )
                found["record"] = [tuple(r) for r in cur.fetchall()]
            if "currentBatchScopeLock" in found:
                cur.execute("SELECT scopeValue, flipCount FROM currentBatchScopeLock ORDER BY 1")
                found["scope locks"] = [tuple(r) for r in cur.fetchall()]
        return found
    finally:
        conn.close()


@pytest.fixture
def fresh_db(server_url: URL) -> Iterator[Callable[[], URL]]:
    """Factory of further fresh databases on the run's server; all dropped afterwards."""
    made: list[str] = []
    admin = connect(server_url, autocommit=True)

    def factory() -> URL:
        name = f"bfa_{uuid.uuid4().hex[:12]}"
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
        made.append(name)
        return server_url.set(database=name)

    yield factory
    with admin.cursor() as cur:
        for name in made:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    admin.close()


def prepared(
    root: Path, url: URL, *, as_alembic_init_writes: bool = False
) -> tuple[TeamProject, list[int], list[tuple[Any, ...]]]:
    """The team's chain at t001 with dirty data, and the batchflag revision added."""
    project = TeamProject(root, url, as_alembic_init_writes=as_alembic_init_writes)
    project.ok("upgrade", "t001")
    ids = seed(url)
    before = rows(url)
    project.add_flag_revision()
    return project, ids, before


@pytest.fixture(params=["online", "sql-script"])
def installed(
    request: pytest.FixtureRequest, tmp_path: Path, db_url: URL
) -> tuple[TeamProject, list[int], list[tuple[Any, ...]]]:
    """The team's project with t002 applied, online or through the client from --sql."""
    project, ids, before = prepared(tmp_path / "team", db_url)
    if request.param == "online":
        project.ok("upgrade", "head")
    else:
        script = project.ok("upgrade", "t001:head", "--sql")
        assert "DELIMITER" in script
        apply_script(db_url, script)
    return project, ids, before


class TestTeamProject:
    def test_cleanup_keeps_the_newest_current_row_of_each_pipeline(
        self, installed: tuple[TeamProject, list[int], list[tuple[Any, ...]]]
    ) -> None:
        """Dirty data: the newest current row per pipeline stays; only extra flags change."""
        project, ids, before = installed
        assert current_per_pipeline(project.url) == {"ingest": [ids[3]], "export": [ids[4]]}
        after = rows(project.url)
        assert [r[:3] for r in after] == [r[:3] for r in before]  # no row lost or changed
        cleared = {r[0] for r, a in zip(before, after, strict=True) if r[3] != a[3]}
        assert cleared == {ids[0], ids[1], ids[2]}

    def test_the_index_refuses_a_second_current_row_per_pipeline_only(
        self, installed: tuple[TeamProject, list[int], list[tuple[Any, ...]]]
    ) -> None:
        """Whoever writes: a second current row in a pipeline fails; another pipeline may."""
        project, ids, _ = installed
        conn = connect(project.url, autocommit=True)
        try:
            with conn.cursor() as cur:
                with pytest.raises(pymysql.err.IntegrityError) as info:
                    cur.execute("UPDATE batch_status SET is_current = 1 WHERE id = %s", (ids[0],))
                assert info.value.args[0] == 1062
                cur.execute("UPDATE batch_status SET is_current = 1 WHERE id = %s", (ids[5],))
                assert cur.rowcount == 1
        finally:
            conn.close()
        assert current_per_pipeline(project.url) == {
            "ingest": [ids[3]],
            "export": [ids[4]],
            "audit": [ids[5]],
        }

    def test_flips_and_resolve_per_scope_from_pymysql(
        self, installed: tuple[TeamProject, list[int], list[tuple[Any, ...]]]
    ) -> None:
        """A flip clears only its pipeline's current row; resolve answers per pipeline."""
        project, ids, _ = installed
        url = project.url
        assert call(url, "CALL set_current_batch(%s)", ids[0]) == (ids[0], ids[3], 1)
        # audit had no current batch
        assert call(url, "CALL set_current_batch(%s)", ids[6]) == (ids[6], None, 1)
        assert current_per_pipeline(url) == {
            "ingest": [ids[0]],
            "export": [ids[4]],
            "audit": [ids[6]],
        }
        assert call(url, "CALL unset_current_batch(%s)", ids[6]) == (ids[6], 1)
        resolve = "CALL resolve_dashboard_batch_in_scope(%s, %s)"
        assert call(url, resolve, None, "audit") == (ids[6], "incomplete")  # its newest Failed
        assert call(url, resolve, None, "export") == (ids[4], "current_flag")
        with pytest.raises(pymysql.err.OperationalError) as info:
            call(url, "CALL resolve_dashboard_batch(NULL)")
        assert info.value.args[0] == 31006
        assert "resolve_dashboard_batch_in_scope" in info.value.args[1]
        with pytest.raises(pymysql.err.OperationalError) as info:
            call(url, resolve, ids[0], "export")  # a batch of another pipeline
        assert info.value.args[0] == 31002

    def test_wrapper_and_cli_take_the_scope(
        self, installed: tuple[TeamProject, list[int], list[tuple[Any, ...]]]
    ) -> None:
        """get_current_batch, resolve_dashboard_batch and the CLI's --scope know the names."""
        project, ids, _ = installed
        engine = create_engine(project.url, poolclass=pool.NullPool)
        try:
            assert get_current_batch(engine, scope="ingest") == ids[3]
            assert get_current_batch(engine, scope="audit") is None
            with pytest.raises(ConfigurationError, match="per pipeline"):
                get_current_batch(engine)
            resolution = resolve_dashboard_batch(engine, scope="ingest")
            assert resolution is not None
            assert (resolution.batch_id, resolution.reason) == (ids[3], "current_flag")
        finally:
            engine.dispose()
        url = project.url.render_as_string(hide_password=False)
        done = run_cli("--url", url, "set-current", str(ids[1]))
        assert done.returncode == 0, done.stderr
        assert f"was batch {ids[3]}" in done.stdout
        done = run_cli("--url", url, "current", "--scope", "ingest")
        assert (done.returncode, done.stdout.strip()) == (0, str(ids[1]))
        done = run_cli("--url", url, "current", "--scope", "export")
        assert (done.returncode, done.stdout.strip()) == (0, str(ids[4]))
        done = run_cli("--url", url, "resolve", "--scope", "audit")
        assert (done.returncode, done.stdout.strip()) == (0, f"batch {ids[6]} (incomplete)")
        done = run_cli("--url", url, "current")
        assert done.returncode != 0
        assert "--scope" in done.stderr

    def test_alembic_check_is_clean(
        self, installed: tuple[TeamProject, list[int], list[tuple[Any, ...]]]
    ) -> None:
        """The team's autogenerate proposes nothing about batchflag-db's objects."""
        project, _, _ = installed
        done = project.alembic("check")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "No new upgrade operations detected" in done.stdout + done.stderr

    def test_doctor_is_healthy(
        self, installed: tuple[TeamProject, list[int], list[tuple[Any, ...]]]
    ) -> None:
        """Doctor checks the objects against the recorded names, without its own version table."""
        project, _, _ = installed
        report = diagnose(create_engine(project.url, poolclass=pool.NullPool))
        assert report.healthy, report.lines()
        text = "\n".join(report.lines())
        assert "your own Alembic chain" in text
        assert "resolve_dashboard_batch_in_scope matches" in text
        assert "uq_batch_status_currentBatchKey on (pipeline, currentBatchKey)" in text

    def test_doctor_names_what_is_missing(
        self, installed: tuple[TeamProject, list[int], list[tuple[Any, ...]]]
    ) -> None:
        """Remove part of the installation by hand: doctor names each missing object."""
        project, _, _ = installed
        conn = connect(project.url, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("DROP PROCEDURE unset_current_batch")
                cur.execute("DROP TABLE currentBatchScopeLock")
                cur.execute("ALTER TABLE batch_status DROP INDEX uq_batch_status_currentBatchKey")
        finally:
            conn.close()
        done = run_cli("--url", project.url.render_as_string(hide_password=False), "doctor")
        assert done.returncode == 3  # doctor exits with the number of problems
        problems = [line for line in done.stdout.splitlines() if line.startswith("PROBLEM")]
        assert len(problems) == 3, done.stdout
        assert any("unset_current_batch is missing" in p for p in problems)
        assert any("currentBatchScopeLock is missing" in p for p in problems)
        assert any("uq_batch_status_currentBatchKey is missing" in p for p in problems)
        assert all("op.create_current_flag" in p for p in problems)

    def test_downgrade_base_keeps_every_row_and_flag(
        self, installed: tuple[TeamProject, list[int], list[tuple[Any, ...]]]
    ) -> None:
        """alembic downgrade base removes batchflag-db's objects; rows and flags stay."""
        project, ids, _ = installed
        call(project.url, "CALL set_current_batch(%s)", ids[7])
        before = rows(project.url)
        project.ok("downgrade", "base")
        assert rows(project.url) == before
        left = objects(project.url)
        assert not [k for k in left if k.startswith("procedure")]
        assert "currentBatchInstallation" not in left
        assert "currentBatchScopeLock" not in left
        assert "currentBatchKey" not in left["batch_status"]
        assert left["currentBatchHistory"]  # it has a row: kept
        project.ok("stamp", "t001")  # the team's t001 kept its table
        project.ok("upgrade", "head")  # and back: the flags are as they were
        assert rows(project.url) == before


def history_rows(url: URL) -> list[tuple[Any, ...]]:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT batchId, previousBatchId, action, account FROM currentBatchHistory "
                "ORDER BY id"
            )
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


class TestTheDataCheckIsNeverSilent:
    """With the env.py ``alembic init`` writes (fileConfig disables existing loggers)."""

    def test_upgrade_prints_each_cleared_id_and_records_it(
        self, tmp_path: Path, db_url: URL
    ) -> None:
        """alembic upgrade names every cleared batch in its output; history has a row each."""
        project, ids, _ = prepared(tmp_path / "team", db_url, as_alembic_init_writes=True)
        done = project.alembic("upgrade", "head")
        assert done.returncode == 0, done.stderr
        output = done.stdout + done.stderr
        for cleared in (ids[0], ids[1], ids[2]):
            assert f"cleared is_current on batch {cleared} (was 1)" in output
        for kept in (ids[3], ids[4]):
            assert f"on batch {kept} " not in output
        history = history_rows(db_url)
        assert [r[:3] for r in history] == [(i, i, "unset") for i in (ids[0], ids[1], ids[2])]
        reasons = [str(r[3]) for r in history]
        assert all("several batches were current in its pipeline" in r for r in reasons)
        assert reasons[0].endswith(f"kept batch {ids[3]})")
        assert reasons[2].endswith(f"kept batch {ids[4]})")

    def test_downgrade_says_it_kept_the_history(self, tmp_path: Path, db_url: URL) -> None:
        """alembic downgrade names the history table it keeps because it has rows."""
        project, _, _ = prepared(tmp_path / "team", db_url, as_alembic_init_writes=True)
        project.ok("upgrade", "head")
        done = project.alembic("downgrade", "t001")
        assert done.returncode == 0, done.stderr
        assert "kept table currentBatchHistory: it holds 3 rows" in done.stdout + done.stderr

    def test_script_records_the_cleared_ids(self, tmp_path: Path, db_url: URL) -> None:
        """Offline (--sql), the script writes the same history rows as it clears."""
        project, ids, _ = prepared(tmp_path / "team", db_url, as_alembic_init_writes=True)
        apply_script(db_url, project.ok("upgrade", "t001:head", "--sql"))
        assert [r[:3] for r in history_rows(db_url)] == [
            (i, i, "unset") for i in (ids[0], ids[1], ids[2])
        ]


class TestColumnTypes:
    """A column whose type its option cannot use: refused before any change, naming both."""

    @pytest.mark.parametrize(
        ("names", "says"),
        [
            (
                'flag_column="state", status_column="is_current"',
                "column `state` of batch_status is varchar(16)",
            ),
            (
                'flag_column="is_current", status_column="created_at"',
                "column `created_at` of batch_status is datetime",
            ),
            (
                'flag_column="is_current", status_column="state", scope_column="created_at", '
                'scope_type="datetime"',
                "column `created_at` of batch_status is datetime",
            ),
        ],
    )
    def test_refused_before_any_change(
        self, tmp_path: Path, db_url: URL, names: str, says: str
    ) -> None:
        """alembic upgrade fails with the column and its type; no object, no flag changed."""
        project, _, before = prepared(tmp_path / "team", db_url)
        revision = T002.replace(
            f'op.create_current_flag({NAMES}, scope_type="{SCOPE_TYPE}")',
            f'op.create_current_flag(table="batch_status", {names})',
        )
        assert revision != T002
        (project.root / "versions" / "t002_batchflag.py").write_text(textwrap.dedent(revision))
        tables_before = set(objects(db_url))
        done = project.alembic("upgrade", "head")
        assert done.returncode != 0
        assert says in done.stderr
        assert "1292" not in done.stderr
        assert rows(db_url) == before
        assert set(objects(db_url)) == tables_before


def tables(url: URL) -> set[str]:
    return {k for k in objects(url) if not k.startswith(("procedure", "record", "scope"))}


@pytest.fixture
def chain_installed(tmp_path: Path, db_url: URL) -> tuple[TeamProject, list[int]]:
    """The team's chain at t002: installed by op.create_current_flag, online."""
    project, ids, _ = prepared(tmp_path / "team", db_url)
    project.ok("upgrade", "head")
    return project, ids


class TestCommandsOnAChainInstallation:
    """Every command reads the installation the team's own chain recorded."""

    def test_revision_names_the_teams_revision(
        self, chain_installed: tuple[TeamProject, list[int]]
    ) -> None:
        """batchflag revision says the team's chain installed it, at t002, and exits 0."""
        project, _ = chain_installed
        done = run_cli("--url", url_text(project.url), "revision")
        assert done.returncode == 0, done.stderr
        assert "your own Alembic chain (alembic_version is at t002)" in done.stdout
        assert "never migrated" not in done.stdout

    @pytest.mark.parametrize(
        "args",
        [
            (
                "upgrade",
                "--table",
                "batch_status",
                "--flag-column",
                "is_current",
                "--status-column",
                "state",
            ),
            ("upgrade",),
            ("downgrade", "base"),
        ],
    )
    def test_standalone_migrations_refuse(
        self, chain_installed: tuple[TeamProject, list[int]], args: tuple[str, ...]
    ) -> None:
        """upgrade and downgrade exit 1 naming the owner; no batchflag_alembic_version appears."""
        project, _ = chain_installed
        before = objects(project.url)
        done = run_cli("--url", url_text(project.url), *args)
        assert done.returncode == 1, done.stdout
        assert "your own Alembic chain (alembic_version is at t002)" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert "batchflag_alembic_version" not in tables(project.url)
        assert objects(project.url) == before

    def test_grant_sql_applies_with_the_client(
        self, chain_installed: tuple[TeamProject, list[int]]
    ) -> None:
        """grant --sql prints grants on batch_status; the mariadb/mysql client applies them."""
        project, _ = chain_installed
        user = f"app_{uuid.uuid4().hex[:8]}"
        call(project.url, f"CREATE USER '{user}'@'%' IDENTIFIED BY 'app-pw'")
        try:
            done = run_cli("--url", url_text(project.url), "grant", f"'{user}'@'%'", "--sql")
            assert done.returncode == 0, done.stderr
            assert "`batch_status`" in done.stdout
            assert "batchStatus" not in done.stdout
            apply_script(project.url, done.stdout)
            app = project.url.set(username=user, password="app-pw")  # noqa: S106 - test account
            assert call(app, "SELECT COUNT(*) FROM batch_status") == (len(DIRTY),)
        finally:
            call(project.url, f"DROP USER IF EXISTS '{user}'@'%'")

    def test_demo_refuses_with_a_working_suggestion(
        self, chain_installed: tuple[TeamProject, list[int]]
    ) -> None:
        """demo --url leaves the team's database alone and says to run it without a URL."""
        project, _ = chain_installed
        before = objects(project.url), rows(project.url)
        done = run_cli("--url", url_text(project.url), "demo")
        assert done.returncode == 1
        assert "run `batchflag demo` with no --url" in done.stderr
        assert (objects(project.url), rows(project.url)) == before

    def test_doctor_as_a_granted_account(
        self, chain_installed: tuple[TeamProject, list[int]]
    ) -> None:
        """An account given what batchflag grant gives: a note on the revision, exit 0."""
        project, _ = chain_installed
        user = f"mon_{uuid.uuid4().hex[:8]}"
        call(project.url, f"CREATE USER '{user}'@'%' IDENTIFIED BY 'mon-pw'")
        try:
            granted = run_cli("--url", url_text(project.url), "grant", f"'{user}'@'%'")
            assert granted.returncode == 0, granted.stderr
            app = project.url.set(username=user, password="mon-pw")  # noqa: S106 - test account
            done = run_cli("--url", url_text(app), "doctor")
            assert "may not read batchflag_alembic_version" not in done.stderr
            assert "note    revision: this account may not read" in done.stdout
            assert done.returncode == 0, done.stdout + done.stderr
        finally:
            call(project.url, f"DROP USER IF EXISTS '{user}'@'%'")


def test_doctor_on_the_teams_table_names_create_current_flag(tmp_path: Path, db_url: URL) -> None:
    """The team's table and nothing installed: the fix is op.create_current_flag (or --table)."""
    project = TeamProject(tmp_path / "team", db_url)
    project.ok("upgrade", "t001")
    done = run_cli("--url", url_text(db_url), "doctor")
    assert done.returncode == 3
    problems = [line for line in done.stdout.splitlines() if line.startswith("PROBLEM")]
    assert len(problems) == 1, done.stdout
    assert 'op.create_current_flag(table="batch_status"' in problems[0]
    assert "upgrade --table batch_status" in problems[0]
    assert "downgrade base" not in done.stdout


def test_online_and_script_give_the_same_objects(
    tmp_path: Path, fresh_db: Callable[[], URL]
) -> None:
    """The same revision applied online and as a --sql script makes the same objects."""
    online_url, script_url = fresh_db(), fresh_db()
    online, _, _ = prepared(tmp_path / "online", online_url)
    online.ok("upgrade", "head")
    script_side, _, _ = prepared(tmp_path / "script", script_url)
    script = script_side.ok("upgrade", "t001:head", "--sql")
    apply_script(script_url, script)
    a, b = objects(online_url), objects(script_url)
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key] == b[key], key
    assert a["record"] == [("batch_status", "id", "is_current", "state", "pipeline", SCOPE_TYPE)]
    assert [v for v, _ in a["scope locks"]] == ["audit", "export", "ingest"]


def test_online_reads_the_scope_type_from_the_server(tmp_path: Path, db_url: URL) -> None:
    """Without scope_type, online installation takes the column's type from the server."""
    project, ids, _ = prepared(tmp_path / "team", db_url)
    (project.root / "versions" / "t002_batchflag.py").write_text(
        textwrap.dedent(T002).replace(f', scope_type="{SCOPE_TYPE}"', "")
    )
    project.ok("upgrade", "head")
    assert objects(db_url)["record"][0][5] == SCOPE_TYPE
    done = project.alembic("upgrade", "t001:head", "--sql")  # offline it cannot read it
    assert done.returncode != 0
    assert "scope_type" in done.stderr
    del ids


GLOBAL_NAMES = 'table="batch_status", flag_column="is_current", status_column="state"'

T002_GLOBAL = f'''
"""batchflag-db on batch_status: one current batch in all"""
from alembic import op

import batchflag_db.alembic  # noqa: F401

revision = "t002"
down_revision = "t001"

def upgrade():
    op.create_current_flag({GLOBAL_NAMES})

def downgrade():
    op.drop_current_flag({GLOBAL_NAMES})
'''

T003_SCOPED = f'''
"""one current batch per pipeline from now on"""
from alembic import op

import batchflag_db.alembic  # noqa: F401

revision = "t003"
down_revision = "t002"

def upgrade():
    op.drop_current_flag({GLOBAL_NAMES})
    op.create_current_flag({NAMES})

def downgrade():
    op.drop_current_flag({NAMES})
    op.create_current_flag({GLOBAL_NAMES})
'''

T003_ROUTINES = f'''
"""routines again from version 3"""
from alembic import op

import batchflag_db.alembic  # noqa: F401

revision = "t003"
down_revision = "t002"

def upgrade():
    op.replace_current_flag_routines({NAMES}, version=3, previous=3)

def downgrade():
    op.replace_current_flag_routines({NAMES}, version=3, previous=3)
'''


class TestMovingBetweenRevisions:
    def test_global_to_scoped_and_back_is_a_revision(self, tmp_path: Path, db_url: URL) -> None:
        """t002 installs one current batch in all; t003 makes it one per pipeline; and back."""
        project = TeamProject(tmp_path / "team", db_url)
        project.ok("upgrade", "t001")
        ids = seed(db_url)
        (project.root / "versions" / "t002_batchflag.py").write_text(textwrap.dedent(T002_GLOBAL))
        project.ok("upgrade", "t002")
        assert current_per_pipeline(db_url) == {"export": [ids[4]]}  # the newest of all
        (project.root / "versions" / "t003_scoped.py").write_text(textwrap.dedent(T003_SCOPED))
        project.ok("upgrade", "head")
        for batch in (ids[0], ids[6]):  # ingest and audit get theirs
            call(db_url, "CALL set_current_batch(%s)", batch)
        assert current_per_pipeline(db_url) == {
            "ingest": [ids[0]],
            "export": [ids[4]],
            "audit": [ids[6]],
        }
        assert diagnose(create_engine(db_url, poolclass=pool.NullPool)).healthy
        project.ok("downgrade", "t002")  # back to one in all: the newest current row stays
        assert current_per_pipeline(db_url) == {"audit": [ids[6]]}
        report = diagnose(create_engine(db_url, poolclass=pool.NullPool))
        assert report.healthy, report.lines()
        assert "uq_batch_status_currentBatchKey on (currentBatchKey)" in "\n".join(report.lines())

    def test_replace_routines_restores_them(self, tmp_path: Path, db_url: URL) -> None:
        """op.replace_current_flag_routines re-creates every routine from its templates."""
        project, _, _ = prepared(tmp_path / "team", db_url)
        project.ok("upgrade", "head")
        conn = connect(db_url, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("DROP PROCEDURE resolve_dashboard_batch_in_scope")
        finally:
            conn.close()
        assert not diagnose(create_engine(db_url, poolclass=pool.NullPool)).healthy
        (project.root / "versions" / "t003_routines.py").write_text(textwrap.dedent(T003_ROUTINES))
        project.ok("upgrade", "head")
        report = diagnose(create_engine(db_url, poolclass=pool.NullPool))
        assert report.healthy, report.lines()
        project.ok("downgrade", "t002")
        (project.root / "versions" / "t003_routines.py").write_text(
            textwrap.dedent(T003_ROUTINES).replace("version=3,", "version=9,")
        )
        done = project.alembic("upgrade", "head")
        assert done.returncode != 0
        assert "routine version 9" in done.stderr


TYPED_REVISION = '''
"""batchflag-db on batch_status, as mypy --strict checks it"""
from batchflag_db.alembic import op

revision = "t002"
down_revision = "t001"


def upgrade() -> None:
    op.create_current_flag(
        table="batch_status", flag_column="is_current", status_column="state",
        scope_column="pipeline", scope_type="varchar(32)", keep_current=None,
    )
    op.replace_current_flag_routines(table="batch_status", version=3, previous=3)


def downgrade() -> None:
    op.drop_current_flag(table="batch_status", flag_column="is_current", status_column="state")
    op.execute("SELECT 1")  # Alembic's own operations keep their types
'''


class TestTypedOperations:
    """The operations declare their parameters: for editors, inspect and mypy --strict."""

    @pytest.mark.parametrize(
        "name", ["create_current_flag", "drop_current_flag", "replace_current_flag_routines"]
    )
    def test_signature_lists_the_names(self, name: str) -> None:
        """inspect.signature of Operations.<name> lists every name, as FlagOperations declares."""
        registered = inspect.signature(getattr(Operations, name)).parameters
        assert list(registered)[:6] == [
            "self",
            "table",
            "id_column",
            "flag_column",
            "status_column",
            "scope_column",
        ]
        declared = inspect.signature(getattr(FlagOperations, name)).parameters
        assert [(p.name, p.kind) for p in registered.values()] == [
            (p.name, p.kind) for p in declared.values()
        ]

    def _mypy(self, tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "t002_batchflag.py"
        path.write_text(source)
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=tmp_path,
        )

    @pytest.mark.slow  # mypy in a subprocess: about 10 s
    def test_mypy_strict_passes_on_a_revision(self, tmp_path: Path) -> None:
        """A revision calling op.create_current_flag (op from batchflag_db.alembic) type-checks."""
        done = self._mypy(tmp_path, textwrap.dedent(TYPED_REVISION))
        assert done.returncode == 0, done.stdout + done.stderr

    @pytest.mark.slow  # mypy in a subprocess: about 10 s
    def test_mypy_strict_catches_a_misspelled_name(self, tmp_path: Path) -> None:
        """The same revision with flag_colum= fails the check, naming the argument."""
        wrong = textwrap.dedent(TYPED_REVISION).replace(
            'flag_column="is_current", status', 'flag_colum="is_current", status', 1
        )
        done = self._mypy(tmp_path, wrong)
        assert done.returncode == 1
        assert 'Unexpected keyword argument "flag_colum"' in done.stdout


class TestIncludeObject:
    def test_batchflag_objects_are_left_out_and_the_teams_kept(self) -> None:
        """include_object says False for batchflag-db's objects only."""
        table = Table(
            "batch_status",
            MetaData(),
            Column("id", Integer, primary_key=True),
            Column("state", Integer),
            Column("currentBatchKey", Integer),
        )
        ours: list[tuple[Any, str, str]] = [
            (None, "currentBatchLock", "table"),
            (None, "currentBatchScopeLock", "table"),
            (None, "currentBatchHistory", "table"),
            (None, "currentBatchInstallation", "table"),
            (None, "batchflag_alembic_version", "table"),
            (table.c.currentBatchKey, "currentBatchKey", "column"),
            (Index("uq_batch_status_currentBatchKey", table.c.currentBatchKey), "", "index"),
            (Index("ix_batch_status_batchflag_status", table.c.state), "", "index"),
            (Index("ix_batchStatus_batchStatus_id", table.c.state), "", "index"),
        ]
        for obj, name, kind in ours:
            shown = name or obj.name
            assert include_object(obj, shown, kind, True, None) is False, shown
        theirs: list[tuple[Any, str, str]] = [
            (table, "batch_status", "table"),
            (table.c.state, "state", "column"),
            (Index("ix_batch_status_state_id", table.c.state, table.c.id), "", "index"),
        ]
        for obj, name, kind in theirs:
            shown = name or obj.name
            assert include_object(obj, shown, kind, True, None) is True, shown


def test_aio_get_current_batch_takes_the_scope(tmp_path: Path, db_url: URL) -> None:
    """batchflag_db.aio.get_current_batch knows the recorded names and the scope too."""
    project, ids, _ = prepared(tmp_path / "team", db_url)
    project.ok("upgrade", "head")

    async def main() -> tuple[int | None, int | None]:
        engine = create_async_engine(
            db_url.set(drivername="mysql+aiomysql"), poolclass=pool.NullPool
        )
        try:
            found = await aio.get_current_batch(engine, scope="ingest")
            missing = await aio.get_current_batch(engine, scope="audit")
            with pytest.raises(ConfigurationError, match="per pipeline"):
                await aio.get_current_batch(engine)
            return found, missing
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == (ids[3], None)


def test_offline_downgrade_script_removes_it_and_keeps_the_rows(
    tmp_path: Path, db_url: URL
) -> None:
    """`alembic downgrade head:t001 --sql`, fed to the client, undoes the installation."""
    project, _, _ = prepared(tmp_path / "team", db_url)
    project.ok("upgrade", "head")
    before = rows(db_url)
    apply_script(db_url, project.ok("downgrade", "t002:t001", "--sql"))
    assert rows(db_url) == before
    left = objects(db_url)
    assert not [k for k in left if k.startswith("procedure")]
    assert "currentBatchInstallation" not in left
    assert "currentBatchScopeLock" not in left
    assert "currentBatchKey" not in left["batch_status"]
    assert "batchflag_status" not in left["batch_status"]
