"""The ``keep_current`` rule of revision 0002, in one place.

Where several rows of batchStatus are current, revision 0002 keeps the newest, or the
one named by ``keep_current``, and clears the others. A ``keep_current`` that is not
one of several current rows is refused. That refusal must come before any change, so
``migrations/env.py`` applies the same rule before the first revision runs:

* online, :func:`check_database` reads the current rows and raises (before the version
  table, 0001's table or column exist), whenever 0002 is among the revisions to run
  (:func:`invariant_pending`); 0002 applies :func:`check` again on the rows it clears;
* offline there is no database to read, so :func:`guard_script` renders the rule as SQL
  the script runs first, before anything else: a procedure whose ``SIGNAL`` gives the same
  message, so the ``mariadb``/``mysql`` client stops before any change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from sqlalchemy import text
from sqlalchemy.engine import Connection

from batchflag_db._schema import FLAG_COLUMN, TABLE
from batchflag_db.errors import MigrationRefusedError

__all__ = [
    "CURRENT_ROWS_QUERY",
    "GUARD_PROCEDURE",
    "INVARIANT_REVISION",
    "check",
    "check_database",
    "guard_script",
    "invariant_pending",
    "keep_current_argument",
    "refusal",
]

INVARIANT_REVISION = "0002"
"""The revision that clears extra current rows, and so the one ``keep_current`` is for."""

CURRENT_ROWS_QUERY = (
    f"SELECT `id`, `{FLAG_COLUMN}` FROM `{TABLE}` WHERE `{FLAG_COLUMN}` <> 0 ORDER BY `id`"
)
"""The current rows (any non-zero flag), oldest first: what the rule looks at."""

GUARD_PROCEDURE = "batchflag_check_keep_current"
"""The procedure an offline script creates, calls and drops to check ``keep_current``."""

_SIGNAL_TEXT_LIMIT = 128  # SIGNAL's MESSAGE_TEXT holds at most 128 characters
_SUFFIX = "; name one of them"


def _prefix(keep: int) -> str:
    return f"keep_current={keep}: batch {keep} is not one of the current batches "


def refusal(keep: int | None, current_ids: Sequence[int]) -> str | None:
    """Return why ``keep`` is refused for these current rows, or None if it is not.

    The rule: with several current rows, ``keep`` (when given) must be one of them.
    With at most one current row nothing is cleared, so nothing is refused.
    """
    ids = list(current_ids)
    if keep is None or len(ids) <= 1 or keep in ids:
        return None
    return f"{_prefix(keep)}{ids}{_SUFFIX}"


def check(keep: int | None, current_ids: Sequence[int]) -> None:
    """Apply :func:`refusal`.

    Raises:
        MigrationRefusedError: ``keep`` names none of several current rows.
    """
    reason = refusal(keep, current_ids)
    if reason is not None:
        raise MigrationRefusedError(reason)


def keep_current_argument(
    x_arguments: Mapping[str, str], attributes: Mapping[str, Any]
) -> int | None:
    """Return ``keep_current`` from ``-x keep_current=ID``, else the runner's attribute.

    Raises:
        MigrationRefusedError: The value is not an integer.
    """
    raw = x_arguments.get("keep_current")
    if raw is None:
        raw = attributes.get("keep_current")
    if raw is None or raw == "":
        return None
    try:
        return int(str(raw))
    except ValueError:
        raise MigrationRefusedError(f"keep_current={raw!r} is not a batch id") from None


def invariant_pending(script: ScriptDirectory, target: str | None, current: str | None) -> bool:
    """Tell whether upgrading from ``current`` to ``target`` runs revision 0002.

    A target Alembic cannot place between the two (not an upgrade) runs no 0002.
    """
    try:
        steps = script.iterate_revisions(target or "head", current or "base")
        return any(step.revision == INVARIANT_REVISION for step in steps if step is not None)
    except RevisionError:  # not an upgrade range (a downgrade, a typo): Alembic says so
        return False


def check_database(connection: Connection, keep: int | None) -> None:
    """Apply the rule to the rows current in the database, changing nothing.

    A database without the table or its flag column has no current row.

    Raises:
        MigrationRefusedError: ``keep`` names none of several current rows.
    """
    if keep is None:
        return
    has_flag = connection.execute(
        text(
            "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = :table AND COLUMN_NAME = :column"
        ),
        {"table": TABLE, "column": FLAG_COLUMN},
    ).scalar()
    if not has_flag:
        return
    ids = [int(row[0]) for row in connection.exec_driver_sql(CURRENT_ROWS_QUERY)]
    check(keep, ids)


def guard_script(keep: int) -> str:
    """Return the SQL that stops a script, before any change, where :func:`check` refuses.

    The script creates :data:`GUARD_PROCEDURE`, calls it and drops it. The procedure
    signals SQLSTATE 45000 with :func:`refusal`'s message (the id list shortened to fit
    SIGNAL's 128 characters), so the client stops there with that message and a
    non-zero exit. A stopped script leaves only the procedure itself, which the next
    run of a script drops and creates again. A database without the table or its flag
    column has no current row, so the check passes.
    """
    prefix, suffix = _prefix(keep), _SUFFIX
    room = _SIGNAL_TEXT_LIMIT - len(prefix) - len(suffix) - 2  # the brackets
    return f"""-- keep_current={keep}: stop here, before any change, unless batch {keep} is one
-- of the current batches (or at most one batch is current).
-- A stop leaves only the procedure {GUARD_PROCEDURE}.
DROP PROCEDURE IF EXISTS `{GUARD_PROCEDURE}`;
DELIMITER //
CREATE PROCEDURE `{GUARD_PROCEDURE}`()
BEGIN
  DECLARE v_count BIGINT DEFAULT 0;
  DECLARE v_kept BIGINT DEFAULT 0;
  DECLARE v_ids TEXT;
  DECLARE v_message VARCHAR({_SIGNAL_TEXT_LIMIT});
  IF EXISTS (SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()
             AND TABLE_NAME = '{TABLE}' AND COLUMN_NAME = '{FLAG_COLUMN}') THEN
    SELECT COUNT(*), COALESCE(SUM(`id` = {keep}), 0),
           GROUP_CONCAT(`id` ORDER BY `id` SEPARATOR ', ')
      INTO v_count, v_kept, v_ids
      FROM `{TABLE}` WHERE `{FLAG_COLUMN}` <> 0;
    IF v_count > 1 AND v_kept = 0 THEN
      IF CHAR_LENGTH(v_ids) > {room} THEN
        SET v_ids = CONCAT(LEFT(v_ids, {room - 3}), '...');
      END IF;
      SET v_message = CONCAT('{prefix}[', v_ids, ']{suffix}');
      SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = v_message;
    END IF;
  END IF;
END
//
DELIMITER ;
CALL `{GUARD_PROCEDURE}`();
DROP PROCEDURE `{GUARD_PROCEDURE}`;

"""
