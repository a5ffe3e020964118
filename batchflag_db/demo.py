"""``batchflag demo``: the pipeline's story, end to end, against a real server.

The story is the seed's ``run()``, written with :func:`~batchflag_db.flag.current_batch`:
a batch starts and becomes the current batch; it completes, is marked ``Completed``
and unset; the next batch fails and stays current, so the dashboard shows it. Then a stray
``UPDATE ... SET currentBatch = 1`` on another row is refused by the database,
``status`` shows the result and ``doctor`` checks the schema.

Without a database it starts a :class:`~batchflag_db.testing.server.ThrowawayServer`
(removed afterwards). Given a database, it upgrades it to head, and at the end
restores the batch that was current before and deletes the rows it added.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import IntegrityError

from batchflag_db import migrate
from batchflag_db._schema import FLAG_COLUMN, TABLE
from batchflag_db.config import describe_url
from batchflag_db.doctor import diagnose
from batchflag_db.errors import ER_DUP_ENTRY, BatchFlagError, driver_error_details
from batchflag_db.flag import (
    current_batch,
    get_current_batch,
    set_current_batch,
    unset_current_batch,
)
from batchflag_db.status import read_status, status_lines
from batchflag_db.testing.server import ThrowawayServer

__all__ = ["DEMO_DATABASE", "DemoFailedError", "run_demo"]

DEMO_DATABASE = "batchflag_demo"
"""The database the demo creates on its throwaway server."""

Echo = Callable[[str], None]


class DemoFailedError(BatchFlagError):
    """Raised when a step of the demo did not turn out as the story says it must."""


class _StageFailedError(Exception):
    """The failure the demo's second pipeline run simulates."""


def run_demo(url: URL | None, echo: Echo, *, command: str = "batchflag") -> None:
    """Run the demo on ``url``, or on a throwaway server when ``url`` is None.

    Args:
        url: The database to use (it is upgraded to head), or None.
        echo: Prints one line.
        command: How printed commands spell ``batchflag`` (e.g. with ``--env``).

    Raises:
        ServerNotAvailableError: ``url`` is None and no local server binaries exist.
        DemoFailedError: A step did not behave as the story says (the message says which).
        BatchFlagError: A server error, e.g. the database cannot be reached.
    """
    if url is not None:
        _story(url, echo, command=command, cleanup=True)
        return
    echo("no database given: starting a throwaway local server (it is removed afterwards)")
    with ThrowawayServer() as server:
        admin = server.connect(autocommit=True)
        try:
            with admin.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE `{DEMO_DATABASE}`")
        finally:
            admin.close()
        _story(
            make_url(server.url).set(database=DEMO_DATABASE), echo, command=command, cleanup=False
        )


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailedError(f"demo failed: {message}")


def _create_batch(engine: Engine, status: str) -> int:
    today = datetime.date.today()
    with engine.begin() as conn:
        number = conn.execute(
            text(
                f"SELECT COALESCE(MAX(`batchNumber`), 0) + 1 FROM `{TABLE}` WHERE `batchDate` = :d"
            ),
            {"d": today},
        ).scalar_one()
        result = conn.execute(
            text(
                f"INSERT INTO `{TABLE}` (`batchDate`, `batchNumber`, `batchStatus`) "
                "VALUES (:d, :n, :s)"
            ),
            {"d": today, "n": number, "s": status},
        )
        batch_id = result.lastrowid
    _check(isinstance(batch_id, int) and batch_id > 0, "inserting a batch returned no id")
    return int(batch_id)


def _set_status(engine: Engine, batch_id: int, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(f"UPDATE `{TABLE}` SET `batchStatus` = :s WHERE `id` = :id"),
            {"s": status, "id": batch_id},
        )


def _story(url: URL, echo: Echo, *, command: str, cleanup: bool) -> None:
    echo(f"1. upgrade {describe_url(url)} to head")
    migrate.upgrade(url)
    echo(f"   revision {migrate.current_revision(url)} (head {migrate.head_revision()})")
    engine = create_engine(url, poolclass=pool.NullPool)
    created: list[int] = []
    previous: int | None = None
    try:
        previous = get_current_batch(engine)
        _pipeline(engine, echo, created, previous)
        echo(f"5. {command} status")
        for line in status_lines(read_status(engine, limit=5)):
            echo(f"   {line}" if line else "")
        echo(f"6. {command} doctor")
        report = diagnose(engine, command=command)
        for line in report.lines():
            echo(f"   {line}")
        _check(report.healthy, f"doctor found {len(report.problems)} problem(s) (listed above)")
    finally:
        if cleanup and created:
            _restore(engine, echo, created, previous)
        engine.dispose()
    echo(
        "demo passed: one current batch at a time, enforced by the database; "
        "a failed batch stays current; doctor finds no problems"
    )


def _pipeline(engine: Engine, echo: Echo, created: list[int], previous: int | None) -> None:
    # Run 1: the batch completes. current_batch() sets it on entry, unsets it on a clean exit.
    first = _create_batch(engine, "InProgress")
    created.append(first)
    with current_batch(engine, first) as flip:
        was = f"batch {flip.previous_batch_id}" if flip.previous_batch_id is not None else "none"
        echo(f"2. pipeline run 1: created batch {first} and set it current (before: {was})")
        _check(get_current_batch(engine) == first, f"batch {first} is not current after set")
        _check(flip.previous_batch_id == previous, "set reported the wrong previous batch")
        _set_status(engine, first, "Completed")
    _check(get_current_batch(engine) is None, "a batch is still current after the run")
    echo(f"   all stages done: batch {first} marked Completed and unset; no batch is current")

    # Run 2: a stage fails; current_batch() leaves the flag set so the dashboard shows it.
    second = _create_batch(engine, "InProgress")
    created.append(second)
    try:
        with current_batch(engine, second):
            raise _StageFailedError("stage 'transform' failed")
    except _StageFailedError as exc:
        _set_status(engine, second, "Failed")
        echo(f"3. pipeline run 2: batch {second} set current; {exc}: marked Failed, left current")
    _check(get_current_batch(engine) == second, f"the failed batch {second} is not current")

    # The database itself refuses a second current batch.
    stray = f"UPDATE {TABLE} SET {FLAG_COLUMN} = 1 WHERE id = {first}"
    try:
        with engine.begin() as conn:
            conn.execute(
                text(f"UPDATE `{TABLE}` SET `{FLAG_COLUMN}` = 1 WHERE `id` = :id"), {"id": first}
            )
    except IntegrityError as exc:
        errno, _, message = driver_error_details(exc)
        _check(errno == ER_DUP_ENTRY, f"the stray update failed with {errno}, not {ER_DUP_ENTRY}")
        echo(f"4. a stray `{stray}` is refused by the database: {message} (errno {errno})")
    else:
        raise DemoFailedError(
            "demo failed: the database accepted a second current batch; "
            "its UNIQUE index is missing: run `batchflag doctor`"
        )
    _check(get_current_batch(engine) == second, "the current batch changed after the refusal")


def _restore(engine: Engine, echo: Echo, created: list[int], previous: int | None) -> None:
    """Put the database back as the demo found it: previous current batch, no demo rows."""
    current = get_current_batch(engine)
    if previous is not None and previous not in created:
        set_current_batch(engine, previous)
    elif current is not None and current in created:
        unset_current_batch(engine, current)
    with engine.begin() as conn:
        conn.execute(
            text(f"DELETE FROM `{TABLE}` WHERE `id` IN ({', '.join(str(i) for i in created)})")
        )
    restored = (
        f"batch {previous} is current again" if previous is not None else "no batch is current"
    )
    echo(f"   cleaned up: deleted demo batches {', '.join(map(str, created))}; {restored}")
