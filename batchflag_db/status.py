"""The status view: the current batch and the latest batches (the seed's Verification queries).

``batchflag status`` prints it and ``batchflag demo`` shows it; :func:`read_status`
reads it as data, :func:`status_lines` turns that into the lines they print.
"""

from __future__ import annotations

from typing import Any

from batchflag_db import installation
from batchflag_db._connection import Connectable, connect
from batchflag_db._schema import FLAG_COLUMN, STATUS_COLUMN, TABLE
from batchflag_db._text import cell, table_lines
from batchflag_db.errors import SchemaNotReadyError
from batchflag_db.installation import current_query
from batchflag_db.locks import stuck_warnings

__all__ = ["STATUS_COLUMNS", "read_status", "status_lines"]

STATUS_COLUMNS = ("id", "batchDate", "batchNumber", STATUS_COLUMN, FLAG_COLUMN)
"""The columns the view shows for the default installation (another has its own id,
status and flag columns, and its scope column); those a table lacks are left out."""


def read_status(
    conn: Connectable, limit: int = 10, *, scope: str | int | None = None
) -> dict[str, Any]:
    """Return the current batch and the latest ``limit`` batches.

    The result: ``{"warnings": [...], "columns": [...], "current_batch": row or None,
    "batches": [rows], "table": name}``, each row a dict of :data:`STATUS_COLUMNS` (with
    the installation's own id, status and flag columns, and its scope column; those the
    table lacks are left out); ``warnings`` names transactions that have held row locks
    for :func:`~batchflag_db.locks.stuck_after` seconds or more (10, or
    ``BATCHFLAG_STUCK_AFTER``; a forgotten commit). The
    current batch is found through the unique key column, as the wrapper reads it; with a
    scope column, ``scope`` picks the scope (its latest batches too), and without one
    ``current_batches`` lists the current batch of every scope.

    Args:
        conn: An Engine, a Connection or a PEP 249 connection.
        limit: How many of the latest batches to include.
        scope: With a scope column, the scope to show.

    Raises:
        SchemaNotReadyError: The table or its key column is missing: not migrated.
        ConfigurationError: ``scope`` given to an installation without a scope column,
            or ``BATCHFLAG_STUCK_AFTER`` is not a whole number of seconds.
        BatchFlagError: Any other server error.
    """
    with connect(conn, isolation_level=None) as link:
        inst = installation.read(link)
        present = {
            str(r[0])
            for r in link.query(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table",
                table=inst.table,
            ).rows
        }
        table, key = inst.table, inst.key_column
        if key not in present:
            what = f"table {table} does not exist" if not present else f"{table} has no {key}"
            raise SchemaNotReadyError(f"schema not migrated: {what}: run `batchflag upgrade`")
        wanted = (
            inst.id_column,
            *((inst.scope_column,) if inst.scope_column else ()),
            "batchDate",
            "batchNumber",
            inst.status_column,
            inst.flag_column,
        )
        columns = [c for c in wanted if c in present]
        select = ", ".join(f"`{c}`" for c in columns)
        if inst.scope_column is not None and scope is None:
            current = link.run(
                f"SELECT {select} FROM `{table}` WHERE `{key}` = 1 ORDER BY `{inst.scope_column}`"
            )
            latest = link.query(
                f"SELECT {select} FROM `{table}` ORDER BY `{inst.id_column}` DESC LIMIT :limit",
                limit=limit,
            )
        else:
            query = current_query(inst, scope, columns)
            current = link.query(query, scope=scope) if scope is not None else link.run(query)
            where = f"WHERE `{inst.scope_column}` = :scope " if scope is not None else ""
            latest = link.query(
                f"SELECT {select} FROM `{table}` {where}ORDER BY `{inst.id_column}` DESC "
                "LIMIT :limit",
                limit=limit,
                **({"scope": scope} if scope is not None else {}),
            )
        warnings = stuck_warnings(link, inst)
    rows = [dict(zip(columns, row, strict=True)) for row in current.rows]
    view: dict[str, Any] = {
        "warnings": warnings,
        "columns": columns,
        "table": table,
        "id_column": inst.id_column,
        "status_column": inst.status_column,
        "current_batch": rows[0] if rows and (scope is not None or not inst.scoped) else None,
        "batches": [dict(zip(columns, row, strict=True)) for row in latest.rows],
    }
    if inst.scoped and scope is None:
        view["scope_column"] = inst.scope_column
        view["current_batches"] = rows
    return view


def status_lines(view: dict[str, Any]) -> list[str]:
    """Return :func:`read_status`'s result as the lines ``batchflag status`` prints."""
    columns: list[str] = view["columns"]
    id_column = view.get("id_column", "id")
    status_column = view.get("status_column", STATUS_COLUMN)

    def described(row: dict[str, Any]) -> str:
        details = [cell(row[c]) for c in ("batchDate", "batchNumber", status_column) if c in row]
        return f"{row[id_column]}" + (f" ({', '.join(details)})" if details else "")

    if "current_batches" in view:
        scope = view["scope_column"]
        found = view["current_batches"]
        lines = [f"current batch per {scope}: " + ("none" if not found else "")]
        lines += [f"  {scope} {cell(row[scope])}: {described(row)}" for row in found]
    elif view["current_batch"] is None:
        lines = ["current batch: none"]
    else:
        lines = [f"current batch: {described(view['current_batch'])}"]
    lines += view.get("warnings", [])
    batches = view["batches"]
    lines.append("")
    if batches:
        lines.append(f"latest {len(batches)} batch{'es' if len(batches) != 1 else ''}:")
        lines += table_lines(columns, [[row[c] for c in columns] for row in batches])
    else:
        lines.append(f"no batches in {view.get('table', TABLE)}")
    return lines
