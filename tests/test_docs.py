"""The front door and the docs site: README stays short and in the project's own words;
the site builds with warnings as errors and carries the generated references."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_LIMIT = 12 * 1024
# Words from how the project is made, not from what it is.
FORBIDDEN = (r"\bseed", r"\bissue ", r"\bsession")


class TestReadme:
    def test_at_most_12_kb(self) -> None:
        """README is the front door, not the reference: at most 12 KB."""
        size = len(README.read_bytes())
        assert size <= README_LIMIT, f"README.md is {size} bytes; move reference text to docs/"

    @pytest.mark.parametrize("pattern", FORBIDDEN)
    def test_no_outside_words(self, pattern: str) -> None:
        """README says nothing about how the project was made ("the seed", "issue N", sessions)."""
        hits = [
            f"{number}: {line}"
            for number, line in enumerate(README.read_text().splitlines(), 1)
            if re.search(pattern, line, re.IGNORECASE)
        ]
        assert hits == []

    def test_the_two_commands_come_first(self) -> None:
        """The demo and test commands are the first code block, as the first two lines."""
        text = README.read_text()
        block = text.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
        assert block[0].startswith("scripts/demo.sh ")
        assert block[1].startswith("scripts/test.sh ")
        assert text.index("```sh") < text.index("## ")

    def test_links_into_docs_exist(self) -> None:
        """Every docs/ page README links to is there."""
        links = re.findall(r"\]\((docs/[^)#]+)", README.read_text())
        assert links
        missing = [link for link in links if not (ROOT / link).is_file()]
        assert missing == []


def _mkdocs() -> str:
    beside = Path(sys.executable).with_name("mkdocs")
    found = str(beside) if beside.is_file() else shutil.which("mkdocs")
    if found is None:
        pytest.fail("mkdocs is not installed: pip install -e '.[docs]'")
    return found


@pytest.mark.slow
class TestSite:
    def test_builds_strict_with_api_and_cli_references(self, tmp_path: Path) -> None:
        """`mkdocs build --strict` passes; the API page shows the wrapper, the CLI page the commands."""
        site = tmp_path / "site"
        result = subprocess.run(
            [_mkdocs(), "build", "--strict", "--site-dir", str(site)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
            check=False,
        )
        assert result.returncode == 0, result.stderr
        api = (site / "api" / "index.html").read_text()
        for name in ("set_current_batch", "get_current_batch", "BatchNotFoundError", "Flip"):
            assert name in api
        cli = (site / "cli" / "index.html").read_text()
        for name in ("set-current", "unset-current", "upgrade", "doctor", "--keep-current"):
            assert name in cli
        bench = (site / "benchmark" / "index.html").read_text()
        assert "Latency by table size" in bench
