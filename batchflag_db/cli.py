"""The ``batchflag`` command: migrations, the current batch, health checks, SQL for DBAs.

Every command finds its database the same way: ``--url URL``, else ``--env NAME``
(``BATCHFLAG_<NAME>_DATABASE_URL``), else ``BATCHFLAG_DATABASE_URL``. Every error
ends the command with one line on stderr and a non-zero exit code, never a traceback.

Exit codes: 0 success; 1 an error (database unreachable, login refused, batch not
found, schema not migrated, ...); 2 a usage error (bad option or batch id, no URL,
unknown environment); 3 ``doctor`` found problems.

Helpers for other command modules (``batchflag_db._cli_dashboard`` adds its
commands to :data:`cli` through its ``register(group)``). Raise any exception from
a command: :class:`BatchflagGroup` turns it into one line and an exit code.

* :func:`get_settings` -> :class:`Settings`, the global ``--url`` / ``--env``;
* :func:`resolve_database_url` -> the URL they (or ``BATCHFLAG_DATABASE_URL``) name;
* :func:`open_engine` -> context manager: an :class:`~sqlalchemy.engine.Engine` for it;
* :func:`describe_url` -> ``database 'x' on host:port`` (never the password);
* :func:`command_prefix` -> ``batchflag --env staging``: for printing commands to run;
* :func:`describe_error` -> (one-line message, exit code) for any exception;
* :func:`fail` / :class:`CommandFailed` -> end the command with a message and exit code;
* :func:`echo_json`, :func:`echo_table` -> JSON (dates as ISO strings) and plain tables;
* :func:`read_status`, :func:`status_lines` -> the ``status`` view, as data and as lines;
* :data:`BATCH_ID` -> click parameter type accepting only valid batch ids;
* :data:`EXIT_OK`, :data:`EXIT_ERROR`, :data:`EXIT_USAGE`, :data:`EXIT_UNHEALTHY`.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import importlib
import importlib.util
import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import click
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError

from batchflag_db import migrate
from batchflag_db._schema import FLAG_COLUMN, KEY_COLUMN, TABLE
from batchflag_db.config import resolve_url
from batchflag_db.errors import (
    BatchFlagError,
    ConfigurationError,
    DatabaseConnectionError,
    InvalidBatchIdError,
    SchemaNotReadyError,
    from_driver_error,
)
from batchflag_db.flag import get_current_batch, set_current_batch, unset_current_batch

__all__ = [
    "BATCH_ID",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_UNHEALTHY",
    "EXIT_USAGE",
    "BatchIdType",
    "BatchflagGroup",
    "CommandFailed",
    "Settings",
    "cli",
    "command_prefix",
    "describe_error",
    "describe_url",
    "echo_json",
    "echo_table",
    "fail",
    "get_settings",
    "main",
    "open_engine",
    "read_status",
    "resolve_database_url",
    "status_lines",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNHEALTHY = 3

PRODUCTION_ENVIRONMENTS = frozenset({"prod", "production"})
"""Environments where ``downgrade`` asks before it runs (unless ``--yes``)."""

TRACEBACK_VARIABLE = "BATCHFLAG_TRACEBACK"
"""Set to 1 to let an unexpected error show its traceback (for bug reports)."""

STATUS_COLUMNS = ("id", "batchDate", "batchNumber", "batchStatus", FLAG_COLUMN)
"""The columns ``status`` shows (the seed's Verification queries); missing ones are left out."""


# --------------------------------------------------------------------------- helpers


@dataclass
class Settings:
    """The global options, kept on the click context (``ctx.obj``).

    Attributes:
        url: ``--url``, or None.
        env: ``--env``, or None.
    """

    url: str | None = None
    env: str | None = None


def get_settings(ctx: click.Context | None = None) -> Settings:
    """Return the global options of the running command (defaults outside ``batchflag``)."""
    ctx = ctx or click.get_current_context(silent=True)
    found = ctx.find_object(Settings) if ctx is not None else None
    return found if found is not None else Settings()


def resolve_database_url(ctx: click.Context | None = None, *, require_database: bool = True) -> URL:
    """Return the database URL named by ``--url``, ``--env`` or ``BATCHFLAG_DATABASE_URL``.

    Raises:
        ConfigurationError: None of them gives a URL, the environment is unknown, or
            (``require_database``) the URL names no database.
    """
    settings = get_settings(ctx)
    url = resolve_url(settings.url, settings.env)
    if require_database and not url.database:
        raise ConfigurationError(
            f"the database URL names no database ({describe_url(url)}): "
            "end it with /DATABASE, e.g. mysql+pymysql://USER:PASSWORD@HOST:3306/mydb"
        )
    return url


@contextlib.contextmanager
def open_engine(url: URL | None = None) -> Iterator[Engine]:
    """Yield an Engine (no pool: one connection per use) for ``url`` or the resolved URL.

    Raises:
        ConfigurationError: No URL is given and none is configured.
    """
    engine = create_engine(
        url if url is not None else resolve_database_url(), poolclass=pool.NullPool
    )
    try:
        yield engine
    finally:
        engine.dispose()


def describe_url(url: URL) -> str:
    """Return ``database 'x' on host:port as user``, for messages (never the password)."""
    where = f"{url.host or 'localhost'}:{url.port or 3306}"
    who = f" as {url.username}" if url.username else ""
    if url.database:
        return f"database {url.database!r} on {where}{who}"
    return f"server {where}{who}"


def command_prefix(ctx: click.Context | None = None) -> str:
    """Return ``batchflag`` with the global option a user must repeat to reach the same database.

    ``--env NAME`` is repeated as it is; an explicit URL is shown as ``--url URL``
    (it may hold a password, so it is never printed).
    """
    settings = get_settings(ctx)
    if settings.url:
        return "batchflag --url URL"
    if settings.env:
        return f"batchflag --env {settings.env}"
    return "batchflag"


class CommandFailed(click.ClickException):
    """A command's error: printed as one line ``Error: ...``, exits with :attr:`exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(" ".join(message.split()))
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        """Print the one-line message to stderr."""
        click.echo(f"Error: {self.format_message()}", err=True)


def fail(message: str, exit_code: int = EXIT_ERROR) -> NoReturn:
    """End the running command with ``message`` on one line and ``exit_code``.

    Raises:
        CommandFailed: Always.
    """
    raise CommandFailed(message, exit_code)


def _is_driver_error(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        return True
    module = type(exc).__module__
    return module.startswith(("pymysql", "MySQLdb", "mysql.connector", "mariadb"))


_ER_TOO_MANY_ROWS = 1172

_HINTS = {
    # SELECT ... INTO in a procedure found two current rows: the index must be gone.
    _ER_TOO_MANY_ROWS: "several batches are current, so the UNIQUE index is missing: "
    "run `batchflag doctor` for the fix",
}


def describe_error(exc: BaseException, url: URL | None = None) -> tuple[str, int]:
    """Return (one-line message, exit code) for an exception that ended a command.

    Args:
        exc: The exception.
        url: The database the command used, named in connection errors.
    """
    from alembic.util import CommandError as AlembicCommandError  # noqa: PLC0415 - heavy import

    from batchflag_db.testing.server import ServerNotAvailableError  # noqa: PLC0415

    if isinstance(exc, click.ClickException):
        return exc.format_message(), exc.exit_code
    if _is_driver_error(exc) and not isinstance(exc, BatchFlagError):
        translated = from_driver_error(exc)
        if translated is not None:
            return describe_error(translated, url)
    message: str
    code = EXIT_ERROR
    if isinstance(exc, (ConfigurationError, InvalidBatchIdError)):
        message, code = str(exc), EXIT_USAGE
    elif isinstance(exc, DatabaseConnectionError):
        target = f" to {describe_url(url)}" if url is not None else ""
        message = f"cannot connect{target}: {exc} (errno {exc.errno})"
    elif isinstance(exc, BatchFlagError):
        message = str(exc)
        if exc.errno is not None and not isinstance(exc, SchemaNotReadyError):
            message = f"{message} (errno {exc.errno})"
        if exc.errno in _HINTS:
            message = f"{message}: {_HINTS[exc.errno]}"
    elif isinstance(exc, (AlembicCommandError, ServerNotAvailableError, RuntimeError)):
        # Migrations and the throwaway server refuse with messages written for users.
        message = str(exc)
    else:
        message = (
            f"unexpected {type(exc).__name__}: {exc} "
            f"(set {TRACEBACK_VARIABLE}=1 to see where it happened)"
        )
    return " ".join(message.split()), code


def echo_json(data: Any) -> None:
    """Print ``data`` as JSON; dates and times as ISO 8601 strings, decimals as numbers."""

    def default(value: Any) -> Any:
        if isinstance(value, (datetime.date, datetime.time)):
            return value.isoformat()
        if isinstance(value, decimal.Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        raise TypeError(f"cannot show {type(value).__name__} as JSON")

    click.echo(json.dumps(data, indent=2, default=default))


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (datetime.date, datetime.time)):
        return (
            value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
        )
    return str(value)


def echo_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as a plain, left-aligned table with a header line."""
    for line in _table_lines(columns, rows):
        click.echo(line)


def _table_lines(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return lines


class BatchIdType(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic from click 8.4
    """A batch id: an integer from 1 to 2**63-1 (what the procedures accept)."""

    name = "ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """Return the id as an int, or fail with the reason it is not a batch id."""
        from batchflag_db.flag import validate_batch_id  # noqa: PLC0415

        if isinstance(value, int) and not isinstance(value, bool):
            candidate: object = value
        else:
            text_value = str(value).strip()
            candidate = int(text_value) if re.fullmatch(r"[+-]?[0-9]+", text_value) else text_value
        try:
            return validate_batch_id(candidate)
        except InvalidBatchIdError as exc:
            self.fail(str(exc), param, ctx)


BATCH_ID = BatchIdType()


# --------------------------------------------------------------------------- the group


class _EchoHandler(logging.Handler):
    """Writes log records to the current stderr through click (works under CliRunner)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno >= logging.WARNING:
                message = f"{record.levelname.lower()}: {message}"
            click.echo(message, err=True)
        except Exception:  # logging must never break the command
            self.handleError(record)


def _alembic_progress_only(record: logging.LogRecord) -> bool:
    # Keep "Running upgrade 0001 -> 0002, ..."; drop "Context impl MySQLImpl." and the like.
    return record.levelno >= logging.WARNING or record.getMessage().startswith("Running ")


@contextlib.contextmanager
def _migration_logs() -> Iterator[None]:
    """Show what the migrations log (steps run, rows cleared) on stderr while a command runs.

    The handlers and levels are put back afterwards, so a program that calls the
    command in-process (tests, CliRunner) keeps its own logging setup.
    """
    changed: list[tuple[logging.Logger, logging.Handler, int]] = []
    for name in ("batchflag_db.migrations", "alembic.runtime.migration"):
        logger = logging.getLogger(name)
        handler = _EchoHandler()
        if name.startswith("alembic"):
            handler.addFilter(_alembic_progress_only)
        changed.append((logger, handler, logger.level))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, added, level in changed:
            logger.removeHandler(added)
            logger.setLevel(level)


class BatchflagGroup(click.Group):
    """The ``batchflag`` group: every error becomes one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; turn any exception it raises into :class:`CommandFailed`."""
        try:
            with _migration_logs():
                return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get(TRACEBACK_VARIABLE) == "1":
                raise
            url: URL | None
            try:
                url = resolve_database_url(ctx, require_database=False)
            except BatchFlagError:
                url = None
            message, code = describe_error(exc, url)
            raise CommandFailed(message, code) from exc

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; in standalone mode print usage errors as one line too."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.format_message())
            sys.exit(EXIT_OK)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            message = " ".join(exc.format_message().split())
            click.echo(f"Error: {message}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(EXIT_ERROR)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else EXIT_OK)


@click.group(cls=BatchflagGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    metavar="URL",
    help="Database URL, e.g. mysql+pymysql://USER:PASSWORD@HOST:3306/DATABASE "
    "(default: $BATCHFLAG_DATABASE_URL).",
)
@click.option(
    "--env",
    "env",
    metavar="NAME",
    help="Use environment NAME: its URL is read from BATCHFLAG_<NAME>_DATABASE_URL.",
)
@click.version_option(package_name="batchflag-db", prog_name="batchflag")
@click.pass_context
def cli(ctx: click.Context, url: str | None, env: str | None) -> None:
    """At most one current batch in batchStatus, enforced by MySQL/MariaDB.

    The database comes from --url, else --env NAME (BATCHFLAG_<NAME>_DATABASE_URL),
    else BATCHFLAG_DATABASE_URL. Exit codes: 0 ok, 1 error, 2 usage error,
    3 doctor found problems.
    """
    ctx.obj = Settings(url=url, env=env)


# --------------------------------------------------------------------------- migrations


def _revision_text(revision: str | None) -> str:
    return revision if revision is not None else "base (never migrated)"


@cli.command()
@click.argument("revision", default="head", metavar="[REV]")
@click.option(
    "--keep-current",
    type=BATCH_ID,
    metavar="ID",
    help="When several batches are already current, keep this one (default: the newest).",
)
def upgrade(revision: str, keep_current: int | None) -> None:
    """Upgrade the database to REV (default: head).

    Adopts an existing batchStatus table as it is. If several rows are already
    current, the newest (or --keep-current ID) stays current; each row cleared is logged.
    """
    url = resolve_database_url()
    before = migrate.current_revision(url)
    migrate.upgrade(url, revision, keep_current=keep_current)
    after = migrate.current_revision(url)
    where = describe_url(url)
    if before == after:
        click.echo(f"{where} is already at {_revision_text(after)}{_head_note(after)}")
    else:
        click.echo(f"upgraded {where} from {_revision_text(before)} to {after}{_head_note(after)}")


def _head_note(revision: str | None) -> str:
    return " (head)" if revision is not None and revision == migrate.head_revision() else ""


@cli.command(short_help="Downgrade the database to REV.")
@click.argument("revision", metavar="REV")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (prod/production).")
def downgrade(revision: str, yes: bool) -> None:
    """Downgrade the database to REV: a revision (0002), a step (-1) or base.

    Never deletes data: batchStatus and its rows stay. Against an environment named
    prod or production it asks first, unless --yes.
    """
    settings = get_settings()
    url = resolve_database_url()
    env = (settings.env or "").lower()
    if env in PRODUCTION_ENVIRONMENTS and not yes:
        question = f"Downgrade {describe_url(url)} (environment {settings.env}) to {revision}?"
        try:
            confirmed = click.confirm(question, default=False, err=True)
        except click.Abort:  # no answer (end of input)
            click.echo(err=True)
            confirmed = False
        if not confirmed:
            fail(f"downgrade of {settings.env} cancelled; pass --yes to skip the question")
    before = migrate.current_revision(url)
    migrate.downgrade(url, revision)
    after = migrate.current_revision(url)
    if before == after:
        click.echo(f"{describe_url(url)} is already at {_revision_text(after)}")
    else:
        click.echo(
            f"downgraded {describe_url(url)} from {_revision_text(before)} "
            f"to {_revision_text(after)}"
        )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def revision(as_json: bool) -> None:
    """Show the database's revision and this version's head."""
    url = resolve_database_url()
    current = migrate.current_revision(url)
    head = migrate.head_revision()
    if as_json:
        echo_json({"database_revision": current, "head_revision": head, "at_head": current == head})
        return
    click.echo(f"database: {_revision_text(current)}")
    click.echo(f"head:     {head}")
    if current == head:
        click.echo("up to date")
    else:
        click.echo(f"not at head: run `{command_prefix()} upgrade`")


@cli.command(short_help="Print the upgrade as a SQL script for DBAs.")
@click.argument("revision", default="head", metavar="[REV]")
@click.option(
    "--from",
    "start",
    metavar="REV",
    help="Write only the steps after REV (for a database already at REV).",
)
@click.option(
    "--keep-current",
    type=BATCH_ID,
    metavar="ID",
    help="In the script, keep this batch current where several are (default: the newest).",
)
def sql(revision: str, start: str | None, keep_current: int | None) -> None:
    """Print the upgrade to REV (default: head) as a SQL script, for DBAs.

    Apply it with the client as it is: mariadb DATABASE < upgrade.sql (or mysql).
    Procedure bodies are wrapped in DELIMITER. No database connection is needed.
    """
    from alembic import command  # noqa: PLC0415 - only this command needs it

    buffer = io.StringIO()
    config = migrate.alembic_config(None, keep_current=keep_current)
    config.output_buffer = buffer
    target = f"{start}:{revision}" if start else revision
    command.upgrade(config, target, sql=True)
    head = migrate.head_revision()
    click.echo(
        f"-- batchflag-db upgrade script: {start or 'base'} -> "
        f"{head if revision == 'head' else revision}\n"
        "-- Apply with: mariadb DATABASE < this-file.sql   (or: mysql DATABASE < this-file.sql)\n"
    )
    click.echo(buffer.getvalue(), nl=False)


# --------------------------------------------------------------------------- the flag


@cli.command(short_help="Print the current batch id (nothing if none).")
@click.option("--json", "as_json", is_flag=True, help='Print JSON: {"current_batch": ID or null}.')
def current(as_json: bool) -> None:
    """Print the id of the current batch, or nothing when no batch is current."""
    with open_engine() as engine:
        batch_id = get_current_batch(engine)
    if as_json:
        echo_json({"current_batch": batch_id})
    elif batch_id is not None:
        click.echo(str(batch_id))


@cli.command("set-current", short_help="Make batch ID the only current batch.")
@click.argument("batch_id", type=BATCH_ID, metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def set_current(batch_id: int, as_json: bool) -> None:
    """Make batch ID the only current batch (atomically, in one transaction)."""
    with open_engine() as engine:
        flip = set_current_batch(engine, batch_id)
    if as_json:
        echo_json(
            {
                "batch_id": flip.batch_id,
                "previous_batch_id": flip.previous_batch_id,
                "changed": flip.changed,
            }
        )
    elif not flip.changed:
        click.echo(f"batch {batch_id} was already the current batch; nothing changed")
    elif flip.previous_batch_id is None:
        click.echo(f"batch {batch_id} is now the current batch (no batch was current)")
    else:
        click.echo(
            f"batch {batch_id} is now the current batch (was batch {flip.previous_batch_id})"
        )


@cli.command("unset-current", short_help="Clear batch ID's current flag.")
@click.argument("batch_id", type=BATCH_ID, metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def unset_current(batch_id: int, as_json: bool) -> None:
    """Clear the current flag of batch ID if it is the current batch (else change nothing)."""
    with open_engine() as engine:
        flip = unset_current_batch(engine, batch_id)
    if as_json:
        echo_json({"batch_id": flip.batch_id, "changed": flip.changed})
    elif flip.changed:
        click.echo(f"batch {batch_id} is no longer current; no batch is current now")
    else:
        click.echo(f"batch {batch_id} was not the current batch; nothing changed")


def read_status(conn: Connection, limit: int = 10) -> dict[str, Any]:
    """Return the current batch and the latest ``limit`` batches (the seed's Verification queries).

    The result: ``{"columns": [...], "current_batch": row or None, "batches": [rows]}``,
    each row a dict of :data:`STATUS_COLUMNS` (those the table has). The current
    batch is found through the unique key column, as the wrapper reads it.

    Raises:
        SchemaNotReadyError: The table or its key column is missing: not migrated.
    """
    present = {
        str(r[0])
        for r in conn.execute(
            text(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table"
            ),
            {"table": TABLE},
        )
    }
    if KEY_COLUMN not in present:
        what = f"table {TABLE} does not exist" if not present else f"{TABLE} has no {KEY_COLUMN}"
        raise SchemaNotReadyError(f"schema not migrated: {what}: run `batchflag upgrade`")
    columns = [c for c in STATUS_COLUMNS if c in present]
    select = ", ".join(f"`{c}`" for c in columns)
    current_rows = conn.execute(text(f"SELECT {select} FROM `{TABLE}` WHERE `{KEY_COLUMN}` = 1"))
    current_row = current_rows.mappings().first()
    latest = conn.execute(
        text(f"SELECT {select} FROM `{TABLE}` ORDER BY `id` DESC LIMIT :limit"), {"limit": limit}
    )
    return {
        "columns": columns,
        "current_batch": dict(current_row) if current_row is not None else None,
        "batches": [dict(r) for r in latest.mappings()],
    }


def status_lines(view: dict[str, Any]) -> list[str]:
    """Return :func:`read_status`'s result as the lines ``batchflag status`` prints."""
    columns: list[str] = view["columns"]
    current_row = view["current_batch"]
    if current_row is None:
        lines = ["current batch: none"]
    else:
        details = [
            _cell(current_row[c])
            for c in ("batchDate", "batchNumber", "batchStatus")
            if c in current_row
        ]
        suffix = f" ({', '.join(details)})" if details else ""
        lines = [f"current batch: {current_row['id']}{suffix}"]
    batches = view["batches"]
    lines.append("")
    if batches:
        lines.append(f"latest {len(batches)} batch{'es' if len(batches) != 1 else ''}:")
        lines += _table_lines(columns, [[row[c] for c in columns] for row in batches])
    else:
        lines.append(f"no batches in {TABLE}")
    return lines


@cli.command(short_help="Show the current batch and the latest batches.")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=1, max=10_000),
    default=10,
    show_default=True,
    help="How many of the latest batches to show.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(limit: int, as_json: bool) -> None:
    """Show the current batch and the latest batches (id, batchDate, batchNumber, ...)."""
    with open_engine() as engine, engine.connect() as conn:
        view = read_status(conn, limit)
    if as_json:
        echo_json({"current_batch": view["current_batch"], "batches": view["batches"]})
        return
    for line in status_lines(view):
        click.echo(line)


# --------------------------------------------------------------------------- operations


@cli.command(short_help="Check the database; print each problem with its fix.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor(as_json: bool) -> None:
    """Check the database: revision, key column, UNIQUE index, procedures, current rows, definer.

    Healthy: exit 0. Each problem is one line saying what is wrong and the command
    that fixes it; then exit 3. Checks this account cannot run are notes, not problems.
    """
    from batchflag_db.doctor import diagnose  # noqa: PLC0415

    url = resolve_database_url()
    with open_engine(url) as engine:
        report = diagnose(engine, command=command_prefix())
    if as_json:
        echo_json(report.as_dict())
    else:
        for line in report.lines():
            click.echo(line)
        if report.healthy:
            click.echo(f"healthy: {describe_url(url)} has no problems")
        else:
            count = len(report.problems)
            click.echo(f"{count} problem{'s' if count != 1 else ''} in {describe_url(url)}")
    if not report.healthy:
        click.get_current_context().exit(EXIT_UNHEALTHY)


@cli.command(short_help="Grant ACCOUNT the least privilege to flip and read.")
@click.argument("account")
@click.option(
    "--sql", "as_sql", is_flag=True, help="Print the GRANT statements instead of running them."
)
@click.option(
    "--database",
    metavar="NAME",
    help="The database to grant on (default: the one in the URL).",
)
def grant(account: str, as_sql: bool, database: str | None) -> None:
    """Let ACCOUNT ('user'@'host') call the procedures and read batchStatus, nothing more.

    The account may CALL set_current_batch / unset_current_batch and SELECT batchStatus,
    but not UPDATE currentBatch itself. It must already exist (CREATE USER).
    """
    try:
        grants = importlib.import_module("batchflag_db.grants")
    except ImportError:
        fail("the grant command needs batchflag_db.grants, which this installation lacks")
    if as_sql:
        name = database or resolve_database_url().database
        for statement in grants.grant_statements(account, str(name)):
            click.echo(f"{statement};")
        return
    url = resolve_database_url()
    name = database or str(url.database)
    with open_engine(url) as engine:
        grants.grant(engine, account, name)
    click.echo(f"granted {account} SELECT on {TABLE} and EXECUTE on the procedures of {name}")


@cli.command()
def demo() -> None:
    """Run the pipeline story end to end and check the result.

    Without --url / --env / BATCHFLAG_DATABASE_URL it starts a throwaway local
    MariaDB/MySQL server (needs the server binaries) and removes it afterwards.
    With a database it upgrades it to head, adds its demo batches, then restores
    the previous current batch and removes them.
    """
    from batchflag_db.demo import run_demo  # noqa: PLC0415

    settings = get_settings()
    configured = bool(settings.url or settings.env or os.environ.get("BATCHFLAG_DATABASE_URL"))
    url = resolve_database_url() if configured else None
    run_demo(url, click.echo, command=command_prefix())


def _register_extensions(group: click.Group) -> None:
    """Add the commands of optional modules (the dashboard's) when they are installed."""
    name = "batchflag_db._cli_dashboard"
    if importlib.util.find_spec(name) is None:
        return
    importlib.import_module(name).register(group)


def main() -> None:
    """Entry point of the ``batchflag`` console script."""
    cli.main(prog_name="batchflag")


_register_extensions(cli)
