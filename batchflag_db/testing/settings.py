"""The server settings the test suite runs with, wherever its server comes from.

A throwaway process (:mod:`batchflag_db.testing.server`) and a container
(:mod:`batchflag_db.testing.containers`) get the same options, as command arguments,
so an official image (which takes its extra options the same way) runs the suite
exactly as an image of this project does. Nothing here is baked into an image.
"""

from __future__ import annotations

__all__ = ["server_settings"]

#: Options every flavour understands.
_COMMON = (
    "--skip-name-resolve",
    "--innodb-buffer-pool-size=256M",
    "--max-connections=500",
)


def server_settings(
    flavour: str | None, *, durable: bool = False, binlog: bool = False
) -> list[str]:
    """The options a test server runs with.

    Args:
        flavour: ``"mariadb"``, ``"mysql"``, or None when it is not known yet (an image
            of no known kind): then flavour-specific options are passed ``--loose-``,
            which the other flavour ignores.
        durable: Flush the redo log at every commit (the production setting), and keep
            MariaDB's doublewrite buffer.
        binlog: Keep the binary log; without it ``--skip-log-bin`` (MySQL writes one by
            default, and a test server needs none).
    """
    args = [*_COMMON, f"--innodb-flush-log-at-trx-commit={1 if durable else 2}"]
    if not binlog:
        args.append("--skip-log-bin")
    if flavour != "mysql" and not durable:
        args.append("--innodb-doublewrite=0" if flavour else "--loose-innodb-doublewrite=0")
    if flavour != "mariadb":
        # MySQL's X Protocol listens on a second port nobody here uses.
        args.append("--mysqlx=OFF" if flavour else "--loose-mysqlx=OFF")
    return args
