"""The ``demo`` command: the pipeline's story end to end (:mod:`batchflag_db.demo`)."""

from __future__ import annotations

import os

import click

from batchflag_db.cli.group import fail
from batchflag_db.cli.helpers import (
    command_prefix,
    get_settings,
    open_engine,
    resolve_database_url,
)
from batchflag_db.config import DEFAULT_URL_VARIABLE
from batchflag_db.demo import run_demo
from batchflag_db.installation import DEFAULT
from batchflag_db.owner import read_owner

__all__ = ["demo"]


@click.command()
def demo() -> None:
    """Run the pipeline story end to end and check the result.

    Without --url / --env / BATCHFLAG_DATABASE_URL it starts a throwaway local
    MariaDB/MySQL server (needs the server binaries) and removes it afterwards.
    With a database it upgrades it to head, adds its demo batches, then restores
    the previous current batch and removes them.
    """
    settings = get_settings()
    configured = bool(settings.url or settings.env or os.environ.get(DEFAULT_URL_VARIABLE))
    url = resolve_database_url() if configured else None
    if url is not None:
        with open_engine(url) as engine:
            owner = read_owner(engine)
        if owner.chain or not owner.installation.is_default:
            fail(
                f"demo writes its own batches to {DEFAULT.table} (batchDate, batchNumber, "
                f"batchStatus); this database is {owner.describe()}, which it leaves alone: "
                "run `batchflag demo` with no --url, --env or BATCHFLAG_DATABASE_URL (it "
                "starts a throwaway server)"
            )
    run_demo(url, click.echo, command=command_prefix())
