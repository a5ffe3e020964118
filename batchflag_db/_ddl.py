"""Helpers the Alembic revisions use.

Revisions call these with explicit, versioned arguments; keep every function's
behaviour stable, because released revisions depend on it.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from alembic import op
from sqlalchemy import text

from batchflag_db._resources import read_sql
from batchflag_db.errors import (
    ER_ALTER_OPERATION_NOT_SUPPORTED,
    ER_ALTER_OPERATION_NOT_SUPPORTED_REASON,
    driver_error_details,
)

log = logging.getLogger("batchflag_db.migrations")

# Server errors meaning "this ALTER cannot run with the ALGORITHM/LOCK asked for".
_ALTER_REFUSED = (ER_ALTER_OPERATION_NOT_SUPPORTED, ER_ALTER_OPERATION_NOT_SUPPORTED_REASON)


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


@functools.lru_cache(maxsize=256)  # a pure scan of the same few routine texts, char by char
def strip_sql_comments(sql: str) -> str:
    """Return ``sql`` without its comments, keeping everything else byte for byte.

    Removes ``-- `` and ``#`` comments (to the end of the line) and ``/* ... */``
    comments, but not the executable ``/*! ... */`` and ``/*M! ... */`` forms;
    quoted strings and identifiers (``'...'``, ``"..."``, `````...`````) are left
    alone. A line that held only a comment disappears; a comment after code
    leaves the code without trailing spaces; other lines are unchanged.

    Why: the ``mysql``/``mariadb`` client strips comments from what it sends
    (its default ``--skip-comments``), so a routine created from a script would
    otherwise differ from the same routine created online. Sending the text
    without comments both ways gives the server the same body either way.
    """
    mark = "\x00"  # stands where a comment was, until the lines are tidied
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\" and ch != "`":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1])
            i = j + 1
        elif ch == "#" or (sql.startswith("--", i) and (i + 2 == n or sql[i + 2].isspace())):
            end = sql.find("\n", i)
            end = n if end == -1 else end
            out.append(mark)
            i = end
        elif sql.startswith("/*", i) and not sql.startswith(("/*!", "/*M!"), i):
            end = sql.find("*/", i + 2)
            end = n if end == -1 else end + 2
            out.append(mark + f"\n{mark}" * sql.count("\n", i, end))
            i = end
        else:
            out.append(ch)
            i += 1
    kept: list[str] = []
    for line in "".join(out).split("\n"):
        if mark in line:
            line = line.replace(mark, "").rstrip()  # noqa: PLW2901 - tidied copy
            if not line.strip():
                continue  # the line held only a comment
        kept.append(line)
    return "\n".join(kept).strip()


def _delimiter_for(body: str) -> str:
    for delimiter in ("//", "$$", ";;", "@@@@"):
        if delimiter not in body:
            return delimiter
    raise ValueError("no DELIMITER fits this routine: it contains //, $$, ;; and @@@@")


def run_routine(relative_path: str) -> None:
    """Create a stored routine from a versioned SQL file.

    The file's comments are stripped first (see :func:`strip_sql_comments`), so a
    routine created online and one created by the ``mysql``/``mariadb`` client from
    the offline script have the same body. Online, the text goes to the server as
    one statement (no DELIMITER needed). Offline, it is wrapped in ``DELIMITER //``
    ... ``//`` so the client sends the body as one statement, and preceded by
    ``SET NAMES utf8mb4`` so the routine records the same ``character_set_client``
    as one created online (PyMySQL connects with utf8mb4).
    """
    run_text(read_sql(relative_path))


def run_text(sql: str) -> None:
    """Run one compound statement (a routine), comments stripped, as :func:`run_routine` does."""
    body = strip_sql_comments(sql)
    if is_offline():
        delimiter = _delimiter_for(body)
        op.get_context().impl.static_output(
            f"SET NAMES utf8mb4;\nDELIMITER {delimiter}\n{body}\n{delimiter}\nDELIMITER ;\n"
        )
    else:
        op.get_bind().exec_driver_sql(body)


_CREATE_PROCEDURE = re.compile(r"^\s*CREATE\s+PROCEDURE\b", re.IGNORECASE)


def _is_mariadb() -> bool:
    return bool(getattr(op.get_bind().dialect, "is_mariadb", False))


def replace_routine(name: str, relative_path: str | None) -> None:
    """Replace procedure ``name`` with the one in ``relative_path`` (None: drop it).

    On MariaDB, online, the replacement is one statement, ``CREATE OR REPLACE
    PROCEDURE``: a concurrent CALL sees the old procedure or the new one, never none.
    MySQL has no such statement, so there (and in offline scripts, whose server is
    not known) it is ``DROP PROCEDURE IF EXISTS`` then ``CREATE``: for the length of
    that one statement a CALL fails with 1305, which the Python wrapper retries.
    """
    if relative_path is None:
        run(f"DROP PROCEDURE IF EXISTS `{name}`")
        return
    replace_routine_text(name, read_sql(relative_path), relative_path)


def replace_routine_text(name: str, sql: str, source: str = "routine") -> None:
    """Replace procedure ``name`` with the ``CREATE PROCEDURE`` text ``sql``, as :func:`replace_routine`."""
    if is_offline() or not _is_mariadb():
        run(f"DROP PROCEDURE IF EXISTS `{name}`")
        run_text(sql)
        return
    body = strip_sql_comments(sql)
    if not _CREATE_PROCEDURE.match(body):
        raise ValueError(f"{source} does not start with CREATE PROCEDURE")
    op.get_bind().exec_driver_sql(_CREATE_PROCEDURE.sub("CREATE OR REPLACE PROCEDURE", body, 1))


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
        errno, _, _ = driver_error_details(exc)
        if errno not in _ALTER_REFUSED:
            raise
        log.warning(
            "server refused %s (%s); running it with the default algorithm, "
            "which may block writes to the table while it runs",
            online_clause,
            exc,
        )
        op.get_bind().exec_driver_sql(statement)
