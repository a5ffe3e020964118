"""The ``batchflag`` command: migrations, the current batch, health checks, SQL for DBAs.

Every command finds its database the same way: ``--url URL``, else ``--env NAME``
(``BATCHFLAG_<NAME>_DATABASE_URL``), else ``BATCHFLAG_DATABASE_URL``. Every error
ends the command with one line on stderr and a non-zero exit code, never a traceback
(exit codes in :mod:`batchflag_db.cli.group`).

The package, one job a module:

* :mod:`~batchflag_db.cli.group`: the group, its global options and error rendering;
* :mod:`~batchflag_db.cli.helpers`: what commands share (settings, the database, output);
* ``_migrations``: ``upgrade``, ``downgrade``, ``revision``, ``sql``;
* ``_flag``: ``current``, ``set-current``, ``unset-current``;
* ``_health``: ``status``, ``doctor``, ``grant``;
* ``_dashboard``: ``resolve``, ``history``, ``watch``;
* ``_demo``: ``demo``.

Every command is added to :data:`cli` below, in this one place. A module of one's
own adds its commands the same way (``cli.add_command(...)``) and gets the same
error handling.
"""

from __future__ import annotations

from batchflag_db.cli import _dashboard, _demo, _flag, _health, _migrations
from batchflag_db.cli.group import cli

__all__ = ["cli", "main"]

for _command in (
    _migrations.upgrade,
    _migrations.downgrade,
    _migrations.revision,
    _migrations.sql,
    _flag.current,
    _flag.set_current,
    _flag.unset_current,
    _health.status,
    _health.doctor,
    _health.grant,
    _dashboard.resolve,
    _dashboard.history_,
    _dashboard.watch,
    _demo.demo,
):
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``batchflag`` console script."""
    cli.main(prog_name="batchflag")
