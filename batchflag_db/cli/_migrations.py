"""The migration commands: ``upgrade``, ``downgrade``, ``revision`` and ``sql``."""

from __future__ import annotations

import io

import click
from alembic import command
from sqlalchemy.engine import URL

from batchflag_db import migrate
from batchflag_db.cli.group import fail
from batchflag_db.cli.helpers import (
    BATCH_ID,
    command_prefix,
    echo_json,
    get_settings,
    installation_from,
    installation_options,
    open_engine,
    resolve_database_url,
)
from batchflag_db.config import describe_url
from batchflag_db.owner import Owner, read_owner, refuse_standalone

__all__ = ["PRODUCTION_ENVIRONMENTS", "downgrade", "revision", "sql", "upgrade"]

PRODUCTION_ENVIRONMENTS = frozenset({"prod", "production"})
"""Environments where ``downgrade`` asks before it runs (unless ``--yes``)."""


def _revision_text(revision: str | None) -> str:
    return revision if revision is not None else "base (never migrated)"


def _head_note(revision: str | None) -> str:
    return " (head)" if revision is not None and revision == migrate.head_revision() else ""


def _owner(url: URL) -> Owner:
    with open_engine(url) as engine:
        return read_owner(engine)


@click.command()
@click.argument("revision", default="head", metavar="[REV]")
@click.option(
    "--keep-current",
    type=BATCH_ID,
    metavar="ID",
    help="When several batches are already current, keep this one (default: the newest).",
)
@installation_options
def upgrade(
    revision: str, keep_current: int | None, create_table: bool, **names: str | None
) -> None:
    """Upgrade the database to REV (default: head).

    Adopts an existing batchStatus table as it is, or the table --table names (with
    its columns' names). It creates batchStatus only in a database with no tables, or
    with --create-table. If several rows are already current, the newest (or
    --keep-current ID) stays current, per scope with --scope-column; each row cleared
    is logged.
    """
    url = resolve_database_url()
    refuse_standalone(_owner(url), f"{command_prefix()} upgrade")
    before = migrate.current_revision(url)
    migrate.upgrade(
        url,
        revision,
        keep_current=keep_current,
        installation=installation_from(names),
        create_table=create_table,
    )
    after = migrate.current_revision(url)
    where = describe_url(url)
    if before == after:
        click.echo(f"{where} is already at {_revision_text(after)}{_head_note(after)}")
    else:
        click.echo(f"upgraded {where} from {_revision_text(before)} to {after}{_head_note(after)}")


@click.command(short_help="Downgrade the database to REV.")
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
    refuse_standalone(_owner(url), f"{command_prefix()} downgrade")
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def revision(as_json: bool) -> None:
    """Show the database's revision and this version's head.

    On an installation made by your own Alembic chain (op.create_current_flag), it
    names that chain's revision instead: batchflag-db's revisions do not apply there.
    """
    url = resolve_database_url()
    owner = _owner(url)
    current = migrate.current_revision(url)
    head = migrate.head_revision()
    if as_json:
        data: dict[str, object] = {
            "database_revision": current,
            "head_revision": head,
            "at_head": current == head,
        }
        if owner.chain:
            data.update(installed_by="chain", chain_revision=owner.chain_revision)
        echo_json(data)
        return
    if owner.chain:
        click.echo(f"database: {owner.describe()}")
        click.echo(f"head:     {head} (batchflag-db's standalone chain; it does not apply here)")
        click.echo("up to date with your chain: run alembic upgrade head there to change it")
        return
    click.echo(f"database: {_revision_text(current)}")
    click.echo(f"head:     {head}")
    if current == head:
        click.echo("up to date")
    else:
        click.echo(f"not at head: run `{command_prefix()} upgrade`")


@click.command(short_help="Print the upgrade as a SQL script for DBAs.")
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
    help="In the script, keep this batch current where several are (default: the newest); "
    "the script stops before any change if several are current and ID is none of them.",
)
@installation_options
def sql(
    revision: str,
    start: str | None,
    keep_current: int | None,
    create_table: bool,
    **names: str | None,
) -> None:
    """Print the upgrade to REV (default: head) as a SQL script, for DBAs.

    Apply it with the client as it is: mariadb DATABASE < upgrade.sql (or mysql).
    Procedure bodies are wrapped in DELIMITER. No database connection is needed.

    With --keep-current ID the script checks the database it runs on first, as
    `upgrade --keep-current` does: if several batches are current and ID is none
    of them, it stops before any change with the same message (SQLSTATE 45000; the
    client exits non-zero), leaving only its check procedure
    batchflag_check_keep_current, which the next run replaces. Do not run it with
    the client's --force, which would go on past the stop.
    """
    del create_table  # a script cannot look: CREATE TABLE IF NOT EXISTS adopts a table
    buffer = io.StringIO()
    inst = installation_from(names)
    extra = {} if inst is None else {"installation": inst}
    config = migrate.alembic_config(None, keep_current=keep_current, **extra)
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
