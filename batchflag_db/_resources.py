"""Where the migrations and versioned SQL live: in a source checkout or inside the wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_root() -> Path:
    """Return the directory holding ``alembic.ini``, ``migrations/`` and ``sql/``.

    An installed wheel carries them under ``batchflag_db/_data``; a source
    checkout (or an editable install) has them at the repository root.
    """
    bundled = _PACKAGE_DIR / "_data"
    if (bundled / "migrations").is_dir():
        return bundled
    return _PACKAGE_DIR.parent


def sql_path(relative: str) -> Path:
    """Return the path of a versioned SQL file, e.g. ``procedures/set_current_batch/v1.sql``."""
    return data_root() / "sql" / relative


def read_sql(relative: str) -> str:
    """Return the text of a versioned SQL file.

    Raises:
        FileNotFoundError: The file is not part of this installation.
    """
    return sql_path(relative).read_text(encoding="utf-8")
