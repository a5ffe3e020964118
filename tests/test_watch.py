"""`batchflag watch`, driven in a pseudo-terminal the way an operator runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pexpect
import pymysql
import pytest
from sqlalchemy.engine import URL, Engine

from batchflag_db import migrate, set_current_batch
from batchflag_db.dashboard import render_watch
from tests.conftest import insert_statuses

TIMEOUT = 20
# Each refresh starts with "cursor home, clear screen" and the header line.
SCREEN = r"\x1b\[H\x1b\[2Jbatchflag watch [^\r\n]*\r\n\r\n"


def command(url: URL, *args: str) -> list[str]:
    """The real `batchflag` command line (the console script's entry point), for ``url``."""
    return [
        sys.executable,
        "-c",
        "from batchflag_db.cli import main; main()",
        "--url",
        url.render_as_string(hide_password=False),
        *args,
    ]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def watch(migrated_url: URL) -> Iterator[Callable[..., pexpect.spawn]]:
    """Factory: start `batchflag watch ARGS` in a 40x160 pseudo-terminal; killed afterwards."""
    children: list[pexpect.spawn] = []

    def start(*args: str) -> pexpect.spawn:
        argv = command(migrated_url, "watch", *args)
        child = pexpect.spawn(
            argv[0],
            argv[1:],
            # COLUMNS/LINES (set under pytest-xdist) would override the terminal's size.
            env={
                **{k: v for k, v in os.environ.items() if k not in {"COLUMNS", "LINES"}},
                "TERM": "xterm",
            },
            dimensions=(40, 160),
            encoding="utf-8",
            timeout=TIMEOUT,
            # A terminal's Ctrl-C: started from a background job (`cmd &` in a script),
            # the test would pass SIGINT on ignored, and Python then never raises
            # KeyboardInterrupt for it.
            preexec_fn=_default_sigint,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.isalive():
            child.terminate(force=True)


@pytest.mark.slow
class TestInATerminal:
    def test_shows_a_flip_made_while_it_runs(
        self, watch: Callable[..., pexpect.spawn], engine: Engine, db: pymysql.Connection
    ) -> None:
        """The screen shows no current batch, then the batch flipped meanwhile and its flip."""
        a, b = insert_statuses(db, "InProgress", "Pending")
        child = watch("--interval", "0.3")
        child.expect(SCREEN + r"Current batch:    none\r\n")
        child.expect(rf"Dashboard shows:  batch {a}  status InProgress  date 2026-11-28  number 1")
        child.expect(r"\(in_progress\)")
        child.expect(r"Last flips: none recorded")
        set_current_batch(engine, b)
        child.expect(SCREEN + rf"Current batch:    batch {b}  status Pending")
        child.expect(rf"Dashboard shows:  batch {b}  status Pending[^\r\n]*\(current_flag\)")
        child.expect(r"Last flips \(newest first, UTC\):\r\n")
        child.expect(rf"  \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{6}}  set    {b} +\(was none\)")
        set_current_batch(engine, a)
        child.expect(SCREEN + rf"Current batch:    batch {a}  status InProgress")
        child.expect(rf"set    {a} +\(was {b}\)[^\r\n]*\r\n[^\r\n]*set    {b} +\(was none\)")
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert "Traceback" not in (child.before or "")

    def test_an_error_is_shown_and_the_watch_recovers(
        self, watch: Callable[..., pexpect.spawn], db: pymysql.Connection
    ) -> None:
        """A failing refresh shows ERROR on screen and keeps trying; once fixed, the error goes."""
        insert_statuses(db, "Completed")
        child = watch("--interval", "0.3")
        child.expect(SCREEN + r"Current batch:    none")
        with db.cursor() as cur:
            cur.execute("RENAME TABLE currentBatchHistory TO currentBatchHistory_away")
        child.expect(SCREEN + r"ERROR: schema not migrated[^\r\n]*\r\n")
        child.expect(r"\(retrying; the screen below may be out of date\)\r\nCurrent batch:")
        with db.cursor() as cur:
            cur.execute("RENAME TABLE currentBatchHistory_away TO currentBatchHistory")
        child.expect(SCREEN + r"Current batch:    none")  # straight to the view: no ERROR line
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0

    def test_warns_about_a_change_the_history_missed(
        self, watch: Callable[..., pexpect.spawn], engine: Engine, db: pymysql.Connection
    ) -> None:
        """A direct UPDATE of currentBatch makes the screen say the history does not have it."""
        a, b = insert_statuses(db, "Completed", "Completed")
        set_current_batch(engine, a)
        child = watch("--interval", "0.3")
        line = r"[^\r\n]*\r\n"
        # Recorded: the dashboard line is followed by the blank line, no warning between.
        child.expect(SCREEN + rf"Current batch:    batch {a} {line}Dashboard shows: {line}\r\n")
        with db.cursor() as cur:
            cur.execute(f"UPDATE batchStatus SET currentBatch = 0 WHERE id = {a}")
            cur.execute(f"UPDATE batchStatus SET currentBatch = 1 WHERE id = {b}")
        child.expect(
            SCREEN + rf"Current batch:    batch {b} {line}Dashboard shows: {line}"
            r"WARNING: the flag differs from the last recorded flip"
        )
        child.sendintr()
        child.expect(pexpect.EOF)


class TestWithoutATerminal:
    def test_once_prints_plain_text(self, migrated_url: URL, db: pymysql.Connection) -> None:
        """Piped, `watch --once` prints one screen without control codes and exits 0."""
        (a,) = insert_statuses(db, "Failed")
        done = subprocess.run(
            command(migrated_url, "watch", "--once"),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stdout
        assert f"Dashboard shows:  batch {a}  status Failed" in done.stdout
        assert done.stdout.count("batchflag watch") == 1

    def test_once_failing_exits_1(self, db_url: URL) -> None:
        """`watch --once` on a database at revision 0003 shows the error and exits 1."""
        migrate.upgrade(db_url, "0003")
        done = subprocess.run(
            command(db_url, "watch", "--once"),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 1
        assert re.search(r"^ERROR: schema not migrated: run `batchflag upgrade`", done.stdout, re.M)


class TestRendering:
    def test_no_snapshot_yet(self) -> None:
        """Before any read succeeded, the screen is the header and the error."""
        screen = render_watch(None, interval=2, error="cannot connect")
        assert screen.splitlines() == [
            "batchflag watch  (every 2s, Ctrl-C to stop)",
            "",
            "ERROR: cannot connect",
            "",
        ]

    def test_lines_are_cut_to_the_width(self) -> None:
        """No line is longer than the terminal, so the screen never wraps."""
        screen = render_watch(None, interval=2, error="x" * 300, width=40)
        assert max(len(line) for line in screen.splitlines()) == 40
