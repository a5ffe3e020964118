"""The opt-in pytest plugin, as a team's own test suite would use it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batchflag_db.testing.selection import URL_VARIABLE, SessionServer

TEAM_TEST = '''
import batchflag_db
from sqlalchemy import text


def test_our_pipeline_flips(engine):
    """The team's own test: a migrated database per test, and a flip on it."""
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-12-01', 1)"))
        conn.execute(text("INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-12-01', 2)"))
        first, second = [row[0] for row in conn.execute(text("SELECT id FROM batchStatus ORDER BY id"))]
    batchflag_db.set_current_batch(engine, first)
    assert batchflag_db.set_current_batch(engine, second).previous_batch_id == first
    assert batchflag_db.get_current_batch(engine) == second


def test_each_test_gets_its_own_database(db_url, migrated_url):
    assert migrated_url.database == db_url.database
    assert migrated_url.database.startswith("bft_")
'''


def _run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
class TestTeamProject:
    def test_a_teams_test_gets_a_migrated_database_and_flips(
        self, tmp_path: Path, batchflag_server: SessionServer
    ) -> None:
        """A project that loads the plugin from its conftest gets the fixtures; its tests pass."""
        (tmp_path / "conftest.py").write_text('pytest_plugins = ["batchflag_db.testing.plugin"]\n')
        (tmp_path / "test_team.py").write_text(textwrap.dedent(TEAM_TEST))
        done = _run_pytest(tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        assert "2 passed" in done.stdout, done.stdout[-2000:]
        assert os.environ[URL_VARIABLE]  # the run's server, shared with the team's run

    def test_installing_the_package_does_not_load_the_plugin(self, tmp_path: Path) -> None:
        """Without `pytest_plugins = [...]` the fixtures do not exist: the plugin is opt-in."""
        (tmp_path / "test_team.py").write_text(textwrap.dedent(TEAM_TEST))
        done = _run_pytest(tmp_path)
        assert done.returncode != 0
        assert "fixture 'engine' not found" in done.stdout, done.stdout[-2000:]
        assert "batchflag-db server" not in done.stdout
