"""The dashboard commands: ``resolve``, ``history`` and ``watch`` (:mod:`batchflag_db.dashboard`)."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

import click

from batchflag_db.cli.helpers import BATCH_ID, echo_json, echo_table, open_engine
from batchflag_db.dashboard import (
    HistoryEntry,
    WatchSnapshot,
    history,
    prune_history,
    render_watch,
    resolve_dashboard_batch,
    take_snapshot,
)

__all__ = ["history_", "resolve", "run_watch", "watch"]

_CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen

_HISTORY_COLUMNS = (
    "id",
    "changedAt (UTC)",
    "action",
    "batchId",
    "previousBatchId",
    "account",
    "connectionId",
)


def _history_rows(entries: list[HistoryEntry]) -> list[list[object]]:
    return [
        [
            e.id,
            f"{e.changed_at:%Y-%m-%d %H:%M:%S.%f}",
            e.action,
            e.batch_id,
            e.previous_batch_id,
            e.account,
            e.connection_id,
        ]
        for e in entries
    ]


def run_watch(
    read: Callable[[], WatchSnapshot],
    *,
    interval: float,
    out: TextIO,
    refreshes: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Redraw the watch screen every ``interval`` seconds until Ctrl-C.

    A failed refresh shows its error above the last good screen and the loop
    keeps trying, so a server restart does not end the watch.

    Args:
        read: Reads one snapshot (e.g. ``lambda: take_snapshot(engine)``).
        interval: Seconds between refreshes.
        out: Where to draw; on a terminal each refresh clears the screen first,
            elsewhere screens are written one after another.
        refreshes: Stop after this many refreshes (None: until interrupted).
        sleep: The sleep function (for tests of the loop itself).

    Returns:
        The exit status: 0 after Ctrl-C or when the last refresh succeeded, else 1.
    """
    on_terminal = out.isatty()
    snapshot: WatchSnapshot | None = None
    done = 0
    error: str | None = None
    try:
        while refreshes is None or done < refreshes:
            try:
                snapshot = read()
                error = None
            except Exception as exc:  # the watch shows any failure on screen and goes on
                error = str(exc) or type(exc).__name__
            width = shutil.get_terminal_size().columns if on_terminal else 10_000
            screen = render_watch(snapshot, interval=interval, error=error, width=width)
            out.write(_CLEAR + screen if on_terminal else screen + "\n")
            out.flush()
            done += 1
            if refreshes is None or done < refreshes:
                sleep(interval)
    except KeyboardInterrupt:
        out.write("\n")
        out.flush()
        return 0
    return 0 if error is None else 1


@click.command("resolve")
@click.option(
    "--batch-id",
    "batch_id",
    type=BATCH_ID,
    default=None,
    metavar="ID",
    help="The batch the user asked for (the dashboard's ?batch_id=); it must exist.",
)
@click.option(
    "--scope",
    metavar="VALUE",
    default=None,
    help="With a scope column: resolve within this scope's batches.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def resolve(batch_id: int | None, scope: str | None, as_json: bool) -> None:
    """Print the batch the dashboard shows, and why.

    In order: --batch-id (requested); the current batch (current_flag); the
    newest InProgress batch (in_progress); the newest batch not Completed
    (incomplete); the newest batch (most_recent). With --scope, all within that
    scope. An empty batchStatus prints "no batch" (JSON: nulls) and exits 0.
    """
    with open_engine() as engine:
        resolution = resolve_dashboard_batch(engine, batch_id, scope=scope)
    if as_json:
        echo_json(
            {
                "batch_id": None if resolution is None else resolution.batch_id,
                "reason": None if resolution is None else resolution.reason,
            }
        )
    elif resolution is None:
        click.echo("no batch: batchStatus is empty")
    else:
        click.echo(f"batch {resolution.batch_id} ({resolution.reason})")


@click.command("history")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=1),
    default=None,
    help="How many flips to show, newest first.  [default: 20]",
)
@click.option(
    "--prune-before",
    "prune_before",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    default=None,
    metavar="DATE",
    help="Instead, delete the flips recorded before DATE (UTC; a date means its midnight).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def history_(limit: int | None, prune_before: dt.datetime | None, as_json: bool) -> None:
    """Show the recorded flips of the current batch, newest first; or prune old ones.

    Every set_current_batch / unset_current_batch call that changed something
    is recorded with its time (UTC), the calling account and connection id.
    Writes to currentBatch that bypass the procedures are not recorded.
    """
    if prune_before is not None and limit is not None:
        raise click.UsageError("--limit and --prune-before do not go together")
    with open_engine() as engine:
        if prune_before is not None:
            pruned = prune_history(engine, prune_before)
            if as_json:
                echo_json({"pruned": pruned, "before": prune_before.isoformat()})
            else:
                click.echo(f"pruned {pruned} flip(s) recorded before {prune_before} UTC")
            return
        entries = history(engine, 20 if limit is None else limit)
    if as_json:
        echo_json([e.to_json() for e in entries])
    elif not entries:
        click.echo("no flips recorded")
    else:
        echo_table(_HISTORY_COLUMNS, _history_rows(entries))


@click.command("watch")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option(
    "--flips",
    type=click.IntRange(min=1, max=100),
    default=8,
    show_default=True,
    help="How many recent flips to show.",
)
@click.option("--once", is_flag=True, help="Print one screen and exit (1 if it failed).")
@click.option(
    "--scope",
    metavar="VALUE",
    default=None,
    help="With a scope column: the scope to watch (required there).",
)
def watch(interval: float, flips: int, once: bool, scope: str | None) -> None:
    """Watch the current batch, what the dashboard shows and the last flips, live.

    Redraws every --interval seconds until Ctrl-C. An error (the server
    restarting, say) is shown on the screen and the watch keeps trying.
    """
    with open_engine() as engine:
        status = run_watch(
            lambda: take_snapshot(engine, flips, scope=scope),
            interval=interval,
            out=sys.stdout,
            refreshes=1 if once else None,
        )
    click.get_current_context().exit(status)
