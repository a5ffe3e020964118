"""Throwaway MySQL Group Replication groups on 127.0.0.1 for tests.

This module starts a small (by default three-member) MySQL 9.7 Group Replication
group on the local machine, in single-primary or multi-primary mode, waits until
every member is ``ONLINE``, and tears it down again. The servers come from the
``mysql-9.7`` kind's Debian root (:mod:`batchflag_db.testing.binaries`): every
command runs under ``chroot ROOT``, so every member's files live inside the root.
Every member gets its own data directory, unix socket, SQL port, XCom port and
admin port, all on 127.0.0.1; no option file is read (``--no-defaults``).

Typical use in a test::

    with GroupReplicationCluster(multi_primary=True) as group:
        url1, url2, url3 = group.urls()
        ...

or from a shell, to keep a group running until Ctrl-C::

    python -m batchflag_db.testing.grouprepl [--multi-primary]

How it works: every member's datadir is initialised (``--initialize-insecure``)
and its server started with GTIDs, the binary log, the ``group_replication`` and
``mysql_clone`` plugins and ``group_replication_start_on_boot=OFF``. On each
member, with ``SQL_LOG_BIN=0`` (so no member has transactions the group lacks),
``root@127.0.0.1`` (no password) and a recovery account are created and the
recovery channel is pointed at that account (``CHANGE REPLICATION SOURCE ...
FOR CHANNEL 'group_replication_recovery'``). Member 0 bootstraps the group
(``group_replication_bootstrap_group``), then the others ``START
GROUP_REPLICATION`` one after the other. Each member's error log is
``<dir>/error.log`` and its stdout/stderr ``<dir>/mysqld.out``; failures raise
:class:`GroupReplicationError` with their tails.

A watchdog process (:mod:`batchflag_db.testing._process`, shared with
:mod:`batchflag_db.testing.galera`) kills the members and removes their files if this Python process dies without
:meth:`GroupReplicationCluster.stop`; groups still running at interpreter exit
are stopped by an ``atexit`` hook.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pymysql

from batchflag_db.testing._process import (
    Watchdog,
    free_ports,
    reap,
    signal_group,
    sigterm_as_interrupt,
    spawn,
    tail,
)
from batchflag_db.testing.binaries import ServerBinaries, ServerNotAvailableError, binaries_for
from batchflag_db.testing.kinds import KINDS

__all__ = [
    "GroupMember",
    "GroupReplicationCluster",
    "GroupReplicationError",
    "MemberState",
    "grouprepl_available",
    "main",
]

#: The server kind whose binaries run the group.
KIND = "mysql-9.7"

#: Plugins the members load, as files of the root's plugin directory.
_PLUGINS = ("group_replication.so", "mysql_clone.so")
_PLUGIN_DIR = "usr/lib/mysql/plugin"

#: The recovery account every member creates (a throwaway group: the password is no secret).
RECOVERY_USER = "gr_recovery"
RECOVERY_PASSWORD = "gr-recovery-pw"  # noqa: S105 - throwaway group on loopback

#: Unix socket paths longer than this do not fit ``sockaddr_un``.
_MAX_SOCKET_PATH = 100

_URL_ENV_VAR = "BATCHFLAG_TEST_DATABASE_URL"
_POLL_INTERVAL = 0.25

_MEMBERS_QUERY = (
    "SELECT MEMBER_HOST, MEMBER_PORT, MEMBER_STATE, MEMBER_ROLE "
    "FROM performance_schema.replication_group_members"
)


class GroupReplicationError(RuntimeError):
    """Raised when a Group Replication member or group cannot be started, joined or found."""


def grouprepl_available() -> str | None:
    """Tell whether a Group Replication group can be started on this machine.

    Needs the ``mysql-9.7`` kind's binaries (its Debian root, built once into a cache),
    the ``group_replication`` and ``mysql_clone`` plugins in that root, and root
    privileges (the servers run under ``chroot``).

    Returns:
        None if everything needed is present, else a one-line message saying what is
        missing and how to get it.
    """
    if os.geteuid() != 0:
        return (
            "Group Replication test group unavailable: the MySQL servers run under chroot "
            "in a Debian root, which needs root privileges; run the tests as root"
        )
    try:
        binaries = binaries_for(KINDS[KIND])
    except ServerNotAvailableError as exc:
        return f"Group Replication test group unavailable: {exc}"
    if binaries.root is None:
        return None
    missing = [p for p in _PLUGINS if not (binaries.root / _PLUGIN_DIR / p).is_file()]
    if missing:
        return (
            f"Group Replication test group unavailable: {', '.join(missing)} missing from "
            f"{binaries.root / _PLUGIN_DIR} (Debian package mysql-server-core): "
            f"remove {binaries.root} to have it rebuilt"
        )
    return None


@dataclass(frozen=True)
class MemberState:
    """One row of ``performance_schema.replication_group_members``, as one member sees it.

    Attributes:
        port: The member's SQL port (``MEMBER_PORT``; every member reports 127.0.0.1).
        state: ``ONLINE``, ``RECOVERING``, ``UNREACHABLE``, ``ERROR`` or ``OFFLINE``.
        role: ``PRIMARY`` or ``SECONDARY``.
    """

    port: int
    state: str
    role: str


@dataclass(frozen=True)
class GroupMember:
    """One member of a :class:`GroupReplicationCluster` (running or not).

    Instances are immutable; :meth:`GroupReplicationCluster.restart_node` replaces the
    entry in :attr:`GroupReplicationCluster.nodes` with one carrying the new pid.

    Attributes:
        index: Position in the group, from 0 (its ``server_id`` is ``index + 1``).
        port: SQL port on 127.0.0.1.
        xcom_port: Group communication (XCom) port on 127.0.0.1.
        admin_port: Administrative connection port on 127.0.0.1.
        directory: The member's directory, as this process sees it.
        inner_directory: The same directory, as the server (inside its root) sees it.
        pid: Process id of the member's ``mysqld`` (0 before the first start).
    """

    index: int
    port: int
    xcom_port: int
    admin_port: int
    directory: Path
    inner_directory: str
    pid: int = 0

    @property
    def url(self) -> str:
        """SQLAlchemy URL of this member, ``mysql+pymysql://root@127.0.0.1:PORT/``."""
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/"

    @property
    def socket(self) -> str:
        """Path of the member's unix socket, as this process sees it."""
        return str(self.directory / "mysqld.sock")

    @property
    def error_log(self) -> Path:
        """The member's server error log."""
        return self.directory / "error.log"

    @property
    def stdout_log(self) -> Path:
        """The file receiving the member's stdout and stderr."""
        return self.directory / "mysqld.out"

    def connect(
        self, *, database: str | None = None, timeout: float = 10
    ) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        """Open an autocommit PyMySQL connection to this member as root over TCP.

        Args:
            database: Default database, if any.
            timeout: Connect/read/write timeout in seconds.

        Returns:
            A new connection; the caller closes it.
        """
        t = max(1, int(timeout))
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            password="",
            database=database,
            connect_timeout=t,
            read_timeout=t,
            write_timeout=t,
            autocommit=True,
        )


# Groups that are started and not yet stopped, torn down at interpreter exit.
_LIVE: set[GroupReplicationCluster] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    """Stop every group that is still running when the interpreter exits."""
    with _LIVE_LOCK:
        groups = list(_LIVE)
    for group in groups:
        with contextlib.suppress(Exception):
            group.stop()


class GroupReplicationCluster:
    """A throwaway MySQL Group Replication group on 127.0.0.1.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. :meth:`stop` is
    idempotent and also runs at interpreter exit for groups that were not stopped.

    Attributes:
        size: Number of members.
        multi_primary: True for multi-primary mode (every member accepts writes), False
            for single-primary mode (one primary, the others ``super_read_only``).
        nodes: One :class:`GroupMember` per member, in index order; empty until started.
        group_name: The group's UUID.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        multi_primary: bool = False,
        extra_args: Sequence[str] = (),
        expel_timeout: int = 0,
    ) -> None:
        """Describe a group; nothing is started until :meth:`start`.

        Args:
            size: Number of members (at least 1).
            multi_primary: Multi-primary mode instead of single-primary mode.
            extra_args: More ``mysqld`` options for every member.
            expel_timeout: ``group_replication_member_expel_timeout`` in seconds: how
                long after the 5 s of suspicion an unreachable member is expelled
                (MySQL's default is 5; 0 here makes a failover take about 5 s).

        Raises:
            ValueError: If ``size`` is less than 1.
        """
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.multi_primary = multi_primary
        self.nodes: list[GroupMember] = []
        self.group_name = str(uuid.uuid4())
        self._extra_args = list(extra_args)
        self._expel_timeout = expel_timeout
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.RLock()
        self._watchdog: Watchdog | None = None
        self._binaries: ServerBinaries | None = None
        self._base: Path | None = None

    # -- context manager -------------------------------------------------

    def __enter__(self) -> GroupReplicationCluster:
        """Start the group (see :meth:`start`) and return it."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the group (see :meth:`stop`)."""
        self.stop()

    # -- public API ------------------------------------------------------

    @property
    def mode(self) -> str:
        """``"multi-primary"`` or ``"single-primary"``."""
        return "multi-primary" if self.multi_primary else "single-primary"

    def urls(self) -> list[str]:
        """Return every member's URL, in index order."""
        return [n.url for n in self.nodes]

    def running(self) -> list[int]:
        """Indexes of the members whose server process is running."""
        return sorted(i for i, p in self._procs.items() if p.poll() is None)

    def start(self, timeout: float = 120) -> None:
        """Create the members, start them, form the group and wait until all are ONLINE.

        On any failure (including KeyboardInterrupt) everything started so far is
        stopped and removed before the exception propagates.

        Args:
            timeout: Seconds allowed for the whole start.

        Raises:
            GroupReplicationError: Something needed is missing, a member fails to
                start or join, or the group is not ONLINE in time; the message has
                the tail of the failing member's log.
            RuntimeError: If the group is already started.
        """
        with self._lock:
            if self._base is not None:
                raise RuntimeError("group already started")
            problem = grouprepl_available()
            if problem is not None:
                raise GroupReplicationError(problem)
            self._binaries = binaries_for(KINDS[KIND])
            deadline = time.monotonic() + timeout
            with _LIVE_LOCK:
                _LIVE.add(self)
            try:
                self._watchdog = Watchdog()
                self._create_nodes()
                self._initialise_all()
                for i in range(self.size):
                    self._spawn(i)
                for i in range(self.size):
                    self._wait_answering(i, deadline)
                    self._prepare_member(i)
                self._start_group_replication(0, bootstrap=True)
                self._wait_online([0], deadline)
                for i in range(1, self.size):
                    self._start_group_replication(i, bootstrap=False)
                    self._wait_online(list(range(i + 1)), deadline)
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        """Kill every member and remove the group's files.

        Idempotent, and safe on a partly started group. Members are killed with
        SIGKILL: the group is throwaway, there is nothing to shut down cleanly.
        """
        with self._lock:
            for proc in list(self._procs.values()):
                signal_group(proc, signal.SIGKILL)
            for i in list(self._procs):
                self._reap(i)
            if self._base is not None:
                shutil.rmtree(self._base, ignore_errors=True)
                self._base = None
            if self._watchdog is not None:
                self._watchdog.close()
                self._watchdog = None
            with _LIVE_LOCK:
                _LIVE.discard(self)

    def kill_node(self, i: int) -> None:
        """SIGKILL member ``i`` (a crash: no shutdown, no leaving the group).

        The datadir stays, so :meth:`restart_node` can bring the member back.

        Raises:
            IndexError: There is no member ``i``.
        """
        with self._lock:
            self._check_index(i)
            proc = self._procs.get(i)
            if proc is not None:
                signal_group(proc, signal.SIGKILL)
                self._reap(i)

    def stop_node(self, i: int, timeout: float = 60) -> None:
        """Shut member ``i`` down cleanly: it leaves the group, then its server stops.

        Raises:
            IndexError: There is no member ``i``.
        """
        with self._lock:
            self._check_index(i)
            proc = self._procs.get(i)
            if proc is None:
                return
            with contextlib.suppress(pymysql.MySQLError):
                conn = self.nodes[i].connect(timeout=timeout)
                try:
                    with conn.cursor() as cur:
                        cur.execute("STOP GROUP_REPLICATION")
                finally:
                    conn.close()
            signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                signal_group(proc, signal.SIGKILL)
            self._reap(i)

    def restart_node(self, i: int, timeout: float = 120) -> None:
        """Start member ``i`` again and wait until it has rejoined the group, ONLINE.

        A member still running is killed first. The others must first have expelled
        its old incarnation (about 5 s after a kill with the default ``expel_timeout``
        of this class); then it starts, rejoins with ``START GROUP_REPLICATION`` and
        catches up by incremental recovery from a donor's binary log.

        Raises:
            GroupReplicationError: It fails to start, rejoin or get ONLINE in time.
            IndexError: There is no member ``i``.
            RuntimeError: The group is not started.
        """
        with self._lock:
            self._check_index(i)
            if self._base is None:
                raise RuntimeError("group not started")
            deadline = time.monotonic() + timeout
            if i in self._procs:
                self.kill_node(i)
            self._wait_expelled(i, deadline)
            self._spawn(i)
            self._wait_answering(i, deadline)
            self._start_group_replication(i, bootstrap=False)
            self._wait_online(self.running(), deadline)

    def members(self, i: int) -> list[MemberState]:
        """The group as member ``i`` sees it (``replication_group_members``).

        Raises:
            pymysql.MySQLError: Member ``i`` cannot be reached.
        """
        conn = self.nodes[i].connect(timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute(_MEMBERS_QUERY)
                return [
                    MemberState(int(port), str(state), str(role))
                    for _host, port, state, role in cur.fetchall()
                    if port
                ]
        finally:
            conn.close()

    def primaries(self) -> list[int]:
        """Indexes of the ONLINE primaries, as the running members agree on them.

        Raises:
            GroupReplicationError: No member answers.
        """
        by_port = {n.port: n.index for n in self.nodes}
        for i in self.running():
            try:
                seen = self.members(i)
            except pymysql.MySQLError:
                continue
            return sorted(
                by_port[m.port]
                for m in seen
                if m.role == "PRIMARY" and m.state == "ONLINE" and m.port in by_port
            )
        raise GroupReplicationError("no member of the group answers")

    def primary(self, timeout: float = 60) -> int:
        """The index of the primary (single-primary mode), waiting for an election.

        Raises:
            GroupReplicationError: Multi-primary mode, or no single primary in time.
        """
        if self.multi_primary:
            raise GroupReplicationError("a multi-primary group has no single primary")
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(GroupReplicationError):
                found = self.primaries()
                if len(found) == 1:
                    return found[0]
            if time.monotonic() >= deadline:
                raise GroupReplicationError(f"no single primary after {timeout:.0f}s")
            time.sleep(_POLL_INTERVAL)

    def wait_online(self, timeout: float = 60) -> None:
        """Wait until every running member sees every running member ONLINE.

        Raises:
            GroupReplicationError: A member is not running or not ONLINE in time.
        """
        self._wait_online(self.running(), time.monotonic() + timeout)

    # -- internals -------------------------------------------------------

    @property
    def _bin(self) -> ServerBinaries:
        if self._binaries is None:
            raise RuntimeError("group not started")
        return self._binaries

    def _check_index(self, i: int) -> None:
        if not 0 <= i < len(self.nodes):
            raise IndexError(f"no group member {i} (the group has {len(self.nodes)})")

    def _reap(self, i: int) -> None:
        reap(self._procs.pop(i), self._watchdog)

    def _create_nodes(self) -> None:
        base, inner = self._bin.scratch_dir("bfgr-")
        self._base = base
        if self._watchdog is not None:
            self._watchdog.set_dir(str(base))
        ports = free_ports(3 * self.size)
        self.nodes = []
        for i in range(self.size):
            directory = base / f"n{i}"
            directory.mkdir()
            (directory / "data").mkdir()
            member = GroupMember(
                index=i,
                port=ports[3 * i],
                xcom_port=ports[3 * i + 1],
                admin_port=ports[3 * i + 2],
                directory=directory,
                inner_directory=f"{inner}/n{i}",
            )
            if len(member.socket) > _MAX_SOCKET_PATH:
                raise GroupReplicationError(
                    f"unix socket path too long ({len(member.socket)} chars): {member.socket}"
                )
            self.nodes.append(member)

    def _initialise_all(self) -> None:
        """``mysqld --initialize-insecure`` every datadir, all at once."""
        running = []
        for node in self.nodes:
            args = [
                "--no-defaults",
                f"--datadir={node.inner_directory}/data",
                "--initialize-insecure",
                "--user=root",
            ]
            log = (node.directory / "initialize.log").open("wb")
            cmd = self._bin.command(self._bin.server, *args)
            running.append(
                (node, log, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))  # noqa: S603 - the kind's own server binary
            )
        failed = []
        for node, log, proc in running:
            rc = proc.wait(timeout=120)
            log.close()
            if rc != 0:
                failed.append(
                    f"member {node.index} (exit {rc}):\n{tail(str(node.directory / 'initialize.log'))}"
                )
        if failed:
            raise GroupReplicationError("initialising a datadir failed: " + "\n".join(failed))

    def _server_args(self, node: GroupMember) -> list[str]:
        d = node.inner_directory
        seeds = ",".join(f"127.0.0.1:{n.xcom_port}" for n in self.nodes)
        args = [
            "--no-defaults",
            "--user=root",
            f"--datadir={d}/data",
            f"--socket={d}/mysqld.sock",
            f"--pid-file={d}/mysqld.pid",
            f"--log-error={d}/error.log",
            f"--port={node.port}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--mysqlx=OFF",
            "--secure-file-priv=NULL",
            "--innodb-buffer-pool-size=128M",
            "--innodb-flush-log-at-trx-commit=2",
            "--sync-binlog=0",
            "--max-connections=300",
            f"--server-id={node.index + 1}",
            "--gtid-mode=ON",
            "--enforce-gtid-consistency=ON",
            "--log-bin=binlog",
            "--disabled-storage-engines=MyISAM,BLACKHOLE,FEDERATED,ARCHIVE,MEMORY",
            "--report-host=127.0.0.1",
            f"--report-port={node.port}",
            "--admin-address=127.0.0.1",
            f"--admin-port={node.admin_port}",
            *(f"--plugin-load-add={p}" for p in _PLUGINS),
            f"--loose-group-replication-group-name={self.group_name}",
            "--loose-group-replication-start-on-boot=OFF",
            "--loose-group-replication-communication-stack=XCOM",
            f"--loose-group-replication-local-address=127.0.0.1:{node.xcom_port}",
            f"--loose-group-replication-group-seeds={seeds}",
            "--loose-group-replication-ip-allowlist=127.0.0.1/8",
            "--loose-group-replication-recovery-get-public-key=ON",
            f"--loose-group-replication-member-expel-timeout={self._expel_timeout}",
            "--loose-group-replication-autorejoin-tries=0",
        ]
        if self.multi_primary:
            args += [
                "--loose-group-replication-single-primary-mode=OFF",
                "--loose-group-replication-enforce-update-everywhere-checks=ON",
            ]
        return self._bin.command(self._bin.server, *args, *self._extra_args)

    def _spawn(self, i: int) -> None:
        node = self.nodes[i]
        proc = spawn(self._server_args(node), node.stdout_log, self._watchdog)
        self._procs[i] = proc
        self.nodes[i] = dataclasses.replace(node, pid=proc.pid)

    def _check_alive(self, i: int) -> None:
        proc = self._procs.get(i)
        if proc is None:
            raise GroupReplicationError(f"group member {i} is not running (killed?)")
        rc = proc.poll()
        if rc is not None:
            raise GroupReplicationError(
                f"group member {i} (port {self.nodes[i].port}) exited with status {rc}\n"
                + self._log_report(i)
            )

    def _log_report(self, i: int) -> str:
        node = self.nodes[i]
        log = tail(str(node.error_log), 400).splitlines()
        errors = [line for line in log[:-30] if "[ERROR]" in line][-10:]
        parts = []
        if errors:
            parts.append(f"--- earlier errors in {node.error_log} ---\n" + "\n".join(errors))
        parts.append(f"--- tail of {node.error_log} ---\n" + "\n".join(log[-30:]))
        return "\n".join(parts)

    def _socket_connection(self, i: int) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        """Connect as root over member ``i``'s unix socket, never leaking the socket on failure."""
        path = self.nodes[i].socket
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(5)
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise pymysql.err.OperationalError(2002, f"not listening yet: {exc}") from None
        conn = pymysql.Connection(
            unix_socket=path, user="root", password="", autocommit=True, defer_connect=True
        )
        conn.connect(sock)  # closes the socket itself if the handshake fails
        return conn

    def _wait_answering(self, i: int, deadline: float) -> None:
        """Wait until member ``i`` answers over TCP (over its socket before the first setup)."""
        while True:
            self._check_alive(i)
            try:
                conn = (
                    self.nodes[i].connect(timeout=5)
                    if self._has_tcp_root(i)
                    else self._socket_connection(i)
                )
                conn.close()
                return
            except pymysql.MySQLError as exc:
                if time.monotonic() >= deadline:
                    raise GroupReplicationError(
                        f"group member {i} (port {self.nodes[i].port}) did not answer in time "
                        f"({exc})\n" + self._log_report(i)
                    ) from None
            time.sleep(_POLL_INTERVAL)

    def _has_tcp_root(self, i: int) -> bool:
        return (self.nodes[i].directory / ".accounts").exists()

    def _prepare_member(self, i: int) -> None:
        """Accounts and the recovery channel, outside the binary log (see the module docstring)."""
        conn = self._socket_connection(i)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SQL_LOG_BIN = 0")
                cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''")
                cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
                cur.execute(
                    f"CREATE USER IF NOT EXISTS '{RECOVERY_USER}'@'127.0.0.1' "
                    f"IDENTIFIED BY '{RECOVERY_PASSWORD}'"
                )
                cur.execute(
                    "GRANT REPLICATION SLAVE, BACKUP_ADMIN, CLONE_ADMIN, CONNECTION_ADMIN, "
                    f"GROUP_REPLICATION_STREAM ON *.* TO '{RECOVERY_USER}'@'127.0.0.1'"
                )
                cur.execute("SET SQL_LOG_BIN = 1")
                cur.execute(
                    f"CHANGE REPLICATION SOURCE TO SOURCE_USER = '{RECOVERY_USER}', "
                    f"SOURCE_PASSWORD = '{RECOVERY_PASSWORD}' "
                    "FOR CHANNEL 'group_replication_recovery'"
                )
                cur.execute("SELECT @@GLOBAL.gtid_executed")
                row = cur.fetchone()
                if row and row[0]:  # pragma: no cover - --initialize logs nothing today
                    cur.execute("RESET BINARY LOGS AND GTIDS")
        finally:
            conn.close()
        (self.nodes[i].directory / ".accounts").touch()

    def _start_group_replication(self, i: int, *, bootstrap: bool) -> None:
        conn = self.nodes[i].connect(timeout=120)
        try:
            with conn.cursor() as cur:
                if bootstrap:
                    cur.execute("SET GLOBAL group_replication_bootstrap_group = ON")
                try:
                    cur.execute("START GROUP_REPLICATION")
                finally:
                    if bootstrap:
                        cur.execute("SET GLOBAL group_replication_bootstrap_group = OFF")
        except pymysql.MySQLError as exc:
            raise GroupReplicationError(
                f"START GROUP_REPLICATION on member {i} failed: {exc}\n" + self._log_report(i)
            ) from None
        finally:
            conn.close()

    def _wait_online(self, members: Sequence[int], deadline: float) -> None:
        """Wait until each of ``members`` sees exactly ``members``, all ONLINE."""
        want = {self.nodes[i].port for i in members}
        last: dict[int, str] = {}
        while True:
            lagging = []
            for i in members:
                self._check_alive(i)
                try:
                    seen = self.members(i)
                except pymysql.MySQLError as exc:
                    last[i] = f"cannot ask ({exc})"
                    lagging.append(i)
                    continue
                last[i] = ", ".join(f"{m.port} {m.state} {m.role}" for m in seen)
                if {m.port for m in seen} != want or any(m.state != "ONLINE" for m in seen):
                    lagging.append(i)
            if not lagging:
                return
            if time.monotonic() >= deadline:
                views = "; ".join(f"member {k} sees [{v}]" for k, v in sorted(last.items()))
                raise GroupReplicationError(
                    f"group not ONLINE in time ({views})\n" + self._log_report(lagging[0])
                )
            time.sleep(_POLL_INTERVAL)

    def _wait_expelled(self, i: int, deadline: float) -> None:
        """Wait until no running member still lists member ``i`` (its old incarnation)."""
        port = self.nodes[i].port
        for j in self.running():
            if j == i:
                continue
            while True:
                self._check_alive(j)
                try:
                    if all(m.port != port for m in self.members(j)):
                        break
                except pymysql.MySQLError:
                    pass
                if time.monotonic() >= deadline:
                    raise GroupReplicationError(
                        f"member {j} still lists killed member {i}\n" + self._log_report(j)
                    )
                time.sleep(_POLL_INTERVAL)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Start a group, print its members' URLs and keep it running until interrupted.

    The URLs go to stdout, one per line (the primary's first in single-primary mode);
    a shell hint goes to stderr. The group is torn down on Ctrl-C or SIGTERM.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        0 after a normal interrupt, 1 if the group could not be started or a member
        died, 2 if Group Replication cannot run here.
    """
    parser = argparse.ArgumentParser(
        prog="python -m batchflag_db.testing.grouprepl",
        description="Run a throwaway MySQL Group Replication group on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument("--size", type=int, default=3, help="number of members")
    parser.add_argument(
        "--multi-primary", action="store_true", help="multi-primary mode (default: single-primary)"
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds allowed for startup")
    args = parser.parse_args(list(argv) if argv is not None else None)

    problem = grouprepl_available()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    group = GroupReplicationCluster(args.size, multi_primary=args.multi_primary)
    with sigterm_as_interrupt():
        try:
            print(f"starting a {args.size}-member {group.mode} group...", file=sys.stderr)
            t0 = time.monotonic()
            group.start(timeout=args.timeout)
            print(f"all members ONLINE in {time.monotonic() - t0:.1f}s", file=sys.stderr)
            order = list(range(args.size))
            if not group.multi_primary:
                first = group.primary()
                order.remove(first)
                order.insert(0, first)
            for i in order:
                print(group.nodes[i].url)
            sys.stdout.flush()
            if not group.multi_primary:
                print(f"primary: {group.nodes[order[0]].url}", file=sys.stderr)
            print(
                f"export {_URL_ENV_VAR}={group.nodes[order[0]].url}\nPress Ctrl-C to stop.",
                file=sys.stderr,
            )
            while True:
                time.sleep(1)
                for i in range(args.size):
                    group._check_alive(i)
        except KeyboardInterrupt:
            print("stopping the group...", file=sys.stderr)
            return 0
        except GroupReplicationError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            group.stop()


if __name__ == "__main__":
    raise SystemExit(main())
