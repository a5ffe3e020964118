"""EXPLAIN in the tabular form on every server kind, as rows of named columns.

MariaDB's ``EXPLAIN`` is tabular. MySQL 9.x may default to another format
(``explain_format``), so it is asked for ``FORMAT=TRADITIONAL``, which MariaDB
does not accept. Either way each row is a dict keyed by column name
(``table``, ``type``, ``key``, ``rows``, ``Extra``...), so a test reads the same
property on each server.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["explain", "explain_statement"]


class _Cursor(Protocol):
    description: Any

    def execute(self, query: str) -> Any: ...

    def fetchall(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def close(self) -> Any: ...


class _Connection(Protocol):
    def cursor(self) -> Any: ...


def explain_statement(sql: str, version: str) -> str:
    """The EXPLAIN statement for ``sql`` on a server whose ``SELECT VERSION()`` is ``version``."""
    return f"EXPLAIN {sql}" if "MariaDB" in version else f"EXPLAIN FORMAT=TRADITIONAL {sql}"


def explain(conn: _Connection, sql: str) -> list[dict[str, Any]]:
    """The plan of ``sql`` through a PEP 249 connection, one dict per row."""
    cur: _Cursor = conn.cursor()
    try:
        cur.execute("SELECT VERSION()")
        version = str(cur.fetchone()[0])
        cur.execute(explain_statement(sql, version))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        cur.close()
