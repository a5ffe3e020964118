"""procedures: set_current_batch and unset_current_batch, version 1

Creates the one-row serialization table ``currentBatchLock`` and the two
procedures from ``sql/procedures/*/v1.sql``. Those files are released: a change
to a procedure is a new file and a new revision, so this revision never changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from batchflag_db import _ddl, _install

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# What this revision's upgrade creates: object names and the routine files it
# installs. `batchflag doctor` reads it (through Alembic's ScriptDirectory) to name
# the revision that re-creates a missing or damaged object.
creates = (
    "currentBatchLock",
    "procedures/set_current_batch/v1.sql",
    "procedures/unset_current_batch/v1.sql",
)

_CREATE_LOCK_TABLE = """
CREATE TABLE IF NOT EXISTS `currentBatchLock` (
    `id` TINYINT NOT NULL,
    `flipCount` BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (`id`)
) ENGINE=InnoDB COMMENT='batchflag-db: every flip locks this row first'
"""


def upgrade() -> None:
    if _install.skip_default_revision():
        return  # an installation on other names: revision 0006 does it all
    _ddl.run(_CREATE_LOCK_TABLE)
    _ddl.run("INSERT IGNORE INTO `currentBatchLock` (`id`, `flipCount`) VALUES (1, 0)")
    _ddl.replace_routine("set_current_batch", "procedures/set_current_batch/v1.sql")
    _ddl.replace_routine("unset_current_batch", "procedures/unset_current_batch/v1.sql")


def downgrade() -> None:
    if _install.skip_default_revision():
        return  # an installation on other names: revision 0006 does it all
    _ddl.replace_routine("unset_current_batch", None)
    _ddl.replace_routine("set_current_batch", None)
    _ddl.run("DROP TABLE IF EXISTS `currentBatchLock`")
