"""Names of every database object batchflag-db owns or adopts: the one place for them."""

from __future__ import annotations

TABLE = "batchStatus"
"""The user's table: one row per batch."""

FLAG_COLUMN = "currentBatch"
"""The user's boolean column: non-zero means "this is the current batch"."""

KEY_COLUMN = "currentBatchKey"
"""Generated column: 1 where the flag is non-zero, NULL elsewhere."""

KEY_INDEX = "uq_batchStatus_currentBatchKey"
"""UNIQUE index on :data:`KEY_COLUMN`: NULLs never collide, so at most one row holds 1."""

KEY_EXPRESSION = "IF(`currentBatch` <> 0, 1, NULL)"
"""The generated column's expression (any non-zero flag counts as current)."""

KEY_STORAGE = "VIRTUAL"
"""How the key column is stored, as revision 0002 creates it (added instantly, no table rewrite)."""

LOCK_TABLE = "currentBatchLock"
"""One-row table whose row every flip locks first: the serialization point."""

SET_PROCEDURE = "set_current_batch"
UNSET_PROCEDURE = "unset_current_batch"

RESOLVE_PROCEDURE = "resolve_dashboard_batch"
"""Procedure returning the batch a dashboard shows, and why (revision 0004)."""

ROUTINES = (SET_PROCEDURE, UNSET_PROCEDURE, RESOLVE_PROCEDURE)
"""Every routine at head."""

STATUS_COLUMN = "batchStatus"
"""The user's status column of :data:`TABLE` ('Pending', 'InProgress', 'Completed', ...)."""

RESOLUTION_REASONS = ("requested", "current_flag", "in_progress", "incomplete", "most_recent")
"""The reasons ``resolve_dashboard_batch`` returns, in priority order."""

HISTORY_TABLE = "currentBatchHistory"
"""One row per flip that changed the current batch, written by the v2 procedures."""

VERSION_TABLE = "batchflag_alembic_version"
"""Alembic's version table, named apart so it never collides with the application's own."""

MAX_BATCH_ID = 2**63 - 1
"""Largest id the procedures accept (their parameter is a signed BIGINT)."""

CURRENT_ROUTINE_FILES = {
    SET_PROCEDURE: "procedures/set_current_batch/v3.sql",
    UNSET_PROCEDURE: "procedures/unset_current_batch/v3.sql",
    RESOLVE_PROCEDURE: "procedures/resolve_dashboard_batch/v3.sql",
}
"""The SQL file (under ``sql/``) of each routine at head, for the default installation.
From revision 0006 on the files are templates, rendered with the recorded names, and
an installation with a scope column has its own (:mod:`batchflag_db._routines`);
`batchflag doctor` compares the server's routine bodies with them. Revisions
themselves name their files explicitly and never read this map."""

#: The session variable a flip keeps the caller's innodb_lock_wait_timeout in.
SAVED_LOCK_WAIT = "@batchflag_saved_lock_wait"

#: The savepoint a flip inside the caller's transaction sets (sql/procedures/*/v*.sql).
FLIP_SAVEPOINT = "batchflag_flip"
