"""A server in a container, started through testcontainers, labelled, and always removed.

:class:`ServerContainer` owns one container's life: it starts any image that honours the
official mariadb/mysql images' environment (``MYSQL_ROOT_PASSWORD``...; this project's
own images do, :mod:`batchflag_db.testing.images`), waits until a TCP login with the
root password works, and removes the container on :meth:`~ServerContainer.stop`.

Every container carries the label ``batchflag-db.suite=1`` and its owner (host name,
process id and that process's start time). It is removed when its owner stops it, when
the owner exits (``atexit``) and when the owner gets SIGTERM; a container whose owner
was killed outright (SIGKILL) is removed by the next run here (:func:`remove_stale`),
which never touches a container whose owner is still alive. testcontainers' own reaper
(Ryuk) is not used: its image would have to be pulled, and no registry is reachable
from these machines.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pymysql
from sqlalchemy.engine import URL

from batchflag_db.testing.binaries import ServerNotAvailableError

__all__ = [
    "OWNER_HOST_LABEL",
    "OWNER_PID_LABEL",
    "OWNER_START_LABEL",
    "SUITE_LABEL",
    "ContainerNotReadyError",
    "ServerContainer",
    "engine_problem",
    "owner_labels",
    "remove_stale",
]

#: Set on every container this project starts.
SUITE_LABEL = "batchflag-db.suite"
#: The machine, process and process start time that owns the container.
OWNER_HOST_LABEL = "batchflag-db.owner-host"
OWNER_PID_LABEL = "batchflag-db.owner-pid"
OWNER_START_LABEL = "batchflag-db.owner-start"

_ROOT_PASSWORD_LENGTH = 16

#: Containers this process started and has not removed yet, by id.
_LIVE: dict[str, Any] = {}
_LIVE_LOCK = threading.RLock()  # re-entered by the SIGTERM handler
_HANDLERS_INSTALLED = False


class ContainerNotReadyError(ServerNotAvailableError):
    """Raised when a server container exits or takes no login in time; the message has its log."""


def engine_problem(environ: dict[str, str] | None = None) -> str | None:
    """Return None if a Docker engine answers ``/_ping``, else why not.

    Probed with a plain socket: docker-py leaks its socket when the engine is absent.
    """
    environ = dict(os.environ) if environ is None else environ
    host = environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").partition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port or 2375))
        else:
            return f"unsupported DOCKER_HOST {host!r}"
    except (OSError, ValueError) as exc:
        return f"{host}: {exc}"
    with sock:
        try:
            sock.settimeout(3)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(64)
        except OSError as exc:
            return f"no Docker engine at {host}: {exc}"
    if b" 200 " not in reply:
        return f"Docker engine at {host} answered {reply[:30]!r}"
    return None


def _start_time(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (Linux), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after its ")" are plain.
    return stat.rsplit(")", 1)[1].split()[19]


def owner_labels() -> dict[str, str]:
    """The labels that tie a container to this process."""
    pid = os.getpid()
    labels = {SUITE_LABEL: "1", OWNER_HOST_LABEL: socket.gethostname(), OWNER_PID_LABEL: str(pid)}
    start = _start_time(pid)
    if start is not None:
        labels[OWNER_START_LABEL] = start
    return labels


def _owner_alive(labels: dict[str, str]) -> bool:
    """Tell whether the process named in a container's labels still runs here."""
    try:
        pid = int(labels.get(OWNER_PID_LABEL, ""))
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    start = labels.get(OWNER_START_LABEL)
    now = _start_time(pid)
    # A different start time means the pid was reused: the owner is gone.
    return start is None or now is None or start == now


def remove_stale(client: Any = None) -> list[str]:
    """Remove the labelled containers, then networks, of this host whose owner is gone.

    A container or network of a run that is still going (its owner alive) is kept, as
    is any started from another machine. The networks are the test clusters' own
    (:mod:`batchflag_db.testing.container`); one still in use is left for later.

    Args:
        client: A ``docker.DockerClient`` (default: one from the environment).

    Returns:
        The names of the containers and networks removed.
    """
    import docker  # noqa: PLC0415 - testcontainers' dependency, loaded only when Docker is used

    own_client = client is None
    client = docker.from_env() if client is None else client
    removed = []
    try:
        host = socket.gethostname()
        for container in client.containers.list(all=True, filters={"label": SUITE_LABEL}):
            labels = container.labels or {}
            if labels.get(OWNER_HOST_LABEL) != host or _owner_alive(labels):
                continue
            with contextlib.suppress(docker.errors.NotFound):  # removed meanwhile
                container.remove(force=True, v=True)
                removed.append(str(container.name))
        for network in client.networks.list(filters={"label": SUITE_LABEL}):
            labels = network.attrs.get("Labels") or {}
            if labels.get(OWNER_HOST_LABEL) != host or _owner_alive(labels):
                continue
            with contextlib.suppress(docker.errors.APIError):  # gone, or still in use
                network.remove()
                removed.append(str(network.name))
    finally:
        if own_client:
            client.close()
    return removed


def _remove_live() -> None:
    """Remove every container this process started and still has (atexit, SIGTERM)."""
    with _LIVE_LOCK:
        left = list(_LIVE.values())
        _LIVE.clear()
    for container in left:
        with contextlib.suppress(Exception):  # best effort at exit: the next run cleans up
            container.stop()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _remove_live()
    previous = _PREVIOUS_SIGTERM.get("handler")
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


_PREVIOUS_SIGTERM: dict[str, Any] = {}


def _install_handlers() -> None:
    global _HANDLERS_INSTALLED  # noqa: PLW0603 - once per process
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(_remove_live)
    if threading.current_thread() is threading.main_thread():
        _PREVIOUS_SIGTERM["handler"] = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)


def _engine_is_local(client: Any) -> bool:
    """Tell whether the engine runs in this machine's network namespace (its name is ours).

    Then a port published on the engine's 127.0.0.1 is this machine's 127.0.0.1, and the
    server need not listen on every interface. testcontainers cannot tell: inside a
    container it assumes the engine is the outer host's.
    """
    try:
        return bool(client.info().get("Name") == socket.gethostname())
    except Exception:  # the engine's info is a nicety here; fall back to testcontainers' view
        return False


class ServerContainer:
    """A MariaDB/MySQL container on a published port, root logging in with a password.

    Use as a context manager::

        with ServerContainer("batchflag-db/mysql-9.7:3f2a9c1b0d4e") as server:
            print(server.url)   # mysql+pymysql://root:PASSWORD@127.0.0.1:PORT/

    Args:
        image: Any image that honours the official images' environment contract.
        args: Server options, passed as the container's command (``--log-bin``...).
        env: More environment (``MYSQL_DATABASE``, ``MYSQL_USER``...); the root
            password is always set, from ``password``.
        password: Root's password (default: a random one).
        name: The container's name (default: ``batchflag-db-<pid>-<random>``).
        ready_timeout: Seconds to wait for a root login before giving up.
    """

    def __init__(
        self,
        image: str,
        *,
        args: list[str] | tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        password: str | None = None,
        name: str | None = None,
        ready_timeout: float = 180.0,
    ) -> None:
        self.image = image
        self.args = list(args)
        self.password = password or secrets.token_hex(_ROOT_PASSWORD_LENGTH // 2)
        self.env = {**(env or {}), "MYSQL_ROOT_PASSWORD": self.password}
        self.name = name or f"batchflag-db-{os.getpid()}-{secrets.token_hex(3)}"
        self.ready_timeout = ready_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self._container: Any = None
        #: The container's id (empty before :meth:`start`).
        self.id = ""

    @property
    def url(self) -> URL:
        """The server as root, without a database."""
        return URL.create(
            "mysql+pymysql",
            username="root",
            password=self.password,
            host=self.host,
            port=self.port,
        )

    def describe(self) -> str:
        """One line for logs: the image and the container."""
        return f"image {self.image}, container {self.id[:12]} ({self.name})"

    def start(self) -> ServerContainer:
        """Start the container and wait until root can log in over TCP.

        Raises:
            ContainerNotReadyError: It exited, or took no login within ``ready_timeout``;
                the message has the end of its log.
        """
        os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
        from testcontainers.core.container import DockerContainer  # noqa: PLC0415 - optional

        _install_handlers()
        container = DockerContainer(self.image, name=self.name, labels=owner_labels())
        container.with_envs(**self.env).with_command(self.args)
        client = container.get_docker_client().client
        local = _engine_is_local(client)
        if local:
            # docker-py takes (host address,) for "any free port on that address";
            # testcontainers' own annotation knows port numbers only.
            container.ports["3306/tcp"] = ("127.0.0.1",)  # type: ignore[assignment]
        else:
            container.with_exposed_ports(3306)
        remove_stale(client)
        try:
            container.start()
        except BaseException:
            with contextlib.suppress(Exception):  # created but not started: remove it
                container.stop()
            raise
        self._container = container
        self.id = container.get_container_id()
        with _LIVE_LOCK:
            _LIVE[self.id] = container
        try:
            host = "127.0.0.1" if local else container.get_container_host_ip()
            self.host = "127.0.0.1" if host == "localhost" else host
            self.port = int(container.get_exposed_port(3306))
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = "no attempt yet"
        while True:
            try:
                conn = pymysql.connect(
                    host=self.host,
                    port=self.port,
                    user="root",
                    password=self.password,
                    connect_timeout=5,
                )
            except pymysql.err.OperationalError as exc:
                last = str(exc)
            else:
                conn.close()
                return
            status = self.status()
            if status not in {"created", "running"}:
                raise ContainerNotReadyError(
                    f"container {self.describe()} {status} before taking a login "
                    f"({last}); its log ends:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ContainerNotReadyError(
                    f"container {self.describe()} took no root login within "
                    f"{self.ready_timeout:.0f}s ({last}); its log ends:\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def status(self) -> str:
        """The container's state (``running``, ``exited``...), or ``removed``."""
        if self._container is None:
            return "removed"
        try:
            wrapped = self._container.get_wrapped_container()
            wrapped.reload()
        except Exception:  # docker.errors.NotFound and transport errors alike
            return "removed"
        return str(wrapped.status)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the container's output (the server's error log)."""
        if self._container is None:
            return "(no container)"
        try:
            out, err = self._container.get_logs()
        except Exception as exc:  # best effort, for an error message
            return f"(no log: {exc})"
        text = (out + err).decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Remove the container (and its anonymous volumes); nothing is kept."""
        container, self._container = self._container, None
        if container is None:
            return
        with _LIVE_LOCK:
            _LIVE.pop(self.id, None)
        container.stop()

    def __enter__(self) -> ServerContainer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
