"""The project's tests run on the opt-in plugin's fixtures, plus a few helpers of their own."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import subprocess
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pymysql
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import URL

from batchflag_db.cli import cli
from batchflag_db.testing.binaries import (
    ServerBinaries,
    ServerNotAvailableError,
    binaries_for,
    find_host_binaries,
)
from batchflag_db.testing.kinds import DEFAULT_KIND, KIND_VARIABLE, kind_named
from batchflag_db.testing.selection import plain_loopback_options

pytest_plugins = ["batchflag_db.testing.plugin"]


@functools.cache
def session_binaries() -> ServerBinaries:
    """The binaries of the run's server kind (the plugin exports it), for its client tools."""
    name = os.environ.get(KIND_VARIABLE)
    try:
        return binaries_for(kind_named(name)) if name else find_host_binaries()
    except ServerNotAvailableError as exc:
        pytest.fail(f"no client tools for the run's server: {exc}")


def connect(url: URL, **kwargs: Any) -> pymysql.Connection:
    """A PyMySQL connection to ``url`` (its database, if any); no TLS for a root login on
    this machine (:func:`~batchflag_db.testing.selection.plain_loopback_options`)."""
    return pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        database=url.database,
        **{**plain_loopback_options(url), **kwargs},
    )


@pytest.fixture
def connect_db(migrated_url: URL) -> Iterator[Callable[..., pymysql.Connection]]:
    """Factory of PyMySQL connections to the migrated database; all closed afterwards."""
    opened: list[pymysql.Connection] = []

    def factory(**kwargs: Any) -> pymysql.Connection:
        conn = connect(migrated_url, **kwargs)
        opened.append(conn)
        return conn

    yield factory
    for conn in opened:
        with contextlib.suppress(pymysql.err.Error):  # already closed by the test
            conn.close()


@pytest.fixture
def add_batches(connect_db: Callable[..., pymysql.Connection]) -> Callable[[int], list[int]]:
    """Insert N batches (not current) and return their ids."""

    def factory(n: int) -> list[int]:
        return insert_batches(connect_db(autocommit=True), n)

    return factory


@pytest.fixture
def db(connect_db: Callable[..., pymysql.Connection]) -> pymysql.Connection:
    """An autocommit PyMySQL connection to a fresh database at head."""
    return connect_db(autocommit=True)


def insert_statuses(conn: pymysql.Connection, *statuses: str | None) -> list[int]:
    """Insert one batch per status (in order, so ids ascend) and return their ids."""
    ids = []
    with conn.cursor() as cur:
        for number, status in enumerate(statuses, start=1):
            cur.execute(
                "INSERT INTO batchStatus (batchDate, batchNumber, batchStatus) "
                "VALUES ('2026-11-28', %s, %s)",
                (number, status),
            )
            ids.append(int(cur.lastrowid))
    return ids


def call_procedure(conn: pymysql.Connection, sql: str) -> list[tuple[Any, ...]]:
    """Run a CALL on a PyMySQL connection; return its first result set, drain the rest."""
    with conn.cursor() as cur:
        cur.execute(sql)
        rows = list(cur.fetchall()) if cur.description else []
        while cur.nextset():
            pass
    return rows


def apply_script(url: URL, script: str) -> subprocess.CompletedProcess[str]:
    """Feed ``script`` to the run's kind's command-line client as a DBA would
    (`mariadb DB < script.sql`); assert it succeeded and return what it printed."""
    done = subprocess.run(
        client_args(url), input=script, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def client_args(url: URL, tool: str | None = None) -> list[str]:
    """The run's kind's command-line client (or ``tool``, e.g. its dump tool) reaching ``url``."""
    binaries = session_binaries()
    try:
        args = binaries.client(tool or binaries.client_name, url, "--batch")
    except ServerNotAvailableError as exc:
        pytest.fail(str(exc))
    return [*args, url.database] if url.database else args


@pytest.fixture
def mysql_client(migrated_url: URL) -> Callable[[str], subprocess.CompletedProcess[str]]:
    """Run SQL through the mariadb/mysql command-line client against the migrated database."""

    def run(sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            client_args(migrated_url),
            input=sql,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


def insert_batches(conn: pymysql.Connection, n: int) -> list[int]:
    """Insert ``n`` batches (not current) through ``conn`` and return their ids."""
    ids = []
    with conn.cursor() as cur:
        for i in range(n):
            cur.execute(
                "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-11-28', %s)",
                (i + 1,),
            )
            ids.append(int(cur.lastrowid))
    return ids


def url_text(url: URL) -> str:
    """``url`` as text with its password, as ``--url`` takes it."""
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def isolated_logging() -> Iterator[None]:
    """Undo, on exit, whatever a command run in this process did to logging.

    A command run in-process as its own process would run (``alembic`` with a team's
    env.py, ``batchflag``) may call ``logging.config.fileConfig()``, which by default
    disables every logger that exists already, ``batchflag_db``'s among them, and
    replaces the root's handlers: later tests in the same process would see no log
    records. Each logger's level, handlers, propagation and ``disabled`` flag, the
    root's, and ``logging.disable``'s level are put back as they were.
    """
    manager = logging.Logger.manager
    root = logging.getLogger()

    def state(logger: logging.Logger) -> tuple[int, list[logging.Handler], bool, bool]:
        return logger.level, list(logger.handlers), logger.propagate, logger.disabled

    saved = {
        name: state(logger)
        for name, logger in manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    saved_root = state(root)
    saved_disable = manager.disable
    try:
        yield
    finally:
        logging.disable(saved_disable)
        for name, logger in list(manager.loggerDict.items()):
            if not isinstance(logger, logging.Logger):
                continue
            level, handlers, propagate, disabled = saved.get(
                name, (logging.NOTSET, [], True, False)
            )
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
            logger.disabled = disabled
        level, handlers, _, _ = saved_root
        root.setLevel(level)
        root.handlers[:] = handlers


def run_cli(
    *args: str, env: Mapping[str, str | None] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``batchflag ARGS`` in this process through Click's CliRunner (the console
    script's code, without starting an interpreter).

    The result reads as a process's would: the exit code as ``returncode``, stdout and
    stderr apart. An exception the command lets escape is on stderr as the interpreter
    would print it (``Traceback ...``, exit code 1), so a test can still assert that
    there is none. ``env`` sets (or, with None, unsets) variables for the run only.
    """
    with isolated_logging():
        result = CliRunner().invoke(
            cli, list(args), env=env, input=input, prog_name="batchflag", catch_exceptions=True
        )
    stderr = result.stderr
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, stderr)


def current_rows(conn: pymysql.Connection) -> list[int]:
    """Ids of every row flagged current, read by a full scan of the flag (not the key)."""
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM batchStatus WHERE currentBatch <> 0 ORDER BY id")
        return [int(r[0]) for r in cur.fetchall()]


def check_table(conn: pymysql.Connection, table: str = "batchStatus") -> list[tuple[Any, ...]]:
    """Run CHECK TABLE ... EXTENDED and return its rows (the last says OK when healthy)."""
    with conn.cursor() as cur:
        cur.execute(f"CHECK TABLE `{table}` EXTENDED")
        return list(cur.fetchall())


TORN_SNAPSHOT_KINDS = frozenset({"mariadb-10.11"})
"""Server kinds seen giving a plain SELECT a torn snapshot (docs/guarantees.md)."""


def torn_snapshot(conn: pymysql.Connection, ids: str | None, count: int, newest: int) -> bool:
    """Tell whether a poll's snapshot contradicts the flip history up to its own newest flip.

    Flips commit one at a time (the lock row), each with its history row, so the history
    up to any flip is the state after it. A snapshot that holds flip ``newest`` yet shows
    a batch current that some earlier flip had cleared (and no later one set again) saw
    ``newest`` without an earlier one: the server's read view was torn. A bad poll our
    flips could cause (two rows current in some committed state) is not of that kind.
    """
    del count
    seen = [int(i) for i in (ids or "").split(",") if i]
    with conn.cursor() as cur:
        for batch in seen:
            cur.execute(
                "SELECT `action`, batchId FROM currentBatchHistory WHERE id <= %s "
                "AND (batchId = %s OR previousBatchId = %s) ORDER BY id DESC LIMIT 1",
                (newest, batch, batch),
            )
            last = cur.fetchone()
            if last is not None and not (last[0] == "set" and int(last[1]) == batch):
                return True
    return False


#: Markers of the slow families; a test with none of them is also marked ``quick``.
SLOW_MARKERS = ("slow", "stress", "crash", "galera", "grouprepl", "replica")

#: Families that run one cluster of their own whatever the run's kind: only on that kind.
CLUSTER_FAMILY_KIND = {"galera": "mariadb-10.11", "grouprepl": "mysql-9.7"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the quick tests; keep a cluster family to the one kind its cluster is made of.

    The Galera cluster is always containers of the mariadb-10.11 image and the Group
    Replication group always of the mysql-9.7 image, whatever the run's kind, so they run
    in that kind's run only (the header of every other run says how many it left to that
    run).
    """
    kind = os.environ.get(KIND_VARIABLE) or DEFAULT_KIND
    keep: list[pytest.Item] = []
    moved: dict[str, list[pytest.Item]] = {}
    for item in items:
        if not any(item.get_closest_marker(m) for m in SLOW_MARKERS):
            item.add_marker(pytest.mark.quick)
        family = next((f for f in CLUSTER_FAMILY_KIND if item.get_closest_marker(f)), None)
        if family is not None and CLUSTER_FAMILY_KIND[family] != kind:
            moved.setdefault(family, []).append(item)
        else:
            keep.append(item)
    if moved:
        config.hook.pytest_deselected(items=[i for group in moved.values() for i in group])
        items[:] = keep
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        for family, group in moved.items():
            line = (
                f"batchflag-db: {len(group)} {family} tests run in the "
                f"{CLUSTER_FAMILY_KIND[family]} run (their cluster is that kind), not on {kind}"
            )
            if reporter is not None:
                reporter.write_line(line)
