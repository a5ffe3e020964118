"""Installable: `pip install .` into a fresh virtual environment, then `batchflag` from anywhere.

Slow (builds a wheel and installs its dependencies), hence the `stress` marker.
Proves the wheel carries the migrations and the SQL files: the installed command
upgrades an empty database and `doctor` (which reads the SQL files) passes,
run from a directory that holds no part of the source tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from batchflag_db import migrate

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.stress


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHFLAG_")}
    env.pop("PYTHONPATH", None)
    return env


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with batchflag-db installed from this checkout, not editable; its bin/."""
    root = tmp_path_factory.mktemp("install")
    venv = root / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], cwd=root)
    assert made.returncode == 0, made.stderr
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    pip = _run([str(bin_dir / "python"), "-m", "pip", "install", str(REPO)], cwd=root, timeout=900)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    return bin_dir


class TestInstalledCommand:
    def test_package_comes_from_the_venv(self, installed: Path, tmp_path: Path) -> None:
        """The venv imports its own copy of batchflag_db (site-packages), not this checkout."""
        done = _run(
            [str(installed / "python"), "-c", "import batchflag_db; print(batchflag_db.__file__)"],
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        location = Path(done.stdout.strip())
        assert "site-packages" in location.parts
        assert REPO not in location.parents

    def test_upgrade_from_another_directory(
        self, installed: Path, tmp_path: Path, db_url: URL
    ) -> None:
        """`batchflag --url URL upgrade`, run elsewhere, takes an empty database to head."""
        url = db_url.render_as_string(hide_password=False)
        batchflag = str(installed / "batchflag")
        done = _run([batchflag, "--url", url, "upgrade"], cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert migrate.current_revision(db_url) == migrate.head_revision()
        doctor = _run([batchflag, "--url", url, "doctor"], cwd=tmp_path)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "healthy" in doctor.stdout

    def test_sql_from_another_directory(self, installed: Path, tmp_path: Path) -> None:
        """`batchflag sql` works from the installed wheel: it ships the routine files."""
        done = _run([str(installed / "batchflag"), "sql"], cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "DELIMITER //" in done.stdout
        assert "CREATE PROCEDURE set_current_batch" in done.stdout
