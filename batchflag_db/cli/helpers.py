"""What every ``batchflag`` command shares: the global options, the database, and output.

For command modules (the project's, or one that adds its own command to
:data:`batchflag_db.cli.cli`); raise any exception from a command, and
:class:`~batchflag_db.cli.group.BatchflagGroup` turns it into one line and an exit code.

* :func:`get_settings` -> :class:`Settings`, the global ``--url`` / ``--env``;
* :func:`resolve_database_url` -> the URL they (or ``BATCHFLAG_DATABASE_URL``) name;
* :func:`open_engine` -> context manager: an :class:`~sqlalchemy.engine.Engine` for it;
* :func:`command_prefix` -> ``batchflag --env staging``: for printing commands to run;
* :func:`echo_json`, :func:`echo_table` -> JSON (dates as ISO strings) and plain tables;
* :data:`BATCH_ID` -> click parameter type accepting only valid batch ids.

Messages name a database with :func:`batchflag_db.config.describe_url`.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import click
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Engine

from batchflag_db._text import table_lines
from batchflag_db.config import describe_url, resolve_url
from batchflag_db.errors import ConfigurationError, InvalidBatchIdError
from batchflag_db.flag import validate_batch_id
from batchflag_db.installation import Installation

__all__ = [
    "BATCH_ID",
    "BatchIdType",
    "Settings",
    "command_prefix",
    "echo_json",
    "echo_table",
    "get_settings",
    "installation_from",
    "installation_options",
    "open_engine",
    "resolve_database_url",
]


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


def echo_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as a plain, left-aligned table with a header line."""
    for line in table_lines(columns, rows):
        click.echo(line)


class BatchIdType(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic from click 8.4
    """A batch id: an integer from 1 to 2**63-1 (what the procedures accept)."""

    name = "ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """Return the id as an int, or fail with the reason it is not a batch id."""
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
"""The click parameter type of a batch id argument or option."""


_INSTALLATION_OPTIONS = (
    ("--table", "table", "Your table's name (default batchStatus)."),
    ("--id-column", "id_column", "Its primary key column (default id)."),
    ("--flag-column", "flag_column", "Its current-flag column (default currentBatch)."),
    ("--status-column", "status_column", "Its status column (default batchStatus)."),
    (
        "--scope-column",
        "scope_column",
        "A NOT NULL column: one current batch per value of it (e.g. pipeline).",
    ),
    (
        "--scope-type",
        "scope_type",
        "The scope column's type as SHOW CREATE TABLE shows it (needed by `sql` only).",
    ),
)


def installation_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Add the installation's name options (and --create-table) to a command."""
    for flag, name, text in reversed(_INSTALLATION_OPTIONS):
        function = click.option(flag, name, metavar="NAME", default=None, help=text)(function)
    return click.option(
        "--create-table",
        is_flag=True,
        help="Create batchStatus even though the database has other tables.",
    )(function)


def installation_from(names: dict[str, str | None]) -> Installation | None:
    """The installation the name options give, or None when none is given."""
    given = {k: v for k, v in names.items() if v}
    if not given:
        return None
    try:
        return Installation.from_options(given)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
