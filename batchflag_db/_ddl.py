"""Helpers the Alembic revisions use. Revisions call these with explicit, versioned
arguments; keep every function's behaviour stable, because released revisions depend on it.
"""

from __future__ import annotations

import logging
from typing import Any

from alembic import op
from sqlalchemy import text

from batchflag_db._resources import read_sql

log = logging.getLogger("batchflag_db.migrations")

# Server errors meaning "this ALTER cannot run with the ALGORITHM/LOCK asked for".
_ER_ALTER_OPERATION_NOT_SUPPORTED = 1845
_ER_ALTER_OPERATION_NOT_SUPPORTED_REASON = 1846


def is_offline() -> bool:
    """Return True when Alembic renders a script (``--sql``) instead of running it."""
    return bool(op.get_context().as_sql)


def run(sql: str) -> None:
    """Run one statement verbatim: no bind-parameter parsing, so colons are safe.

    Offline, the statement is written to the script followed by ``;``.
    """
    if is_offline():
        op.get_context().impl.static_output(sql.strip() + ";\n")
    else:
        op.get_bind().exec_driver_sql(sql)


def scalar(sql: str, **params: Any) -> Any:
    """Return the first column of the first row of a query (online mode only)."""
    return op.get_bind().execute(text(sql), params).scalar()


def execute(sql: str, **params: Any) -> None:
    """Run one parameterised data statement (online mode only)."""
    op.get_bind().execute(text(sql), params)


def rows(sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Return every row of a query as tuples (online mode only)."""
    return [tuple(r) for r in op.get_bind().execute(text(sql), params)]


def run_routine(relative_path: str) -> None:
    """Create a stored routine from a versioned SQL file.

    Online, the file's text goes to the server as one statement (no DELIMITER
    needed). Offline, it is wrapped in ``DELIMITER //`` ... ``//`` so the
    ``mysql``/``mariadb`` client sends the body as one statement.
    """
    body = read_sql(relative_path).strip()
    if is_offline():
        op.get_context().impl.static_output(f"DELIMITER //\n{body}\n//\nDELIMITER ;\n")
    else:
        op.get_bind().exec_driver_sql(body)


def alter_online(statement: str, online_clause: str) -> None:
    """Run ``ALTER TABLE`` with an online clause, falling back without it if refused.

    ``online_clause`` is e.g. ``ALGORITHM=INSTANT`` or ``ALGORITHM=INPLACE, LOCK=NONE``.
    When the server refuses it (errors 1845/1846), the statement is retried with
    the server's default algorithm and a warning says writes may block meanwhile.
    """
    if is_offline():
        run(f"{statement}, {online_clause}")
        return
    try:
        op.get_bind().exec_driver_sql(f"{statement}, {online_clause}")
    except Exception as exc:
        errno = getattr(getattr(exc, "orig", None), "args", (None,))[0]
        if errno not in (_ER_ALTER_OPERATION_NOT_SUPPORTED, _ER_ALTER_OPERATION_NOT_SUPPORTED_REASON):
            raise
        log.warning(
            "server refused %s (%s); running it with the default algorithm, "
            "which may block writes to the table while it runs",
            online_clause,
            exc,
        )
        op.get_bind().exec_driver_sql(statement)
