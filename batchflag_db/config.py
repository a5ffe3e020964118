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


def normalize_url(url: str | URL) -> URL:
    """Parse a URL; ``mysql://`` and ``mariadb://`` without a driver get PyMySQL.

    Raises:
        ConfigurationError: The URL cannot be parsed or is not a MySQL/MariaDB URL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"cannot parse database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend not in ("mysql", "mariadb"):
        raise ConfigurationError(
            f"unsupported database URL scheme {parsed.drivername!r}: "
            "use mysql+pymysql://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    if "+" not in parsed.drivername:
        parsed = parsed.set(drivername=f"{backend}+pymysql")
    try:
        parsed.get_dialect()
    except Exception as exc:  # NoSuchModuleError, or the driver's own import error
        raise ConfigurationError(
            f"unsupported database driver {parsed.drivername!r} ({exc}): "
            "use mysql+pymysql://USER:PASSWORD@HOST:PORT/DATABASE"
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
