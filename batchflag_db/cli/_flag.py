"""The current-batch commands: ``current``, ``set-current`` and ``unset-current``."""

from __future__ import annotations

import click

from batchflag_db.cli.helpers import BATCH_ID, echo_json, open_engine
from batchflag_db.flag import get_current_batch, set_current_batch, unset_current_batch

__all__ = ["current", "set_current", "unset_current"]


@click.command(short_help="Print the current batch id (nothing if none).")
@click.option("--json", "as_json", is_flag=True, help='Print JSON: {"current_batch": ID or null}.')
@click.option(
    "--scope",
    metavar="VALUE",
    default=None,
    help="With a scope column (one current batch per pipeline, say): the scope's value.",
)
def current(as_json: bool, scope: str | None) -> None:
    """Print the id of the current batch (of --scope), or nothing when none is current."""
    with open_engine() as engine:
        batch_id = get_current_batch(engine, scope=scope)
    if as_json:
        echo_json({"current_batch": batch_id})
    elif batch_id is not None:
        click.echo(str(batch_id))


@click.command("set-current", short_help="Make batch ID the only current batch.")
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


@click.command("unset-current", short_help="Clear batch ID's current flag.")
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
