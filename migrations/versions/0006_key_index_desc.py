"""descending key index: a flip held open no longer blocks an INSERT of a new batch

Makes the UNIQUE index ``uq_batchStatus_currentBatchKey`` descending,
``(currentBatchKey DESC)``. Why: while a flip's transaction is open, the unique
check of its new key holds gap locks next to the ``(1, id)`` entries of that
index. A new batch's entry is ``(NULL, new id)``; ascending, NULL sorts first, so
that entry lands in the locked gap just before the lowest ``(1, id)`` and the
INSERT waits until the flip commits (1205 after ``innodb_lock_wait_timeout``).
Descending, the NULL entries sort after the 1s and the INSERT goes through.

The index exists at every moment, so the invariant never lapses. Three online
steps (``ALGORITHM=INPLACE, LOCK=NONE``; writers are not blocked): add the new
index under the temporary name ``uq_batchStatus_currentBatchKey_next``, drop the
old one, rename the new one. A step the server refuses online runs with the
server's default algorithm, with a warning (``_ddl.alter_online``). Each step,
like any ALTER TABLE, briefly needs the table's metadata lock: it waits for open
transactions on batchStatus (a flip held open, a long report), and statements
that arrive meanwhile queue behind it. Run it when no transaction is held open.

A migration stopped between steps finishes when run again (either way: the one
index left is renamed, a leftover second one is dropped). On a server that parses
DESC but ignores it (MariaDB before 10.8), the new index comes out ascending: the
revision logs a warning, drops it and keeps the old one; nothing else changes.
Offline (``--sql``) the script always has the three statements.

Downgrade makes the index ascending again the same way (add, drop, rename,
online); it does nothing when the index is missing or already ascending.
No row and no flag value is touched either way.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import logging

from alembic import op

from batchflag_db import _catalog, _ddl

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: What this revision creates, for doctor (see batchflag_db.doctor).
creates = ("uq_batchStatus_currentBatchKey",)

log = logging.getLogger("batchflag_db.migrations")

_TABLE = "batchStatus"
_INDEX = "uq_batchStatus_currentBatchKey"
_NEXT = "uq_batchStatus_currentBatchKey_next"
_ONLINE = "ALGORITHM=INPLACE, LOCK=NONE"


def _add_next(descending: bool) -> None:
    order = " DESC" if descending else ""
    _ddl.alter_online(
        f"ALTER TABLE `{_TABLE}` ADD UNIQUE INDEX `{_NEXT}` (`currentBatchKey`{order})", _ONLINE
    )


def _drop(index: str) -> None:
    _ddl.alter_online(f"ALTER TABLE `{_TABLE}` DROP INDEX `{index}`", _ONLINE)


def _rename_next() -> None:
    _ddl.alter_online(f"ALTER TABLE `{_TABLE}` RENAME INDEX `{_NEXT}` TO `{_INDEX}`", _ONLINE)


def _swap(descending: bool) -> None:
    """Leave ``_INDEX`` UNIQUE in the order asked for, with a unique index there throughout."""
    if _ddl.is_offline():
        _add_next(descending)
        _drop(_INDEX)
        _rename_next()
        return
    bind = op.get_bind()
    order = "descending" if descending else "ascending"
    current = _catalog.index_is_descending(bind, _INDEX)
    leftover = _catalog.index_is_descending(bind, _NEXT)
    if current is None and leftover is not None:
        # A swap stopped after dropping the old index: the new one is the only guard.
        log.warning("finishing a stopped index swap: renaming %s to %s", _NEXT, _INDEX)
        _rename_next()
        current, leftover = leftover, None
    if leftover is not None:
        # A swap stopped before the drop: the old index still guards; start over.
        log.warning("dropping %s, left by a stopped index swap", _NEXT)
        _drop(_NEXT)
    if current is None:
        log.warning("batchStatus has no index %s: left as it is; run `batchflag doctor`", _INDEX)
        return
    if current == descending:
        log.info("index %s is already %s", _INDEX, order)
        return
    _add_next(descending)
    if _catalog.index_is_descending(bind, _NEXT) != descending:
        log.warning(
            "this server built (currentBatchKey DESC) in ascending order (it ignores DESC, "
            "as MariaDB before 10.8 does): kept the ascending %s; an INSERT of a new batch "
            "still waits while a flip's transaction is open",
            _INDEX,
        )
        _drop(_NEXT)
        return
    _drop(_INDEX)
    _rename_next()
    log.info("index %s is now %s", _INDEX, order)


def upgrade() -> None:
    _swap(descending=True)


def downgrade() -> None:
    _swap(descending=False)
