"""baseline: create batchStatus, or adopt the existing table as it is

Creates ``batchStatus`` when it does not exist. When it exists (the production
case), adopts it unchanged and adds ``currentBatch`` only if it is missing.
Downgrade never drops data: it drops the table only if this revision created it
and it is empty, and the column only if this revision added it and no row is flagged.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import logging

from batchflag_db import _ddl, _install
from batchflag_db.errors import MigrationRefusedError

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# What this revision's upgrade creates: object names and the routine files it
# installs. `batchflag doctor` reads it (through Alembic's ScriptDirectory) to name
# the revision that re-creates a missing or damaged object.
creates = ("batchStatus", "currentBatch")

log = logging.getLogger("batchflag_db.migrations")

_CREATED = "created by batchflag-db"
_ADDED = "added by batchflag-db"

_CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS `batchStatus` (
    `id` BIGINT NOT NULL AUTO_INCREMENT,
    `batchDate` DATE NOT NULL,
    `batchNumber` INT NOT NULL,
    `batchStatus` VARCHAR(32) NOT NULL DEFAULT 'Pending',
    `currentBatch` TINYINT(1) NOT NULL DEFAULT 0,
    `createdAt` DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    `updatedAt` DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (`id`),
    KEY `ix_batchStatus_batchDate_batchNumber` (`batchDate`, `batchNumber`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='{_CREATED}'
"""

_ADD_FLAG = (
    "ALTER TABLE `batchStatus` ADD COLUMN `currentBatch` TINYINT(1) NOT NULL DEFAULT 0 "
    f"COMMENT '{_ADDED}'"
)


def _table_engine() -> str | None:
    engine: str | None = _ddl.scalar(
        "SELECT ENGINE FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'batchStatus'"
    )
    return engine


def _flag_comment() -> str | None:
    comment: str | None = _ddl.scalar(
        "SELECT COLUMN_COMMENT FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'batchStatus' "
        "AND COLUMN_NAME = 'currentBatch'"
    )
    return comment


def upgrade() -> None:
    if _install.skip_default_revision(table_needed=False):
        return  # an installation on other names: revision 0006 does it all
    if _ddl.is_offline():
        # A script cannot look first; CREATE TABLE IF NOT EXISTS adopts an existing
        # table, and the DBA adds `currentBatch` by hand if an adopted table lacks it.
        _ddl.run(_CREATE_TABLE)
        return
    engine = _table_engine()
    if engine is None:
        _ddl.run(_CREATE_TABLE)
        log.info("created table batchStatus")
        return
    if engine.upper() != "INNODB":
        raise MigrationRefusedError(
            f"batchStatus uses the {engine} engine; batchflag-db needs InnoDB for atomic "
            "flips: convert it first with ALTER TABLE batchStatus ENGINE=InnoDB"
        )
    if _flag_comment() is None:
        _ddl.run(_ADD_FLAG)
        log.info("adopted existing table batchStatus; added column currentBatch")
    else:
        log.info("adopted existing table batchStatus as it is")


def downgrade() -> None:
    if _install.skip_default_revision(table_needed=False):
        return  # an installation on other names: revision 0006 does it all
    if _ddl.is_offline():
        _ddl.run("-- batchflag-db keeps batchStatus and its rows on downgrade")
        return
    if _table_engine() is None:
        return
    table_comment = _ddl.scalar(
        "SELECT TABLE_COMMENT FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'batchStatus'"
    )
    if table_comment == _CREATED:
        count = _ddl.scalar("SELECT COUNT(*) FROM `batchStatus`")
        if count == 0:
            _ddl.run("DROP TABLE `batchStatus`")
            log.info("dropped the empty table batchStatus this revision created")
        else:
            log.warning("kept table batchStatus: it holds %s rows", count)
        return
    if _flag_comment() == _ADDED:
        flagged = _ddl.scalar("SELECT COUNT(*) FROM `batchStatus` WHERE `currentBatch` <> 0")
        if flagged == 0:
            _ddl.run("ALTER TABLE `batchStatus` DROP COLUMN `currentBatch`")
            log.info("dropped column currentBatch, which this revision added")
        else:
            log.warning("kept column currentBatch: %s row(s) are flagged", flagged)
