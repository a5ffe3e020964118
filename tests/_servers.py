"""How the test suite gets its server, in order:

1. a URL from ``BATCHFLAG_TEST_DATABASE_URL`` (e.g. a MySQL 8.4 someone runs);
2. a throwaway server started from local ``mariadbd``/``mysqld`` binaries;
3. a MySQL container through testcontainers, where a Docker engine answers;
4. otherwise a failure saying which of the three to provide. Never a silent skip.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from batchflag_db.config import normalize_url
from batchflag_db.server import ServerNotAvailableError, ThrowawayServer

URL_VARIABLE = "BATCHFLAG_TEST_DATABASE_URL"

NO_SERVER_MESSAGE = (
    "no database server for the tests. Provide one of: "
    f"(1) {URL_VARIABLE}=mysql+pymysql://USER:PASSWORD@HOST:PORT/ (the tests create and drop "
    "their own databases there); (2) local server binaries, e.g. `apt-get install mariadb-server` "
    "(mariadbd/mysqld on PATH or in /usr/sbin); (3) a running Docker engine for testcontainers."
)


def _docker_answers(environ: dict[str, str]) -> str | None:
    """Return None if a Docker engine answers /_ping, else why not.

    Probed with a plain socket: docker-py leaks its socket when the engine is absent.
    """
    host = environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: object = host.removeprefix("unix://")
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


@contextlib.contextmanager
def acquire_server(environ: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """Yield (server URL without database, how it was found); tear down what it started."""
    environ = dict(os.environ) if environ is None else environ
    given = environ.get(URL_VARIABLE)
    if given:
        url = normalize_url(given)._replace(database=None)
        yield url.render_as_string(hide_password=False), f"{URL_VARIABLE}"
        return
    try:
        server = ThrowawayServer()
    except ServerNotAvailableError as local_error:
        docker_error = _docker_answers(environ)
        if docker_error is not None:
            raise RuntimeError(
                f"{NO_SERVER_MESSAGE}\n  local binaries: {local_error}\n  docker: {docker_error}"
            ) from None
        try:  # testcontainers >= 4.15 moved the class
            from testcontainers.community.mysql import MySqlContainer  # noqa: PLC0415
        except ImportError:  # pragma: no cover - older testcontainers
            from testcontainers.mysql import MySqlContainer  # noqa: PLC0415

        with MySqlContainer("mysql:8.4", username="root", password="test") as container:  # noqa: S106 - a throwaway container
            host = container.get_container_host_ip()
            port = container.get_exposed_port(3306)
            yield f"mysql+pymysql://root:test@{host}:{port}/", "testcontainers mysql:8.4"
        return
    with server:
        yield (
            server.url,
            f"throwaway {server.flavour} server ({server.binary}) on port {server.port}",
        )
