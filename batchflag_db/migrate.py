"""Running the Alembic migrations from Python (the CLI and the tests use this)."""

from __future__ import annotations

import logging
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from batchflag_db._resources import data_root
from batchflag_db._schema import VERSION_TABLE
from batchflag_db.config import normalize_url
from batchflag_db.errors import DatabaseConnectionError, translated_errors
from batchflag_db.installation import Installation

__all__ = ["alembic_config", "current_revision", "downgrade", "head_revision", "upgrade"]

log = logging.getLogger(__name__)


def alembic_config(url: str | URL | None = None, **attributes: Any) -> Config:
    """Return an Alembic :class:`Config` for this package's migrations.

    Args:
        url: The database URL; stored in ``config.attributes``, never in a file.
        **attributes: Extra attributes for ``migrations/env.py`` (e.g. ``keep_current``).
    """
    root = data_root()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["configure_logger"] = False
    if url is not None:
        config.attributes["url"] = normalize_url(url).render_as_string(hide_password=False)
    config.attributes.update(attributes)
    return config


def upgrade(
    url: str | URL,
    revision: str = "head",
    *,
    keep_current: int | None = None,
    installation: Installation | None = None,
    create_table: bool = False,
) -> None:
    """Upgrade the database at ``url`` to ``revision``.

    Args:
        url: The database URL.
        revision: Target revision (default ``head``).
        keep_current: When several rows are already current, the one to keep
            (default: the newest of each scope).
        installation: The table and column names to install on (default: the
            recorded ones, else ``batchStatus`` and its columns). Other names than the
            default are installed whole by revision 0006; revisions 0001-0005 skip.
        create_table: Create ``batchStatus`` even though the database has other tables
            (without it, revision 0001 creates it only in a database with none).

    Raises:
        ConfigurationError: The URL is malformed or not a MySQL/MariaDB URL.
        DatabaseConnectionError: The server cannot be reached or refuses the login.
        MigrationRefusedError: A revision refused the data as it is (the message says why);
            nothing changed.
    """
    extra: dict[str, Any] = {"keep_current": keep_current, "create_table": create_table}
    if installation is not None:
        extra["installation"] = installation
    config = alembic_config(url, **extra)
    with translated_errors(only=DatabaseConnectionError):
        command.upgrade(config, revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Downgrade the database at ``url`` to ``revision`` (``base`` removes everything but data).

    Raises:
        ConfigurationError: The URL is malformed or not a MySQL/MariaDB URL.
        DatabaseConnectionError: The server cannot be reached or refuses the login.
    """
    config = alembic_config(url)
    with translated_errors(only=DatabaseConnectionError):
        command.downgrade(config, revision)


def head_revision() -> str:
    """Return the newest revision this version of batchflag-db ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError("no migrations found")
    return head


def current_revision(url: str | URL) -> str | None:
    """Return the revision the database at ``url`` is at, or None if never migrated."""
    engine = create_engine(normalize_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        engine.dispose()
