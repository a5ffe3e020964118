"""The health commands: ``status``, ``doctor`` and ``grant``."""

from __future__ import annotations

import click

from batchflag_db import grants, installation
from batchflag_db._connection import connect
from batchflag_db.cli.group import EXIT_UNHEALTHY
from batchflag_db.cli.helpers import (
    command_prefix,
    echo_json,
    get_settings,
    open_engine,
    resolve_database_url,
)
from batchflag_db.config import describe_url
from batchflag_db.doctor import diagnose
from batchflag_db.errors import ConfigurationError
from batchflag_db.status import read_status, status_lines

__all__ = ["doctor", "grant", "status"]


@click.command(short_help="Show the current batch and the latest batches.")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=1, max=10_000),
    default=10,
    show_default=True,
    help="How many of the latest batches to show.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--scope",
    metavar="VALUE",
    default=None,
    help="With a scope column: show that scope's current and latest batches.",
)
def status(limit: int, as_json: bool, scope: str | None) -> None:
    """Show the current batch and the latest batches (id, batchDate, batchNumber, ...).

    With a scope column: the current batch of every scope, or of --scope.
    """
    with open_engine() as engine:
        view = read_status(engine, limit, scope=scope)
    if as_json:
        shown = {"current_batch": view["current_batch"], "batches": view["batches"]}
        if "current_batches" in view:
            shown["current_batches"] = view["current_batches"]
        echo_json(shown)
        return
    for line in status_lines(view):
        click.echo(line)


@click.command(short_help="Check the database; print each problem with its fix.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor(as_json: bool) -> None:
    """Check the database: revision, key column, UNIQUE index, procedures, current rows, definer.

    Healthy: exit 0. Each problem is one line saying what is wrong and the command
    that fixes it; then exit 3. Checks this account cannot run are notes, not problems.
    """
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


def _recorded_names(database: str | None) -> tuple[str, installation.Installation]:
    """The database to grant on and its recorded names; the default names without a URL."""
    if database is not None and not (get_settings().url or get_settings().env):
        try:
            url = resolve_database_url()
        except ConfigurationError:  # --database and no URL: a script for the default names
            return database, installation.DEFAULT
    else:
        url = resolve_database_url()
    name = str(database or url.database)
    with open_engine(url) as engine, connect(engine) as link:
        return name, installation.read(link, name)


@click.command(short_help="Grant ACCOUNT the least privilege to flip and read.")
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

        The account may CALL set_current_batch / unset_current_batch and SELECT batchStatus
        (or the table the installation records), but not UPDATE the flag itself. It must
        already exist (CREATE USER). With --sql the names are read from the database too
    (with --database and no URL configured, the script is for the default names).
    """
    if as_sql:
        grants.parse_account(account)  # a bad account is refused before any connection
        name, inst = _recorded_names(database)
        for statement in grants.grant_statements(account, name, inst):
            click.echo(f"{statement};")
        return
    url = resolve_database_url()
    name = database or str(url.database)
    with open_engine(url) as engine:
        grants.grant(engine, account, name)
    click.echo(f"granted {account} SELECT on the table and EXECUTE on the procedures of {name}")
