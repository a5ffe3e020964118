"""Plain text for people: one value as a cell, rows as a left-aligned table (CLI, status, demo)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

__all__ = ["cell", "table_lines"]


def cell(value: Any) -> str:
    """Return ``value`` as a table cell: NULL for None, dates and times in ISO 8601."""
    if value is None:
        return "NULL"
    if isinstance(value, (datetime.date, datetime.time)):
        return (
            value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
        )
    return str(value)


def table_lines(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Return rows as a plain, left-aligned table: a header line, then one line per row."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return lines
