"""indexes: a flip held open blocks no INSERT, and the user's WHERE currentBatch = 1 is a lookup

Moves the installation's indexes to layout 2 (``batchflag_db._install.LAYOUTS``),
online, whatever its names:

* The UNIQUE key index becomes ``([scope,] currentBatchKey DESC)``. Why: while a
  flip's transaction is open, the unique check of its new key holds gap locks next to
  the ``1`` entries of that index. A new batch's entry is ``(NULL, new id)``;
  ascending, NULL sorts first, so that entry lands in the locked gap just before the
  ``1`` entries and the INSERT waits until the flip commits (1205 after
  ``innodb_lock_wait_timeout``). Descending, the NULL entries sort after the 1s and
  the INSERT goes through. Three online steps (``ALGORITHM=INPLACE, LOCK=NONE``): build
  it as ``<index>_next``, drop the old one, rename; a UNIQUE index exists throughout,
  and a swap stopped between steps finishes when run again. A server that ignores
  DESC (MariaDB before 10.8) keeps the ascending index, with a warning; doctor says so.
* An index on the flag column (``ix_batchStatus_currentBatch``, or
  ``ix_<table>_batchflag_flag``), online, so the seed's Verification query
  ``... WHERE currentBatch = 1`` and any ``WHERE currentBatch <> 0`` are index lookups.
  An index of the user's own that starts with the flag column serves instead: then
  nothing is added.

Like any ALTER TABLE, each step briefly needs the table's metadata lock: it waits
for transactions open on the table, and statements arriving meanwhile queue behind
it. Downgrade makes the key index ascending again the same way and drops the flag
index batchflag-db added. No row and no flag value is touched either way.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from batchflag_db import _install
from batchflag_db.installation import DEFAULT

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: What this revision creates, for doctor (see batchflag_db.doctor).
creates = (DEFAULT.flag_index,)


def upgrade() -> None:
    _install.set_layout(_install.from_context(), 2)


def downgrade() -> None:
    _install.set_layout(_install.from_context(), 1)
