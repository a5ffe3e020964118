"""One installation of batchflag-db: the user's table and column names, as recorded in the database.

An installation is made by revision 0006 of the standalone chain (``batchflag upgrade``)
or by the Alembic operation ``op.create_current_flag(...)`` in a team's own chain
(:mod:`batchflag_db.alembic`). Either way it writes one row to
:data:`RECORD_TABLE`, so doctor, the CLI, the wrappers and the routines' templates
know the names without being told again. A database migrated only to revision 0005
or earlier has no record: it is the default installation (``batchStatus``,
``id``, ``currentBatch``, ``batchStatus``, no scope).

One installation per database: the routines keep their names
(``set_current_batch(id)`` and the rest).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from batchflag_db._connection import Link
from batchflag_db._schema import (
    FLAG_COLUMN,
    HISTORY_TABLE,
    KEY_COLUMN,
    KEY_STORAGE,
    LOCK_TABLE,
    STATUS_COLUMN,
    TABLE,
)
from batchflag_db.errors import (
    ER_NO_SUCH_TABLE,
    ER_TABLEACCESS_DENIED_ERROR,
    BatchFlagError,
    ConfigurationError,
    SchemaNotReadyError,
)

__all__ = [
    "DEFAULT",
    "FLAG_INDEX_SUFFIX",
    "OPTION_NAMES",
    "RECORD_TABLE",
    "SCOPE_LOCK_TABLE",
    "STATUS_INDEX_SUFFIX",
    "Installation",
    "current_query",
    "from_read_error",
    "from_record",
    "quote",
    "read",
    "unreadable",
]

log = logging.getLogger("batchflag_db")

RECORD_TABLE = "currentBatchInstallation"
"""The one-row table that records the installation's names."""

SCOPE_LOCK_TABLE = "currentBatchScopeLock"
"""With a scope column: one lock row per scope value, which every flip of that scope locks first."""

STATUS_INDEX_SUFFIX = "batchflag_status"
"""The status index of an installation on other names is ``ix_<table>_batchflag_status``."""

FLAG_INDEX_SUFFIX = "batchflag_flag"
"""The flag index of an installation on other names is ``ix_<table>_batchflag_flag``."""

OPTION_NAMES = ("table", "id_column", "flag_column", "status_column", "scope_column", "scope_type")
"""The options that name an installation: ``batchflag upgrade --table ...``, ``-x table=...``,
and the keyword arguments of ``op.create_current_flag``."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_IDENTIFIER_LIMIT = 64


def quote(name: str) -> str:
    """Return ``name`` as a backquoted identifier (names are validated, so no escaping)."""
    return f"`{name}`"


def _check_identifier(what: str, value: object) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ConfigurationError(
            f"{what}={value!r} is not a name batchflag-db accepts: letters, digits and _ "
            "only, not starting with a digit, at most 64 characters"
        )
    return value


@dataclass(frozen=True)
class Installation:
    """The names one installation uses.

    Attributes:
        table: The user's table, one row per batch.
        id_column: Its primary key column (an integer).
        flag_column: Its boolean "current" column (non-zero means current).
        status_column: Its status column ('InProgress', 'Completed', ...).
        scope_column: With a value, at most one row is current per value of this column
            (e.g. ``pipeline``); the column must be NOT NULL. None: one current row in all.
        scope_type: The scope column's type as the routines declare their scope
            variables, e.g. ``varchar(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin``
            (read from the server online; required offline).
    """

    table: str = TABLE
    id_column: str = "id"
    flag_column: str = FLAG_COLUMN
    status_column: str = STATUS_COLUMN
    scope_column: str | None = None
    scope_type: str | None = None

    def __post_init__(self) -> None:
        _check_identifier("table", self.table)
        _check_identifier("id_column", self.id_column)
        _check_identifier("flag_column", self.flag_column)
        _check_identifier("status_column", self.status_column)
        if self.scope_column is not None:
            _check_identifier("scope_column", self.scope_column)
            if self.scope_column in (self.id_column, self.flag_column):
                raise ConfigurationError(
                    f"scope_column={self.scope_column!r} is also the id or the flag column"
                )
        elif self.scope_type is not None:
            raise ConfigurationError("scope_type is given without a scope_column")
        if self.scope_type is not None and not re.fullmatch(r"[^;`\\]{1,200}", self.scope_type):
            raise ConfigurationError(
                f"scope_type={self.scope_type!r} is not a column type, e.g. "
                "'varchar(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin'"
            )
        derived = (self.key_index_next, self.status_index, self.flag_index)
        if any(len(name) > _IDENTIFIER_LIMIT for name in derived):
            raise ConfigurationError(
                f"table={self.table!r}: the index names batchflag-db derives from it "
                f"({', '.join(derived)}) are longer than 64 characters"
            )

    # --- derived names (batchflag-db's own objects) ---------------------------

    @property
    def key_column(self) -> str:
        """The generated column: 1 where the flag is non-zero, NULL elsewhere."""
        return KEY_COLUMN

    @property
    def key_index(self) -> str:
        """The UNIQUE index on the key column (with the scope column first, when scoped)."""
        return f"uq_{self.table}_{KEY_COLUMN}"

    @property
    def key_index_next(self) -> str:
        """The name the UNIQUE index is built under while its order changes (revision 0007)."""
        return f"{self.key_index}_next"

    @property
    def flag_index(self) -> str:
        """The index on the flag column, for the user's own ``WHERE <flag> = 1`` queries.

        ``ix_batchStatus_currentBatch`` on the default table and flag column, else
        ``ix_<table>_batchflag_flag``.
        """
        if (self.table, self.flag_column) == (TABLE, FLAG_COLUMN):
            return f"ix_{TABLE}_{FLAG_COLUMN}"
        return f"ix_{self.table}_{FLAG_INDEX_SUFFIX}"

    @property
    def status_index(self) -> str:
        """The index the dashboard's resolution walks: ([scope,] status, id).

        Revision 0004's name on the default table and columns, else
        ``ix_<table>_batchflag_status``.
        """
        if (self.table, self.status_column, self.id_column) == (
            TABLE,
            STATUS_COLUMN,
            "id",
        ):
            return f"ix_{TABLE}_{STATUS_COLUMN}_id"
        return f"ix_{self.table}_{STATUS_INDEX_SUFFIX}"

    @property
    def lock_table(self) -> str:
        """The table whose row (one per scope, when scoped) every flip locks first."""
        return SCOPE_LOCK_TABLE if self.scoped else LOCK_TABLE

    @property
    def history_table(self) -> str:
        """One row per flip that changed the current batch."""
        return HISTORY_TABLE

    @property
    def scoped(self) -> bool:
        """True when at most one row is current per value of :attr:`scope_column`."""
        return self.scope_column is not None

    @property
    def is_default(self) -> bool:
        """True for the names revisions 0001-0005 use (``batchStatus`` and no scope)."""
        return self.names() == DEFAULT.names()

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The UNIQUE index's columns, in order."""
        return (*((self.scope_column,) if self.scope_column else ()), self.key_column)

    @property
    def status_columns(self) -> tuple[str, ...]:
        """The status index's columns, in order."""
        scope = (self.scope_column,) if self.scope_column else ()
        return (*scope, self.status_column, self.id_column)

    # --- the DDL of batchflag-db's objects on the user's table (install builds it,
    # doctor compares with it) ---------------------------------------------------

    @property
    def key_expression(self) -> str:
        """The key column's generation expression: 1 where the flag is non-zero, else NULL."""
        return f"IF({quote(self.flag_column)} <> 0, 1, NULL)"

    def add_key_column(self) -> str:
        """``ALTER TABLE`` adding the generated key column (stored as :data:`KEY_STORAGE`)."""
        return (
            f"ALTER TABLE {quote(self.table)} ADD COLUMN {quote(self.key_column)} TINYINT "
            f"GENERATED ALWAYS AS ({self.key_expression}) {KEY_STORAGE}"
        )

    def add_key_index(self, name: str, *, descending: bool) -> str:
        """``ALTER TABLE`` adding the UNIQUE index on :attr:`key_columns` under ``name``."""
        columns = ", ".join(
            quote(c) + (" DESC" if descending and c == self.key_column else "")
            for c in self.key_columns
        )
        return f"ALTER TABLE {quote(self.table)} ADD UNIQUE INDEX {quote(name)} ({columns})"

    def add_status_index(self) -> str:
        """``ALTER TABLE`` adding the status index on :attr:`status_columns`."""
        columns = ", ".join(quote(c) for c in self.status_columns)
        return f"ALTER TABLE {quote(self.table)} ADD INDEX {quote(self.status_index)} ({columns})"

    def add_flag_index(self) -> str:
        """``ALTER TABLE`` adding the index on the flag column."""
        return (
            f"ALTER TABLE {quote(self.table)} ADD INDEX {quote(self.flag_index)} "
            f"({quote(self.flag_column)})"
        )

    def drop_index(self, name: str) -> str:
        """``ALTER TABLE`` dropping index ``name``."""
        return f"ALTER TABLE {quote(self.table)} DROP INDEX {quote(name)}"

    def names(self) -> dict[str, str | None]:
        """The user's names, as the record holds them (scope_type aside)."""
        return {
            "table": self.table,
            "id_column": self.id_column,
            "flag_column": self.flag_column,
            "status_column": self.status_column,
            "scope_column": self.scope_column,
        }

    def with_scope_type(self, scope_type: str | None) -> Installation:
        """Return this installation with ``scope_type`` set."""
        return replace(self, scope_type=scope_type)

    def describe(self) -> str:
        """One line naming the table and columns, for messages."""
        scope = f", one current row per {self.scope_column}" if self.scope_column else ""
        return (
            f"table {self.table} (id {self.id_column}, flag {self.flag_column}, "
            f"status {self.status_column}{scope})"
        )

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Installation:
        """Build an installation from ``table=``, ``id_column=``, ... options (None: default).

        Raises:
            ConfigurationError: An option is not a valid name, or is unknown.
        """
        known = set(OPTION_NAMES)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown installation option(s) {', '.join(unknown)}: "
                f"use {', '.join(sorted(known))}"
            )
        given = {k: v for k, v in options.items() if v is not None and v != ""}
        return cls(**given)


DEFAULT = Installation()
"""The names revisions 0001-0005 use: ``batchStatus``, ``id``, ``currentBatch``, ``batchStatus``."""

RECORD_COLUMNS = (
    "tableName",
    "idColumn",
    "flagColumn",
    "statusColumn",
    "scopeColumn",
    "scopeType",
)
"""The record table's name columns, in :class:`Installation`'s field order."""


def from_record(row: tuple[Any, ...] | None) -> Installation:
    """Return the installation a record row holds, or :data:`DEFAULT` for no row."""
    if row is None:
        return DEFAULT
    values = [v.decode() if isinstance(v, bytes) else v for v in row]
    return Installation(*values)


RECORD_QUERY = (
    f"SELECT {', '.join(quote(c) for c in RECORD_COLUMNS)} FROM {quote(RECORD_TABLE)} "
    "WHERE `id` = 1"
)
"""Reads the record row (the table exists from revision 0006 or ``create_current_flag`` on)."""


def read(link: Link, database: str | None = None) -> Installation:
    """Return the installation recorded in ``database`` (default: the one ``link`` is on).

    A database without the record table (migrated to revision 0005 or earlier, or not
    at all) is the :data:`DEFAULT` installation.

    Raises:
        BatchFlagError: A server error other than "the table does not exist".
    """
    query = RECORD_QUERY
    if database is not None:
        qualified = "`" + database.replace("`", "``") + "`." + quote(RECORD_TABLE)
        query = RECORD_QUERY.replace(quote(RECORD_TABLE), qualified)
    try:
        rows = link.run(query).rows
    except BatchFlagError as exc:
        return from_read_error(exc)
    return from_record(rows[0] if rows else None)


def from_read_error(exc: BatchFlagError) -> Installation:
    """Return the installation to assume when reading the record failed with ``exc``.

    No record table: :data:`DEFAULT`. An account that may not read it: :func:`unreadable`.
    Call it in the ``except`` block (the sync :func:`read` and :mod:`batchflag_db.aio` do).

    Raises:
        BatchFlagError: ``exc`` itself, for any other error.
    """
    if isinstance(exc, SchemaNotReadyError):
        if exc.errno == ER_NO_SUCH_TABLE:
            return DEFAULT
        raise exc
    if exc.errno == ER_TABLEACCESS_DENIED_ERROR:
        return unreadable()
    raise exc


def unreadable() -> Installation:
    """An account that may not read the record (granted before it existed): the default names.

    So an application account granted by an earlier version keeps working on the default
    table; on other names its queries then fail naming the missing table, and the warning
    says what to grant.
    """
    log.warning(
        "this account may not read %s, which names the installation's table and columns; "
        "assuming the default names (batchStatus): grant it SELECT on %s "
        "(`batchflag grant ACCOUNT` does)",
        RECORD_TABLE,
        RECORD_TABLE,
    )
    return DEFAULT


def current_query(
    inst: Installation, scope: object | None, columns: Sequence[str] | None = None
) -> str:
    """The query of the current batch (of ``scope``, bound as ``:scope``): one index probe.

    Args:
        inst: The installation.
        scope: The scope whose current batch to read; None without a scope column.
        columns: The columns to select (names of the table's columns); None: the id column.

    Raises:
        ConfigurationError: A scope is given to an installation without a scope column,
            or none to one with it.
    """
    shown = ", ".join(quote(c) for c in columns or (inst.id_column,))
    select = f"SELECT {shown} FROM {quote(inst.table)} WHERE "
    key = f"{quote(inst.key_column)} = 1"
    if inst.scope_column is None:
        if scope is not None:
            raise ConfigurationError(
                f"scope={scope!r}: this database's installation on {inst.table} has no scope "
                "column, so one batch is current in all"
            )
        return select + key
    if scope is None:
        raise ConfigurationError(
            f"one batch is current per {inst.scope_column} in {inst.table}: pass the scope "
            f"(scope=..., the CLI's --scope) whose current batch you want"
        )
    return f"{select}{quote(inst.scope_column)} = :scope AND {key}"
