"""The versioned SQL files: released ones never change; the wrapper and the SQL agree on errnos."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from batchflag_db import _routines, errors
from batchflag_db._schema import CURRENT_ROUTINE_FILES
from batchflag_db.installation import DEFAULT, Installation

SQL = Path(__file__).resolve().parent.parent / "sql"
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations" / "versions"


def released() -> dict[str, str]:
    lines = (SQL / "RELEASED.sha256").read_text().splitlines()
    return {path: digest for digest, path in (line.split() for line in lines if line.strip())}


class TestReleasedFiles:
    @pytest.mark.parametrize("path", sorted(released()))
    def test_released_file_is_unchanged(self, path: str) -> None:
        """A released routine file keeps its checksum: change a procedure with a new file + revision."""
        digest = hashlib.sha256((SQL / path).read_bytes()).hexdigest()
        assert digest == released()[path], (
            f"{path} was edited after release; add a new version instead"
        )

    def test_every_routine_file_is_named_by_a_revision(self) -> None:
        """Each SQL file is loaded by some revision, or is a template of batchflag_db._routines.

        From revision 0006 on, routines are templates that revision 0006 and the Alembic
        operations render through ``_routines``: none is dead, none is loaded implicitly.
        """
        revisions = "\n".join(p.read_text() for p in MIGRATIONS.glob("*.py"))
        templates = set(_routines.files(DEFAULT).values()) | set(
            _routines.files(Installation(scope_column="pipeline")).values()
        )
        for path in SQL.rglob("*.sql"):
            relative = path.relative_to(SQL).as_posix()
            if "${" in path.read_text():
                assert relative in templates, f"no installation renders {relative}"
            else:
                assert relative in revisions, f"no revision names {relative}"

    def test_head_files_exist(self) -> None:
        """CURRENT_ROUTINE_FILES points at files that exist."""
        for relative in CURRENT_ROUTINE_FILES.values():
            assert (SQL / relative).is_file(), relative


class TestErrnos:
    def test_sql_and_python_agree(self) -> None:
        """Every MYSQL_ERRNO the SQL signals is one the wrapper maps to a named exception."""
        signalled = set()
        for path in SQL.rglob("*.sql"):
            signalled |= {int(n) for n in re.findall(r"MYSQL_ERRNO\s*=\s*(\d+)", path.read_text())}
        known = {
            errors.ER_INVALID_BATCH_ID,
            errors.ER_BATCH_NOT_FOUND,
            errors.ER_LOCK_ROW_MISSING,
            errors.ER_SCOPE_CHANGED,
            errors.ER_SCOPE_REQUIRED,
        }
        assert signalled == known
        assert all(n < 32768 for n in signalled), "PyMySQL reads errnos as signed 16-bit"

    def test_no_colon_binds_in_sql(self) -> None:
        """No `:name` in the SQL, which SQLAlchemy's text() would take for a bind parameter."""
        for path in SQL.rglob("*.sql"):
            assert not re.search(r"(?<![:\w]):[A-Za-z_]\w*", path.read_text()), path
