"""Who made this database's installation: batchflag-db's own chain, or the team's.

An installation is made either by ``batchflag upgrade`` (batchflag-db's standalone
chain, whose revision is kept in :data:`~batchflag_db._schema.VERSION_TABLE`) or by
the team's own Alembic revision calling ``op.create_current_flag(...)`` (no
``batchflag_alembic_version``; the team's chain keeps its revision in its own
version table, ``alembic_version`` unless its env.py names another). Every command
that changes or describes the installation reads the :class:`Owner` first, so a
standalone command never takes over an installation the team's chain owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from batchflag_db import installation
from batchflag_db._connection import Connectable, Link, connect
from batchflag_db._schema import VERSION_TABLE
from batchflag_db.errors import BatchFlagError, MigrationRefusedError
from batchflag_db.installation import RECORD_TABLE, Installation

__all__ = ["CHAIN_VERSION_TABLE", "Owner", "read_owner", "refuse_standalone"]

CHAIN_VERSION_TABLE = "alembic_version"
"""Where a team's own Alembic chain keeps its revision (Alembic's default name)."""

Kind = Literal["nothing", "standalone", "chain"]


@dataclass(frozen=True)
class Owner:
    """Who made the installation, and the revision each chain is at.

    Attributes:
        kind: ``nothing`` (no installation), ``standalone`` (``batchflag upgrade``)
            or ``chain`` (the team's revision calling ``op.create_current_flag``).
        installation: The recorded names (the default names without a record).
        standalone_revision: The revision in ``batchflag_alembic_version`` (None: none).
        chain_revision: The team's revision in ``alembic_version`` (None: not readable,
            or no such table).
    """

    kind: Kind
    installation: Installation
    standalone_revision: str | None
    chain_revision: str | None

    @property
    def chain(self) -> bool:
        """True when the team's own Alembic chain made the installation."""
        return self.kind == "chain"

    def describe(self) -> str:
        """One line: who installed it, on which names."""
        if self.kind != "chain":
            return f"installed by batchflag upgrade on {self.installation.describe()}"
        at = f" ({CHAIN_VERSION_TABLE} is at {self.chain_revision})" if self.chain_revision else ""
        return (
            f"installed by your own Alembic chain{at}, with op.create_current_flag, on "
            f"{self.installation.describe()}"
        )


def _tables(link: Link) -> set[str]:
    names = (RECORD_TABLE, VERSION_TABLE, CHAIN_VERSION_TABLE)
    found = link.query(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME IN (:a, :b, :c)",
        a=names[0],
        b=names[1],
        c=names[2],
    ).rows
    return {str(r[0]) for r in found}


def _revision(link: Link, table: str) -> str | None:
    try:
        rows = link.run(f"SELECT `version_num` FROM `{table}`").rows
    except BatchFlagError:  # no such table, or this account may not read it
        return None
    return ", ".join(sorted(str(r[0]) for r in rows)) or None


def _read(link: Link) -> Owner:
    tables = _tables(link)
    inst = installation.read(link) if RECORD_TABLE in tables else installation.DEFAULT
    standalone = _revision(link, VERSION_TABLE) if VERSION_TABLE in tables else None
    if RECORD_TABLE in tables and VERSION_TABLE not in tables:
        chain = _revision(link, CHAIN_VERSION_TABLE) if CHAIN_VERSION_TABLE in tables else None
        return Owner("chain", inst, None, chain)
    kind: Kind = "standalone" if standalone is not None else "nothing"
    return Owner(kind, inst, standalone, None)


def read_owner(conn: Connectable) -> Owner:
    """Return who made the installation of the database ``conn`` is on.

    An account that cannot see ``batchflag_alembic_version`` (it has no privilege on
    it) sees a recorded installation as made by a chain: read it as the account that
    runs the migrations.

    Raises:
        DatabaseConnectionError: The server cannot be reached.
        BatchFlagError: The server refused reading ``information_schema``.
    """
    with connect(conn) as link:
        return _read(link)


def refuse_standalone(owner: Owner, command: str) -> None:
    """Refuse a standalone migration command on an installation the team's chain owns.

    Raises:
        MigrationRefusedError: ``owner`` is the team's chain; nothing changed.
    """
    if owner.chain:
        raise MigrationRefusedError(
            f"`{command}` does not apply here: this database is {owner.describe()}. "
            "Change it from that chain (alembic upgrade/downgrade; op.drop_current_flag "
            "removes it); batchflag-db's standalone chain would own it a second time"
        )
