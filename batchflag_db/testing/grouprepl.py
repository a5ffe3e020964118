"""Throwaway MySQL Group Replication groups in containers, for tests.

This module starts a small (by default three-member) MySQL 9.7 Group Replication group,
one container per member (:class:`~batchflag_db.testing.container.ContainerServer`, the
``mysql-9.7`` kind's image, whose ``mysql-server-core`` carries ``group_replication.so``
and ``mysql_clone.so``), in single-primary or multi-primary mode, waits until every
member is ``ONLINE``, and tears it down again. The members share a user-defined Docker
bridge network of their own, each at its own address: they talk to each other by alias
(``group_replication_local_address=node0:33061``, the seeds ``node0:33061,node1:33061,
...``, ``report_host=node0``), and the allowlist is the network's subnet. The host
reaches each member through its published port on 127.0.0.1 as root with the group's
password (:meth:`GroupReplicationCluster.urls`).

Typical use in a test::

    with GroupReplicationCluster(multi_primary=True) as group:
        url1, url2, url3 = group.urls()
        ...

or from a shell, to keep a group running until Ctrl-C::

    python -m batchflag_db.testing.grouprepl [--multi-primary]

How it works: every member's container initialises its datadir from
``MYSQL_ROOT_PASSWORD`` (root@localhost and root@'%') and starts with GTIDs, the binary
log, both plugins and ``group_replication_start_on_boot=OFF``. On each member the binary
log and GTIDs of that setup are reset (so no member has transactions the group lacks),
then, with ``SQL_LOG_BIN=0``, a recovery account is made and the recovery channel
pointed at it (``CHANGE REPLICATION SOURCE ... FOR CHANNEL
'group_replication_recovery'``). Member 0 bootstraps the group
(``group_replication_bootstrap_group``), then the others ``START GROUP_REPLICATION``
one after the other. Every datadir is a host directory bind-mounted into its container,
so a member killed with ``kill -9`` keeps it and :meth:`GroupReplicationCluster.restart_node`
starts a new container on it. Failures raise :class:`GroupReplicationError` with the
tail of the member's log (``docker logs``).

Every container and the network carry the label ``batchflag-db.suite=1`` and their
owner process; :meth:`GroupReplicationCluster.stop` removes them, so does an ``atexit``
hook, and :func:`~batchflag_db.testing.container.remove_stale` what a killed run left.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pymysql

from batchflag_db.testing._process import sigterm_as_interrupt
from batchflag_db.testing.container import (
    ContainerError,
    ContainerServer,
    NodeSet,
    connect_root,
    docker_problem,
    remove_stale,
)
from batchflag_db.testing.images import ImageNotAvailableError, ensure_image
from batchflag_db.testing.kinds import KINDS

__all__ = [
    "KIND",
    "GroupMember",
    "GroupReplicationCluster",
    "GroupReplicationError",
    "MemberState",
    "grouprepl_available",
    "main",
]

#: The server kind whose image runs the group.
KIND = "mysql-9.7"

#: Plugins the members load (files of the image's plugin directory).
_PLUGINS = ("group_replication.so", "mysql_clone.so")

#: The port group communication (XCom) listens on, on each member's own address.
XCOM_PORT = 33061

#: The recovery account every member creates (a throwaway group: the password is no secret).
RECOVERY_USER = "gr_recovery"
RECOVERY_PASSWORD = "gr-recovery-pw"  # noqa: S105 - throwaway group on its own network

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

    Returns:
        None if the ``docker`` command is installed and an engine answers (the image is
        built on first use), else a one-line message saying what is missing.
    """
    problem = docker_problem()
    if problem is None:
        return None
    return f"Group Replication test group unavailable: its members run in containers, and {problem}"


@dataclass(frozen=True)
class MemberState:
    """One row of ``performance_schema.replication_group_members``, as one member sees it.

    Attributes:
        host: The member's address on the group's network (``MEMBER_HOST``, e.g. ``node0``).
        port: Its SQL port there (``MEMBER_PORT``, 3306 for every member).
        state: ``ONLINE``, ``RECOVERING``, ``UNREACHABLE``, ``ERROR`` or ``OFFLINE``.
        role: ``PRIMARY`` or ``SECONDARY``.
    """

    host: str
    port: int
    state: str
    role: str


@dataclass(frozen=True)
class GroupMember:
    """One member of a :class:`GroupReplicationCluster`, as it was when last (re)started.

    :meth:`GroupReplicationCluster.restart_node` replaces the entry in
    :attr:`GroupReplicationCluster.nodes` with one carrying the new pid.

    Attributes:
        index: Position in the group, from 0 (its ``server_id`` is ``index + 1``).
        port: The member's published SQL port on 127.0.0.1.
        address: Its host name on the group's network (``node0``...), which the group
            reports as ``MEMBER_HOST``.
        directory: Its datadir on the host (bind-mounted into its container).
        container: Its container's name.
        password: root's password.
        pid: The host's process id of its ``mysqld`` (0 before the first start).
    """

    index: int
    port: int
    address: str
    directory: Path
    container: str
    password: str
    pid: int = 0

    @property
    def url(self) -> str:
        """SQLAlchemy URL of this member, ``mysql+pymysql://root:PASSWORD@127.0.0.1:PORT/``."""
        return f"mysql+pymysql://root:{self.password}@127.0.0.1:{self.port}/"

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
        return connect_root(self.port, self.password, database=database, timeout=timeout)


class GroupReplicationCluster:
    """A throwaway MySQL Group Replication group, one container per member.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. :meth:`stop` is
    idempotent; containers and the network still there at interpreter exit are removed.

    Attributes:
        size: Number of members.
        multi_primary: True for multi-primary mode (every member accepts writes), False
            for single-primary mode (one primary, the others ``super_read_only``).
        nodes: One :class:`GroupMember` per member, in index order; empty until started.
        group_name: The group's UUID.
        network: The group's Docker network name (None until started).
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
        self.network: str | None = None
        self._extra_args = list(extra_args)
        self._expel_timeout = expel_timeout
        self._set = NodeSet("bf-grouprepl", size)
        self._servers: list[ContainerServer] = []
        self._subnet = ""
        self._running: set[int] = set()
        self._lock = threading.RLock()
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

    def containers(self) -> list[str]:
        """Every member's container name, in index order."""
        return [s.name for s in self._servers]

    def running(self) -> list[int]:
        """Indexes of the members whose container runs."""
        return sorted(i for i in self._running if self._servers[i].running())

    def start(self, timeout: float = 180) -> None:
        """Create the network and the members, form the group and wait until all are ONLINE.

        On any failure (including KeyboardInterrupt) everything started so far is
        removed before the exception propagates.

        Args:
            timeout: Seconds allowed for the whole start (the image build, if the image
                is missing, is not counted).

        Raises:
            GroupReplicationError: No Docker engine, the image cannot be built, a member
                fails to start or join, or the group is not ONLINE in time; the message
                has the tail of the failing member's log.
            RuntimeError: If the group is already started.
        """
        with self._lock:
            if self._base is not None:
                raise RuntimeError("group already started")
            problem = grouprepl_available()
            if problem is not None:
                raise GroupReplicationError(problem)
            try:
                image = ensure_image(KINDS[KIND])
            except ImageNotAvailableError as exc:
                raise GroupReplicationError(
                    f"Group Replication test group unavailable: {exc}"
                ) from None
            remove_stale()
            deadline = time.monotonic() + timeout
            try:
                self._create(image)
                for i in range(self.size):
                    self._launch(i)
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
        """Remove every member's container, the network and the datadirs.

        Idempotent, and safe on a partly started group. Containers are removed with
        ``docker rm -f`` (SIGKILL): the group is throwaway.
        """
        with self._lock:
            self._set.remove()
            self._running.clear()
            self._base = None
            self.network = None

    def kill_node(self, i: int) -> None:
        """``kill -9`` member ``i`` (``docker kill -s KILL``): no shutdown, no leaving.

        The datadir stays, so :meth:`restart_node` can bring the member back.

        Raises:
            IndexError: There is no member ``i``.
        """
        with self._lock:
            self._check_index(i)
            if i in self._running:
                self._servers[i].kill()
                self._running.discard(i)

    def stop_node(self, i: int, timeout: float = 60) -> None:
        """Shut member ``i`` down cleanly: it leaves the group, then its server stops.

        Raises:
            IndexError: There is no member ``i``.
        """
        with self._lock:
            self._check_index(i)
            if i not in self._running:
                return
            with contextlib.suppress(pymysql.MySQLError):
                conn = self.nodes[i].connect(timeout=timeout)
                try:
                    with conn.cursor() as cur:
                        cur.execute("STOP GROUP_REPLICATION")
                finally:
                    conn.close()
            self._servers[i].stop(timeout)
            self._running.discard(i)

    def restart_node(self, i: int, timeout: float = 180) -> None:
        """Start member ``i`` again on its datadir and wait until it is back ONLINE.

        A member still running is killed first. The others must first have expelled
        its old incarnation (about 5 s after a kill with the default ``expel_timeout``
        of this class); then a new container starts on the same datadir and port, the
        member rejoins with ``START GROUP_REPLICATION`` and catches up by incremental
        recovery from a donor's binary log.

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
            if i in self._running:
                self.kill_node(i)
            self._wait_expelled(i, deadline)
            self._launch(i)
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
                    MemberState(str(host), int(port), str(state), str(role))
                    for host, port, state, role in cur.fetchall()
                    if port
                ]
        finally:
            conn.close()

    def primaries(self) -> list[int]:
        """Indexes of the ONLINE primaries, as the running members agree on them.

        Raises:
            GroupReplicationError: No member answers.
        """
        by_host = {n.address: n.index for n in self.nodes}
        for i in self.running():
            try:
                seen = self.members(i)
            except pymysql.MySQLError:
                continue
            return sorted(
                by_host[m.host]
                for m in seen
                if m.role == "PRIMARY" and m.state == "ONLINE" and m.host in by_host
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

    def _check_index(self, i: int) -> None:
        if not 0 <= i < len(self.nodes):
            raise IndexError(f"no group member {i} (the group has {len(self.nodes)})")

    def _create(self, image: str) -> None:
        """Make the temp dir, the network and the member descriptions."""
        network, self._base = self._set.create(image)
        self.network = network.name
        self._subnet = network.subnet()
        self._servers = self._set.servers
        self.nodes = []
        for i, server in enumerate(self._servers):
            self.nodes.append(
                GroupMember(
                    index=i,
                    port=0,
                    address=server.alias,
                    directory=server.datadir,
                    container=server.name,
                    password=server.password,
                )
            )

    def _server_args(self, i: int) -> list[str]:
        """Member ``i``'s ``mysqld`` options (the entrypoint adds datadir, port, user)."""
        node = self.nodes[i]
        seeds = ",".join(f"{n.address}:{XCOM_PORT}" for n in self.nodes)
        args = [
            "--skip-name-resolve",
            "--mysqlx=OFF",
            "--innodb-buffer-pool-size=128M",
            "--innodb-flush-log-at-trx-commit=2",
            "--sync-binlog=0",
            "--max-connections=300",
            f"--server-id={i + 1}",
            "--gtid-mode=ON",
            "--enforce-gtid-consistency=ON",
            "--log-bin=binlog",
            "--disabled-storage-engines=MyISAM,BLACKHOLE,FEDERATED,ARCHIVE,MEMORY",
            f"--report-host={node.address}",
            "--report-port=3306",
            *(f"--plugin-load-add={p}" for p in _PLUGINS),
            f"--loose-group-replication-group-name={self.group_name}",
            "--loose-group-replication-start-on-boot=OFF",
            "--loose-group-replication-communication-stack=XCOM",
            f"--loose-group-replication-local-address={node.address}:{XCOM_PORT}",
            f"--loose-group-replication-group-seeds={seeds}",
            f"--loose-group-replication-ip-allowlist={self._subnet},127.0.0.1/8",
            "--loose-group-replication-recovery-get-public-key=ON",
            f"--loose-group-replication-member-expel-timeout={self._expel_timeout}",
            "--loose-group-replication-autorejoin-tries=0",
        ]
        if self.multi_primary:
            args += [
                "--loose-group-replication-single-primary-mode=OFF",
                "--loose-group-replication-enforce-update-everywhere-checks=ON",
            ]
        return [*args, *self._extra_args]

    def _launch(self, i: int) -> None:
        """(Re)create member ``i``'s container on its datadir and note its port and pid."""
        server = self._servers[i]
        try:
            server.recreate(self._server_args(i))
        except ContainerError as exc:
            raise GroupReplicationError(f"group member {i} cannot start: {exc}") from None
        self._running.add(i)
        node = self.nodes[i]
        self.nodes[i] = GroupMember(
            index=i,
            port=server.port,
            address=node.address,
            directory=node.directory,
            container=server.name,
            password=node.password,
            pid=server.pid(),
        )

    def _check_alive(self, i: int) -> None:
        if i not in self._running:
            raise GroupReplicationError(f"group member {i} is not running (killed?)")
        if not self._servers[i].running():
            raise GroupReplicationError(
                f"group member {i} (container {self.nodes[i].container}) has stopped\n"
                + self._log_report(i)
            )

    def _log_report(self, i: int) -> str:
        log = self._servers[i].logs(400).splitlines()
        errors = [line for line in log[:-30] if "[ERROR]" in line][-10:]
        parts = []
        if errors:
            parts.append(
                f"--- earlier errors of {self.nodes[i].container} ---\n" + "\n".join(errors)
            )
        parts.append(f"--- docker logs {self.nodes[i].container} ---\n" + "\n".join(log[-30:]))
        return "\n".join(parts)

    def _wait_answering(self, i: int, deadline: float) -> None:
        """Wait until member ``i`` takes a TCP login as root."""
        try:
            self._servers[i].wait_ready(deadline)
        except ContainerError as exc:
            raise GroupReplicationError(f"group member {i}: {exc}") from None

    def _prepare_member(self, i: int) -> None:
        """Forget the setup's GTIDs, then the recovery account and channel, unlogged."""
        conn = self.nodes[i].connect(timeout=60)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@GLOBAL.gtid_executed")
                row = cur.fetchone()
                if row and row[0]:
                    cur.execute("RESET BINARY LOGS AND GTIDS")
                cur.execute("SET SQL_LOG_BIN = 0")
                cur.execute(
                    f"CREATE USER IF NOT EXISTS '{RECOVERY_USER}'@'%' "
                    f"IDENTIFIED BY '{RECOVERY_PASSWORD}'"
                )
                cur.execute(
                    "GRANT REPLICATION SLAVE, BACKUP_ADMIN, CLONE_ADMIN, CONNECTION_ADMIN, "
                    f"GROUP_REPLICATION_STREAM ON *.* TO '{RECOVERY_USER}'@'%'"
                )
                cur.execute("SET SQL_LOG_BIN = 1")
                cur.execute(
                    f"CHANGE REPLICATION SOURCE TO SOURCE_USER = '{RECOVERY_USER}', "
                    f"SOURCE_PASSWORD = '{RECOVERY_PASSWORD}' "
                    "FOR CHANNEL 'group_replication_recovery'"
                )
        finally:
            conn.close()

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
        want = {self.nodes[i].address for i in members}
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
                last[i] = ", ".join(f"{m.host} {m.state} {m.role}" for m in seen)
                if {m.host for m in seen} != want or any(m.state != "ONLINE" for m in seen):
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
        host = self.nodes[i].address
        for j in self.running():
            if j == i:
                continue
            while True:
                self._check_alive(j)
                try:
                    if all(m.host != host for m in self.members(j)):
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
        description="Run a throwaway MySQL Group Replication group in containers until Ctrl-C.",
    )
    parser.add_argument("--size", type=int, default=3, help="number of members")
    parser.add_argument(
        "--multi-primary", action="store_true", help="multi-primary mode (default: single-primary)"
    )
    parser.add_argument("--timeout", type=float, default=180, help="seconds allowed for startup")
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
