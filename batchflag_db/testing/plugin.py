"""An opt-in pytest plugin: a real server, a fresh database per test, a migrated one.

Load it from your own ``conftest.py``; installing the package never loads it::

    pytest_plugins = ["batchflag_db.testing.plugin"]

The server is chosen once per run (:func:`batchflag_db.testing.selection.acquire_server`):
``BATCHFLAG_TEST_DATABASE_URL`` if set; else a container of ``BATCHFLAG_TEST_IMAGE``;
else, for the kind named by ``--batchflag-server`` / ``BATCHFLAG_TEST_SERVER``
(``mariadb-10.11``, ``mariadb-11.8``, ``mysql-9.7``), a container of the kind's image
where a Docker engine answers, or a throwaway server process. It starts when the session
starts, in the pytest-xdist controller, and the workers reuse it; a container is removed
when the session ends (also on Ctrl-C and SIGTERM). The report header shows its
``SELECT VERSION()`` and, for a container, the image and the container's id and name.
If no server can be had, every test that asks for one fails with the reason: never a
silent skip.

Fixtures, each an override point (define one of the same name in your conftest):

* ``batchflag_server`` (session): the :class:`~batchflag_db.testing.selection.SessionServer`;
* ``server_url`` (session): its URL, without a database;
* ``db_url``: a fresh, empty database for this test only, dropped afterwards;
* ``migrated_template`` (session): the name of a database migrated to head once per
  session (per pytest-xdist worker), dropped at the end; the source of the copies;
* ``migrated_url``: ``db_url`` holding a copy of ``migrated_template``
  (:func:`~batchflag_db.testing.template.copy_database`): the same tables, rows, indexes
  and routines as ``batchflag upgrade head`` makes, in a fraction of the time (override
  to run your own Alembic chain instead);
* ``freshly_migrated_url``: ``db_url`` after a real ``batchflag upgrade head``, for a
  test about what the migrations themselves do;
* ``engine``: a SQLAlchemy Engine on ``migrated_url``;
* ``throwaway_server``: a factory of extra servers of the session's kind (for dump and
  restore, crash and restart), each stopped at the end of the test.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Engine

from batchflag_db import migrate
from batchflag_db.testing.kinds import KIND_VARIABLE, KINDS
from batchflag_db.testing.selection import (
    URL_VARIABLE,
    SessionServer,
    acquire_server,
    plain_loopback_options,
)
from batchflag_db.testing.server import ThrowawayServer
from batchflag_db.testing.template import copy_database

__all__ = [
    "batchflag_server",
    "db_url",
    "engine",
    "freshly_migrated_url",
    "migrated_template",
    "migrated_url",
    "server_url",
    "throwaway_server",
]

_SERVER = pytest.StashKey[SessionServer]()
_PROBLEM = pytest.StashKey[str]()
_STACK = pytest.StashKey[contextlib.ExitStack]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--batchflag-server KIND`` (and the ini setting of the same name)."""
    help_text = f"server kind for batchflag-db tests: {', '.join(KINDS)} (env {KIND_VARIABLE})"
    parser.addoption("--batchflag-server", metavar="KIND", choices=list(KINDS), help=help_text)
    parser.addini("batchflag_server", help_text)


def _asked_kind(config: pytest.Config) -> str | None:
    option = config.getoption("--batchflag-server")
    ini = config.getini("batchflag_server")
    return option or os.environ.get(KIND_VARIABLE) or (str(ini) if ini else None)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Acquire the run's server once, before the header is printed and workers start."""
    config = session.config
    stack = contextlib.ExitStack()
    config.stash[_STACK] = stack
    try:
        server = stack.enter_context(acquire_server(_asked_kind(config)))
    except Exception as exc:
        config.stash[_PROBLEM] = f"{type(exc).__name__}: {exc}"
        return
    config.stash[_SERVER] = server
    if not hasattr(config, "workerinput"):  # the controller: xdist workers reuse this server
        os.environ[URL_VARIABLE] = server.url.render_as_string(hide_password=False)
        if server.kind is not None:
            os.environ[KIND_VARIABLE] = server.kind.name


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop what :func:`pytest_sessionstart` started."""
    stack = session.config.stash.get(_STACK, None)
    if stack is not None:
        stack.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Name the server and its ``SELECT VERSION()`` at the top of the run."""
    server = config.stash.get(_SERVER, None)
    if server is None:
        return [f"batchflag-db server: NONE ({config.stash.get(_PROBLEM, 'not acquired')})"]
    kind = server.kind.name if server.kind else "no known kind"
    return [f"batchflag-db server: {kind}, SELECT VERSION() = {server.version}, via {server.how}"]


@pytest.fixture(scope="session")
def batchflag_server(pytestconfig: pytest.Config) -> SessionServer:
    """The run's server (see the module docstring for how it is chosen)."""
    server = pytestconfig.stash.get(_SERVER, None)
    if server is None:
        pytest.fail(pytestconfig.stash.get(_PROBLEM, "no server acquired"), pytrace=False)
    return server


@pytest.fixture(scope="session")
def server_url(batchflag_server: SessionServer) -> URL:
    """The run's server, as a URL without a database."""
    return batchflag_server.url


def _admin(url: URL) -> pymysql.Connection:
    return pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        autocommit=True,
        **plain_loopback_options(url),
    )


@pytest.fixture
def db_url(server_url: URL) -> Iterator[URL]:
    """A fresh, empty database for this test only; dropped afterwards."""
    name = f"bft_{uuid.uuid4().hex[:12]}"
    admin = _admin(server_url)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
        yield server_url.set(database=name)
    finally:
        try:
            _drop_database(admin, name)
        finally:
            admin.close()


def _drop_database(admin: pymysql.Connection, name: str) -> None:
    """Drop the test's database, first ending any session still using it.

    A connection the test left open inside a transaction holds a metadata lock on its
    tables, and DROP DATABASE would wait for it (on MySQL for a year by default).
    Only sessions whose current database is the test's own are ended.
    """
    with admin.cursor() as cur:
        cur.execute("SET SESSION lock_wait_timeout = 60")
        cur.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
            (name,),
        )
        for (session,) in cur.fetchall():
            with contextlib.suppress(pymysql.err.OperationalError):  # it ended meanwhile
                cur.execute(f"KILL {int(session)}")
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="session")
def migrated_template(server_url: URL) -> Iterator[str]:
    """A database upgraded to head once for the session (per xdist worker); dropped at the end.

    Tests never use it directly: ``migrated_url`` copies it. Its name starts with
    ``bft_tpl_``, so it is told apart from the tests' own databases.
    """
    name = f"bft_tpl_{uuid.uuid4().hex[:12]}"
    admin = _admin(server_url)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
        migrate.upgrade(server_url.set(database=name))
        yield name
    finally:
        try:
            _drop_database(admin, name)
        finally:
            admin.close()


@pytest.fixture
def migrated_url(db_url: URL, migrated_template: str) -> URL:
    """A fresh database at batchflag-db's head revision: a copy of ``migrated_template``."""
    admin = _admin(db_url)
    try:
        copy_database(admin, migrated_template, str(db_url.database))
    finally:
        admin.close()
    return db_url


@pytest.fixture
def freshly_migrated_url(db_url: URL) -> URL:
    """A fresh database upgraded to head by the migrations themselves (no copy)."""
    migrate.upgrade(db_url)
    return db_url


@pytest.fixture
def engine(migrated_url: URL) -> Iterator[Engine]:
    """A SQLAlchemy Engine on the migrated database (no pooling); disposed afterwards.

    Through PyMySQL to a server on this machine it connects without TLS
    (:func:`~batchflag_db.testing.selection.plain_loopback_options`).
    """
    options = (
        plain_loopback_options(migrated_url) if migrated_url.get_driver_name() == "pymysql" else {}
    )
    eng = create_engine(migrated_url, poolclass=pool.NullPool, connect_args=options)
    yield eng
    eng.dispose()


@pytest.fixture
def throwaway_server(batchflag_server: SessionServer) -> Iterator[Callable[..., ThrowawayServer]]:
    """A factory of extra servers of the run's kind, not yet started; all stopped afterwards.

    Keyword arguments go to :class:`~batchflag_db.testing.server.ThrowawayServer`.
    """
    made: list[ThrowawayServer] = []

    def factory(**kwargs: Any) -> ThrowawayServer:
        server = ThrowawayServer(kind=batchflag_server.kind, **kwargs)
        made.append(server)
        return server

    yield factory
    for server in made:
        server.stop()
