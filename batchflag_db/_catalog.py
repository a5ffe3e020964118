"""What the server's catalog (``information_schema.STATISTICS``) says about an index.

The revisions and ``batchflag doctor`` read index facts through these functions,
so "is this index descending?" is answered in one place, the same way everywhere.
Each takes a SQLAlchemy :class:`~sqlalchemy.engine.Connection` (Alembic's
``op.get_bind()`` is one) and reads the connection's current database.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from batchflag_db._schema import TABLE

__all__ = ["index_exists", "index_is_descending", "indexes_leading_with"]

_KEY_PARTS = text(
    "SELECT COLLATION FROM information_schema.STATISTICS "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table AND INDEX_NAME = :index "
    "ORDER BY SEQ_IN_INDEX"
)


def index_exists(conn: Connection, index: str, table: str = TABLE) -> bool:
    """Return True when ``table`` has an index named ``index``."""
    return bool(conn.execute(_KEY_PARTS, {"table": table, "index": index}).first())


def index_is_descending(conn: Connection, index: str, table: str = TABLE) -> bool | None:
    """Tell whether every key part of ``index`` is stored in descending order.

    Reads ``information_schema.STATISTICS.COLLATION``: ``'D'`` for a descending
    key part, ``'A'`` for an ascending one (NULL for an unsorted one). A server
    that parses ``DESC`` but ignores it (MariaDB before 10.8, MySQL before 8.0)
    reports ``'A'``, so this tells what the server built, not what was asked for.

    Returns:
        True when every key part is ``'D'``, False when any is not, None when
        ``table`` has no index named ``index``.
    """
    parts = [row[0] for row in conn.execute(_KEY_PARTS, {"table": table, "index": index})]
    if not parts:
        return None
    return all(str(part or "").upper() == "D" for part in parts)


def indexes_leading_with(conn: Connection, column: str, table: str = TABLE) -> list[str]:
    """Return the names of the indexes of ``table`` whose first key part is ``column``."""
    found = conn.execute(
        text(
            "SELECT INDEX_NAME FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table "
            "AND SEQ_IN_INDEX = 1 AND COLUMN_NAME = :column ORDER BY INDEX_NAME"
        ),
        {"table": table, "column": column},
    )
    return [str(row[0]) for row in found]
