"""history and resolve: the flip history, version 2 of the flips, and dashboard resolution

Creates ``currentBatchHistory`` (one row per flip that changed the current batch),
adds the index ``(batchStatus, id)`` to ``batchStatus`` online
(``ALGORITHM=INPLACE, LOCK=NONE``: writers are not blocked), replaces the two flip
procedures with ``sql/procedures/*/v2.sql`` (which write the history) and creates
``resolve_dashboard_batch`` from ``sql/procedures/resolve_dashboard_batch/v1.sql``.

On MariaDB each procedure is replaced in one statement (CREATE OR REPLACE), so
no CALL fails meanwhile. On MySQL it is DROP then CREATE: during that one
statement a CALL fails with "does not exist" (1305), which the Python wrapper
retries briefly; other clients should retry it too.

Downgrade restores the v1 procedures from their released files, drops
``resolve_dashboard_batch`` and the index, and drops ``currentBatchHistory`` only
if it is empty: history rows are never deleted by a migration (as the baseline
keeps ``batchStatus``). A kept table is adopted as it is by the next upgrade, so
the history continues; flips made while at 0003 are not in it. Offline
(``--sql``) the downgrade script always keeps the table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import logging

from batchflag_db import _ddl, _install
from batchflag_db.errors import MigrationRefusedError

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# What this revision's upgrade creates: object names and the routine files it
# installs. `batchflag doctor` reads it (through Alembic's ScriptDirectory) to name
# the revision that re-creates a missing or damaged object.
creates = (
    "currentBatchHistory",
    "ix_batchStatus_batchStatus_id",
    "procedures/set_current_batch/v2.sql",
    "procedures/unset_current_batch/v2.sql",
    "procedures/resolve_dashboard_batch/v1.sql",
)

log = logging.getLogger("batchflag_db.migrations")

_CREATE_HISTORY = """
CREATE TABLE IF NOT EXISTS `currentBatchHistory` (
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

_ADD_STATUS_INDEX = (
    "ALTER TABLE `batchStatus` ADD INDEX `ix_batchStatus_batchStatus_id` (`batchStatus`, `id`)"
)


def _status_column_exists() -> bool:
    return bool(
        _ddl.scalar(
            "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = 'batchStatus' AND COLUMN_NAME = 'batchStatus'"
        )
    )


def _status_index_exists() -> bool:
    return bool(
        _ddl.scalar(
            "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = 'batchStatus' AND INDEX_NAME = 'ix_batchStatus_batchStatus_id'"
        )
    )


def _history_rows() -> int | None:
    """Rows in currentBatchHistory, or None when the table does not exist."""
    exists = _ddl.scalar(
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = 'currentBatchHistory'"
    )
    if not exists:
        return None
    return int(_ddl.scalar("SELECT COUNT(*) FROM `currentBatchHistory`"))


def upgrade() -> None:
    if _install.skip_default_revision():
        return  # an installation on other names: revision 0006 does it all
    if not _ddl.is_offline() and not _status_column_exists():
        # Checked before any DDL, so a refused upgrade leaves the database at 0003.
        raise MigrationRefusedError(
            "batchStatus has no column `batchStatus`, which dashboard resolution reads "
            "('InProgress', 'Completed', ...): add it, e.g. ALTER TABLE batchStatus ADD COLUMN "
            "batchStatus VARCHAR(32) NOT NULL DEFAULT 'Pending', or stay at revision 0003"
        )
    _ddl.run(_CREATE_HISTORY)
    if _ddl.is_offline() or not _status_index_exists():
        _ddl.alter_online(_ADD_STATUS_INDEX, "ALGORITHM=INPLACE, LOCK=NONE")
    _ddl.replace_routine("set_current_batch", "procedures/set_current_batch/v2.sql")
    _ddl.replace_routine("unset_current_batch", "procedures/unset_current_batch/v2.sql")
    _ddl.replace_routine("resolve_dashboard_batch", "procedures/resolve_dashboard_batch/v1.sql")


def downgrade() -> None:
    if _install.skip_default_revision():
        return  # an installation on other names: revision 0006 does it all
    _ddl.replace_routine("resolve_dashboard_batch", None)
    _ddl.replace_routine("set_current_batch", "procedures/set_current_batch/v1.sql")
    _ddl.replace_routine("unset_current_batch", "procedures/unset_current_batch/v1.sql")
    if _ddl.is_offline() or _status_index_exists():
        _ddl.run("ALTER TABLE `batchStatus` DROP INDEX `ix_batchStatus_batchStatus_id`")
    if _ddl.is_offline():
        _ddl.run("-- batchflag-db keeps currentBatchHistory and its rows on downgrade")
        return
    count = _history_rows()
    if count == 0:
        _ddl.run("DROP TABLE `currentBatchHistory`")
        log.info("dropped the empty table currentBatchHistory")
    elif count is not None:
        log.warning(
            "kept table currentBatchHistory: it holds %s rows; flips made before the next "
            "upgrade are not recorded",
            count,
        )
