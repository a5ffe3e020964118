"""Alembic operations for a team's own migration chain, and an autogenerate filter.

Importing this module registers three operations on Alembic's ``op``, each with its
reverse, so ``alembic downgrade`` undoes it. Import ``op`` from here: it is Alembic's
``op``, typed with these operations too, so editors and ``mypy --strict`` know them::

    from batchflag_db.alembic import op  # registers the operations; a typed op

    def upgrade():
        op.create_current_flag(table="batch_status", flag_column="is_current",
                               status_column="state", scope_column="pipeline")

    def downgrade():
        op.drop_current_flag(table="batch_status", flag_column="is_current",
                             status_column="state", scope_column="pipeline")

* ``op.create_current_flag(...)`` installs batchflag-db on an existing table: the data
  check and cleanup, the key column, its UNIQUE index (online), the lock row(s), the
  history table, the routines, and the record of the names;
* ``op.drop_current_flag(...)`` removes all of that and keeps every row and flag value
  (and the history table when it has rows);
* ``op.replace_current_flag_routines(version=..., previous=...)`` moves the routines to
  another template version.

Each works online and offline (``alembic upgrade --sql``). In ``env.py``, pass
:func:`include_object` to ``context.configure(include_object=...)`` so autogenerate and
``alembic check`` leave batchflag-db's objects alone.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, cast

from alembic import op as alembic_op
from alembic.operations import MigrateOperation, Operations

from batchflag_db import _ddl, _install, _routines
from batchflag_db._schema import (
    FLAG_COLUMN,
    HISTORY_TABLE,
    KEY_COLUMN,
    LOCK_TABLE,
    STATUS_COLUMN,
    TABLE,
    VERSION_TABLE,
)
from batchflag_db.installation import (
    DEFAULT,
    FLAG_INDEX_SUFFIX,
    RECORD_TABLE,
    SCOPE_LOCK_TABLE,
    STATUS_INDEX_SUFFIX,
    Installation,
)

__all__ = [
    "CreateCurrentFlagOp",
    "DropCurrentFlagOp",
    "FlagOperations",
    "ReplaceCurrentFlagRoutinesOp",
    "include_object",
    "op",
]

OWN_TABLES = frozenset({RECORD_TABLE, LOCK_TABLE, SCOPE_LOCK_TABLE, HISTORY_TABLE, VERSION_TABLE})
"""Tables batchflag-db owns: autogenerate should neither create nor drop them."""

_KEY_INDEX = re.compile(rf"uq_\w+_{KEY_COLUMN}(_next)?")
_STATUS_INDEX = re.compile(rf"{DEFAULT.status_index}|ix_\w+_{STATUS_INDEX_SUFFIX}")
_FLAG_INDEX = re.compile(rf"{DEFAULT.flag_index}|ix_\w+_{FLAG_INDEX_SUFFIX}")


class _InstallationOp(MigrateOperation):
    """An operation on one installation: the names it is given."""

    def __init__(
        self,
        table: str = TABLE,
        id_column: str = "id",
        flag_column: str = FLAG_COLUMN,
        status_column: str = STATUS_COLUMN,
        scope_column: str | None = None,
        *,
        scope_type: str | None = None,
        keep_current: int | None = None,
    ) -> None:
        self.installation = Installation(
            table, id_column, flag_column, status_column, scope_column, scope_type
        )
        self.keep_current = keep_current

    def _names(self) -> dict[str, Any]:
        inst = self.installation
        return {**inst.names(), "scope_type": inst.scope_type}


@Operations.register_operation("create_current_flag")
class CreateCurrentFlagOp(_InstallationOp):
    """Install batchflag-db on an existing table (``op.create_current_flag``)."""

    @classmethod
    def create_current_flag(  # noqa: PLR0917  # Alembic passes op first; the names follow Installation's order
        cls,
        operations: Operations,
        table: str = TABLE,
        id_column: str = "id",
        flag_column: str = FLAG_COLUMN,
        status_column: str = STATUS_COLUMN,
        scope_column: str | None = None,
        *,
        scope_type: str | None = None,
        keep_current: int | None = None,
    ) -> None:
        """Install batchflag-db on an existing table, every step idempotent.

        Args:
            operations: Alembic's ``op`` (passed by Alembic).
            table: The table, one row per batch.
            id_column: Its integer primary key.
            flag_column: Its numeric or boolean "current" column.
            status_column: Its text status column.
            scope_column: A NOT NULL column: one current row per value of it.
            scope_type: The scope column's type (required offline with a scope column).
            keep_current: The batch to keep where several are current (default the
                newest of each scope).

        Raises:
            MigrationRefusedError: The table cannot take it (the message says why);
                nothing changed.
            ConfigurationError: A name is not valid.
        """
        operations.invoke(
            cls(
                table,
                id_column,
                flag_column,
                status_column,
                scope_column,
                scope_type=scope_type,
                keep_current=keep_current,
            )
        )

    def reverse(self) -> DropCurrentFlagOp:
        """The operation ``alembic downgrade`` runs: drop the same installation."""
        return DropCurrentFlagOp(**self._names())


@Operations.register_operation("drop_current_flag")
class DropCurrentFlagOp(_InstallationOp):
    """Remove batchflag-db from a table, keeping every row and flag (``op.drop_current_flag``)."""

    @classmethod
    def drop_current_flag(  # noqa: PLR0917  # Alembic passes op first; the names follow Installation's order
        cls,
        operations: Operations,
        table: str = TABLE,
        id_column: str = "id",
        flag_column: str = FLAG_COLUMN,
        status_column: str = STATUS_COLUMN,
        scope_column: str | None = None,
        *,
        scope_type: str | None = None,
    ) -> None:
        """Remove what ``create_current_flag`` made; rows and flag values stay.

        The history table stays when it has rows. Takes the same names as
        ``create_current_flag``.

        Raises:
            ConfigurationError: A name is not valid.
        """
        operations.invoke(
            cls(table, id_column, flag_column, status_column, scope_column, scope_type=scope_type)
        )

    def reverse(self) -> CreateCurrentFlagOp:
        """Create the same installation again."""
        return CreateCurrentFlagOp(**self._names())


@Operations.register_operation("replace_current_flag_routines")
class ReplaceCurrentFlagRoutinesOp(MigrateOperation):
    """Move the routines to another template version (``op.replace_current_flag_routines``)."""

    def __init__(self, installation: Installation, version: int, previous: int) -> None:
        self.installation = installation
        self.version = version
        self.previous = previous

    @classmethod
    def replace_current_flag_routines(  # noqa: PLR0917  # Alembic passes op first; the names follow Installation's order
        cls,
        operations: Operations,
        table: str = TABLE,
        id_column: str = "id",
        flag_column: str = FLAG_COLUMN,
        status_column: str = STATUS_COLUMN,
        scope_column: str | None = None,
        *,
        version: int,
        previous: int,
        scope_type: str | None = None,
    ) -> None:
        """Re-create every routine from the template files of ``version``.

        Args:
            operations: Alembic's ``op`` (passed by Alembic).
            table: The installation's table, as for ``create_current_flag``.
            id_column: Its id column.
            flag_column: Its flag column.
            status_column: Its status column.
            scope_column: Its scope column, if any.
            version: The routine version to move to.
            previous: The version a downgrade moves back to.
            scope_type: The scope column's type (read from the server online).

        Raises:
            ConfigurationError: This batchflag-db has no routine templates of that version.
        """
        names = Installation(table, id_column, flag_column, status_column, scope_column, scope_type)
        operations.invoke(cls(names, version, previous))

    def reverse(self) -> ReplaceCurrentFlagRoutinesOp:
        """Move the routines back to ``previous``."""
        return ReplaceCurrentFlagRoutinesOp(self.installation, self.previous, self.version)


@Operations.implementation_for(CreateCurrentFlagOp)
def _create_current_flag(operations: Operations, operation: CreateCurrentFlagOp) -> None:
    del operations  # batchflag_db._ddl runs on Alembic's current context
    _install.create(operation.installation, operation.keep_current)


@Operations.implementation_for(DropCurrentFlagOp)
def _drop_current_flag(operations: Operations, operation: DropCurrentFlagOp) -> None:
    del operations
    _install.drop(operation.installation)


@Operations.implementation_for(ReplaceCurrentFlagRoutinesOp)
def _replace_routines(operations: Operations, operation: ReplaceCurrentFlagRoutinesOp) -> None:
    del operations
    _routines.check_version(operation.version)
    inst = operation.installation
    if inst.scoped and inst.scope_type is None and not _ddl.is_offline():
        inst = inst.with_scope_type(_install.read_scope_type(inst))
    _install.replace_routines(inst, operation.version)


class FlagOperations(Operations):
    """Alembic's ``op`` with batchflag-db's operations declared, for type checkers.

    ``from batchflag_db.alembic import op`` is Alembic's own ``op`` (the same object),
    typed as this class: ``mypy --strict`` then checks ``op.create_current_flag(...)``
    like ``op.add_column(...)``. The signatures are the classmethods' above;
    ``tests/test_adoption.py`` checks that they agree.
    """

    if TYPE_CHECKING:

        def create_current_flag(
            self,
            table: str = TABLE,
            id_column: str = "id",
            flag_column: str = FLAG_COLUMN,
            status_column: str = STATUS_COLUMN,
            scope_column: str | None = None,
            *,
            scope_type: str | None = None,
            keep_current: int | None = None,
        ) -> None:
            """Install batchflag-db on an existing table (:class:`CreateCurrentFlagOp`)."""

        def drop_current_flag(
            self,
            table: str = TABLE,
            id_column: str = "id",
            flag_column: str = FLAG_COLUMN,
            status_column: str = STATUS_COLUMN,
            scope_column: str | None = None,
            *,
            scope_type: str | None = None,
        ) -> None:
            """Remove batchflag-db from a table (:class:`DropCurrentFlagOp`)."""

        def replace_current_flag_routines(
            self,
            table: str = TABLE,
            id_column: str = "id",
            flag_column: str = FLAG_COLUMN,
            status_column: str = STATUS_COLUMN,
            scope_column: str | None = None,
            *,
            version: int,
            previous: int,
            scope_type: str | None = None,
        ) -> None:
            """Move the routines to another version (:class:`ReplaceCurrentFlagRoutinesOp`)."""


op = cast(FlagOperations, alembic_op)
"""Alembic's ``op``, typed with batchflag-db's operations (see :class:`FlagOperations`)."""


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Autogenerate filter: False for batchflag-db's own tables, key column and indexes.

    Pass it to ``context.configure(include_object=include_object)`` in ``env.py`` (or
    call it from your own filter). With it, ``alembic check`` and
    ``alembic revision --autogenerate`` propose neither dropping batchflag-db's objects
    nor creating them.
    """
    del reflected, compare_to
    if type_ == "table":
        return name not in OWN_TABLES
    if type_ == "column":
        return name != KEY_COLUMN
    if type_ in ("index", "unique_constraint") and name:
        if _KEY_INDEX.fullmatch(name):
            return False
        if _STATUS_INDEX.fullmatch(name) or _FLAG_INDEX.fullmatch(name):
            return False
    return True
