"""One server in a container, and the Docker network a cluster's containers share.

:class:`ContainerServer` owns one containerised server's life, the way pytest-mysql's
executor owns a server process: it runs an image that honours the official mariadb/mysql
images' environment (``MYSQL_ROOT_PASSWORD``...; this project's images do,
:mod:`batchflag_db.testing.images`) with extra server options as command arguments, on a
network under an alias, with its datadir bind-mounted from a host directory and port
3306 published on 127.0.0.1; it waits until a TCP login works, tails the logs, stops,
kills (``docker kill -s KILL``), re-creates the container on the same datadir and
removes it. :class:`DockerNetwork` is a user-defined bridge of its own for a cluster,
so that every node has its own address and the nodes find each other by alias.

Everything goes through the ``docker`` command. Every container and network carries the
labels of :mod:`batchflag_db.testing.containers` (``batchflag-db.suite=1`` and its owner:
host name, process id and that process's start time), as the test session's own server
does: what this process leaves at exit is removed by an ``atexit`` hook, and what a
killed owner left is removed by :func:`remove_stale`, which never touches anything whose
owner still runs.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pymysql

from batchflag_db.testing.containers import (
    OWNER_HOST_LABEL,
    SUITE_LABEL,
    _owner_alive,  # the one owner check, shared with the session's container
    owner_labels,
)
from batchflag_db.testing.containers import remove_stale as remove_stale_containers

__all__ = [
    "ContainerError",
    "ContainerServer",
    "DockerNetwork",
    "NodeSet",
    "connect_root",
    "docker",
    "docker_problem",
    "labelled_names",
    "owner_labels",
    "remove_directory",
    "remove_stale",
]

#: Where the images keep the datadir (the official images' place).
DATADIR = "/var/lib/mysql"

_DOCKER_TIMEOUT = 180
_POLL_INTERVAL = 0.25

# Containers and networks made here and not removed yet, removed at interpreter exit.
_LIVE_CONTAINERS: set[ContainerServer] = set()
_LIVE_NETWORKS: set[DockerNetwork] = set()
_LIVE_LOCK = threading.Lock()


class ContainerError(RuntimeError):
    """Raised when the engine refuses a command or a server does not come up; says why."""


def _docker_command() -> str:
    docker = shutil.which("docker")
    if docker is None:
        raise ContainerError(
            "the docker command is not installed (Debian: apt-get install docker.io)"
        )
    return docker


def docker(*args: str, timeout: float = _DOCKER_TIMEOUT, check: bool = True) -> str:
    """Run ``docker ARGS`` and return its stdout, stripped.

    Raises:
        ContainerError: The command failed (with ``check``) or took longer than ``timeout``.
    """
    try:
        done = subprocess.run(  # noqa: S603 - the docker CLI with our own arguments
            [_docker_command(), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise ContainerError(f"docker {' '.join(args[:3])} took over {timeout:.0f}s") from None
    if check and done.returncode != 0:
        raise ContainerError(
            f"docker {' '.join(args[:3])} failed (exit {done.returncode}): "
            f"{done.stderr.strip()[-1500:]}"
        )
    return done.stdout.strip()


def docker_problem() -> str | None:
    """Return None if the ``docker`` command is installed and an engine answers, else why not."""
    try:
        version = docker("version", "--format", "{{.Server.Version}}", timeout=30, check=False)
    except ContainerError as exc:
        return str(exc)
    if not version:
        return (
            "no Docker engine answers the docker command (is dockerd running, and may this "
            "user use /var/run/docker.sock?)"
        )
    return None


def _label_args() -> list[str]:
    return [arg for key, value in owner_labels().items() for arg in ("--label", f"{key}={value}")]


def _owner_gone(labels: Mapping[str, str]) -> bool:
    """Tell whether the owner named in ``labels`` was a process of this host that has ended."""
    here = labels.get(OWNER_HOST_LABEL) == socket.gethostname()
    return here and not _owner_alive(dict(labels))


def _labels_of(kind: str, name: str) -> dict[str, str]:
    """The labels of container or network ``name`` (empty if it is gone)."""
    field = "{{json .Config.Labels}}" if kind == "container" else "{{json .Labels}}"
    text = docker(kind, "inspect", "--format", field, name, check=False)
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in (found or {}).items()}


def labelled_names(kind: str) -> list[str]:
    """The names of every ``"container"`` or ``"network"`` labelled ``batchflag-db.suite``.

    Raises:
        ContainerError: No engine answers.
    """
    if kind == "container":
        listing = docker("ps", "-a", "--filter", f"label={SUITE_LABEL}", "--format", "{{.Names}}")
    else:
        listing = docker(
            "network", "ls", "--filter", f"label={SUITE_LABEL}", "--format", "{{.Name}}"
        )
    return listing.split()


def remove_stale() -> list[str]:
    """Remove the labelled containers and networks whose owner process here has ended.

    Containers go first (:func:`batchflag_db.testing.containers.remove_stale`, which the
    test session's own server shares), then the networks. Anything whose owner still
    runs, or that another machine made, is kept.

    Returns:
        The names removed (containers first, then networks).
    """
    removed = remove_stale_containers()
    for name in labelled_names("network"):
        if _owner_gone(_labels_of("network", name)):
            docker("network", "rm", name, check=False)
            removed.append(name)
    return removed


@atexit.register
def _remove_live() -> None:
    """Remove every container and network this process made and still has."""
    with _LIVE_LOCK:
        containers = list(_LIVE_CONTAINERS)
        networks = list(_LIVE_NETWORKS)
    for container in containers:
        with contextlib.suppress(Exception):  # best effort at exit: the next run cleans up
            container.remove()
    for network in networks:
        with contextlib.suppress(Exception):
            network.remove()


def connect_root(
    port: int, password: str, *, database: str | None = None, timeout: float = 10
) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    """Open an autocommit PyMySQL connection as root to 127.0.0.1:``port``.

    Args:
        port: A server's published port.
        password: root's password.
        database: Default database, if any.
        timeout: Connect/read/write timeout in seconds.

    Returns:
        A new connection; the caller closes it.
    """
    t = max(1, int(timeout))
    return pymysql.connect(
        host="127.0.0.1",
        port=port,
        user="root",
        password=password,
        database=database,
        connect_timeout=t,
        read_timeout=t,
        write_timeout=t,
        autocommit=True,
    )


class DockerNetwork:
    """A labelled user-defined bridge network of its own, for one cluster.

    Attributes:
        name: The network's name, unique to this run (``PREFIX-<random>``).
    """

    def __init__(self, prefix: str) -> None:
        """Name a network; nothing is made until :meth:`create`."""
        self.name = f"{prefix}-{secrets.token_hex(4)}"
        self._created = False

    def create(self) -> None:
        """Make the network.

        Raises:
            ContainerError: The engine refused.
        """
        with _LIVE_LOCK:
            _LIVE_NETWORKS.add(self)
        docker("network", "create", "--driver", "bridge", *_label_args(), self.name)
        self._created = True

    def subnet(self) -> str:
        """The network's IPv4 subnet, e.g. ``172.18.0.0/16``.

        Raises:
            ContainerError: The engine does not know the network.
        """
        text = docker(
            "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", self.name
        )
        subnets = [s for s in text.split() if "." in s]
        if not subnets:
            raise ContainerError(f"network {self.name} has no IPv4 subnet ({text!r})")
        return subnets[0]

    def remove(self) -> None:
        """Remove the network (idempotent); its containers must be removed first."""
        if self._created:
            docker("network", "rm", self.name, check=False)
            self._created = False
        with _LIVE_LOCK:
            _LIVE_NETWORKS.discard(self)


class ContainerServer:
    """One MariaDB/MySQL server in a container, reached on 127.0.0.1 through a published port.

    The datadir (``/var/lib/mysql``) is the host directory ``datadir``, bind-mounted, so
    it outlives the container: :meth:`recreate` starts a new container on it.

    Attributes:
        name: The container's name.
        alias: Its host name and alias on ``network`` (how the other nodes reach it).
        datadir: The host directory mounted as the datadir.
        password: root's password (``MYSQL_ROOT_PASSWORD`` on a first start).
        port: The published port on 127.0.0.1 (0 until first started; kept afterwards).
    """

    def __init__(
        self,
        image: str,
        *,
        name: str,
        datadir: Path,
        password: str,
        network: DockerNetwork | None = None,
        alias: str | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        """Describe a container; nothing runs until :meth:`start`.

        Args:
            image: The image (it must exist; nothing is pulled).
            name: The container's name.
            datadir: Host directory for the datadir; it must exist.
            password: root's password, given as ``MYSQL_ROOT_PASSWORD``.
            network: The network to join (default: Docker's default bridge).
            alias: Host name and network alias (default: ``name``).
            environment: More environment variables.
        """
        self.image = image
        self.name = name
        self.alias = alias or name
        self.datadir = datadir
        self.password = password
        self.port = 0
        self._network = network
        self._environment = {"MYSQL_ROOT_PASSWORD": password, **(environment or {})}

    def __repr__(self) -> str:
        """The container's name and port."""
        return f"ContainerServer({self.name!r}, port={self.port})"

    @property
    def url(self) -> str:
        """``mysql+pymysql://root:PASSWORD@127.0.0.1:PORT/``."""
        return f"mysql+pymysql://root:{self.password}@127.0.0.1:{self.port}/"

    def start(self, args: Sequence[str] = ()) -> None:
        """Create and start the container with server options ``args``; do not wait.

        The first start publishes 3306 on a free port of 127.0.0.1; later starts (see
        :meth:`recreate`) ask for the same port, so URLs stay valid.

        Raises:
            ContainerError: The engine refused (the image is missing, the name is taken...).
        """
        publish = f"127.0.0.1:{self.port}:3306" if self.port else "127.0.0.1::3306"
        command = ["run", "--detach", "--name", self.name, "--hostname", self.alias]
        if self._network is not None:
            command += ["--network", self._network.name, "--network-alias", self.alias]
        command += ["--publish", publish, "--volume", f"{self.datadir}:{DATADIR}"]
        command += _label_args()
        for key, value in self._environment.items():
            command += ["--env", f"{key}={value}"]
        with _LIVE_LOCK:
            _LIVE_CONTAINERS.add(self)
        docker(*command, self.image, *args)
        if not self.port:
            mapped = docker("port", self.name, "3306/tcp").splitlines()
            self.port = int(mapped[0].rsplit(":", 1)[1])

    def recreate(self, args: Sequence[str] = ()) -> None:
        """Remove the container (if any) and start a new one on the same datadir and port.

        Raises:
            ContainerError: The engine refused.
        """
        docker("rm", "--force", "--volumes", self.name, check=False)
        self.start(args)

    def pid(self) -> int:
        """The host's process id of the server (the container's PID 1), or 0 if not running."""
        text = docker("inspect", "--format", "{{.State.Pid}}", self.name, check=False)
        return int(text) if text.isdigit() else 0

    def running(self) -> bool:
        """Tell whether the container runs."""
        state = docker("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return state == "true"

    def logs(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the container's output (stdout and stderr)."""
        with contextlib.suppress(ContainerError):
            done = subprocess.run(  # noqa: S603 - the docker CLI with our own arguments
                [_docker_command(), "logs", "--tail", str(lines), self.name],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            return (done.stdout + done.stderr).strip()
        return ""

    def connect(
        self, *, database: str | None = None, timeout: float = 10
    ) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        """Open an autocommit PyMySQL connection as root through the published port."""
        return connect_root(self.port, self.password, database=database, timeout=timeout)

    def wait_ready(self, deadline: float) -> None:
        """Wait until a TCP login as root works.

        Args:
            deadline: A ``time.monotonic()`` value.

        Raises:
            ContainerError: The container stopped, or no login worked by ``deadline``;
                the message has the tail of its output.
        """
        while True:
            if not self.running():
                raise ContainerError(
                    f"container {self.name} stopped before it took a login:\n{self.logs()}"
                )
            try:
                self.connect(timeout=5).close()
                return
            except pymysql.MySQLError as exc:
                if time.monotonic() >= deadline:
                    raise ContainerError(
                        f"container {self.name} (127.0.0.1:{self.port}) took no login in time "
                        f"({exc}):\n{self.logs()}"
                    ) from None
            time.sleep(_POLL_INTERVAL)

    def stop(self, timeout: float = 30) -> None:
        """Stop the server cleanly (SIGTERM, then SIGKILL after ``timeout``); keep the container."""
        docker("stop", "--time", str(int(timeout)), self.name, check=False, timeout=timeout + 60)

    def kill(self) -> None:
        """``kill -9`` the server (``docker kill -s KILL``) and wait until it is gone."""
        docker("kill", "--signal", "KILL", self.name, check=False)
        docker("wait", self.name, check=False, timeout=60)

    def remove(self) -> None:
        """Remove the container (idempotent); the datadir on the host stays."""
        docker("rm", "--force", "--volumes", self.name, check=False)
        with _LIVE_LOCK:
            _LIVE_CONTAINERS.discard(self)


class NodeSet:
    """``size`` servers on a network of their own, each with its own host datadir.

    What a cluster is made of; the topology (options, order of starts) is the cluster's.
    Node N is container ``<network>-nodeN``, with host name and network alias ``nodeN`` and
    datadir ``<base>/nodeN``; all share one root password.

    Attributes:
        servers: One :class:`ContainerServer` per node, in index order (none started).
        network: The network (None until :meth:`create` and after :meth:`remove`).
        base: The host directory holding the datadirs (None likewise).
        password: root's password on every node.
    """

    def __init__(self, prefix: str, size: int, *, parent_dir: str | None = None) -> None:
        """Describe the set; nothing is made until :meth:`create`.

        Args:
            prefix: Start of the network's and the base directory's names.
            size: Number of nodes.
            parent_dir: Where the base directory is made (default: the system temp dir).
        """
        self.servers: list[ContainerServer] = []
        self.network: DockerNetwork | None = None
        self.base: Path | None = None
        self.password = secrets.token_hex(12)
        self._prefix = prefix
        self._size = size
        self._parent_dir = parent_dir

    def create(self, image: str) -> tuple[DockerNetwork, Path]:
        """Make the base directory, the datadirs, the network and the server descriptions.

        Returns:
            The network and the base directory.

        Raises:
            ContainerError: The engine refused the network.
        """
        base = Path(tempfile.mkdtemp(prefix=f"{self._prefix}-", dir=self._parent_dir))
        network = DockerNetwork(self._prefix)
        self.base, self.network = base, network
        network.create()
        self.servers = []
        for i in range(self._size):
            datadir = base / f"node{i}"
            datadir.mkdir()
            self.servers.append(
                ContainerServer(
                    image,
                    name=f"{network.name}-node{i}",
                    alias=f"node{i}",
                    datadir=datadir,
                    password=self.password,
                    network=network,
                )
            )
        return network, base

    def remove(self) -> None:
        """Remove every container, the network and the datadirs (idempotent)."""
        for server in self.servers:
            server.remove()
        if self.network is not None:
            self.network.remove()
            self.network = None
        if self.base is not None:
            if self.servers:
                remove_directory(self.base, self.servers[0].image)
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


def remove_directory(path: Path, image: str) -> None:
    """Remove a host directory a container wrote, as root inside ``image`` if need be.

    A server in a container writes the bind-mounted datadir as its own user; a host user
    other than root may not delete those files, so what is left is removed from inside a
    throwaway container of ``image``.
    """
    shutil.rmtree(path, ignore_errors=True)
    if not path.exists():
        return
    docker(
        "run", "--rm", "--entrypoint", "rm", *_label_args(),
        "--volume", f"{path.parent}:/scratch", image, "-rf", f"/scratch/{path.name}",
        check=False,
    )  # fmt: skip
    shutil.rmtree(path, ignore_errors=True)
