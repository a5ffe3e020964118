"""Throwaway MariaDB Galera clusters on 127.0.0.1 for tests.

This module starts a small (by default three-node) MariaDB Galera cluster on
the local machine from Debian's packages (``mariadb-server``, ``galera-4``,
``rsync``), waits until every node is ``Synced``, and tears it down again.
Every node gets its own data directory, unix socket and TCP ports; the
system-wide ``my.cnf`` is never read (``--no-defaults``), and the system
MariaDB on port 3306, if any, is left alone.

Typical use in a test::

    with GaleraCluster(3) as cluster:
        url0, url1, url2 = cluster.urls()
        ...

or from a shell, to keep a cluster running until Ctrl-C::

    python -m batchflag_db.testing.galera

How it works: node 0's data directory is initialized with
``mariadb-install-db``, node 0 is started with ``--wsrep-new-cluster`` and
``root@127.0.0.1`` / ``root@%`` (no password) are created through its unix
socket. Nodes 1.. are then started one after the other on empty data
directories and receive a full copy by rsync SST, so the accounts are the
same on every node. Each node's server log is ``<datadir>/mariadbd.err`` and
its stdout/stderr ``<datadir>/mariadbd.out``; startup failures raise
:class:`GaleraError` with the tail of both.

Only the standard library and PyMySQL are used.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import pymysql

from batchflag_db.testing._process import (
    LOG_TAIL_LINES,
    Watchdog,
    free_ports,
    reap,
    signal_group,
    sigterm_as_interrupt,
    spawn,
    tail,
)

__all__ = [
    "GaleraCluster",
    "GaleraError",
    "GaleraNode",
    "galera_available",
    "main",
]

#: Path of the Galera 4 wsrep provider shipped by Debian's ``galera-4``.
PROVIDER_PATH = "/usr/lib/galera/libgalera_smm.so"

#: Directories searched for the server binaries in addition to ``$PATH``.
_SYSTEM_BIN_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")

#: Hint printed when something is missing.
_INSTALL_HINT = "apt-get install galera-4 rsync mariadb-server"

#: Unix socket paths longer than this do not fit ``sockaddr_un``.
_MAX_SOCKET_PATH = 100

#: Environment variable that the hint printed by :func:`main` exports.
_URL_ENV_VAR = "BATCHFLAG_TEST_DATABASE_URL"

_POLL_INTERVAL = 0.25


class GaleraError(RuntimeError):
    """Raised when a Galera node or cluster cannot be started or synced."""


def _find_binary(name: str) -> str | None:
    """Locate an executable on ``$PATH`` or in the usual system directories.

    Args:
        name: Executable name, e.g. ``"mariadbd"``.

    Returns:
        The absolute path, or None if it is not installed.
    """
    found = shutil.which(name)
    if found:
        return found
    return shutil.which(name, path=os.pathsep.join(_SYSTEM_BIN_DIRS))


def _require_binary(name: str) -> str:
    """Like :func:`_find_binary`, but raise if the executable is missing.

    Args:
        name: Executable name.

    Returns:
        The absolute path.

    Raises:
        GaleraError: If it is not installed.
    """
    found = _find_binary(name)
    if found is None:
        raise GaleraError(f"{name} not found; install with: {_INSTALL_HINT}")
    return found


def _server_user() -> str | None:
    """Choose the OS user ``mariadbd`` runs as.

    As root, the servers run as ``mysql`` (created by Debian's
    ``mariadb-server``): the joiner side of ``wsrep_sst_rsync`` starts an
    ``rsync --daemon`` whose config sets no ``uid``, and an rsync daemon
    started by root drops to ``nobody`` and then cannot write a root-owned
    data directory, so rsync SST fails with ``mkdir ... Permission denied``.
    Started by ``mysql`` the daemon keeps that uid. Without a ``mysql`` user
    root is used (rsync SST will then fail). Not being root, no ``--user``
    is passed and everything runs as the current user.

    Returns:
        The user name for ``--user``, or None to pass no ``--user``.
    """
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("mysql")
    except KeyError:
        return "root"
    return "mysql"


def galera_available() -> str | None:
    """Tell whether a Galera cluster can be started on this machine.

    Checks for ``mariadbd``, ``mariadb-install-db``, the Galera provider
    library, the rsync SST script and ``rsync``, and one of the socket tools
    (``ss``/``lsof``) that the SST script needs.

    Returns:
        None if everything needed is present, else a one-line message naming
        what is missing and the Debian packages that provide it.
    """
    missing: list[str] = []
    packages: list[str] = []

    def need(what: str, present: bool, package: str) -> None:
        if not present:
            missing.append(what)
            if package not in packages:
                packages.append(package)

    need("mariadbd", _find_binary("mariadbd") is not None, "mariadb-server")
    need(
        "mariadb-install-db",
        _find_binary("mariadb-install-db") is not None,
        "mariadb-server",
    )
    need(
        "wsrep_sst_rsync",
        _find_binary("wsrep_sst_rsync") is not None,
        "mariadb-server",
    )
    need(PROVIDER_PATH, os.path.isfile(PROVIDER_PATH), "galera-4")
    need("rsync", _find_binary("rsync") is not None, "rsync")
    need(
        "system user mysql",
        _server_user() != "root",
        "mariadb-server",
    )
    need(
        "ss or lsof",
        _find_binary("ss") is not None or _find_binary("lsof") is not None,
        "iproute2",
    )
    if not missing:
        return None
    command = _INSTALL_HINT.split()
    command += [p for p in packages if p not in command]
    return (
        f"Galera test cluster unavailable: missing {', '.join(missing)} "
        f"(Debian package {', '.join(packages)}); install with: {' '.join(command)}"
    )


@dataclass(frozen=True)
class GaleraNode:
    """One running (or killed) node of a :class:`GaleraCluster`.

    Instances are immutable; :meth:`GaleraCluster.restart_node` replaces the
    node's entry in :attr:`GaleraCluster.nodes` with one carrying the new pid.

    Attributes:
        index: Position of the node in the cluster, starting at 0.
        port: MySQL protocol TCP port on 127.0.0.1.
        datadir: The node's data directory.
        socket: Path of the node's unix socket.
        pid: Process id of the node's ``mariadbd`` (0 before the first start).
        gcomm_port: Galera group communication port.
        ist_port: Galera incremental state transfer port.
        sst_port: rsync state snapshot transfer port.
    """

    index: int
    port: int
    datadir: str
    socket: str
    pid: int
    gcomm_port: int
    ist_port: int
    sst_port: int

    @property
    def url(self) -> str:
        """SQLAlchemy-style URL of this node, ``mysql+pymysql://root@127.0.0.1:PORT/``."""
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/"

    @property
    def error_log(self) -> str:
        """Path of the node's server error log."""
        return os.path.join(self.datadir, "mariadbd.err")

    @property
    def stdout_log(self) -> str:
        """Path of the file receiving the node's stdout and stderr."""
        return os.path.join(self.datadir, "mariadbd.out")

    def connect(
        self, *, database: str | None = None, timeout: float = 10
    ) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        """Open an autocommit PyMySQL connection to this node as root over TCP.

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


def _status(conn: pymysql.connections.Connection[pymysql.cursors.Cursor]) -> dict[str, str]:
    """Read the ``wsrep_%`` status variables of a node.

    Args:
        conn: Open connection to the node.

    Returns:
        Variable name (lower case) to value.
    """
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep\\_%'")
        return {str(k).lower(): str(v) for k, v in cur.fetchall()}


# Clusters that are started and not yet stopped, torn down at interpreter exit.
_LIVE: set[GaleraCluster] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    """Stop every cluster that is still running when the interpreter exits."""
    with _LIVE_LOCK:
        clusters = list(_LIVE)
    for cluster in clusters:
        with contextlib.suppress(Exception):
            cluster.stop()


class GaleraCluster:
    """A throwaway MariaDB Galera cluster on 127.0.0.1.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    :meth:`stop` is idempotent, also runs at interpreter exit for clusters
    that were not stopped, and a watchdog process kills the nodes if the
    Python process dies without running :meth:`stop` (e.g. SIGKILL).

    Attributes:
        size: Number of nodes.
        nodes: One :class:`GaleraNode` per node, in index order; empty until
            :meth:`start` has allocated ports and directories.
        base_dir: Temporary directory holding every node's files (None until
            started and after stop).
    """

    def __init__(
        self,
        size: int = 3,
        *,
        base_dir: str | None = None,
        extra_args: Sequence[str] = (),
        provider_options: Sequence[str] = (),
    ) -> None:
        """Describe a cluster; nothing is started until :meth:`start`.

        Args:
            size: Number of nodes (at least 1).
            base_dir: Directory in which a fresh temporary directory for the
                cluster is created (default: the system temp dir). It must
                be short enough for unix socket paths (about 60 chars).
            extra_args: Extra ``mariadbd`` options appended to every node's
                command line, e.g. ``["--max-connections=500"]``. Do not
                pass ``--wsrep-provider-options`` here (it would replace the
                per-node listen addresses); use ``provider_options``.
            provider_options: Extra Galera provider options appended to
                ``wsrep_provider_options``, e.g. ``["evs.suspect_timeout=PT2S"]``.

        Raises:
            ValueError: If ``size`` is less than 1.
        """
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.nodes: list[GaleraNode] = []
        self.base_dir: str | None = None
        self._parent_dir = base_dir
        self._extra_args = list(extra_args)
        self._provider_options = list(provider_options)
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.RLock()
        self._user = _server_user()
        self._watchdog: Watchdog | None = None

    # -- context manager -------------------------------------------------

    def __enter__(self) -> GaleraCluster:
        """Start the cluster (see :meth:`start`) and return it."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the cluster (see :meth:`stop`)."""
        self.stop()

    # -- public API ------------------------------------------------------

    def urls(self) -> list[str]:
        """Return every node's URL, in index order.

        Returns:
            ``mysql+pymysql://root@127.0.0.1:PORT/`` per node.
        """
        return [n.url for n in self.nodes]

    def start(self, timeout: float = 120) -> None:
        """Create the nodes, start them and wait until the cluster is synced.

        On any failure (including KeyboardInterrupt) everything started so
        far is stopped and removed before the exception propagates.

        Args:
            timeout: Seconds allowed for the whole start, all nodes together.

        Raises:
            GaleraError: If something needed is not installed, a node fails
                to start, or the cluster is not synced in time. The message
                includes the tail of the failing node's log.
            RuntimeError: If the cluster is already started.
        """
        with self._lock:
            if self.base_dir is not None:
                raise RuntimeError("cluster already started")
            problem = galera_available()
            if problem is not None:
                raise GaleraError(problem)
            deadline = time.monotonic() + timeout
            with _LIVE_LOCK:
                _LIVE.add(self)
            try:
                self._watchdog = Watchdog()
                self._create_nodes()
                self._install_db(self.nodes[0])
                self._spawn(0, new_cluster=True)
                self._wait_node_synced(0, deadline, cluster_size=1)
                self._create_tcp_root(self.nodes[0])
                for i in range(1, self.size):
                    self._spawn(i, new_cluster=False)
                    self._wait_node_synced(i, deadline, cluster_size=i + 1)
                self.wait_synced(max(0.0, deadline - time.monotonic()))
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        """Kill every node (and its SST helpers) and remove the cluster's files.

        Idempotent, and safe to call on a partly started cluster. Nodes are
        killed with SIGKILL: the cluster is throwaway, so there is nothing
        to shut down cleanly.
        """
        with self._lock:
            for proc in list(self._procs.values()):
                signal_group(proc, signal.SIGKILL)
            for i in list(self._procs):
                self._reap(i)
            if self.base_dir is not None:
                shutil.rmtree(self.base_dir, ignore_errors=True)
                self.base_dir = None
            if self._watchdog is not None:
                self._watchdog.close()
                self._watchdog = None
            with _LIVE_LOCK:
                _LIVE.discard(self)

    def kill_node(self, i: int) -> None:
        """SIGKILL node ``i`` (and its helpers), simulating a crash.

        The data directory is kept, so :meth:`restart_node` can bring the
        node back.

        Args:
            i: Node index.

        Raises:
            IndexError: If there is no node ``i``.
        """
        with self._lock:
            self._check_index(i)
            proc = self._procs.get(i)
            if proc is None:
                return
            signal_group(proc, signal.SIGKILL)
            self._reap(i)

    def restart_node(self, i: int, timeout: float = 120) -> None:
        """Start node ``i`` again and wait until it has rejoined and synced.

        The node rejoins through IST when the donor's gcache still holds the
        missed write sets, otherwise through rsync SST. If it is still
        running it is killed first.

        Args:
            i: Node index.
            timeout: Seconds to wait for the node and the cluster to sync.

        Raises:
            GaleraError: If the node fails to start or sync in time.
            IndexError: If there is no node ``i``.
            RuntimeError: If the cluster is not started.
        """
        with self._lock:
            self._check_index(i)
            if self.base_dir is None:
                raise RuntimeError("cluster not started")
            deadline = time.monotonic() + timeout
            if i in self._procs:
                self.kill_node(i)
            self._wait_evicted(i, deadline)
            self._spawn(i, new_cluster=False)
            self._wait_node_synced(i, deadline, cluster_size=self.size)
            self.wait_synced(max(0.0, deadline - time.monotonic()))

    def wait_synced(self, timeout: float) -> None:
        """Wait until every node is Synced, Primary and sees all nodes.

        Args:
            timeout: Seconds to wait.

        Raises:
            GaleraError: If a node is not running, or the condition is not
                reached in time (message includes per-node state and the
                log tail of a lagging node).
        """
        deadline = time.monotonic() + timeout
        last: dict[int, str] = {}
        while True:
            lagging: list[int] = []
            for node in self.nodes:
                self._check_alive(node.index)
                ok, why = self._node_state(node, self.size)
                last[node.index] = why
                if not ok:
                    lagging.append(node.index)
            if not lagging:
                return
            if time.monotonic() >= deadline:
                worst = self.nodes[lagging[0]]
                states = "; ".join(f"node {k}: {v}" for k, v in sorted(last.items()))
                raise GaleraError(
                    f"Galera cluster not synced after {timeout:.0f}s ({states})\n"
                    + self._log_report(worst)
                )
            time.sleep(_POLL_INTERVAL)

    # -- internals -------------------------------------------------------

    def _reap(self, i: int) -> None:
        """Wait for node ``i``'s killed server, sweep its group (SST helpers), forget it."""
        reap(self._procs.pop(i), self._watchdog)

    def _check_index(self, i: int) -> None:
        if not 0 <= i < len(self.nodes):
            raise IndexError(f"no Galera node {i} (cluster has {len(self.nodes)})")

    def _create_nodes(self) -> None:
        """Make the temp dir, allocate ports and fill :attr:`nodes`."""
        self.base_dir = tempfile.mkdtemp(prefix="bfgalera-", dir=self._parent_dir)
        if self._watchdog is not None:
            self._watchdog.set_dir(self.base_dir)
        ports = free_ports(4 * self.size)
        nodes: list[GaleraNode] = []
        for i in range(self.size):
            p = ports[4 * i : 4 * i + 4]
            datadir = os.path.join(self.base_dir, f"node{i}")
            sock = os.path.join(self.base_dir, f"n{i}.sock")
            if len(sock) > _MAX_SOCKET_PATH:
                raise GaleraError(
                    f"unix socket path too long ({len(sock)} chars): {sock}; use a shorter base_dir"
                )
            os.mkdir(datadir)
            nodes.append(
                GaleraNode(
                    index=i,
                    port=p[0],
                    datadir=datadir,
                    socket=sock,
                    pid=0,
                    gcomm_port=p[1],
                    ist_port=p[2],
                    sst_port=p[3],
                )
            )
        self.nodes = nodes
        if self._user is not None and self._user != "root":
            pw = pwd.getpwnam(self._user)
            # The servers create their sockets in base_dir and write datadirs.
            for path in [self.base_dir, *(n.datadir for n in nodes)]:
                os.chown(path, pw.pw_uid, pw.pw_gid)

    def _user_args(self) -> list[str]:
        """``--user=...`` for mariadbd / install-db, if any (see :func:`_server_user`)."""
        return [] if self._user is None else [f"--user={self._user}"]

    def _env(self) -> dict[str, str]:
        """Environment for server processes (SST scripts must be on PATH)."""
        env = dict(os.environ)
        parts = [p for p in env.get("PATH", "").split(os.pathsep) if p]
        parts += [d for d in _SYSTEM_BIN_DIRS if d not in parts]
        env["PATH"] = os.pathsep.join(parts)
        env.pop("MYSQL_HOME", None)
        return env

    def _install_db(self, node: GaleraNode) -> None:
        """Initialize ``node``'s data directory with ``mariadb-install-db``."""
        install_db = _require_binary("mariadb-install-db")
        log = os.path.join(node.datadir, "install-db.log")
        with open(log, "wb") as out:
            rc = subprocess.call(
                [
                    install_db,
                    "--no-defaults",
                    f"--datadir={node.datadir}",
                    *self._user_args(),
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    *self._sizing_args(),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
                timeout=120,
            )
        if rc != 0:
            raise GaleraError(
                f"mariadb-install-db failed for node {node.index} (exit {rc}):\n" + tail(log)
            )

    @staticmethod
    def _sizing_args() -> list[str]:
        """Options that keep a test node small; also used by install-db."""
        return [
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=32M",
        ]

    def _server_args(self, node: GaleraNode, *, new_cluster: bool) -> list[str]:
        """Build the full ``mariadbd`` command line for ``node``."""
        mariadbd = _require_binary("mariadbd")
        gcomm = ",".join(f"127.0.0.1:{n.gcomm_port}" for n in self.nodes)
        provider_options = ";".join(
            [
                f"gmcast.listen_addr=tcp://127.0.0.1:{node.gcomm_port}",
                f"ist.recv_addr=127.0.0.1:{node.ist_port}",
                "gcache.size=64M",
                "gcache.recover=yes",
                *self._provider_options,
            ]
        )
        args = [
            mariadbd,
            "--no-defaults",
            *self._user_args(),
            f"--datadir={node.datadir}",
            f"--socket={node.socket}",
            f"--pid-file={os.path.join(node.datadir, 'mariadbd.pid')}",
            f"--log-error={node.error_log}",
            "--bind-address=127.0.0.1",
            f"--port={node.port}",
            "--skip-name-resolve",
            "--performance-schema=OFF",
            "--default-storage-engine=InnoDB",
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
            "--innodb-flush-log-at-trx-commit=2",
            *self._sizing_args(),
            "--wsrep-on=ON",
            f"--wsrep-provider={PROVIDER_PATH}",
            "--wsrep-cluster-name=batchflag_test",
            f"--wsrep-node-name=node{node.index}",
            f"--wsrep-node-address=127.0.0.1:{node.gcomm_port}",
            f"--wsrep-node-incoming-address=127.0.0.1:{node.port}",
            f"--wsrep-cluster-address=gcomm://{gcomm}",
            f"--wsrep-provider-options={provider_options}",
            "--wsrep-sst-method=rsync",
            f"--wsrep-sst-receive-address=127.0.0.1:{node.sst_port}",
            "--wsrep-slave-threads=2",
            *self._extra_args,
        ]
        if new_cluster:
            args.append("--wsrep-new-cluster")
        return args

    def _spawn(self, i: int, *, new_cluster: bool) -> None:
        """Start node ``i``'s ``mariadbd`` in its own process group."""
        node = self.nodes[i]
        args = self._server_args(node, new_cluster=new_cluster)
        proc = spawn(args, node.stdout_log, self._watchdog, cwd=node.datadir, env=self._env())
        self._procs[i] = proc
        self.nodes[i] = dataclasses.replace(node, pid=proc.pid)

    def _log_report(self, node: GaleraNode) -> str:
        """Tails of ``node``'s logs, for exception messages.

        The node's last ``[ERROR]`` lines come first (they may be older than
        the tail). State transfer errors are often only explained in the
        donor's log, so the last SST-related lines of every other node are
        added. The files themselves are removed by :meth:`stop`.
        """
        log = tail(node.error_log, 2000).splitlines()
        last = log[-LOG_TAIL_LINES:]
        errors = [line for line in log[:-LOG_TAIL_LINES] if "[ERROR]" in line][-10:]
        out = [
            line
            for line in tail(node.stdout_log, 20).splitlines()
            if line.strip() and not line.startswith("=== ")
        ][-10:]
        parts = []
        if errors:
            parts.append(f"--- earlier errors in {node.error_log} ---\n" + "\n".join(errors))
        parts.append(f"--- tail of {node.error_log} ---\n" + "\n".join(last))
        if out:
            parts.append(f"--- tail of {node.stdout_log} ---\n" + "\n".join(out))
        for other in self.nodes:
            if other.index == node.index:
                continue
            lines = [
                line
                for line in tail(other.error_log, 400).splitlines()
                if "SST" in line or "rsync" in line or "[ERROR]" in line
            ][-10:]
            if lines:
                parts.append(
                    f"--- SST/error lines of node {other.index} ({other.error_log}) ---\n"
                    + "\n".join(lines)
                )
        return "\n".join(parts)

    def _check_alive(self, i: int) -> None:
        """Raise :class:`GaleraError` if node ``i`` is not running."""
        node = self.nodes[i]
        proc = self._procs.get(i)
        if proc is None:
            raise GaleraError(f"Galera node {i} is not running (killed?)")
        rc = proc.poll()
        if rc is not None:
            raise GaleraError(
                f"Galera node {i} (port {node.port}) exited with status {rc}\n"
                + self._log_report(node)
            )

    @staticmethod
    def _node_state(node: GaleraNode, cluster_size: int) -> tuple[bool, str]:
        """Check one node over TCP.

        Args:
            node: The node.
            cluster_size: Expected ``wsrep_cluster_size``.

        Returns:
            (ready, short description of the state seen).
        """
        try:
            conn = node.connect(timeout=5)
        except pymysql.MySQLError as exc:
            return False, f"cannot connect ({exc})"
        try:
            st = _status(conn)
        except pymysql.MySQLError as exc:
            return False, f"status query failed ({exc})"
        finally:
            with contextlib.suppress(Exception):
                conn.close()
        state = st.get("wsrep_local_state_comment", "?")
        size = st.get("wsrep_cluster_size", "?")
        status = st.get("wsrep_cluster_status", "?")
        ready = st.get("wsrep_ready", "?")
        ok = (
            state == "Synced"
            and size == str(cluster_size)
            and status == "Primary"
            and ready == "ON"
        )
        return ok, f"{state}, size {size}, {status}, ready {ready}"

    def _wait_node_synced(self, i: int, deadline: float, *, cluster_size: int) -> None:
        """Wait until node ``i`` is Synced in a cluster of ``cluster_size``."""
        node = self.nodes[i]
        why = "not checked"
        while True:
            self._check_alive(i)
            ok, why = self._node_state(node, cluster_size)
            if ok:
                return
            if time.monotonic() >= deadline:
                raise GaleraError(
                    f"Galera node {i} (port {node.port}) not synced in time "
                    f"(last state: {why})\n" + self._log_report(node)
                )
            time.sleep(_POLL_INTERVAL)

    def _wait_evicted(self, i: int, deadline: float) -> None:
        """Wait until the running nodes no longer count dead node ``i``.

        After a SIGKILL the others keep the dead member in their view until
        ``evs.suspect_timeout`` (5 s) expires; a new instance started
        earlier is only admitted after that, and its joining is slower and
        noisier. Waiting here makes restarts predictable.
        """
        alive = [n for n in self.nodes if n.index != i and n.index in self._procs]
        if not alive:
            return
        want = str(len(alive))
        while True:
            sizes: list[str] = []
            for node in alive:
                self._check_alive(node.index)
                try:
                    conn = node.connect(timeout=5)
                    try:
                        sizes.append(_status(conn).get("wsrep_cluster_size", "?"))
                    finally:
                        conn.close()
                except pymysql.MySQLError as exc:
                    sizes.append(f"error {exc}")
            if all(size == want for size in sizes):
                return
            if time.monotonic() >= deadline:
                raise GaleraError(
                    f"killed Galera node {i} still counted by the others "
                    f"(wsrep_cluster_size {sizes}, want {want})\n" + self._log_report(alive[0])
                )
            time.sleep(_POLL_INTERVAL)

    def _create_tcp_root(self, node: GaleraNode) -> None:
        """Let root log in over TCP from 127.0.0.1 without a password.

        Runs on node 0 through its unix socket before the other nodes join;
        they get the accounts by SST (and the statements would replicate by
        TOI anyway).
        """
        conn = pymysql.connect(
            unix_socket=node.socket,
            user="root",
            password="",
            autocommit=True,
            connect_timeout=10,
        )
        try:
            with conn.cursor() as cur:
                for host in ("127.0.0.1", "%"):
                    cur.execute(f"CREATE USER IF NOT EXISTS 'root'@'{host}'")
                    cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO 'root'@'{host}' WITH GRANT OPTION")
        finally:
            conn.close()


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Start a cluster, print its URLs and keep it running until interrupted.

    The node URLs are printed to stdout, one per line; a shell hint goes to
    stderr. The cluster is torn down on Ctrl-C or SIGTERM.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        Process exit status: 0 after a normal interrupt, 1 if the cluster
        could not be started or a node died, 2 if Galera is unavailable.
    """
    parser = argparse.ArgumentParser(
        prog="python -m batchflag_db.testing.galera",
        description="Run a throwaway MariaDB Galera cluster on 127.0.0.1 until Ctrl-C / SIGTERM.",
    )
    parser.add_argument("--size", type=int, default=3, help="number of nodes")
    parser.add_argument("--base-dir", default=None, help="parent directory for the cluster's files")
    parser.add_argument("--timeout", type=float, default=120, help="seconds allowed for startup")
    args = parser.parse_args(list(argv) if argv is not None else None)

    problem = galera_available()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2

    cluster = GaleraCluster(args.size, base_dir=args.base_dir)
    with sigterm_as_interrupt():
        try:
            print(f"starting {args.size}-node Galera cluster...", file=sys.stderr)
            t0 = time.monotonic()
            cluster.start(timeout=args.timeout)
            print(f"cluster synced in {time.monotonic() - t0:.1f}s", file=sys.stderr)
            for url in cluster.urls():
                print(url)
            sys.stdout.flush()
            print(
                f"export {_URL_ENV_VAR}={cluster.nodes[0].url}\nPress Ctrl-C to stop.",
                file=sys.stderr,
            )
            while True:
                time.sleep(1)
                for node in cluster.nodes:
                    cluster._check_alive(node.index)
        except KeyboardInterrupt:
            print("stopping cluster...", file=sys.stderr)
            return 0
        except GaleraError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            cluster.stop()


if __name__ == "__main__":
    raise SystemExit(main())
