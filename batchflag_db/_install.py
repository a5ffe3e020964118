"""Installing and removing batchflag-db on a table: the steps both paths share.

Revision 0006 of the standalone chain and the Alembic operations of
:mod:`batchflag_db.alembic` (``op.create_current_flag`` and its reverse) call
:func:`create` and :func:`drop` with an :class:`~batchflag_db.installation.Installation`.
Every step is idempotent, so an interrupted run is finished by running it again.
Online, every check comes before the first change: a refused installation changes
nothing. Offline (``--sql``) the same statements are written to the script; the checks
that need the data run in the script itself, as a guard procedure that stops the client.
"""

from __future__ import annotations

import logging
import re

from alembic import context, op
from sqlalchemy import text
from sqlalchemy.engine import Connection

from batchflag_db import _ddl, _routines
from batchflag_db import installation as installation_names
from batchflag_db._notice import notice
from batchflag_db._schema import HISTORY_TABLE, KEY_COLUMN, LOCK_TABLE, VERSION_TABLE
from batchflag_db.errors import ER_DUP_ENTRY, MigrationRefusedError, driver_error_details
from batchflag_db.installation import (
    DEFAULT,
    RECORD_COLUMNS,
    RECORD_TABLE,
    SCOPE_LOCK_TABLE,
    Installation,
    from_record,
    quote,
)

__all__ = [
    "LATEST_LAYOUT",
    "LAYOUTS",
    "OPTION_NAMES",
    "check_new_table",
    "create",
    "drop",
    "from_context",
    "read_scope_type",
    "recorded",
    "remember",
    "replace_routines",
    "set_layout",
    "skip_default_revision",
]

log = logging.getLogger("batchflag_db.migrations")

_INDEX_ATTEMPTS = 3
_ONLINE = "ALGORITHM=INPLACE, LOCK=NONE"

LAYOUTS = (1, 2)
"""How an installation's indexes are laid out.

1 (revisions 0002 and 0006): UNIQUE ``([scope,] key)``, ascending. 2 (revision 0007, and
``op.create_current_flag``): UNIQUE ``([scope,] key DESC)``, so a new batch's ``NULL``
entry no longer lands in the gap an open flip locks next to the current ``1`` entry,
and an index on the flag column, so the user's own ``WHERE <flag> = 1`` is a lookup.
"""

LATEST_LAYOUT = LAYOUTS[-1]
_GUARD = "batchflag_check_installation"
_SIGNAL_TEXT_LIMIT = 128

_CREATE_RECORD = f"""
CREATE TABLE IF NOT EXISTS `{RECORD_TABLE}` (
    `id` TINYINT NOT NULL,
    `tableName` VARCHAR(64) NOT NULL,
    `idColumn` VARCHAR(64) NOT NULL,
    `flagColumn` VARCHAR(64) NOT NULL,
    `statusColumn` VARCHAR(64) NOT NULL,
    `scopeColumn` VARCHAR(64) NULL,
    `scopeType` VARCHAR(255) NULL,
    `installedAt` DATETIME(6) NOT NULL COMMENT 'UTC',
    PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
  COMMENT='batchflag-db: the names of this database''s installation'
"""

_CREATE_HISTORY = f"""
CREATE TABLE IF NOT EXISTS `{HISTORY_TABLE}` (
    `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    `batchId` BIGINT NOT NULL,
    `previousBatchId` BIGINT NULL,
    `action` ENUM('set', 'unset') NOT NULL,
    `changedAt` DATETIME(6) NOT NULL COMMENT 'UTC',
    `account` VARCHAR(384) NOT NULL COMMENT 'USER() of the calling session',
    `connectionId` BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (`id`),
    KEY `ix_currentBatchHistory_changedAt` (`changedAt`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
  COMMENT='batchflag-db: one row per flip of the current batch that changed it'
"""

_CREATE_LOCK = f"""
CREATE TABLE IF NOT EXISTS `{LOCK_TABLE}` (
    `id` TINYINT NOT NULL,
    `flipCount` BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (`id`)
) ENGINE=InnoDB COMMENT='batchflag-db: every flip locks this row first'
"""


def _create_scope_lock(inst: Installation) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS `{SCOPE_LOCK_TABLE}` (
    `lockId` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    `scopeValue` {inst.scope_type} NOT NULL,
    `flipCount` BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (`lockId`),
    UNIQUE KEY `uq_{SCOPE_LOCK_TABLE}_scopeValue` (`scopeValue`)
) ENGINE=InnoDB COMMENT='batchflag-db: every flip locks its scope''s row first'
"""


# --- reading the database (online only) -------------------------------------------


def _columns(table: str) -> dict[str, tuple[str, str | None, str | None, str, str]]:
    """The table's columns: name -> (type, charset, collation, nullable, generation)."""
    rows = _ddl.rows(
        "SELECT COLUMN_NAME, COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME, IS_NULLABLE, "
        "COALESCE(GENERATION_EXPRESSION, '') FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t",
        t=table,
    )
    return {str(r[0]): (str(r[1]), r[2], r[3], str(r[4]), str(r[5])) for r in rows}


def _index_exists(table: str, index: str) -> bool:
    return bool(
        _ddl.scalar(
            "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = :t AND INDEX_NAME = :i",
            t=table,
            i=index,
        )
    )


def _index_descending(table: str, index: str) -> bool | None:
    """Whether the key column's part of ``index`` is stored descending; None: no such index.

    ``information_schema.STATISTICS.COLLATION`` says what the server built (``D`` or
    ``A``): a server that parses DESC and ignores it reports ``A``.
    """
    found = _ddl.rows(
        "SELECT COLUMN_NAME, COLLATION FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND INDEX_NAME = :i",
        t=table,
        i=index,
    )
    if not found:
        return None
    return any(str(c) == KEY_COLUMN and str(o or "").upper() == "D" for c, o in found)


def indexes_leading_with(table: str, column: str) -> list[str]:
    """The indexes of ``table`` whose first column is ``column`` (online only)."""
    found = _ddl.rows(
        "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = :t AND SEQ_IN_INDEX = 1 AND COLUMN_NAME = :c ORDER BY INDEX_NAME",
        t=table,
        c=column,
    )
    return [str(r[0]) for r in found]


def _table_exists(table: str) -> bool:
    return bool(
        _ddl.scalar(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = :t",
            t=table,
        )
    )


def recorded() -> Installation | None:
    """The installation recorded in the database, or None when there is none (online only)."""
    if not _table_exists(RECORD_TABLE):
        return None
    row = _ddl.rows(
        f"SELECT {', '.join(quote(c) for c in RECORD_COLUMNS)} FROM `{RECORD_TABLE}` WHERE `id` = 1"
    )
    return from_record(row[0]) if row else None


def read_scope_type(inst: Installation) -> str:
    """The scope column's type as a routine declares a variable of it (online only)."""
    column = _columns(inst.table).get(inst.scope_column or "")
    if column is None:
        raise MigrationRefusedError(f"{inst.table} has no column `{inst.scope_column}`")
    column_type, charset, collation, _, _ = column
    if charset and collation:
        return f"{column_type} CHARACTER SET {charset} COLLATE {collation}"
    return column_type


def _check(inst: Installation) -> Installation:
    """Refuse, before any change, a table this installation cannot go on; fill in scope_type."""
    engine = _ddl.scalar(
        "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = :t",
        t=inst.table,
    )
    if engine is None:
        raise MigrationRefusedError(
            f"table {inst.table} does not exist: create it first, or pass the name of your "
            "table (table=...)"
        )
    if str(engine).upper() != "INNODB":
        raise MigrationRefusedError(
            f"{inst.table} uses the {engine} engine; batchflag-db needs InnoDB for atomic "
            f"flips: convert it first with ALTER TABLE {inst.table} ENGINE=InnoDB"
        )
    columns = _columns(inst.table)
    for option, name in (
        ("id_column", inst.id_column),
        ("flag_column", inst.flag_column),
        ("status_column", inst.status_column),
        ("scope_column", inst.scope_column),
    ):
        if name is not None and name not in columns:
            raise MigrationRefusedError(
                f"{inst.table} has no column `{name}` ({option}): name the column your table "
                f"has, e.g. {option}=..., or add it"
            )
    _check_column_types(inst, {name: value[0] for name, value in columns.items()})
    key = columns.get(inst.key_column)
    if key is not None and not key[4]:
        raise MigrationRefusedError(
            f"{inst.table} already has a column `{inst.key_column}` that is not generated: "
            "batchflag-db needs that name for its key column; rename yours"
        )
    previous = recorded()
    if previous is not None and previous.names() != inst.names():
        raise MigrationRefusedError(
            f"this database already has an installation on {previous.describe()}; one per "
            "database: remove it first (drop_current_flag, or `batchflag downgrade base`)"
        )
    if inst.scope_column is None:
        return inst
    if columns[inst.scope_column][3] == "YES":
        raise MigrationRefusedError(
            f"scope column `{inst.scope_column}` of {inst.table} allows NULL: rows with NULL "
            "would escape the one-current-row rule (a UNIQUE index never compares NULLs). "
            f"Make it NOT NULL first: ALTER TABLE {inst.table} MODIFY `{inst.scope_column}` "
            "... NOT NULL"
        )
    return inst if inst.scope_type else inst.with_scope_type(read_scope_type(inst))


_INTEGER_TYPES = ("tinyint", "smallint", "mediumint", "int", "integer", "bigint")
_COLUMN_KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "id_column": (_INTEGER_TYPES, "an integer column (its primary key)"),
    "flag_column": (
        (*_INTEGER_TYPES, "bit", "bool", "boolean"),
        "a numeric or boolean column (non-zero means current), e.g. TINYINT(1) NOT NULL DEFAULT 0",
    ),
    "status_column": (
        ("char", "varchar", "enum", "tinytext", "text"),
        "a text column (CHAR, VARCHAR or ENUM) holding 'InProgress', 'Completed', ...",
    ),
    "scope_column": (
        (*_INTEGER_TYPES, "char", "varchar", "enum", "binary", "varbinary", "date"),
        "an integer, CHAR, VARCHAR, ENUM, BINARY or DATE column",
    ),
}
"""Per option: the column types (as COLUMN_TYPE begins) it may name, and what to say otherwise."""


def _check_column_types(inst: Installation, types: dict[str, str]) -> None:
    """Refuse a column whose type the option cannot use, naming the column and its type."""
    for option, (accepted, wanted) in _COLUMN_KINDS.items():
        name = getattr(inst, option)
        if name is None:
            continue
        column_type = types[name]
        base = re.split(r"[\s(]", column_type.lower(), maxsplit=1)[0]
        if base not in accepted:
            raise MigrationRefusedError(
                f"{option}={name!r}: column `{name}` of {inst.table} is {column_type}; "
                f"batchflag-db needs {wanted}"
            )


def _guard(inst: Installation) -> None:
    """Offline: the checks of :func:`_check` that need the data, run by the script itself."""
    checks = [
        (
            f"NOT EXISTS (SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
            f"DATABASE() AND TABLE_NAME = '{inst.table}' AND ENGINE = 'InnoDB')",
            f"table {inst.table} does not exist or is not InnoDB",
        ),
    ]
    for name in (inst.id_column, inst.flag_column, inst.status_column, inst.scope_column):
        if name is not None:
            checks.append(
                (
                    f"NOT EXISTS (SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA "
                    f"= DATABASE() AND TABLE_NAME = '{inst.table}' AND COLUMN_NAME = '{name}')",
                    f"{inst.table} has no column {name}",
                )
            )
    flag_types = ", ".join(f"'{t}'" for t in _COLUMN_KINDS["flag_column"][0])
    checks.append(
        (
            f"EXISTS (SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            f"AND TABLE_NAME = '{inst.table}' AND COLUMN_NAME = '{inst.flag_column}' "
            f"AND DATA_TYPE NOT IN ({flag_types}))",
            f"flag column {inst.flag_column} is not numeric or boolean",
        )
    )
    if inst.scope_column is not None:
        checks.append(
            (
                f"EXISTS (SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                f"DATABASE() AND TABLE_NAME = '{inst.table}' AND COLUMN_NAME = "
                f"'{inst.scope_column}' AND IS_NULLABLE = 'YES')",
                f"scope column {inst.scope_column} allows NULL: make it NOT NULL first",
            )
        )
    body = "\n".join(
        f"  IF {condition} THEN\n    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = "
        f"'{message[:_SIGNAL_TEXT_LIMIT]}';\n  END IF;"
        for condition, message in checks
    )
    _ddl.run(f"DROP PROCEDURE IF EXISTS `{_GUARD}`")
    _ddl.run_text(f"CREATE PROCEDURE `{_GUARD}`()\nBEGIN\n{body}\nEND")
    _ddl.run(f"CALL `{_GUARD}`()")
    _ddl.run(f"DROP PROCEDURE `{_GUARD}`")


# --- the steps ---------------------------------------------------------------------


def _keeper(inst: Installation, keep: int | None) -> str:
    """SELECT of the row to keep current per scope: ``keep`` where it is current, else the newest."""
    i, f = quote(inst.id_column), quote(inst.flag_column)
    kept = f"MAX(CASE WHEN {i} = {keep} THEN {i} END), " if keep is not None else ""
    if inst.scope_column is None:
        return f"SELECT 1 AS `s`, COALESCE({kept}MAX({i})) AS `kept` FROM {quote(inst.table)} WHERE {f} <> 0"
    s = quote(inst.scope_column)
    return (
        f"SELECT {s} AS `s`, COALESCE({kept}MAX({i})) AS `kept` FROM {quote(inst.table)} "
        f"WHERE {f} <> 0 GROUP BY {s}"
    )


def _extra_current(inst: Installation, keep: int | None) -> str:
    """The rows to clear: current, and not their scope's kept row (the FROM ... WHERE part)."""
    t, i, f = quote(inst.table), quote(inst.id_column), quote(inst.flag_column)
    on = f"b.{quote(inst.scope_column)} = k.`s`" if inst.scope_column else "k.`s` = 1"
    return (
        f"{t} AS b JOIN ({_keeper(inst, keep)}) AS k ON {on} WHERE b.{f} <> 0 AND b.{i} <> k.`kept`"
    )


def _check_keep(inst: Installation, keep: int | None) -> None:
    """Refuse a ``keep`` that is not current where some scope holds several current rows."""
    if keep is None:
        return
    t, i, f = quote(inst.table), quote(inst.id_column), quote(inst.flag_column)
    crowded = _ddl.scalar(f"SELECT COUNT(*) FROM {_extra_current(inst, None)}")
    is_current = _ddl.scalar(f"SELECT COUNT(*) FROM {t} WHERE {i} = :k AND {f} <> 0", k=keep)
    if crowded and not is_current:
        raise MigrationRefusedError(
            f"keep_current={keep}: batch {keep} is not one of the current batches; name one of them"
        )


_CLEANUP_REASON = "batchflag-db data check: several batches were current"
"""Written after ``USER()`` in the account of each history row the data check adds."""


def _clear_extra_current_rows(inst: Installation, keep: int | None) -> None:
    """Clear the flag of every current row but the kept one (per scope); never in silence.

    Online, each cleared id is named in a warning (:func:`~batchflag_db._notice.notice`:
    shown even when ``fileConfig()`` disabled the logger). Online and offline, each gets
    a history row (action ``unset``, account ``USER()`` and the reason) before the UPDATE.
    """
    i, f = quote(inst.id_column), quote(inst.flag_column)
    where = f" in its {inst.scope_column}" if inst.scope_column else ""
    if not _ddl.is_offline():
        for row_id, value in _ddl.rows(f"SELECT b.{i}, b.{f} FROM {_extra_current(inst, keep)}"):
            notice(
                log,
                "cleared %s on batch %s (was %s): several batches were current%s",
                inst.flag_column,
                row_id,
                value,
                where,
            )
    reason = f"{_CLEANUP_REASON}{where}; kept batch "
    _ddl.run(
        f"INSERT INTO `{HISTORY_TABLE}` (`batchId`, `previousBatchId`, `action`, `changedAt`, "
        f"`account`, `connectionId`) SELECT b.{i}, b.{i}, 'unset', UTC_TIMESTAMP(6), "
        f"LEFT(CONCAT(USER(), ' (', '{reason}', k.`kept`, ')'), 384), CONNECTION_ID() "
        f"FROM {_extra_current(inst, keep)} ORDER BY b.{i}"
    )
    t = quote(inst.table)
    on = f"b.{quote(inst.scope_column)} = k.`s`" if inst.scope_column else "k.`s` = 1"
    _ddl.run(
        f"UPDATE {t} AS b JOIN ({_keeper(inst, keep)}) AS k ON {on} "
        f"SET b.{f} = 0 WHERE b.{f} <> 0 AND b.{i} <> k.`kept`"
    )


def _add_key(inst: Installation, keep: int | None, *, descending: bool) -> None:
    offline = _ddl.is_offline()
    if offline or inst.key_column not in _columns(inst.table):
        _ddl.alter_online(inst.add_key_column(), "ALGORITHM=INSTANT")
    add_index = inst.add_key_index(inst.key_index, descending=descending)
    if offline:
        _ddl.alter_online(add_index, _ONLINE)
        return
    # A writer may flag a second row between the cleanup and the index build; the
    # build then fails with a duplicate and changes nothing: clean up again and retry.
    for attempt in range(1, _INDEX_ATTEMPTS + 1):
        if _index_exists(inst.table, inst.key_index):
            return
        try:
            _ddl.alter_online(add_index, _ONLINE)
        except Exception as exc:
            errno, _, _ = driver_error_details(exc)
            if errno != ER_DUP_ENTRY or attempt == _INDEX_ATTEMPTS:
                raise
            log.warning("a second current batch appeared during the index build; retrying")
            _clear_extra_current_rows(inst, keep)


def _add_status_index(inst: Installation) -> None:
    if _ddl.is_offline() or not _index_exists(inst.table, inst.status_index):
        _ddl.alter_online(inst.add_status_index(), _ONLINE)


def _swap_key_index(inst: Installation, *, descending: bool) -> None:
    """Leave the UNIQUE key index in the order asked for, a UNIQUE index there throughout.

    Three online steps: build it again under :attr:`Installation.key_index_next`, drop
    the old one, rename the new one. A swap stopped between steps is finished when run
    again. On a server that ignores DESC the new index comes out ascending: it is
    dropped again and the old one kept, with a warning.
    """
    t = quote(inst.table)
    index, spare = inst.key_index, inst.key_index_next
    rename = f"ALTER TABLE {t} RENAME INDEX {quote(spare)} TO {quote(index)}"
    build = inst.add_key_index(spare, descending=descending)
    if _ddl.is_offline():
        for statement in (build, inst.drop_index(index), rename):
            _ddl.alter_online(statement, _ONLINE)
        return
    order = "descending" if descending else "ascending"
    current = _index_descending(inst.table, index)
    leftover = _index_descending(inst.table, spare)
    if current is None and leftover is not None:
        log.warning("finishing a stopped index swap: renaming %s to %s", spare, index)
        _ddl.alter_online(rename, _ONLINE)
        current, leftover = leftover, None
    if leftover is not None:
        log.warning("dropping %s, left by a stopped index swap", spare)
        _ddl.alter_online(inst.drop_index(spare), _ONLINE)
    if current is None:
        log.warning("%s has no index %s: left as it is; run `batchflag doctor`", inst.table, index)
        return
    if current == descending:
        log.info("index %s is already %s", index, order)
        return
    _ddl.alter_online(build, _ONLINE)
    if _index_descending(inst.table, spare) != descending:
        log.warning(
            "this server built the key column DESC in ascending order (it ignores DESC, as "
            "MariaDB before 10.8 does): kept the ascending %s; an INSERT of a new batch "
            "still waits while a flip's transaction is open",
            index,
        )
        _ddl.alter_online(inst.drop_index(spare), _ONLINE)
        return
    _ddl.alter_online(inst.drop_index(index), _ONLINE)
    _ddl.alter_online(rename, _ONLINE)
    log.info("index %s is now %s", index, order)


def _add_flag_index(inst: Installation) -> None:
    add = inst.add_flag_index()
    if _ddl.is_offline():
        _ddl.alter_online(add, _ONLINE)
        return
    existing = indexes_leading_with(inst.table, inst.flag_column)
    if inst.flag_index in existing:
        return
    if existing:
        log.info(
            "%s already has an index starting with %s (%s): added no other",
            inst.table,
            inst.flag_column,
            ", ".join(existing),
        )
        return
    _ddl.alter_online(add, _ONLINE)


def _drop_flag_index(inst: Installation) -> None:
    """Drop batchflag-db's flag index; an index of the user's own is never dropped."""
    if _ddl.is_offline() or _index_exists(inst.table, inst.flag_index):
        _ddl.alter_online(inst.drop_index(inst.flag_index), _ONLINE)


def set_layout(inst: Installation, layout: int) -> None:
    """Move an installation's indexes to ``layout`` (one of :data:`LAYOUTS`), online.

    No row and no flag value changes, and a UNIQUE key index exists at every moment.
    """
    if layout not in LAYOUTS:
        raise MigrationRefusedError(f"index layout {layout!r}: batchflag-db knows {LAYOUTS}")
    _swap_key_index(inst, descending=layout >= 2)
    if layout >= 2:
        _add_flag_index(inst)
    else:
        _drop_flag_index(inst)


def _add_lock(inst: Installation) -> None:
    if inst.scope_column is None:
        _ddl.run(_CREATE_LOCK)
        _ddl.run(f"INSERT IGNORE INTO `{LOCK_TABLE}` (`id`, `flipCount`) VALUES (1, 0)")
        return
    _ddl.run(_create_scope_lock(inst))
    s = quote(inst.scope_column)
    _ddl.run(
        f"INSERT IGNORE INTO `{SCOPE_LOCK_TABLE}` (`scopeValue`, `flipCount`) "
        f"SELECT DISTINCT {s}, 0 FROM {quote(inst.table)}"
    )


def _record(inst: Installation) -> None:
    _ddl.run(_CREATE_RECORD)
    values = ", ".join(
        "NULL" if v is None else "'" + v.replace("'", "''") + "'"
        for v in (*inst.names().values(), inst.scope_type)
    )
    _ddl.run(
        f"REPLACE INTO `{RECORD_TABLE}` (`id`, {', '.join(quote(c) for c in RECORD_COLUMNS)}, "
        f"`installedAt`) VALUES (1, {values}, UTC_TIMESTAMP(6))"
    )


def replace_routines(inst: Installation, version: int = _routines.VERSIONS[-1]) -> None:
    """Create or replace every routine of the installation from its templates of ``version``."""
    for name, relative in _routines.files(inst, version).items():
        _ddl.replace_routine_text(name, _routines.render(relative, inst))


def create(
    inst: Installation,
    keep_current: int | None = None,
    *,
    adopt: bool = False,
    layout: int = LATEST_LAYOUT,
) -> Installation:
    """Install batchflag-db on ``inst.table``; return the installation as recorded.

    ``adopt``: the standalone chain's revisions 0001-0005 made the key column, its
    index, the status index, the lock row and the history; record the names and
    replace the routines only. ``layout``: the indexes' layout (:data:`LAYOUTS`);
    revision 0006 makes layout 1 and revision 0007 moves it on.

    Raises:
        MigrationRefusedError: The table cannot take this installation (the message says
            why and what to do); nothing changed.
    """
    if _ddl.is_offline() and adopt:
        pass  # revisions 0001-0005 ran just before, in the same script
    elif _ddl.is_offline():
        if inst.scope_column is not None and inst.scope_type is None:
            raise MigrationRefusedError(
                "offline (--sql) there is no server to read the scope column's type from: "
                "pass scope_type=..., e.g. 'varchar(32) CHARACTER SET utf8mb4 COLLATE "
                "utf8mb4_bin', as SHOW CREATE TABLE shows the column"
            )
        _guard(inst)
    else:
        inst = _check(inst)
        _check_keep(inst, keep_current)
    _record(inst)
    if not adopt:
        _ddl.run(_CREATE_HISTORY)  # first: the data check records what it clears there
        _clear_extra_current_rows(inst, keep_current)
        _add_key(inst, keep_current, descending=layout >= 2)
        _add_status_index(inst)
        if layout >= 2:
            _add_flag_index(inst)
        _add_lock(inst)
    replace_routines(inst)
    log.info("installed batchflag-db on %s", inst.describe())
    return inst


def drop(inst: Installation, *, layout: int = LATEST_LAYOUT) -> None:
    """Remove what :func:`create` made, keeping every row and flag value.

    The history table is kept when it has rows. ``layout`` is the one the installation
    has (offline, the script cannot look: revision 0006 drops layout 1).
    """
    offline = _ddl.is_offline()
    for name in _routines.ALL_ROUTINES:
        _ddl.run(f"DROP PROCEDURE IF EXISTS `{name}`")
    _ddl.run(f"DROP TABLE IF EXISTS `{RECORD_TABLE}`")
    t = quote(inst.table)
    _ddl.run(f"DROP TABLE IF EXISTS `{inst.lock_table}`")
    if layout >= 2 or not offline:
        _drop_flag_index(inst)
    for index in (inst.status_index, inst.key_index):
        if offline or _index_exists(inst.table, index):
            _ddl.run(f"ALTER TABLE {t} DROP INDEX {quote(index)}")
    if offline or inst.key_column in _columns(inst.table):
        _ddl.run(f"ALTER TABLE {t} DROP COLUMN {quote(inst.key_column)}")
    if offline:
        _ddl.run(f"-- batchflag-db keeps {HISTORY_TABLE} and its rows")
        return
    if _table_exists(HISTORY_TABLE):
        count = int(_ddl.scalar(f"SELECT COUNT(*) FROM `{HISTORY_TABLE}`"))
        if count == 0:
            _ddl.run(f"DROP TABLE `{HISTORY_TABLE}`")
        else:
            notice(log, "kept table %s: it holds %s rows", HISTORY_TABLE, count)


# --- the standalone chain (revision 0006 and the revisions before it) --------------

OPTION_NAMES = installation_names.OPTION_NAMES
"""The installation options ``batchflag upgrade`` and ``-x NAME=VALUE`` take (Installation's)."""

_ATTRIBUTE = "installation"


def from_context() -> Installation:
    """The installation this run of the standalone chain is for.

    In order: the names already decided in this run (``config.attributes``, set by the
    Python runner, or by revision 0006's downgrade from the record); ``-x table=...``
    and the other :data:`OPTION_NAMES`; online, the recorded installation; else the
    default names.

    Raises:
        ConfigurationError: A given name is not valid.
    """
    config = op.get_context().config
    decided = config.attributes.get(_ATTRIBUTE) if config is not None else None
    if isinstance(decided, Installation):
        return decided
    x_args = context.get_x_argument(as_dictionary=True)
    given = {name: x_args.get(name) for name in OPTION_NAMES if x_args.get(name)}
    if given:
        inst = Installation.from_options(given)
    elif not _ddl.is_offline() and (found := recorded()) is not None:
        inst = found
    else:
        inst = DEFAULT
    remember(inst)
    return inst


def remember(inst: Installation) -> None:
    """Let the revisions after this one in the same run see ``inst`` (see :func:`from_context`)."""
    config = op.get_context().config
    if config is not None:
        config.attributes[_ATTRIBUTE] = inst


def skip_default_revision(*, table_needed: bool = True) -> bool:
    """Tell revisions 0001-0005 to do nothing: they know only the default names.

    True for an installation on other names (revision 0006 installs it whole), and,
    with ``table_needed``, online when the default table does not exist: a custom
    installation that revision 0006's downgrade removed.
    """
    if not from_context().is_default:
        return True
    return table_needed and not _ddl.is_offline() and not _table_exists(DEFAULT.table)


def _normalized(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def check_new_table(connection: Connection, *, create_table: bool) -> None:
    """Before revision 0001 creates ``batchStatus``: refuse where the user's table looks elsewhere.

    Run by ``migrations/env.py`` online, before any change, when the default names are
    in use and revision 0001 is pending. ``batchStatus`` is created only in a schema
    with no tables (batchflag-db's own aside), or when ``create_table`` asks for it; a
    table whose name looks like it (``batch_status``, ``BatchStatus``) is named in the
    refusal with the option that installs on it.

    Raises:
        MigrationRefusedError: The schema has tables but no ``batchStatus``.
    """
    names = [
        str(r[0])
        for r in connection.execute(
            text(
                "SELECT TABLE_NAME FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME"
            )
        )
    ]
    if DEFAULT.table in names:
        return
    own = {RECORD_TABLE, SCOPE_LOCK_TABLE, LOCK_TABLE, HISTORY_TABLE, VERSION_TABLE}
    theirs = [n for n in names if n not in own]
    alike = [n for n in theirs if _normalized(n) == _normalized(DEFAULT.table)]
    if alike:
        raise MigrationRefusedError(
            f"this database has a table {alike[0]} and no {DEFAULT.table}: to install on "
            f"{alike[0]}, pass --table {alike[0]} (alembic: -x table={alike[0]}), with "
            "--id-column, --flag-column, --status-column for columns named otherwise; "
            f"to create {DEFAULT.table} beside it, pass --create-table"
        )
    if theirs and not create_table:
        shown = ", ".join(theirs[:5]) + (", ..." if len(theirs) > 5 else "")
        raise MigrationRefusedError(
            f"this database has tables ({shown}) but no {DEFAULT.table}: to install on "
            "your table, pass --table NAME (alembic: -x table=NAME); to create "
            f"{DEFAULT.table} here, pass --create-table (alembic: -x create_table=1)"
        )
