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

LOCK_TABLE = "currentBatchLock"
"""One-row table whose row every flip locks first: the serialization point."""

SET_PROCEDURE = "set_current_batch"
UNSET_PROCEDURE = "unset_current_batch"
PROCEDURES = (SET_PROCEDURE, UNSET_PROCEDURE)

VERSION_TABLE = "batchflag_alembic_version"
"""Alembic's version table, named apart so it never collides with the application's own."""

TABLE_CREATED_COMMENT = "created by batchflag-db"
"""Table comment the baseline writes when it creates the table (adopted tables keep theirs)."""

COLUMN_ADDED_COMMENT = "added by batchflag-db"
"""Column comment the baseline writes when it adds the flag column to an adopted table."""

MAX_BATCH_ID = 2**63 - 1
"""Largest id the procedures accept (their parameter is a signed BIGINT)."""

CURRENT_ROUTINE_FILES = {
    SET_PROCEDURE: "procedures/set_current_batch/v1.sql",
    UNSET_PROCEDURE: "procedures/unset_current_batch/v1.sql",
}
"""The SQL file (under ``sql/``) of each routine at head. A revision that ships a new
version of a routine adds its file and updates this map; `batchflag doctor` compares
the server's routine bodies with these files. Revisions themselves name their files
explicitly and never read this map."""
