"""invariant: at most one current batch, enforced by a UNIQUE index

Adds the generated column ``currentBatchKey = IF(currentBatch <> 0, 1, NULL)``
(VIRTUAL, so it is added instantly without rewriting the table) and a UNIQUE
index on it, built online (``ALGORITHM=INPLACE, LOCK=NONE``): writers are not
blocked. NULLs never collide, so at most one row can be current, whoever writes.

Before any DDL it checks the data: where several rows are current it keeps the
newest (highest id), or the one named by ``-x keep_current=ID``, and clears the
others, logging every id it clears. No row is ever deleted. A ``keep_current`` that
names none of several current rows is refused; ``migrations/env.py`` applies the same
rule (:mod:`batchflag_db._keep_current`) before the first revision runs, so a refused
upgrade changes nothing, not even revision 0001's part.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import logging

from alembic import context

from batchflag_db import _ddl, _install
from batchflag_db._keep_current import CURRENT_ROWS_QUERY, keep_current_argument
from batchflag_db._keep_current import check as check_keep_current
from batchflag_db.errors import ER_DUP_ENTRY, driver_error_details

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# What this revision's upgrade creates: object names and the routine files it
# installs. `batchflag doctor` reads it (through Alembic's ScriptDirectory) to name
# the revision that re-creates a missing or damaged object.
creates = ("currentBatchKey", "uq_batchStatus_currentBatchKey")

log = logging.getLogger("batchflag_db.migrations")

_ADD_COLUMN = (
    "ALTER TABLE `batchStatus` ADD COLUMN `currentBatchKey` TINYINT "
    "GENERATED ALWAYS AS (IF(`currentBatch` <> 0, 1, NULL)) VIRTUAL"
)
_ADD_INDEX = "ALTER TABLE `batchStatus` ADD UNIQUE INDEX `uq_batchStatus_currentBatchKey` (`currentBatchKey`)"
_INDEX_ATTEMPTS = 3


def _keep_current() -> int | None:
    return keep_current_argument(
        context.get_x_argument(as_dictionary=True), context.config.attributes
    )


def _clear_extra_current_rows(keep: int | None) -> None:
    """Leave at most one row current; fail, changing nothing, on a bad keep_current."""
    current = [(int(r[0]), r[1]) for r in _ddl.rows(CURRENT_ROWS_QUERY)]
    ids = [row_id for row_id, _ in current]
    # The rule env.py also applies before the first revision runs: one implementation.
    check_keep_current(keep, ids)
    if len(ids) <= 1:
        return
    kept = keep if keep is not None else ids[-1]
    for row_id, value in current:
        if row_id == kept:
            continue
        _ddl.execute("UPDATE `batchStatus` SET `currentBatch` = 0 WHERE `id` = :id", id=row_id)
        log.warning(
            "cleared currentBatch on batch %s (was %s): several batches were current, "
            "kept batch %s",
            row_id,
            value,
            kept,
        )


def _column_exists() -> bool:
    return bool(
        _ddl.scalar(
            "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = 'batchStatus' AND COLUMN_NAME = 'currentBatchKey'"
        )
    )


def _index_exists() -> bool:
    return bool(
        _ddl.scalar(
            "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = 'batchStatus' AND INDEX_NAME = 'uq_batchStatus_currentBatchKey'"
        )
    )


def upgrade() -> None:
    if _install.skip_default_revision():
        return  # an installation on other names: revision 0006 does it all
    if _ddl.is_offline():
        # Where keep_current is given, env.py put its check first in the script: the
        # script stops unless that batch is current or at most one batch is. So keep it
        # if it is current, else the newest (then the only) current row, as online does.
        keep = _keep_current()
        kept = f"MAX(CASE WHEN `id` = {keep} THEN `id` END), " if keep is not None else ""
        keeper = (
            f"(SELECT COALESCE({kept}MAX(`id`)) FROM (SELECT `id` FROM `batchStatus` "
            "WHERE `currentBatch` <> 0) AS `newest_current`)"
        )
        _ddl.run(
            "UPDATE `batchStatus` SET `currentBatch` = 0 "
            f"WHERE `currentBatch` <> 0 AND `id` <> {keeper}"
        )
        _ddl.alter_online(_ADD_COLUMN, "ALGORITHM=INSTANT")
        _ddl.alter_online(_ADD_INDEX, "ALGORITHM=INPLACE, LOCK=NONE")
        return

    keep = _keep_current()
    _clear_extra_current_rows(keep)
    if not _column_exists():
        _ddl.alter_online(_ADD_COLUMN, "ALGORITHM=INSTANT")
    # A writer may flag a second row between the check and the index build; the
    # build then fails with a duplicate and changes nothing, so check again and retry.
    for attempt in range(1, _INDEX_ATTEMPTS + 1):
        if _index_exists():
            break
        try:
            _ddl.alter_online(_ADD_INDEX, "ALGORITHM=INPLACE, LOCK=NONE")
        except Exception as exc:
            errno, _, _ = driver_error_details(exc)
            if errno != ER_DUP_ENTRY or attempt == _INDEX_ATTEMPTS:
                raise
            log.warning("a second current batch appeared during the index build; retrying")
            _clear_extra_current_rows(keep)


def downgrade() -> None:
    if _install.skip_default_revision():
        return  # an installation on other names: revision 0006 does it all
    if _ddl.is_offline() or _index_exists():
        _ddl.run("ALTER TABLE `batchStatus` DROP INDEX `uq_batchStatus_currentBatchKey`")
    if _ddl.is_offline() or _column_exists():
        _ddl.run("ALTER TABLE `batchStatus` DROP COLUMN `currentBatchKey`")
