"""How a test session gets its server, tried in this order.

1. a URL from ``BATCHFLAG_TEST_DATABASE_URL`` (e.g. a MySQL someone runs);
2. a throwaway server of the asked-for kind (``BATCHFLAG_TEST_SERVER``, default
   ``mariadb-10.11``), from the host's binaries when they are that kind, else from the
   kind's cached Debian root (built on first use);
3. a container of that kind through testcontainers, where a Docker engine answers;
4. otherwise a failure saying which of them to provide. Never a silent skip.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pymysql
from sqlalchemy.engine import URL, make_url

from batchflag_db.config import normalize_url
from batchflag_db.testing.binaries import ServerBinaries, ServerNotAvailableError, binaries_for
from batchflag_db.testing.kinds import KIND_VARIABLE, KINDS, ServerKind, kind_named
from batchflag_db.testing.server import ThrowawayServer

__all__ = [
    "URL_VARIABLE",
    "NoServerError",
    "SessionServer",
    "acquire_server",
    "kind_of_version",
    "plain_loopback_options",
    "server_version",
]

URL_VARIABLE = "BATCHFLAG_TEST_DATABASE_URL"

NO_SERVER_MESSAGE = (
    "no database server for the tests. Provide one of: "
    f"(1) {URL_VARIABLE}=mysql+pymysql://USER:PASSWORD@HOST:PORT/ (the tests create and drop "
    "their own databases there); (2) local server binaries of the kind asked for "
    f"({KIND_VARIABLE}, default mariadb-10.11: `apt-get install mariadb-server`), or, for "
    "mariadb-11.8 and mysql-9.7, root rights and `apt-get install debootstrap` to build its "
    "Debian root; (3) a running Docker engine for testcontainers."
)


class NoServerError(ServerNotAvailableError):
    """Raised when no way of getting a server for the tests worked; the message names them all."""


@dataclass(frozen=True)
class SessionServer:
    """The server a test session runs on.

    Attributes:
        url: Its URL, without a database.
        how: How it was found, for the report header.
        kind: The server kind, or None for a URL that matches none of them.
        version: Its ``SELECT VERSION()``.
        binaries: The binaries a throwaway server of this kind runs (for second
            servers and client tools), or None where the kind has none here.
    """

    url: URL
    how: str
    kind: ServerKind | None
    version: str
    binaries: ServerBinaries | None


def server_version(url: URL) -> str:
    """``SELECT VERSION()`` of the server at ``url``."""
    conn = pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        connect_timeout=10,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            row = cur.fetchone()
    finally:
        conn.close()
    return str(row[0]) if row else ""


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def plain_loopback_options(url: URL) -> dict[str, Any]:
    """PyMySQL options for the harness's own connections to ``url``: no TLS on loopback.

    PyMySQL tries TLS on every connection unless told not to, and builds a TLS context
    for it each time (it loads the system's CA bundle: tens of milliseconds a
    connection, and a handshake where the server offers TLS, as MySQL and MariaDB 11
    do). A login without a password to a server on this machine gains nothing from
    it, so the fixtures' root connections skip it (``ssl_disabled``); a login with a
    password, or to another host, keeps PyMySQL's default.
    """
    if (url.host or "localhost") in _LOOPBACK and not url.password:
        return {"ssl_disabled": True}
    return {}


def kind_of_version(version: str) -> ServerKind | None:
    """The known kind a server's ``SELECT VERSION()`` belongs to, if any."""
    return next((kind for kind in KINDS.values() if kind.matches(version)), None)


def _docker_answers(environ: dict[str, str]) -> str | None:
    """Return None if a Docker engine answers /_ping, else why not.

    Probed with a plain socket: docker-py leaks its socket when the engine is absent.
    """
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


@contextlib.contextmanager
def _container(kind: ServerKind) -> Iterator[str]:
    try:  # testcontainers >= 4.15 moved the class
        from testcontainers.community.mysql import MySqlContainer  # noqa: PLC0415
    except ImportError:  # pragma: no cover - older testcontainers
        from testcontainers.mysql import MySqlContainer  # noqa: PLC0415

    with MySqlContainer(kind.image, username="root", password="test") as container:  # noqa: S106 - a throwaway container
        host = container.get_container_host_ip()
        port = container.get_exposed_port(3306)
        yield f"mysql+pymysql://root:test@{host}:{port}/"


@contextlib.contextmanager
def acquire_server(
    kind: ServerKind | str | None = None, environ: dict[str, str] | None = None
) -> Iterator[SessionServer]:
    """Yield the session's server; tear down what was started for it.

    Args:
        kind: The server kind; None takes ``BATCHFLAG_TEST_SERVER`` from ``environ``,
            else the default. With a URL, None means "whatever the URL's server is".
        environ: The environment to read (default: ``os.environ``).

    Raises:
        NoServerError: Nothing worked; the message names every way to provide a server.
        ValueError: ``kind`` names no known kind.
    """
    environ = dict(os.environ) if environ is None else environ
    if isinstance(kind, str):
        kind = kind_named(kind)
    elif kind is None and environ.get(KIND_VARIABLE):
        kind = kind_named(environ[KIND_VARIABLE])
    given = environ.get(URL_VARIABLE)
    if given:
        url = normalize_url(given)._replace(database=None)
        version = server_version(url)
        found = kind or kind_of_version(version)
        binaries = None
        if found is not None:
            with contextlib.suppress(ServerNotAvailableError):
                binaries = binaries_for(found)
        yield SessionServer(url, URL_VARIABLE, found, version, binaries)
        return
    kind = kind or kind_named(None)
    try:
        server = ThrowawayServer(kind=kind)
    except ServerNotAvailableError as local_error:
        docker_error = _docker_answers(environ)
        if docker_error is not None:
            raise NoServerError(
                f"{NO_SERVER_MESSAGE}\n  {kind.name} locally: {local_error}\n"
                f"  docker: {docker_error}"
            ) from None
        with _container(kind) as container_url:
            url = make_url(container_url)._replace(database=None)
            yield SessionServer(
                url, f"testcontainers {kind.image}", kind, server_version(url), None
            )
        return
    with server:
        url = make_url(server.url)._replace(database=None)
        yield SessionServer(
            url,
            f"throwaway {kind.name} server, {server.binaries.describe()}, port {server.port}",
            kind,
            server_version(url),
            server.binaries,
        )
