"""The ``batchflag`` group and its error rendering: every error is one line and an exit code.

Exit codes: :data:`EXIT_OK` 0 success; :data:`EXIT_ERROR` 1 an error (database
unreachable, login refused, batch not found, schema not migrated, a migration
refused, ...); :data:`EXIT_USAGE` 2 a usage error (bad option or batch id, no URL,
unknown environment); :data:`EXIT_UNHEALTHY` 3 ``doctor`` found problems;
:data:`EXIT_BROKEN_PIPE` 141 the reader of stdout closed it (``batchflag history | head``),
ending the command quietly.

* :class:`BatchflagGroup` -> runs a command; any exception it raises becomes
  :class:`CommandFailed` (one line on stderr and an exit code), never a traceback;
* :func:`describe_error` -> (one-line message, exit code) for any exception;
* :func:`fail` / :class:`CommandFailed` -> end the command with a message and exit code;
* :data:`cli` -> the group itself, with the global ``--url`` / ``--env`` (its commands
  are added in :mod:`batchflag_db.cli`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import click
from alembic.util import CommandError as AlembicCommandError
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from batchflag_db.cli.helpers import Settings, resolve_database_url
from batchflag_db.config import describe_url
from batchflag_db.errors import (
    ER_TOO_MANY_ROWS,
    BatchFlagError,
    ConfigurationError,
    DatabaseConnectionError,
    InvalidBatchIdError,
    SchemaNotReadyError,
    from_driver_error,
)

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_UNHEALTHY",
    "EXIT_USAGE",
    "TRACEBACK_VARIABLE",
    "BatchflagGroup",
    "CommandFailed",
    "cli",
    "describe_error",
    "fail",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNHEALTHY = 3
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: what a shell reports for ``cat`` whose reader went away, no message."""

TRACEBACK_VARIABLE = "BATCHFLAG_TRACEBACK"
"""Set to 1 to let an unexpected error show its traceback (for bug reports)."""


class CommandFailed(click.ClickException):
    """A command's error: printed as one line ``Error: ...``, exits with :attr:`exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(" ".join(message.split()))
        # click 8.5 declares exit_code a ClassVar, yet reads it from the instance: each
        # failure carries its own code. The ignore is unused under older click.
        self.exit_code = exit_code  # type: ignore[misc,unused-ignore]

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


_HINTS = {
    # SELECT ... INTO in a procedure found two current rows: the index must be gone.
    ER_TOO_MANY_ROWS: "several batches are current, so the UNIQUE index is missing: "
    "run `batchflag doctor` for the fix",
}


def describe_error(exc: BaseException, url: URL | None = None) -> tuple[str, int]:
    """Return (one-line message, exit code) for an exception that ended a command.

    Args:
        exc: The exception.
        url: The database the command used, named in connection errors.
    """
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
        # MigrationRefusedError among them: a migration refusing says what to change.
        message = str(exc)
        if exc.errno is not None and not isinstance(exc, SchemaNotReadyError):
            message = f"{message} (errno {exc.errno})"
        if exc.errno in _HINTS:
            message = f"{message}: {_HINTS[exc.errno]}"
    elif isinstance(exc, AlembicCommandError):
        # Alembic refuses with messages written for users.
        message = str(exc)
    else:
        message = (
            f"unexpected {type(exc).__name__}: {exc} "
            f"(set {TRACEBACK_VARIABLE}=1 to see where it happened)"
        )
    return " ".join(message.split()), code


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


def _stdout_closed() -> int:
    """The reader of stdout went away: send what is left to devnull; return the exit code.

    As Python's documentation on SIGPIPE advises: output still buffered would fail
    again when the interpreter flushes stdout at exit, so stdout now points at devnull.
    """
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (CliRunner)
        return EXIT_BROKEN_PIPE
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)
    return EXIT_BROKEN_PIPE


class BatchflagGroup(click.Group):
    """The ``batchflag`` group: every error becomes one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; turn any exception it raises into :class:`CommandFailed`."""
        try:
            with _migration_logs():
                return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # `batchflag history | head`: the reader has what it wanted; no message.
            raise click.exceptions.Exit(_stdout_closed()) from None
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
        code = rv if isinstance(rv, int) and not isinstance(rv, bool) else EXIT_OK
        try:
            sys.stdout.flush()  # a closed pipe shows here, not as a message at exit
        except BrokenPipeError:
            code = _stdout_closed()
        sys.exit(code)


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
    3 doctor found problems, 141 the output's reader closed it early (quietly).
    """
    ctx.obj = Settings(url=url, env=env)
