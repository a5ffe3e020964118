"""How the test suite gets its server, in order:

1. a URL from ``BATCHFLAG_TEST_DATABASE_URL`` (e.g. a MySQL 8.4 someone runs);
2. a throwaway server started from local ``mariadbd``/``mysqld`` binaries;
3. a MySQL container through testcontainers, where a Docker engine answers;
4. otherwise a failure saying which of the three to provide. Never a silent skip.
"""

from __future__ import annotations

import contextlib
import os
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


def _docker_answers() -> str | None:
    """Return None if a Docker engine answers, else why not."""
    try:
        import docker  # noqa: PLC0415 - optional, only needed on this path

        docker.from_env().ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        return f"{type(exc).__name__}: {exc}"
    return None


@contextlib.contextmanager
def acquire_server(environ: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """Yield (server URL without database, how it was found); tear down what it started."""
    environ = dict(os.environ) if environ is None else environ
    given = environ.get(URL_VARIABLE)
    if given:
        url = normalize_url(given).set(database=None)
        yield url.render_as_string(hide_password=False), f"{URL_VARIABLE}"
        return
    try:
        server = ThrowawayServer()
    except ServerNotAvailableError as local_error:
        docker_error = _docker_answers()
        if docker_error is not None:
            raise RuntimeError(
                f"{NO_SERVER_MESSAGE}\n  local binaries: {local_error}\n  docker: {docker_error}"
            ) from None
        try:  # testcontainers >= 4.15 moved the class
            from testcontainers.community.mysql import MySqlContainer  # noqa: PLC0415
        except ImportError:  # pragma: no cover - older testcontainers
            from testcontainers.mysql import MySqlContainer  # noqa: PLC0415

        with MySqlContainer("mysql:8.4", username="root", password="test") as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(3306)
            yield f"mysql+pymysql://root:test@{host}:{port}/", "testcontainers mysql:8.4"
        return
    with server:
        yield server.url, f"throwaway {server.flavour} server ({server.binary}) on port {server.port}"
