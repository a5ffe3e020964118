"""docs/cli.md's example outputs are what the commands print today.

Each ``$ batchflag ...`` line of the checked console blocks is run on a fresh database,
in the page's order; its output (stderr's steps, then stdout) must equal the lines under
it, once the database's name, port and account are written as the page writes them
(``testDb``, ``127.0.0.1:3306``, ``root``). A test fails with the output to paste.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tests.conftest import connect, insert_batches

CLI_MD = Path(__file__).resolve().parents[1] / "docs" / "cli.md"

CHECKED = (
    "batchflag revision",
    "batchflag upgrade",
    "batchflag doctor",
    "batchflag grant \"'app'@'%'\" --sql",
    "batchflag grant \"'app'@'%'\"",
)
"""The commands whose examples are checked, in the order the page shows them."""


def examples() -> dict[str, list[str]]:
    """Command line -> the output lines under its first ``$ batchflag`` console line."""
    found: dict[str, list[str]] = {}
    for block in re.findall(r"```console\n(.*?)```", CLI_MD.read_text(), re.DOTALL):
        lines: list[str] | None = None
        for line in block.splitlines():
            if line.startswith("$ "):
                lines = None if line[2:] in found else found.setdefault(line[2:], [])
            elif lines is not None and line:
                lines.append(line)
            else:
                lines = None  # a blank line ends the example; a repeated command is skipped
    return found


def normalized(text: str, url: URL) -> list[str]:
    text = text.replace(f"'{url.database}'", "'testDb'").replace(f"`{url.database}`", "`testDb`")
    text = text.replace(f" of {url.database}", " of testDb")
    text = text.replace(f"{url.host}:{url.port}", "127.0.0.1:3306")
    text = re.sub(r"\broot@[\w.%:-]+", "root@127.0.0.1", text)
    return [line for line in text.splitlines() if line]


def batchflag(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``batchflag ARGS`` as the page does: the URL from BATCHFLAG_DATABASE_URL."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from batchflag_db.cli import main; raise SystemExit(main())",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def test_every_checked_command_has_an_example() -> None:
    """The page shows each checked command once at least (a renamed one fails here)."""
    assert set(CHECKED) <= set(examples()), sorted(examples())


@pytest.mark.slow  # runs every checked example of docs/cli.md: about 7 s
def test_examples_match_the_commands(db_url: URL) -> None:
    """Run the checked commands in the page's order; each prints what the page shows."""
    shown = examples()
    user = "app"
    admin = connect(db_url, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'app-pw'")
        env = {**os.environ, "BATCHFLAG_DATABASE_URL": db_url.render_as_string(hide_password=False)}
        wrong = []
        for command in CHECKED:
            if command == "batchflag doctor":
                insert_batches(admin, 3)
                assert batchflag(env, "set-current", "3").returncode == 0
            done = batchflag(env, *shlex.split(command)[1:])
            printed = normalized(done.stderr + done.stdout, db_url)
            if printed != shown[command]:
                wrong.append("\n".join([f"$ {command}", *printed]))
        assert not wrong, "docs/cli.md should show:\n" + "\n\n".join(wrong)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        admin.close()


@pytest.mark.parametrize(
    ("path", "stale"),
    [
        ("docs/procedures.md", "one of three numbers"),
        ("docs/python-api.md", 'Install: `pip install "batchflag-db[aio]"`'),
    ],
)
def test_stale_sentences_are_gone(path: str, stale: str) -> None:
    """Sentences the code outgrew stay out of the docs."""
    assert stale not in (CLI_MD.parents[1] / path).read_text()
