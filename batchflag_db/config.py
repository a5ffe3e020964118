"""Finding the database URL: an explicit URL, a named environment, or the default variable."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from batchflag_db.errors import ConfigurationError

__all__ = ["DEFAULT_URL_VARIABLE", "describe_url", "env_variable", "normalize_url", "resolve_url"]

DEFAULT_URL_VARIABLE = "BATCHFLAG_DATABASE_URL"

_ENV_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def env_variable(env: str) -> str:
    """Return the variable holding environment ``env``'s URL (``staging`` -> ``BATCHFLAG_STAGING_DATABASE_URL``).

    Raises:
        ConfigurationError: ``env`` is not a plain name (letters, digits, underscores).
    """
    if not _ENV_NAME.match(env):
        raise ConfigurationError(
            f"invalid environment name {env!r}: use letters, digits and underscores"
        )
    return f"BATCHFLAG_{env.upper()}_DATABASE_URL"


_DRIVER_PACKAGES = {
    "pymysql": "PyMySQL",
    "mysqldb": "mysqlclient",
    "mysqlconnector": "mysql-connector-python",
    "mariadbconnector": "mariadb",
    "aiomysql": "'batchflag-db[aio]'",
    "asyncmy": "asyncmy",
}
"""The pip package that brings each SQLAlchemy MySQL driver name."""

_URL_SHAPE = "mysql+pymysql://USER:PASSWORD@HOST:3306/DATABASE"


def _parse(url: str | URL) -> URL:
    """``make_url`` whose errors name the problem and never the URL (it may hold a password)."""
    if isinstance(url, URL):
        return url
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"cannot parse the database URL: write it as {_URL_SHAPE}"
        ) from None
    except ValueError:  # a port that is not a number
        raise ConfigurationError(
            f"the database URL's port is not a number: write it as {_URL_SHAPE}"
        ) from None
    if "@" in (parsed.host or "") or "/" in (parsed.host or "") or "@" in (parsed.database or ""):
        raise ConfigurationError(
            "the database URL has '@' or '/' where its host should be: is there one in the "
            "password? Write it percent-encoded ('@' as %40, '/' as %2F, ':' as %3A), "
            "e.g. urllib.parse.quote_plus(password)"
        )
    return parsed


def normalize_url(url: str | URL) -> URL:
    """Parse a URL; ``mysql://`` and ``mariadb://`` without a driver get PyMySQL.

    Messages never show the password.

    Raises:
        ConfigurationError: The URL cannot be parsed (a port that is not a number, an
            ``@`` or ``/`` in the password not percent-encoded), is not a MySQL/MariaDB
            URL, or names a driver that is not installed (the message names the pip
            command).
    """
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if backend not in ("mysql", "mariadb"):
        raise ConfigurationError(
            f"unsupported database URL scheme {parsed.drivername!r}: "
            "use mysql+pymysql://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    if "+" not in parsed.drivername:
        parsed = parsed.set(drivername=f"{backend}+pymysql")
    try:
        dialect = parsed.get_dialect()
    except Exception as exc:  # NoSuchModuleError, or the driver's own import error
        raise ConfigurationError(
            f"unsupported database driver {parsed.drivername!r} ({exc}): use {_URL_SHAPE}"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError:
        driver = parsed.get_driver_name()
        package = _DRIVER_PACKAGES.get(driver, driver)
        raise ConfigurationError(
            f"the driver of {parsed.drivername}:// is not installed: pip install {package} "
            f"(or use {_URL_SHAPE})"
        ) from None
    return parsed


def resolve_url(
    url: str | None = None,
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> URL:
    """Return the database URL to use, in order: ``url``, environment ``env``, the default variable.

    Args:
        url: An explicit URL (``--url`` or ``-x url=``).
        env: An environment name (``--env`` or ``-x env=``); its URL is read from
            ``BATCHFLAG_<ENV>_DATABASE_URL``.
        environ: The variables to read (default: ``os.environ``).

    Raises:
        ConfigurationError: Nothing gives a URL, or the named environment has none.
    """
    environ = os.environ if environ is None else environ
    if url:
        return normalize_url(url)
    if env:
        variable = env_variable(env)
        value = environ.get(variable)
        if not value:
            raise ConfigurationError(
                f"unknown environment {env!r}: set {variable} to its database URL"
            )
        return normalize_url(value)
    value = environ.get(DEFAULT_URL_VARIABLE)
    if value:
        return normalize_url(value)
    raise ConfigurationError(
        f"no database URL: pass --url URL (alembic: -x url=URL), "
        f"or set {DEFAULT_URL_VARIABLE}, or name an environment with --env NAME (-x env=NAME)"
    )


def describe_url(url: URL) -> str:
    """Return ``database 'x' on host:port as user``, for messages (never the password)."""
    where = f"{url.host or 'localhost'}:{url.port or 3306}"
    who = f" as {url.username}" if url.username else ""
    if url.database:
        return f"database {url.database!r} on {where}{who}"
    return f"server {where}{who}"
