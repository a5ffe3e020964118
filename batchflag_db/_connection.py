"""The one adapter from "whatever connection the caller gave" to a connection to run statements on.

Every public function that talks to the database takes ``conn``, one of:

* a SQLAlchemy :class:`~sqlalchemy.engine.Engine`: a connection is checked out
  for the call (in ``AUTOCOMMIT`` unless the caller of :func:`connect` asks for
  another isolation level) and returned to the pool afterwards;
* a SQLAlchemy :class:`~sqlalchemy.engine.Connection`: used as it is; the call
  joins its transaction, so the caller's ``commit()`` or ``rollback()`` decides;
* a PEP 249 connection (PyMySQL, mysqlclient, mysql-connector-python): used as
  it is, in whatever mode it is in; nothing is committed or rolled back for the caller.

:func:`connect` turns each into a :class:`Link`, whose statements raise
:class:`~batchflag_db.errors.BatchFlagError` for driver errors (through
:func:`~batchflag_db.errors.translated_errors`), and :func:`drain` is the one
place a cursor's result sets are read to the end.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, cast

from sqlalchemy import text
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import TextClause

from batchflag_db.errors import (
    BatchFlagError,
    DatabaseConnectionError,
    NotAConnectionError,
    translated_errors,
)

__all__ = [
    "Connectable",
    "DBAPIConnection",
    "Link",
    "Result",
    "connect",
    "drain",
    "not_a_connection",
]


class DBAPIConnection(Protocol):
    """The part of a PEP 249 connection batchflag-db uses."""

    def cursor(self) -> Any: ...


Connectable: TypeAlias = Engine | Connection | DBAPIConnection
"""What every public function accepts as ``conn``."""

# mysql-connector-python runs a CALL with cursor.execute() and walks its result
# sets with nextset() from 9.2 on; before, execute() refuses a CALL that returns
# rows ("Use multi=True ...") and callproc() is the way.
_CONNECTOR_EXECUTE_CALL = (9, 2)

# Renders ``:name`` parameters as ``%(name)s`` for PEP 249 cursors: every MySQL
# driver accepts that style with a dict of values, and quotes the values itself.
_PYFORMAT = mysql.dialect(paramstyle="pyformat")


@dataclass(frozen=True)
class Result:
    """What one statement returned.

    Attributes:
        columns: The column names (empty for a statement without rows).
        rows: Every row of the first result set.
        rowcount: Rows affected by a statement without rows; -1 for one with rows.
    """

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    rowcount: int


def drain(cursor: Any) -> Result:
    """Read a PEP 249 cursor's first result set, then skip the others to the end.

    A CALL returns an extra (empty) result after its rows; it must be read or the
    next statement on the connection fails ("commands out of sync").
    """
    if cursor.description:
        columns = tuple(str(d[0]) for d in cursor.description)
        result = Result(columns, [tuple(r) for r in cursor.fetchall()], -1)
    else:
        count = cursor.rowcount
        result = Result((), [], count if isinstance(count, int) else -1)
    while cursor.nextset():
        if cursor.description:
            cursor.fetchall()
    return result


def _sqlalchemy_result(result: Any) -> Result:
    try:
        if result.returns_rows:
            return Result(tuple(result.keys()), [tuple(r) for r in result], -1)
        return Result((), [], result.rowcount)
    finally:
        result.close()


def _server_info(conn: object) -> str:
    """The server's version string as the driver keeps it (no round trip); "" if it does not.

    mysql-connector-python has the ``server_info`` property (its ``get_server_info()``
    is deprecated), PyMySQL the ``server_version`` string, mysqlclient ``get_server_info()``.
    """
    for attribute in ("server_info", "server_version"):
        value = getattr(conn, attribute, None)
        if isinstance(value, str):
            return value
    method = getattr(conn, "get_server_info", None)
    return str(method()) if callable(method) else ""


def _is_old_connector(conn: object) -> bool:
    if not type(conn).__module__.startswith("mysql.connector"):
        return False
    module = sys.modules.get("mysql.connector")
    version = getattr(module, "__version_info__", None) or (0,)
    return tuple(version[:2]) < _CONNECTOR_EXECUTE_CALL


class Link:
    """One connection to run statements on, as the caller gave it or checked out of their Engine.

    Every method raises :class:`~batchflag_db.errors.BatchFlagError` (with errno and
    SQLSTATE) for a driver error; errors without an errno pass through unchanged.

    Attributes:
        sqlalchemy: The SQLAlchemy Connection, or None for a PEP 249 connection.
        checked_out: True when the connection was checked out of an Engine for this
            call alone (by default in ``AUTOCOMMIT``: each statement is its own transaction).
    """

    def __init__(
        self,
        sqlalchemy: Connection | None,
        dbapi: DBAPIConnection | None = None,
        *,
        checked_out: bool = False,
    ) -> None:
        self.sqlalchemy = sqlalchemy
        self._dbapi = dbapi
        self.checked_out = checked_out

    @property
    def driver(self) -> object:
        """The driver's own connection object (PyMySQL's, mysqlclient's, ...)."""
        if self.sqlalchemy is not None:
            return self.sqlalchemy.connection.driver_connection
        return self._dbapi

    @property
    def takes_call_prefix(self) -> bool:
        """True when :meth:`call` can prefix its CALL (MariaDB's ``SET STATEMENT ... FOR``).

        MariaDB only (known from SQLAlchemy's dialect, or the driver's
        ``get_server_info()``, without a round trip), and not through an old
        mysql-connector-python, whose CALL goes through ``callproc``.
        """
        if self.sqlalchemy is not None:
            mariadb = bool(getattr(self.sqlalchemy.dialect, "is_mariadb", False))
        else:
            mariadb = "mariadb" in _server_info(self._dbapi).lower()
        return mariadb and not _is_old_connector(self.driver)

    def dbapi(self) -> DBAPIConnection:
        """Return the PEP 249 connection to run a statement on directly.

        Under a SQLAlchemy Connection outside a transaction this begins one first,
        as executing through SQLAlchemy would (autobegin), so that the caller's
        ``commit()`` / ``rollback()`` / ``close()`` applies to what runs on it.

        Raises:
            BatchFlagError: The SQLAlchemy connection has no DB-API connection.
        """
        if self.sqlalchemy is None:
            return cast(DBAPIConnection, self._dbapi)
        with translated_errors():
            if not self.checked_out and not self.sqlalchemy.in_transaction():
                self.sqlalchemy.begin()
            raw = self.sqlalchemy.connection.dbapi_connection
        if raw is None:  # pragma: no cover - SQLAlchemy raises first on an invalidated connection
            raise BatchFlagError(
                "the SQLAlchemy connection has no DB-API connection: open a new one"
            )
        return cast(DBAPIConnection, raw)

    def run(self, sql: str) -> Result:
        """Run one statement verbatim: no bind parameters, and none handed to the driver.

        So neither ``:name`` nor ``%`` in ``sql`` means anything but itself (a host
        ``'%'`` in a GRANT reaches the server as written, whatever the driver).
        """
        with translated_errors():
            if self.sqlalchemy is not None:
                return _sqlalchemy_result(
                    self.sqlalchemy.exec_driver_sql(sql, execution_options={"no_parameters": True})
                )
            cursor = self.dbapi().cursor()
            try:
                cursor.execute(sql)
                return drain(cursor)
            finally:
                cursor.close()

    def query(self, sql: str | TextClause, **params: Any) -> Result:
        """Run one statement with ``:name`` parameters (SQLAlchemy ``text()`` syntax).

        ``sql`` may be a ``text()`` clause that declares its parameters (e.g. an
        expanding one for ``IN :names``). The driver quotes the values.
        """
        clause = text(sql) if isinstance(sql, str) else sql
        with translated_errors():
            if self.sqlalchemy is not None:
                return _sqlalchemy_result(self.sqlalchemy.execute(clause, params))
            if not params and isinstance(sql, str):
                return self.run(sql)
            compiled = clause.bindparams(**params).compile(
                dialect=_PYFORMAT, compile_kwargs={"render_postcompile": True}
            )
            cursor = self.dbapi().cursor()
            try:
                cursor.execute(compiled.string, compiled.params)
                return drain(cursor)
            finally:
                cursor.close()

    def call(
        self, procedure: str, *args: int | str | None, prefix: str = ""
    ) -> list[tuple[Any, ...]]:
        """CALL ``procedure`` with integer, string (or NULL) arguments; return its first result's rows.

        Integers are rendered as literals; strings (a scope value) are bound, quoted by
        the driver. ``prefix`` goes before ``CALL`` (only where :attr:`takes_call_prefix`).

        The CALL runs on the DB-API cursor and every result set is read, also under
        SQLAlchemy: SQLAlchemy reads only the first and closes the cursor, and
        mysql-connector-python does not drain the rest on close, so the next
        statement on that connection would read the leftover result.
        """
        with translated_errors():
            raw = self.dbapi()
            cursor = raw.cursor()
            try:
                if _is_old_connector(raw):
                    if prefix:
                        raise BatchFlagError(f"cannot prefix a callproc() CALL with {prefix!r}")
                    cursor.callproc(procedure, args)
                    rows: list[tuple[Any, ...]] = []
                    for result in cursor.stored_results():
                        fetched = [tuple(r) for r in result.fetchall()]
                        rows = rows or fetched
                    return rows
                # Ints are rendered as literals (no paramstyle to guess); a string is bound in
                # the pyformat style, which every MySQL driver takes with a dict of values.
                params = {f"a{i}": a for i, a in enumerate(args) if isinstance(a, str)}
                rendered = ", ".join(
                    "NULL" if a is None else f"%(a{i})s" if isinstance(a, str) else str(int(a))
                    for i, a in enumerate(args)
                )
                statement = f"{prefix}CALL {procedure}({rendered})"
                if params:
                    cursor.execute(statement, params)
                else:
                    cursor.execute(statement)
                return drain(cursor).rows
            finally:
                cursor.close()


@contextmanager
def connect(conn: Connectable, *, isolation_level: str | None = "AUTOCOMMIT") -> Iterator[Link]:
    """Yield a :class:`Link` for ``conn`` (an Engine, a Connection or a PEP 249 connection).

    Args:
        conn: What the caller gave.
        isolation_level: For an Engine, the isolation level of the connection
            checked out for the call (None: the Engine's own). A Connection or
            PEP 249 connection is used in the mode it is in.

    Raises:
        DatabaseConnectionError: The Engine cannot check out a connection. A
            connection that fails this way inside the block is invalidated, so the
            pool neither hands it out again nor resets it.
        BatchFlagError: Any other driver error with an errno.
        NotAConnectionError: ``conn`` is none of those (a URL string, say).
    """
    if isinstance(conn, Engine):
        with translated_errors(), conn.connect() as checked_out:
            session = (
                checked_out
                if isolation_level is None
                else checked_out.execution_options(isolation_level=isolation_level)
            )
            try:
                yield Link(session, checked_out=True)
            except DatabaseConnectionError:
                session.invalidate()
                raise
    elif isinstance(conn, Connection):
        yield Link(conn)
    elif callable(getattr(conn, "cursor", None)):
        yield Link(None, conn)
    else:
        raise not_a_connection(conn, "an Engine, a Connection or a PEP 249 connection")


def not_a_connection(conn: object, wanted: str) -> NotAConnectionError:
    """The error for a ``conn`` that is none of ``wanted``; a URL is never echoed (its password)."""
    given = type(conn).__name__
    hint = ""
    if isinstance(conn, str) or given == "URL":
        hint = ": for a database URL, pass create_engine(url) (or create_async_engine(url))"
    return NotAConnectionError(f"conn must be {wanted}, not a {given}{hint}")
