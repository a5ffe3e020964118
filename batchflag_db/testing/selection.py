"""How a test session gets its server, tried in this order.

1. a URL from ``BATCHFLAG_TEST_DATABASE_URL`` (e.g. a MySQL someone runs);
2. an image from ``BATCHFLAG_TEST_IMAGE``: any image that honours the official
   mariadb/mysql images' environment (``MYSQL_ROOT_PASSWORD``...), started through
   testcontainers (:mod:`batchflag_db.testing.containers`);
3. the image of the asked-for kind (``BATCHFLAG_TEST_SERVER``, default ``mariadb-10.11``)
   through testcontainers, where a Docker engine answers: built here from the kind's
   Debian root if it is missing (:mod:`batchflag_db.testing.images`);
4. a throwaway server process of that kind, from the host's binaries when they are that
   kind, else from the kind's cached Debian root (built on first use);
5. otherwise a failure saying which of them to provide. Never a silent skip.

A container gets the same server options a throwaway process does
(:func:`batchflag_db.testing.settings.server_settings`), as command arguments.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pymysql
from sqlalchemy.engine import URL, make_url

from batchflag_db.config import normalize_url
from batchflag_db.testing.binaries import ServerBinaries, ServerNotAvailableError, binaries_for
from batchflag_db.testing.containers import ServerContainer, engine_problem
from batchflag_db.testing.images import ImageNotAvailableError, ensure_image
from batchflag_db.testing.kinds import KIND_VARIABLE, KINDS, ServerKind, kind_named
from batchflag_db.testing.server import ThrowawayServer
from batchflag_db.testing.settings import server_settings

__all__ = [
    "IMAGE_VARIABLE",
    "URL_VARIABLE",
    "NoServerError",
    "SessionServer",
    "acquire_server",
    "kind_of_version",
    "plain_loopback_options",
    "server_version",
]

URL_VARIABLE = "BATCHFLAG_TEST_DATABASE_URL"
IMAGE_VARIABLE = "BATCHFLAG_TEST_IMAGE"

NO_SERVER_MESSAGE = (
    "no database server for the tests. Provide one of: "
    f"(1) {URL_VARIABLE}=mysql+pymysql://USER:PASSWORD@HOST:PORT/ (the tests create and drop "
    f"their own databases there); (2) {IMAGE_VARIABLE}=IMAGE, an image that takes "
    "MYSQL_ROOT_PASSWORD like the official mariadb/mysql ones, and a running Docker engine; "
    f"(3) a running Docker engine (Debian: apt-get install docker.io) with root rights and "
    f"`apt-get install debootstrap`, to build the kind's image ({KIND_VARIABLE}, default "
    "mariadb-10.11) from its Debian root; (4) local server binaries of that kind "
    "(mariadb-10.11: `apt-get install mariadb-server`), or root rights and debootstrap to "
    "build its Debian root."
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


def _binaries(kind: ServerKind | None) -> ServerBinaries | None:
    """The kind's local binaries, for second servers and client tools, if they are here."""
    if kind is None:
        return None
    with contextlib.suppress(ServerNotAvailableError):
        return binaries_for(kind)
    return None


@contextlib.contextmanager
def _in_container(image: str, kind: ServerKind | None, note: str = "") -> Iterator[SessionServer]:
    """Run ``image`` through testcontainers for the session; remove it afterwards."""
    args = server_settings(kind.flavour if kind else None)
    with ServerContainer(image, args=args) as container:
        version = server_version(container.url)
        found = kind or kind_of_version(version)
        yield SessionServer(
            container.url,
            f"testcontainers {container.describe()}{note}",
            found,
            version,
            _binaries(found),
        )


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
        yield SessionServer(url, URL_VARIABLE, found, version, _binaries(found))
        return
    image = environ.get(IMAGE_VARIABLE)
    if image:
        with _in_container(image, kind) as found_server:
            yield found_server
        return
    kind = kind or kind_named(None)
    docker_problem = engine_problem(environ)
    if docker_problem is None:
        try:
            image = ensure_image(kind, environ)
        except ImageNotAvailableError as exc:
            docker_problem = f"{kind.name}'s image: {exc}"
        else:
            with _in_container(image, kind) as found_server:
                yield found_server
            return
    try:
        server = ThrowawayServer(kind=kind)
    except ServerNotAvailableError as local_error:
        raise NoServerError(
            f"{NO_SERVER_MESSAGE}\n  docker: {docker_problem}\n  {kind.name} locally: {local_error}"
        ) from None
    with server:
        url = make_url(server.url)._replace(database=None)
        yield SessionServer(
            url,
            f"throwaway {kind.name} server, {server.binaries.describe()}, port {server.port}",
            kind,
            server_version(url),
            server.binaries,
        )
