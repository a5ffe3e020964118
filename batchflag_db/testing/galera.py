"""Throwaway MariaDB Galera clusters in containers, for tests.

This module starts a small (by default three-node) MariaDB 10.11 Galera cluster, one
container per node (:class:`~batchflag_db.testing.container.ContainerServer`, the
``mariadb-10.11`` kind's image, which carries ``galera-4``, ``rsync`` and ``iproute2``),
waits until every node is ``Synced``, and tears it down again. The nodes share a
user-defined Docker bridge network of their own, each at its own address, and reach
each other by alias (``node0``, ``node1``...: ``wsrep_cluster_address=gcomm://node0,
node1,node2``), so a network fault between two nodes can be staged without touching
the others. The host reaches each node through its published port on 127.0.0.1 as
root with the cluster's password (:meth:`GaleraCluster.urls`).

Typical use in a test::

    with GaleraCluster(3) as cluster:
        url0, url1, url2 = cluster.urls()
        ...

or from a shell, to keep a cluster running until Ctrl-C::

    python -m batchflag_db.testing.galera

How it works: node 0's container initialises its datadir from ``MYSQL_ROOT_PASSWORD``
(root@localhost and root@'%') and bootstraps the cluster (``--wsrep-new-cluster``).
Nodes 1.. then start one after the other on datadirs the entrypoint leaves alone and
receive a full copy by rsync SST, accounts included. Every datadir is a host directory
bind-mounted into its container, so a node killed with ``kill -9`` keeps it:
:meth:`GaleraCluster.restart_node` starts a new container on it, never with
``--wsrep-new-cluster`` (node 0 included), and the node rejoins by IST or SST. Each
node's server log is ``<datadir>/mariadbd.err`` on the host; failures raise
:class:`GaleraError` with its tail.

Every container and the network carry the label ``batchflag-db.suite=1`` and their
owner process; :meth:`GaleraCluster.stop` removes them, so does an ``atexit`` hook, and
:func:`~batchflag_db.testing.container.remove_stale` what a killed run left.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pymysql

from batchflag_db.testing._process import LOG_TAIL_LINES, sigterm_as_interrupt, tail
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
    "GaleraCluster",
    "GaleraError",
    "GaleraNode",
    "galera_available",
    "main",
]

#: The server kind whose image runs the nodes.
KIND = "mariadb-10.11"

#: Path of the Galera 4 wsrep provider shipped by Debian's ``galera-4``, in the image.
PROVIDER_PATH = "/usr/lib/galera/libgalera_smm.so"

#: Environment variable that the hint printed by :func:`main` exports.
_URL_ENV_VAR = "BATCHFLAG_TEST_DATABASE_URL"

_POLL_INTERVAL = 0.25


class GaleraError(RuntimeError):
    """Raised when a Galera node or cluster cannot be started or synced."""


def galera_available() -> str | None:
    """Tell whether a Galera cluster can be started on this machine.

    Returns:
        None if the ``docker`` command is installed and an engine answers (the image is
        built on first use), else a one-line message saying what is missing.
    """
    problem = docker_problem()
    if problem is None:
        return None
    return f"Galera test cluster unavailable: its nodes run in containers, and {problem}"


@dataclass(frozen=True)
class GaleraNode:
    """One node of a :class:`GaleraCluster`, as it was when last (re)started.

    :meth:`GaleraCluster.restart_node` replaces the node's entry in
    :attr:`GaleraCluster.nodes` with one carrying the new pid.

    Attributes:
        index: Position of the node in the cluster, starting at 0.
        port: The node's published MySQL port on 127.0.0.1.
        datadir: The node's datadir on the host (bind-mounted into its container).
        pid: The host's process id of the node's ``mariadbd`` (0 before the first start).
        container: The node's container name.
        address: The node's host name on the cluster's network (``node0``...).
        password: root's password.
    """

    index: int
    port: int
    datadir: str
    pid: int
    container: str
    address: str
    password: str

    @property
    def url(self) -> str:
        """SQLAlchemy-style URL of this node, ``mysql+pymysql://root:PASSWORD@127.0.0.1:PORT/``."""
        return f"mysql+pymysql://root:{self.password}@127.0.0.1:{self.port}/"

    @property
    def error_log(self) -> str:
        """Path of the node's server error log on the host."""
        return str(Path(self.datadir) / "mariadbd.err")

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
        return connect_root(self.port, self.password, database=database, timeout=timeout)


def _status(conn: pymysql.connections.Connection[pymysql.cursors.Cursor]) -> dict[str, str]:
    """Read the ``wsrep_%`` status variables of a node (names in lower case)."""
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep\\_%'")
        return {str(k).lower(): str(v) for k, v in cur.fetchall()}


class GaleraCluster:
    """A throwaway MariaDB Galera cluster, one container per node on a network of its own.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. :meth:`stop` is
    idempotent; containers and the network still there at interpreter exit are removed.

    Attributes:
        size: Number of nodes.
        nodes: One :class:`GaleraNode` per node, in index order; empty until started.
        base_dir: Temporary directory holding every node's datadir (None until started
            and after stop).
        network: The cluster's Docker network name (None until started).
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
            base_dir: Directory in which the cluster's temporary directory is made
                (default: the system temp dir).
            extra_args: Extra ``mariadbd`` options for every node, e.g.
                ``["--max-connections=500"]``. Do not pass ``--wsrep-provider-options``
                here; use ``provider_options``.
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
        self.network: str | None = None
        self._extra_args = list(extra_args)
        self._provider_options = list(provider_options)
        self._set = NodeSet("bf-galera", size, parent_dir=base_dir)
        self._servers: list[ContainerServer] = []
        self._running: set[int] = set()
        self._lock = threading.RLock()

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
            ``mysql+pymysql://root:PASSWORD@127.0.0.1:PORT/`` per node.
        """
        return [n.url for n in self.nodes]

    def containers(self) -> list[str]:
        """Every node's container name, in index order."""
        return [s.name for s in self._servers]

    def start(self, timeout: float = 180) -> None:
        """Create the network and the nodes, start them and wait until the cluster is synced.

        On any failure (including KeyboardInterrupt) everything started so far is
        removed before the exception propagates.

        Args:
            timeout: Seconds allowed for the whole start (the image build, if the image
                is missing, is not counted).

        Raises:
            GaleraError: No Docker engine, the image cannot be built, a node fails to
                start, or the cluster is not synced in time. The message includes the
                tail of the failing node's log.
            RuntimeError: If the cluster is already started.
        """
        with self._lock:
            if self.base_dir is not None:
                raise RuntimeError("cluster already started")
            problem = galera_available()
            if problem is not None:
                raise GaleraError(problem)
            try:
                image = ensure_image(KINDS[KIND])
            except ImageNotAvailableError as exc:
                raise GaleraError(f"Galera test cluster unavailable: {exc}") from None
            remove_stale()
            deadline = time.monotonic() + timeout
            try:
                self._create(image)
                self._launch(0, new_cluster=True)
                self._wait_node_synced(0, deadline, cluster_size=1)
                for i in range(1, self.size):
                    self._launch(i, new_cluster=False)
                    self._wait_node_synced(i, deadline, cluster_size=i + 1)
                self.wait_synced(max(0.0, deadline - time.monotonic()))
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        """Remove every node's container, the network and the datadirs.

        Idempotent, and safe to call on a partly started cluster. Containers are
        removed with ``docker rm -f`` (SIGKILL): the cluster is throwaway.
        """
        with self._lock:
            self._set.remove()
            self._running.clear()
            self.base_dir = None
            self.network = None

    def kill_node(self, i: int) -> None:
        """``kill -9`` node ``i`` (``docker kill -s KILL``), simulating a crash.

        The datadir is kept, so :meth:`restart_node` can bring the node back.

        Args:
            i: Node index.

        Raises:
            IndexError: If there is no node ``i``.
        """
        with self._lock:
            self._check_index(i)
            if i not in self._running:
                return
            self._servers[i].kill()
            self._running.discard(i)

    def restart_node(self, i: int, timeout: float = 180) -> None:
        """Start node ``i`` again on its datadir and wait until it has rejoined and synced.

        A new container is made on the same datadir and port, without
        ``--wsrep-new-cluster`` (also for node 0: it joins the running cluster). The node
        rejoins through IST when the donor's gcache still holds the missed write sets,
        otherwise through rsync SST. If it is still running it is killed first.

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
            if i in self._running:
                self.kill_node(i)
            self._wait_evicted(i, deadline)
            self._launch(i, new_cluster=False)
            self._wait_node_synced(i, deadline, cluster_size=self.size)
            self.wait_synced(max(0.0, deadline - time.monotonic()))

    def wait_synced(self, timeout: float) -> None:
        """Wait until every node is Synced, Primary and sees all nodes.

        Args:
            timeout: Seconds to wait.

        Raises:
            GaleraError: If a node is not running, or the condition is not reached in
                time (message includes per-node state and the log tail of a lagging node).
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
                states = "; ".join(f"node {k}: {v}" for k, v in sorted(last.items()))
                raise GaleraError(
                    f"Galera cluster not synced after {timeout:.0f}s ({states})\n"
                    + self._log_report(lagging[0])
                )
            time.sleep(_POLL_INTERVAL)

    # -- internals -------------------------------------------------------

    def _check_index(self, i: int) -> None:
        if not 0 <= i < len(self.nodes):
            raise IndexError(f"no Galera node {i} (cluster has {len(self.nodes)})")

    def _create(self, image: str) -> None:
        """Make the temp dir, the network and the node descriptions."""
        network, base = self._set.create(image)
        self.base_dir = str(base)
        self.network = network.name
        self._servers = self._set.servers
        self.nodes = []
        for i, server in enumerate(self._servers):
            datadir = server.datadir
            if i > 0:
                # A joiner gets everything by SST: the entrypoint must not initialise it
                # (it skips a datadir that has a mysql/ directory).
                (datadir / "mysql").mkdir()
            self.nodes.append(
                GaleraNode(
                    index=i,
                    port=0,
                    datadir=str(datadir),
                    pid=0,
                    container=server.name,
                    address=server.alias,
                    password=server.password,
                )
            )

    def _server_args(self, i: int, *, new_cluster: bool) -> list[str]:
        """The ``mariadbd`` options of node ``i`` (the entrypoint adds datadir, port, user)."""
        address = self.nodes[i].address
        gcomm = ",".join(n.address for n in self.nodes)
        provider_options = ";".join(
            ["gcache.size=64M", "gcache.recover=yes", *self._provider_options]
        )
        args = [
            "--log-error=/var/lib/mysql/mariadbd.err",
            "--skip-name-resolve",
            "--performance-schema=OFF",
            "--default-storage-engine=InnoDB",
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
            "--innodb-flush-log-at-trx-commit=2",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=32M",
            "--wsrep-on=ON",
            f"--wsrep-provider={PROVIDER_PATH}",
            "--wsrep-cluster-name=batchflag_test",
            f"--wsrep-node-name=node{i}",
            f"--wsrep-node-address={address}",
            f"--wsrep-cluster-address=gcomm://{gcomm}",
            f"--wsrep-provider-options={provider_options}",
            "--wsrep-sst-method=rsync",
            "--wsrep-slave-threads=2",
            *self._extra_args,
        ]
        if new_cluster:
            args.append("--wsrep-new-cluster")
        return args

    def _launch(self, i: int, *, new_cluster: bool) -> None:
        """(Re)create node ``i``'s container on its datadir and note its port and pid."""
        server = self._servers[i]
        if i > 0 and not (Path(self.nodes[i].datadir) / "ibdata1").exists():
            self._hand_over(Path(self.nodes[i].datadir))
        try:
            server.recreate(self._server_args(i, new_cluster=new_cluster))
        except ContainerError as exc:
            raise GaleraError(f"Galera node {i} cannot start: {exc}") from None
        self._running.add(i)
        node = self.nodes[i]
        self.nodes[i] = GaleraNode(
            index=i,
            port=server.port,
            datadir=node.datadir,
            pid=server.pid(),
            container=server.name,
            address=node.address,
            password=node.password,
        )

    def _hand_over(self, datadir: Path) -> None:
        """Give a joiner's empty datadir to the image's ``mysql`` user.

        The joiner's rsync daemon runs as that user and must own what it fills. Its ids
        are read from node 0's datadir, which node 0's entrypoint gave to it.
        """
        owner = (Path(self.nodes[0].datadir)).stat()
        for path in (datadir, datadir / "mysql"):
            os.chown(path, owner.st_uid, owner.st_gid)

    def _log_report(self, i: int) -> str:
        """Tails of node ``i``'s logs, for exception messages.

        The node's last ``[ERROR]`` lines come first (they may be older than the tail).
        State transfer errors are often only explained in the donor's log, so the last
        SST-related lines of every other node are added.
        """
        node = self.nodes[i]
        log = tail(node.error_log, 2000).splitlines()
        last = log[-LOG_TAIL_LINES:]
        errors = [line for line in log[:-LOG_TAIL_LINES] if "[ERROR]" in line][-10:]
        parts = []
        if errors:
            parts.append(f"--- earlier errors in {node.error_log} ---\n" + "\n".join(errors))
        parts.append(f"--- tail of {node.error_log} ---\n" + "\n".join(last))
        output = self._servers[i].logs(10)
        if output:
            parts.append(f"--- docker logs {node.container} ---\n{output}")
        for other in self.nodes:
            if other.index == i:
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
        if i not in self._running:
            raise GaleraError(f"Galera node {i} is not running (killed?)")
        if not self._servers[i].running():
            raise GaleraError(
                f"Galera node {i} (container {self.nodes[i].container}) has stopped\n"
                + self._log_report(i)
            )

    @staticmethod
    def _node_state(node: GaleraNode, cluster_size: int) -> tuple[bool, str]:
        """Check one node over TCP: (ready, short description of the state seen)."""
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
        while True:
            self._check_alive(i)
            ok, why = self._node_state(node, cluster_size)
            if ok:
                return
            if time.monotonic() >= deadline:
                raise GaleraError(
                    f"Galera node {i} (127.0.0.1:{node.port}) not synced in time "
                    f"(last state: {why})\n" + self._log_report(i)
                )
            time.sleep(_POLL_INTERVAL)

    def _wait_evicted(self, i: int, deadline: float) -> None:
        """Wait until the running nodes no longer count dead node ``i``.

        After a kill the others keep the dead member in their view until
        ``evs.suspect_timeout`` (5 s) expires; a new instance started earlier is only
        admitted after that, and its joining is slower and noisier.
        """
        alive = [n for n in self.nodes if n.index != i and n.index in self._running]
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
                    f"(wsrep_cluster_size {sizes}, want {want})\n"
                    + self._log_report(alive[0].index)
                )
            time.sleep(_POLL_INTERVAL)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Start a cluster, print its URLs and keep it running until interrupted.

    The node URLs are printed to stdout, one per line; a shell hint goes to stderr.
    The cluster is torn down on Ctrl-C or SIGTERM.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        Process exit status: 0 after a normal interrupt, 1 if the cluster could not be
        started or a node died, 2 if no Docker engine answers.
    """
    parser = argparse.ArgumentParser(
        prog="python -m batchflag_db.testing.galera",
        description="Run a throwaway MariaDB Galera cluster in containers until Ctrl-C / SIGTERM.",
    )
    parser.add_argument("--size", type=int, default=3, help="number of nodes")
    parser.add_argument("--base-dir", default=None, help="parent directory for the datadirs")
    parser.add_argument("--timeout", type=float, default=180, help="seconds allowed for startup")
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
