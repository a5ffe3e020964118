"""Least privilege: what an application account needs to use batchflag-db, and no more.

An application account gets:

* ``SELECT`` on ``batchStatus`` (read it, and ``get_current_batch``);
* ``EXECUTE`` on every routine batchflag-db ships (``set_current_batch``,
  ``unset_current_batch``, ``resolve_dashboard_batch``).

It gets no ``INSERT``, ``UPDATE`` or ``DELETE`` on ``batchStatus`` and nothing on
``currentBatchLock``, so it cannot write ``currentBatch`` itself: the procedures
are ``SQL SECURITY DEFINER`` and do the writing with their definer's privileges
(the account that ran the migrations). ``tests/test_privileges.py`` proves both
halves, and shows that ``SQL SECURITY INVOKER`` would need ``UPDATE`` on the flag.

An application that also creates batches can be given column privileges that
leave the flag out; :func:`column_write_statements` writes them from the table's
actual columns.

The account must already exist (``CREATE USER``): granting never creates
accounts, and never sets passwords.
"""

from __future__ import annotations

import re

from batchflag_db import _routines, installation
from batchflag_db._connection import Connectable, connect
from batchflag_db._schema import FLAG_COLUMN, KEY_COLUMN, TABLE
from batchflag_db.errors import (
    ACCESS_DENIED_ERRNOS,
    ER_CANT_CREATE_USER_WITH_GRANT,
    ER_NONEXISTING_GRANT,
    BatchFlagError,
    ConfigurationError,
    SchemaNotReadyError,
    driver_error_details,
)
from batchflag_db.installation import DEFAULT, RECORD_TABLE, Installation

__all__ = [
    "InvalidAccountError",
    "column_write_statements",
    "grant",
    "grant_statements",
    "parse_account",
    "quote_account",
    "quote_identifier",
]

# A user or host name, bare or in single quotes. Deliberately narrower than what
# the server accepts: letters, digits and the punctuation real account names use.
# Nothing here can end a quoted string or start a comment.
_USER = r"[A-Za-z0-9_.$-]{1,80}"
_HOST = r"[A-Za-z0-9_.%:/-]{1,255}"
_ACCOUNT = re.compile(
    rf"(?:'(?P<quser>{_USER})'|(?P<user>{_USER}))@(?:'(?P<qhost>{_HOST})'|(?P<host>{_HOST}))"
)
_MAX_IDENTIFIER = 64

# Server errors grant() explains in its own words: the account does not exist.
_NO_SUCH_ACCOUNT = (ER_NONEXISTING_GRANT, ER_CANT_CREATE_USER_WITH_GRANT)


class InvalidAccountError(BatchFlagError, ValueError):
    """Raised when an account is not written as 'user'@'host' or user@host."""


def parse_account(account: str) -> tuple[str, str]:
    """Split an account written ``'user'@'host'`` or ``user@host`` into (user, host).

    Either part may be bare or in single quotes. Names may hold letters, digits
    and ``_ . $ -``; hosts also ``% : /`` (wildcards, IPv6, netmasks). Anything
    else is refused rather than escaped: an account name is never a place for
    quotes, spaces, backslashes or semicolons.

    Raises:
        InvalidAccountError: ``account`` has any other form.
    """
    if not isinstance(account, str):
        raise InvalidAccountError(
            f"invalid account {account!r}: write it as 'user'@'host' or user@host"
        )
    match = _ACCOUNT.fullmatch(account)  # fullmatch: no trailing newline either
    if match is None:
        shown = account if len(account) <= 80 else account[:77] + "..."
        raise InvalidAccountError(
            f"invalid account {shown!r}: write it as 'user'@'host' or user@host "
            "(user: letters, digits, _ . $ -; host: also % : /), e.g. 'app'@'%'"
        )
    user = match.group("quser") or match.group("user")
    host = match.group("qhost") or match.group("host")
    return user, host


def quote_account(account: str) -> str:
    """Return ``account`` in the canonical quoted form ``'user'@'host'``.

    Raises:
        InvalidAccountError: ``account`` is not a valid account (see :func:`parse_account`).
    """
    user, host = parse_account(account)
    return f"'{user}'@'{host}'"


def quote_identifier(name: str) -> str:
    """Return a database or table name quoted with backticks (inner backticks doubled).

    Raises:
        ConfigurationError: ``name`` is empty, longer than 64 characters or holds a NUL.
    """
    if not isinstance(name, str) or not name or len(name) > _MAX_IDENTIFIER or "\x00" in name:
        raise ConfigurationError(
            f"invalid database name {name!r}: name the database in the URL "
            "(mysql+pymysql://USER:PASSWORD@HOST:PORT/DATABASE)"
        )
    return "`" + name.replace("`", "``") + "`"


def grant_statements(account: str, database: str, inst: Installation = DEFAULT) -> list[str]:
    """Return the GRANT statements that let ``account`` flip and read, but not write the flag.

    SELECT on the installation's table, then EXECUTE on each of its routines, then
    SELECT on the record of its names (the wrappers read it to know them).

    The statements carry no trailing semicolon.

    Args:
        account: ``'user'@'host'`` or ``user@host``; the account must exist.
        database: The database holding the table and the procedures.
        inst: The installation (default: ``batchStatus`` and no scope column).

    Raises:
        InvalidAccountError: ``account`` is not a valid account.
        ConfigurationError: ``database`` is not a valid database name.
    """
    who = quote_account(account)
    db = quote_identifier(database)
    statements = [f"GRANT SELECT ON {db}.{quote_identifier(inst.table)} TO {who}"]
    statements += [
        f"GRANT EXECUTE ON PROCEDURE {db}.{quote_identifier(name)} TO {who}"
        for name in _routines.files(inst)
    ]
    statements.append(f"GRANT SELECT ON {db}.{quote_identifier(RECORD_TABLE)} TO {who}")
    return statements


def _explain(error: BatchFlagError, account: str, database: str) -> BatchFlagError | None:
    """Say in grant()'s own words what a server error means, or None to leave it as it is."""
    _, _, message = driver_error_details(error.__cause__ or error)
    if error.errno in _NO_SUCH_ACCOUNT:
        return BatchFlagError(
            f"account {account} does not exist: create it first "
            f"(CREATE USER {account} IDENTIFIED BY '...'), then grant again ({message})",
            errno=error.errno,
            sqlstate=error.sqlstate,
        )
    if error.errno in ACCESS_DENIED_ERRNOS:
        return BatchFlagError(
            f"this connection's account may not grant on {database}: connect as an "
            f"account holding these privileges WITH GRANT OPTION ({message})",
            errno=error.errno,
            sqlstate=error.sqlstate,
        )
    return None


def grant(conn: Connectable, account: str, database: str) -> None:
    """Run :func:`grant_statements` on ``conn``.

    ``conn`` is a SQLAlchemy Engine or Connection, or a PEP 249 connection, of an
    account allowed to grant (it holds the privileges WITH GRANT OPTION). GRANT
    commits implicitly; granting again is harmless. The statements go to the
    server verbatim, without parameters, so a host such as ``'%'`` reaches it as
    written, whatever the driver's paramstyle.

    Raises:
        InvalidAccountError: ``account`` is not a valid account.
        ConfigurationError: ``database`` is not a valid database name.
        SchemaNotReadyError: The table or procedures are missing: migrate first.
        BatchFlagError: The account does not exist, ``conn`` may not grant, or
            another server error (``errno`` and ``sqlstate`` kept).
    """
    quote_account(account)  # refuse a bad account before reading anything
    try:
        with connect(conn) as link:
            statements = grant_statements(account, database, installation.read(link, database))
            for statement in statements:
                link.run(statement)
    except BatchFlagError as error:
        explained = _explain(error, quote_account(account), database)
        if explained is None:
            raise
        raise explained from error.__cause__


def column_write_statements(conn: Connectable, account: str, database: str) -> list[str]:
    """Return GRANTs of INSERT and UPDATE on every column of batchStatus but the flag.

    For an application that creates batches and updates their other columns:
    with these, an ``INSERT`` or ``UPDATE`` that names ``currentBatch`` is denied
    (error 1143), and a row inserted without it takes the column default (0).
    The columns are read from the server, so adopted tables with their own
    columns are covered. Nothing is run; pass the result to the server yourself.

    Raises:
        InvalidAccountError: ``account`` is not a valid account.
        ConfigurationError: ``database`` is not a valid database name.
        SchemaNotReadyError: ``batchStatus`` does not exist in ``database``.
    """
    who = quote_account(account)
    db = quote_identifier(database)
    query = (
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = :db AND TABLE_NAME = :table "
        # Generated columns cannot be written at all; NULL on MariaDB, '' on MySQL.
        "AND COALESCE(GENERATION_EXPRESSION, '') = '' ORDER BY ORDINAL_POSITION"
    )
    with connect(conn, isolation_level=None) as link:
        names = [str(r[0]) for r in link.query(query, db=database, table=TABLE).rows]
    if not names:
        raise SchemaNotReadyError(
            f"table {TABLE} not found in database {database}: run `batchflag upgrade` first"
        )
    columns = ", ".join(quote_identifier(n) for n in names if n not in (FLAG_COLUMN, KEY_COLUMN))
    table = f"{db}.{quote_identifier(TABLE)}"
    return [
        f"GRANT INSERT ({columns}) ON {table} TO {who}",
        f"GRANT UPDATE ({columns}) ON {table} TO {who}",
    ]
