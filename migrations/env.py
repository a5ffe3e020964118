"""Alembic environment for batchflag-db.

The URL comes from, in order: ``config.attributes["url"]`` (the Python runner),
``-x url=URL``, ``-x env=NAME`` (``BATCHFLAG_<NAME>_DATABASE_URL``), ``BATCHFLAG_DATABASE_URL``.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from alembic.util import CommandError
from sqlalchemy import create_engine, pool

from batchflag_db import _install as install
from batchflag_db import _keep_current as keep_rule
from batchflag_db._schema import VERSION_TABLE
from batchflag_db.config import normalize_url, resolve_url
from batchflag_db.errors import ConfigurationError
from batchflag_db.installation import Installation

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

x_args = context.get_x_argument(as_dictionary=True)


def _url() -> str:
    given = config.attributes.get("url")
    try:
        if given:
            return normalize_url(given).render_as_string(hide_password=False)
        return resolve_url(x_args.get("url"), x_args.get("env")).render_as_string(
            hide_password=False
        )
    except ConfigurationError as exc:
        if context.is_offline_mode():
            # A script needs only the dialect, not a server.
            return "mysql+pymysql://"
        raise CommandError(str(exc)) from None


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        literal_binds=True,
        version_table=VERSION_TABLE,
        transaction_per_migration=True,
    )
    keep = _keep_current()
    if keep is not None and _invariant_pending(context.get_starting_revision_argument()):
        # No database to read: the script checks keep_current itself, as its first
        # statements, so the client stops before any change where online would refuse.
        context.get_context().impl.static_output(keep_rule.guard_script(keep))
    with context.begin_transaction():
        context.run_migrations()


def _keep_current() -> int | None:
    return keep_rule.keep_current_argument(x_args, config.attributes)


def _default_names() -> bool:
    """True unless this run names a table or columns (``-x table=...`` or the runner's)."""
    given = config.attributes.get("installation")
    if isinstance(given, Installation):
        return given.is_default
    return not any(x_args.get(name) for name in install.OPTION_NAMES)


def _create_table() -> bool:
    raw = x_args.get("create_table", config.attributes.get("create_table"))
    return str(raw).lower() in ("1", "true", "yes") if raw is not None else False


def _is_upgrade() -> bool:
    # From no revision only an upgrade does anything; `downgrade base` there is a no-op.
    try:
        return context.get_revision_argument() not in (None, "base")
    except KeyError:  # run without a destination (pytest-alembic's runner): an upgrade
        return True


def _invariant_pending(current: str | None) -> bool:
    return keep_rule.invariant_pending(context.script, context.get_revision_argument(), current)


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            version_table=VERSION_TABLE,
            transaction_per_migration=True,
        )
        current = context.get_context().get_current_revision()
        if current is None and _default_names() and _is_upgrade():
            # Revision 0001 would create batchStatus: not beside the user's own table.
            install.check_new_table(connection, create_table=_create_table())
            connection.rollback()  # only read
        keep = _keep_current()
        if keep is not None and _invariant_pending(current):
            # Refuse a bad keep_current before revision 0001 (or the version table) changes
            # anything: 0002 would refuse it only after 0001 ran.
            keep_rule.check_database(connection, keep)
            connection.rollback()  # only read
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
