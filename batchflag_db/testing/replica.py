"""A primary and an asynchronous replica of one server kind, on 127.0.0.1, torn down after.

Both are :class:`~batchflag_db.testing.server.ThrowawayServer` instances of the same
kind, with the binary log on in ROW format and GTIDs:

* MariaDB: GTIDs are always on; the replica follows with ``MASTER_USE_GTID=slave_pos``.
* MySQL: ``--gtid-mode=ON --enforce-gtid-consistency=ON``; the replica follows with
  ``SOURCE_AUTO_POSITION=1`` and ``GET_SOURCE_PUBLIC_KEY=1`` (the replication account
  uses ``caching_sha2_password``, the default, whether or not the link uses TLS).

Once both run, the replica is made read-only (``read_only``, and on MySQL also
``super_read_only``, which binds accounts with SUPER too). The replica's applier is
left at the server's defaults unless :meth:`ReplicaPair.set_applier` changes it::

    with ReplicaPair("mysql-9.7") as pair:
        ...  # write through pair.primary_url
        pair.wait_caught_up(30)
        ...  # read through pair.replica_url
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pymysql
import pymysql.cursors
from sqlalchemy.engine import URL

from batchflag_db.testing.binaries import ServerNotAvailableError
from batchflag_db.testing.kinds import ServerKind, kind_named
from batchflag_db.testing.server import ThrowawayServer

__all__ = ["ApplierState", "ReplicaPair", "ReplicationError", "ServerNotAvailableError"]

PRIMARY_ID = 1
REPLICA_ID = 2
REPLICATION_USER = "batchflag_repl"


class ReplicationError(RuntimeError):
    """Raised when the replica does not start replicating, stops, or does not catch up in time."""


@dataclass(frozen=True)
class ApplierState:
    """What the replica reports about its applier (``SHOW REPLICA STATUS`` and variables).

    Attributes:
        io_running: The receiver (I/O) thread's state: ``Yes``, ``Connecting`` or ``No``.
        sql_running: The applier (SQL) thread's state: ``Yes`` or ``No``.
        last_error: The last receiver or applier error, empty when there is none.
        seconds_behind: ``Seconds_Behind_Master``/``Seconds_Behind_Source``, or None.
        workers: Parallel applier workers (MySQL ``replica_parallel_workers``, MariaDB
            ``slave_parallel_threads``; 0 on MariaDB means one applier thread).
        mode: How parallel work is ordered: MySQL ``replica_preserve_commit_order``
            (``ON``/``OFF``), MariaDB ``slave_parallel_mode`` (``optimistic``...).
        retries: Transactions the applier rolled back and ran again since the server
            started (MariaDB ``Slave_retried_transactions``, MySQL
            ``COUNT_TRANSACTIONS_RETRIES`` of ``replication_applier_status``).
    """

    io_running: str
    sql_running: str
    last_error: str
    seconds_behind: int | None
    workers: int
    mode: str
    retries: int

    @property
    def running(self) -> bool:
        """True when both threads run."""
        return self.io_running == "Yes" and self.sql_running == "Yes"


def _status_value(row: dict[str, Any], suffix: str) -> Any:
    """The column of ``SHOW REPLICA STATUS`` whose name ends in ``suffix`` (either dialect)."""
    for key, value in row.items():
        if key.endswith(suffix):
            return value
    return None


class ReplicaPair:
    """Two throwaway servers of one kind: a primary and a read-only replica of it.

    Args:
        kind: The server kind (a :class:`~batchflag_db.testing.kinds.ServerKind` or its
            name); None takes the one ``BATCHFLAG_TEST_SERVER`` names.
        extra_args: More server options, given to both servers.
        replica_args: More server options for the replica only (e.g. its applier).

    Raises:
        ServerNotAvailableError: No binaries of that kind here, nor a way to get them.
    """

    def __init__(
        self,
        kind: ServerKind | str | None = None,
        *,
        extra_args: tuple[str, ...] = (),
        replica_args: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind if isinstance(kind, ServerKind) else kind_named(kind)
        self._password = secrets.token_hex(12)
        self.primary = ThrowawayServer(
            kind=self.kind, binlog=True, extra_args=[*self._options(PRIMARY_ID), *extra_args]
        )
        self.replica = ThrowawayServer(
            kind=self.kind,
            binlog=True,
            extra_args=[*self._options(REPLICA_ID), *extra_args, *replica_args],
        )

    @property
    def flavour(self) -> str:
        """``"mariadb"`` or ``"mysql"``."""
        return self.kind.flavour

    @property
    def primary_url(self) -> URL:
        """SQLAlchemy URL of the primary (root), without a database."""
        return _url(self.primary)

    @property
    def replica_url(self) -> URL:
        """SQLAlchemy URL of the replica (root), without a database."""
        return _url(self.replica)

    def _options(self, server_id: int) -> list[str]:
        common = [
            f"--server-id={server_id}",
            "--log-bin=binlog",
            "--binlog-format=ROW",
            "--relay-log=relay",
        ]
        if self.flavour == "mariadb":
            # A replica that logs what it applies can itself be promoted or chained.
            return [*common, "--log-slave-updates=ON"]
        return [
            *common,
            "--gtid-mode=ON",
            "--enforce-gtid-consistency=ON",
            "--log-replica-updates=ON",
        ]

    # -- life ------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> ReplicaPair:
        """Start both servers, connect the replica to the primary, make it read-only.

        Raises:
            ServerNotAvailableError: A server did not start.
            ReplicationError: The replica did not start replicating within ``timeout``.
        """
        try:
            self.primary.start(timeout)
            self.replica.start(timeout)
            self._create_replication_account()
            self._connect_replica()
            self.wait_running(timeout)
            self.wait_caught_up(timeout)
            self._make_read_only()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the replica, then the primary, and delete both datadirs."""
        with contextlib.suppress(pymysql.MySQLError, OSError):
            if self.replica.process is not None and self.replica.process.poll() is None:
                self._replica_sql("STOP REPLICA" if self.flavour == "mysql" else "STOP SLAVE")
        self.replica.stop()
        self.primary.stop()

    def __enter__(self) -> ReplicaPair:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- set-up ------------------------------------------------------------------

    def _create_replication_account(self) -> None:
        account = f"'{REPLICATION_USER}'@'127.0.0.1'"
        conn = self.primary.connect(autocommit=True)
        try:
            with conn.cursor() as cur:
                # Only the primary needs it: keep it out of the binary log.
                cur.execute("SET SESSION sql_log_bin = 0")
                cur.execute(f"CREATE USER {account} IDENTIFIED BY '{self._password}'")
                cur.execute(f"GRANT REPLICATION SLAVE ON *.* TO {account}")
        finally:
            conn.close()

    def _connect_replica(self) -> None:
        if self.flavour == "mariadb":
            statements = [
                "CHANGE MASTER TO MASTER_HOST='127.0.0.1', "
                f"MASTER_PORT={self.primary.port}, MASTER_USER='{REPLICATION_USER}', "
                f"MASTER_PASSWORD='{self._password}', MASTER_USE_GTID=slave_pos, "
                "MASTER_CONNECT_RETRY=1",
                "START SLAVE",
            ]
        else:
            statements = [
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', "
                f"SOURCE_PORT={self.primary.port}, SOURCE_USER='{REPLICATION_USER}', "
                f"SOURCE_PASSWORD='{self._password}', SOURCE_AUTO_POSITION=1, "
                "GET_SOURCE_PUBLIC_KEY=1, SOURCE_CONNECT_RETRY=1",
                "START REPLICA",
            ]
        for statement in statements:
            self._replica_sql(statement)

    def _make_read_only(self) -> None:
        self._replica_sql("SET GLOBAL read_only = ON")
        if self.flavour == "mysql":
            self._replica_sql("SET GLOBAL super_read_only = ON")

    def _replica_sql(self, statement: str) -> list[tuple[Any, ...]]:
        conn = self.replica.connect(autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return list(cur.fetchall())
        finally:
            conn.close()

    def _primary_value(self, statement: str) -> Any:
        conn = self.primary.connect(autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                row = cur.fetchone()
                return None if row is None else row[0]
        finally:
            conn.close()

    # -- state -------------------------------------------------------------------

    def applier_state(self) -> ApplierState:
        """Read the replica's ``SHOW REPLICA STATUS`` and applier settings.

        Raises:
            ReplicationError: The replica is not configured to replicate.
        """
        conn = self.replica.connect(autocommit=True, cursorclass=pymysql.cursors.DictCursor)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SHOW REPLICA STATUS" if self.flavour == "mysql" else "SHOW SLAVE STATUS"
                )
                row = cur.fetchone()
                if self.flavour == "mysql":
                    cur.execute(
                        "SELECT @@global.replica_parallel_workers AS w, "
                        "@@global.replica_preserve_commit_order AS m, "
                        "(SELECT COUNT_TRANSACTIONS_RETRIES "
                        "FROM performance_schema.replication_applier_status "
                        "WHERE CHANNEL_NAME = '') AS r"
                    )
                else:
                    cur.execute(
                        "SELECT @@global.slave_parallel_threads AS w, "
                        "@@global.slave_parallel_mode AS m, "
                        "(SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                        "WHERE VARIABLE_NAME = 'SLAVE_RETRIED_TRANSACTIONS') AS r"
                    )
                settings = cur.fetchone()
        finally:
            conn.close()
        if row is None or settings is None:
            raise ReplicationError("the replica is not configured (SHOW REPLICA STATUS is empty)")
        errors = [
            str(_status_value(row, suffix) or "") for suffix in ("Last_IO_Error", "Last_SQL_Error")
        ]
        behind = _status_value(row, "Seconds_Behind_Source")
        if behind is None:
            behind = _status_value(row, "Seconds_Behind_Master")
        mode = settings["m"]
        if self.flavour == "mysql":
            mode = "ON" if int(mode) else "OFF"
        return ApplierState(
            io_running=str(_status_value(row, "_IO_Running")),
            sql_running=str(_status_value(row, "_SQL_Running")),
            last_error="; ".join(e for e in errors if e),
            seconds_behind=None if behind is None else int(behind),
            workers=int(settings["w"]),
            mode=str(mode.decode() if isinstance(mode, bytes) else mode),
            retries=int(settings["r"] or 0),
        )

    def wait_running(self, timeout: float = 30.0) -> ApplierState:
        """Wait until the replica's receiver and applier threads both run.

        Raises:
            ReplicationError: They do not within ``timeout``; the message has the last error.
        """
        deadline = time.monotonic() + timeout
        while True:
            state = self.applier_state()
            if state.running:
                return state
            if time.monotonic() > deadline:
                raise ReplicationError(
                    f"replica not replicating after {timeout:.0f}s: IO {state.io_running}, "
                    f"SQL {state.sql_running}, last error {state.last_error or '(none)'}\n"
                    + self.replica.log_tail(10)
                )
            time.sleep(0.1)

    def primary_position(self) -> str:
        """The primary's GTID position: ``gtid_binlog_pos`` (MariaDB), ``gtid_executed`` (MySQL)."""
        variable = "gtid_binlog_pos" if self.flavour == "mariadb" else "gtid_executed"
        return str(self._primary_value(f"SELECT @@global.{variable}") or "")

    def wait_caught_up(self, timeout: float = 30.0) -> float:
        """Wait until the replica has applied everything the primary has committed so far.

        Reads the primary's GTID position, then waits on the replica with
        ``MASTER_GTID_WAIT`` (MariaDB) or ``WAIT_FOR_EXECUTED_GTID_SET`` (MySQL).

        Returns:
            Seconds it waited.

        Raises:
            ReplicationError: Not caught up within ``timeout``, or the replica stopped.
        """
        position = self.primary_position()
        started = time.monotonic()
        if self.flavour == "mariadb":
            sql = f"SELECT MASTER_GTID_WAIT('{position}', {timeout:.3f})"
        else:
            sql = f"SELECT WAIT_FOR_EXECUTED_GTID_SET('{position}', {timeout:.3f})"
        (answer,) = self._replica_sql(sql)[0]
        waited = time.monotonic() - started
        if answer is None or int(answer) != 0:  # both answer 0 when caught up
            state = self.applier_state()
            raise ReplicationError(
                f"replica not caught up with {position!r} after {waited:.1f}s "
                f"(answer {answer}): IO {state.io_running}, SQL {state.sql_running}, "
                f"last error {state.last_error or '(none)'}"
            )
        return waited

    def set_applier(self, workers: int, mode: str | None = None) -> ApplierState:
        """Restart the replica's applier with ``workers`` parallel workers (and ``mode``).

        ``mode`` is MariaDB's ``slave_parallel_mode`` (``optimistic``, ``conservative``...)
        or MySQL's ``replica_preserve_commit_order`` (``ON``/``OFF``); None keeps it.

        Raises:
            ReplicationError: The replica does not run again afterwards.
        """
        if self.flavour == "mariadb":
            statements = ["STOP SLAVE", f"SET GLOBAL slave_parallel_threads = {workers}"]
            if mode is not None:
                statements.append(f"SET GLOBAL slave_parallel_mode = '{mode}'")
            statements.append("START SLAVE")
        else:
            statements = [
                "STOP REPLICA",
                f"SET GLOBAL replica_parallel_workers = {workers}",
            ]
            if mode is not None:
                statements.append(f"SET GLOBAL replica_preserve_commit_order = {mode}")
            statements.append("START REPLICA")
        for statement in statements:
            self._replica_sql(statement)
        return self.wait_running()


def _url(server: ThrowawayServer) -> URL:
    return URL.create("mysql+pymysql", username="root", host="127.0.0.1", port=server.port)
