"""flag index: the user's own WHERE currentBatch = 1 / <> 0 are index lookups

Adds the plain index ``ix_batchStatus_currentBatch`` on ``(currentBatch)``, built
online (``ALGORITHM=INPLACE, LOCK=NONE``: writers are not blocked; refused online,
it runs with the server's default algorithm and a warning). Until now only the
generated key column was indexed, and no server maps ``currentBatch = 1`` onto
its index, so the seed's Verification query
``SELECT id, batchDate, currentBatch, batchStatus FROM batchStatus WHERE currentBatch = 1``
and any ``WHERE currentBatch <> 0`` read the whole table. With this index the first
is a ``ref`` lookup and the second a ``range`` of two intervals (``< 0`` and
``> 0``), on MariaDB 10.11, 11.8 and MySQL 9.7, whatever the table's statistics.

Why not a covering index ``(currentBatch, batchDate, batchStatus)``: at most one
row matches, so covering saves one primary-key lookup; but every status change
of every batch would then write this index too (and MySQL 9.7 planned ``<> 0`` on
it as a full index scan on a table of 0 or 1 rows). The plain index is written
only when a flag changes: twice per flip (the old holder, the new one).

If an index of the table already starts with ``currentBatch`` (one the user made),
it serves these queries and nothing is added. Offline (``--sql``) the script
always adds the index.

Downgrade drops ``ix_batchStatus_currentBatch`` (online) if it exists; an index of
the user's own is never dropped. No row is touched either way.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import logging

from alembic import op

from batchflag_db import _catalog, _ddl

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: What this revision creates, for doctor (see batchflag_db.doctor).
creates = ("ix_batchStatus_currentBatch",)

log = logging.getLogger("batchflag_db.migrations")

_INDEX = "ix_batchStatus_currentBatch"
_ADD = f"ALTER TABLE `batchStatus` ADD INDEX `{_INDEX}` (`currentBatch`)"
_DROP = f"ALTER TABLE `batchStatus` DROP INDEX `{_INDEX}`"
_ONLINE = "ALGORITHM=INPLACE, LOCK=NONE"


def upgrade() -> None:
    if _ddl.is_offline():
        _ddl.alter_online(_ADD, _ONLINE)
        return
    existing = _catalog.indexes_leading_with(op.get_bind(), "currentBatch")
    if _INDEX in existing:
        return
    if existing:
        log.info(
            "batchStatus already has an index starting with currentBatch (%s): added no other",
            ", ".join(existing),
        )
        return
    _ddl.alter_online(_ADD, _ONLINE)


def downgrade() -> None:
    if _ddl.is_offline() or _catalog.index_exists(op.get_bind(), _INDEX):
        _ddl.alter_online(_DROP, _ONLINE)
