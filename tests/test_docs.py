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
from sqlalchemy.engine import URL

from batchflag_db import Flip, get_current_batch
from tests.conftest import connect, insert_batches

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PYTHON_API = ROOT / "docs" / "python-api.md"
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


def python_block(page: Path, containing: str) -> str:
    """The one ```python block of ``page`` that contains ``containing``."""
    blocks = re.findall(r"^```python\n(.*?)^```$", page.read_text(), re.M | re.S)
    found = [block for block in blocks if containing in block]
    assert len(found) == 1, f"{len(found)} python blocks of {page.name} contain {containing!r}"
    return str(found[0])


class TestSnippets:
    def test_repository_snippet_runs_as_written(
        self,
        migrated_url: URL,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The BatchStatusRepo example of docs/python-api.md runs as it is against a migrated
        database (its URL in BATCHFLAG_DATABASE_URL, batch 1 in the table): it makes batch 1
        current and keeps the Flip; its unset method returns the Flip too."""
        snippet = python_block(PYTHON_API, "class BatchStatusRepo")
        conn = connect(migrated_url, autocommit=True)
        try:
            assert insert_batches(conn, 1) == [1]
        finally:
            conn.close()
        monkeypatch.setenv("BATCHFLAG_DATABASE_URL", migrated_url.render_as_string(False))
        namespace: dict[str, object] = {"__name__": "snippet"}
        # dont_inherit: run it as a reader would, without this module's __future__ imports.
        code = compile(snippet, str(PYTHON_API), "exec", dont_inherit=True)
        exec(code, namespace)  # noqa: S102 - the docs' own example, the point of the test
        engine = namespace["engine"]
        try:
            assert namespace["flip"] == Flip(1, None, True)
            assert get_current_batch(engine) == 1  # type: ignore[arg-type]
            assert "batch 1 is current now" in capsys.readouterr().out
            repo = namespace["repo"]
            assert repo.unset_current_batch(1) == Flip(1, 1, True)  # type: ignore[attr-defined]
            assert get_current_batch(engine) is None  # type: ignore[arg-type]
        finally:
            engine.dispose()  # type: ignore[attr-defined]
