"""The status view: the current batch and the latest batches (the seed's Verification queries).

``batchflag status`` prints it and ``batchflag demo`` shows it; :func:`read_status`
reads it as data, :func:`status_lines` turns that into the lines they print.
"""

from __future__ import annotations

from typing import Any

from batchflag_db._connection import Connectable, connect
from batchflag_db._schema import FLAG_COLUMN, KEY_COLUMN, STATUS_COLUMN, TABLE
from batchflag_db._text import cell, table_lines
from batchflag_db.errors import SchemaNotReadyError
from batchflag_db.locks import stuck_warnings

__all__ = ["STATUS_COLUMNS", "read_status", "status_lines"]

STATUS_COLUMNS = ("id", "batchDate", "batchNumber", STATUS_COLUMN, FLAG_COLUMN)
"""The columns the view shows; those an adopted table lacks are left out."""


def read_status(conn: Connectable, limit: int = 10) -> dict[str, Any]:
    """Return the current batch and the latest ``limit`` batches.

    The result: ``{"warnings": [...], "columns": [...], "current_batch": row or None,
    "batches": [rows]}``, each row a dict of :data:`STATUS_COLUMNS` (those the table
    has); ``warnings`` names transactions that have held row locks for
    :data:`~batchflag_db.locks.STUCK_AFTER` seconds or more (a forgotten commit). The current
    batch is found through the unique key column, as the wrapper reads it.

    Args:
        conn: An Engine, a Connection or a PEP 249 connection.
        limit: How many of the latest batches to include.

    Raises:
        SchemaNotReadyError: The table or its key column is missing: not migrated.
        BatchFlagError: Any other server error.
    """
    with connect(conn, isolation_level=None) as link:
        present = {
            str(r[0])
            for r in link.query(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table",
                table=TABLE,
            ).rows
        }
        if KEY_COLUMN not in present:
            what = (
                f"table {TABLE} does not exist" if not present else f"{TABLE} has no {KEY_COLUMN}"
            )
            raise SchemaNotReadyError(f"schema not migrated: {what}: run `batchflag upgrade`")
        columns = [c for c in STATUS_COLUMNS if c in present]
        select = ", ".join(f"`{c}`" for c in columns)
        current = link.run(f"SELECT {select} FROM `{TABLE}` WHERE `{KEY_COLUMN}` = 1")
        latest = link.query(
            f"SELECT {select} FROM `{TABLE}` ORDER BY `id` DESC LIMIT :limit", limit=limit
        )
        warnings = stuck_warnings(link)
    return {
        "warnings": warnings,
        "columns": columns,
        "current_batch": dict(zip(columns, current.rows[0], strict=True)) if current.rows else None,
        "batches": [dict(zip(columns, row, strict=True)) for row in latest.rows],
    }


def status_lines(view: dict[str, Any]) -> list[str]:
    """Return :func:`read_status`'s result as the lines ``batchflag status`` prints."""
    columns: list[str] = view["columns"]
    current_row = view["current_batch"]
    if current_row is None:
        lines = ["current batch: none"]
    else:
        details = [
            cell(current_row[c])
            for c in ("batchDate", "batchNumber", STATUS_COLUMN)
            if c in current_row
        ]
        suffix = f" ({', '.join(details)})" if details else ""
        lines = [f"current batch: {current_row['id']}{suffix}"]
    lines += view.get("warnings", [])
    batches = view["batches"]
    lines.append("")
    if batches:
        lines.append(f"latest {len(batches)} batch{'es' if len(batches) != 1 else ''}:")
        lines += table_lines(columns, [[row[c] for c in columns] for row in batches])
    else:
        lines.append(f"no batches in {TABLE}")
    return lines
