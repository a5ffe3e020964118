"""Copies of a migrated database: migrate once into a template, give each test a copy.

Running the seven Alembic revisions takes about a second a database; copying what
they built takes a fraction of that. :func:`copy_database` copies one database into
another, empty one on the same server, so that nothing a test (or ``batchflag
doctor``) reads can tell the copy from a fresh migration:

* each base table from its own ``SHOW CREATE TABLE`` text, run in the new database
  (the same columns, generated key expression, index layout including ``DESC``
  parts, ``AUTO_INCREMENT`` counter and table options), then its rows with
  ``INSERT ... SELECT`` (generated columns left to the server), the Alembic version
  table included;
* each stored procedure and function from its ``SHOW CREATE`` text, created with the
  ``sql_mode``, ``character_set_client`` and ``collation_connection`` the server
  reports for it (its definer is kept: the copying account needs the rights to name
  another definer, as root has);
* the database's default character set and collation.

Views, triggers and events are not copied: a database that has any is refused with
an error naming them, so that a revision adding one makes the copy fail loudly
rather than differ. Foreign keys are created as they were (checks off while the
tables are made, so their order does not matter); they may only point inside the
copied database.

The test plugin (:mod:`batchflag_db.testing.plugin`) migrates one template per test
session (per pytest-xdist worker) and gives ``migrated_url`` a copy.
"""

from __future__ import annotations

import pymysql

__all__ = ["TemplateError", "copy_database"]

#: ``information_schema.COLUMNS.EXTRA`` words of a column the server computes.
_GENERATED = ("VIRTUAL", "STORED", "PERSISTENT")


class TemplateError(Exception):
    """Raised when a database holds objects :func:`copy_database` cannot copy faithfully."""


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _rows(cur: pymysql.cursors.Cursor, sql: str, *args: object) -> list[tuple[object, ...]]:
    cur.execute(sql, args or None)
    return [tuple(row) for row in cur.fetchall()]


def _refuse_uncopied(cur: pymysql.cursors.Cursor, source: str) -> None:
    found = [
        f"{kind} {name}"
        for kind, sql in (
            ("view", "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s"),
            (
                "trigger",
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
            ),
            ("event", "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s"),
        )
        for (name,) in _rows(cur, sql, source)
    ]
    if found:
        raise TemplateError(
            f"database {source} has {', '.join(found)}, which copy_database does not copy: "
            "teach batchflag_db/testing/template.py to copy them (SHOW CREATE ... with the "
            "sql_mode it reports), or migrate each test's database instead"
        )


def _copy_tables(cur: pymysql.cursors.Cursor, source: str, target: str) -> None:
    tables = [
        str(name)
        for (name,) in _rows(
            cur,
            "SELECT TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
            source,
        )
    ]
    cur.execute("SET SESSION foreign_key_checks = 0")
    try:
        for table in tables:
            ((_, create),) = _rows(cur, f"SHOW CREATE TABLE {_quote(source)}.{_quote(table)}")
            cur.execute(str(create))  # the session's database is ``target``
        for table in tables:
            columns = [
                _quote(str(name))
                for name, extra in _rows(
                    cur,
                    "SELECT COLUMN_NAME, EXTRA FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                    source,
                    table,
                )
                if not any(word in str(extra).upper() for word in _GENERATED)
            ]
            listed = ", ".join(columns)
            cur.execute(
                f"INSERT INTO {_quote(target)}.{_quote(table)} ({listed}) "
                f"SELECT {listed} FROM {_quote(source)}.{_quote(table)}"
            )
    finally:
        cur.execute("SET SESSION foreign_key_checks = 1")


def _copy_routines(cur: pymysql.cursors.Cursor, source: str) -> None:
    routines = _rows(
        cur,
        "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES "
        "WHERE ROUTINE_SCHEMA = %s ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
        source,
    )
    ((mode, client, collation),) = _rows(
        cur, "SELECT @@SESSION.sql_mode, @@SESSION.character_set_client, @@collation_connection"
    )
    try:
        for kind, name in routines:
            ((_, sql_mode, create, charset, connection_collation, *_),) = _rows(
                cur, f"SHOW CREATE {kind} {_quote(source)}.{_quote(str(name))}"
            )
            if create is None:
                raise TemplateError(
                    f"this account may not read the body of {kind} {source}.{name}: "
                    "copy as the routine's definer or an account with SHOW CREATE ROUTINE"
                )
            cur.execute(
                "SET SESSION sql_mode = %s, character_set_client = %s, collation_connection = %s",
                (sql_mode, charset, connection_collation),
            )
            cur.execute(str(create))
    finally:
        cur.execute(
            "SET SESSION sql_mode = %s, character_set_client = %s, collation_connection = %s",
            (mode, client, collation),
        )


def copy_database(conn: pymysql.Connection, source: str, target: str) -> None:
    """Copy every table (with its rows) and routine of database ``source`` into ``target``.

    ``target`` must exist and be empty; both are on the server ``conn`` is connected
    to. ``conn`` must be in autocommit mode; its current database becomes ``target``,
    and its ``sql_mode``, character set and foreign-key checks are as before when
    this returns.

    Args:
        conn: A PyMySQL connection (``autocommit=True``) of an account that may read
            ``source`` (routine bodies included) and create anything in ``target``.
        source: The database to copy, e.g. a template migrated once.
        target: The empty database to copy it into.

    Raises:
        TemplateError: ``source`` has a view, trigger or event, or a routine body
            this account may not read.
        pymysql.err.Error: The server refused a statement.
    """
    with conn.cursor() as cur:
        _refuse_uncopied(cur, source)
        ((charset, collation),) = _rows(
            cur,
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
            "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            source,
        )
        cur.execute(f"ALTER DATABASE {_quote(target)} CHARACTER SET {charset} COLLATE {collation}")
        conn.select_db(target)
        _copy_tables(cur, source, target)
        _copy_routines(cur, source)
