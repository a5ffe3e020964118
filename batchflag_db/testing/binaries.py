"""Where a server kind's executables are, and how to run them.

The host's own packages are looked up on ``$PATH`` and in the usual system
directories. A kind the host does not have runs from its Debian root
(:mod:`batchflag_db.testing.debian_root`): every command is prefixed with
``chroot ROOT`` and every path it is given must lie inside the root, so
:meth:`ServerBinaries.scratch_dir` makes temporary directories there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from batchflag_db.errors import BatchFlagError
from batchflag_db.testing.debian_root import RootNotAvailableError, ensure_root
from batchflag_db.testing.kinds import ServerKind

__all__ = [
    "ServerBinaries",
    "ServerNotAvailableError",
    "binaries_for",
    "find_host_binaries",
]

_SEARCH_DIRS = ("/usr/sbin", "/usr/libexec", "/usr/local/sbin", "/usr/local/mysql/bin", "/usr/bin")

_VERSION = re.compile(r"Ver\s+(\S+)")


class ServerNotAvailableError(BatchFlagError, RuntimeError):
    """Raised when no server binaries of the asked-for kind are found, or the server will not start."""


@dataclass(frozen=True)
class ServerBinaries:
    """A server's executables, on the host or inside a Debian root.

    Attributes:
        flavour: ``"mariadb"`` or ``"mysql"``.
        server: The server executable (``mariadbd``/``mysqld``), as the root sees it.
        install_db: MariaDB's datadir initialiser, or None for MySQL.
        version: What the server's ``--version`` reports, e.g. ``"9.7.4-2"``.
        root: The Debian root every command runs in, or None for the host.
    """

    flavour: str
    server: str
    install_db: str | None
    version: str
    root: Path | None = None

    def command(self, program: str, *args: str) -> list[str]:
        """The argument vector that runs ``program`` (in the root, if there is one)."""
        if self.root is None:
            return [program, *args]
        return ["chroot", str(self.root), program, *args]

    def tool(self, name: str) -> str | None:
        """The path of tool ``name`` (e.g. ``mysqldump``) as the root sees it, or None."""
        if self.root is None:
            return _which(name)
        for directory in ("/usr/bin", "/usr/sbin"):
            if (self.root / directory.lstrip("/") / name).is_file():
                return f"{directory}/{name}"
        return None

    def scratch_dir(self, prefix: str, base_dir: str | None = None) -> tuple[Path, str]:
        """Make a temporary directory the server can use: (path here, path the server sees)."""
        if self.root is None:
            made = Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir))
            return made, str(made)
        made = Path(tempfile.mkdtemp(prefix=prefix, dir=self.root / "var/tmp"))
        return made, f"/var/tmp/{made.name}"  # noqa: S108 - the root's own /var/tmp, made above

    def client(self, name: str, url: URL, *extra: str) -> list[str]:
        """The argv that runs client tool ``name`` (``mysql``, ``mysqldump``...) against ``url``.

        The connection goes over TCP, so a tool in a Debian root reaches any server here.

        Raises:
            ServerNotAvailableError: The tool is not installed; the message says which package.
        """
        path = self.tool(name)
        if path is None:
            package = "mariadb-client" if self.flavour == "mariadb" else "mysql-client-core"
            where = f"in {self.root}" if self.root else "on this machine"
            raise ServerNotAvailableError(f"{name} is not installed {where} (package {package})")
        args = [
            f"--host={url.host or '127.0.0.1'}",
            f"--port={url.port or 3306}",
            f"--user={url.username or 'root'}",
            "--protocol=TCP",
        ]
        if self.flavour == "mariadb":
            # MariaDB 11.4+ clients verify the server's certificate by default and warn
            # that they cannot for a login they count as passwordless: a throwaway root
            # here, or a password they were given through MYSQL_PWD (below).
            args.append("--skip-ssl-verify-server-cert")
        if url.password:
            # In the environment, not on the command line, where MySQL's clients warn
            # "Using a password on the command line interface can be insecure".
            return self.command("env", f"MYSQL_PWD={url.password}", path, *args, *extra)
        return self.command(path, *args, *extra)

    @property
    def client_name(self) -> str:
        """The command-line client of this flavour."""
        return "mariadb" if self.flavour == "mariadb" else "mysql"

    @property
    def dump_name(self) -> str:
        """The logical-dump tool of this flavour."""
        return "mariadb-dump" if self.flavour == "mariadb" else "mysqldump"

    def describe(self) -> str:
        """One line for logs: the server and where it comes from."""
        where = f"Debian root {self.root}" if self.root else self.server
        return f"{self.flavour} {self.version} ({where})"


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in _SEARCH_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _version_of(command: list[str]) -> str:
    done = subprocess.run(  # noqa: S603 - a server binary found on this machine
        [*command, "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    return done.stdout.strip()


def find_host_binaries() -> ServerBinaries:
    """The host's own server binaries, whichever flavour is installed.

    Raises:
        ServerNotAvailableError: Neither ``mariadbd`` nor ``mysqld`` is installed.
    """
    install_db = _which("mariadb-install-db") or _which("mysql_install_db")
    for name in ("mariadbd", "mysqld"):
        server = _which(name)
        if server is None:
            continue
        reported = _version_of([server])
        match = _VERSION.search(reported)
        version = match.group(1) if match else reported
        if "MariaDB" in reported:
            if install_db:
                return ServerBinaries("mariadb", server, install_db, version)
            continue
        return ServerBinaries("mysql", server, None, version)
    raise ServerNotAvailableError(
        "no local MariaDB/MySQL server binaries (mariadbd or mysqld) found: "
        "install them (Debian: apt-get install mariadb-server)"
    )


def _root_binaries(kind: ServerKind, root: Path) -> ServerBinaries:
    server = "/usr/sbin/mariadbd" if kind.flavour == "mariadb" else "/usr/sbin/mysqld"
    install_db = "/usr/bin/mariadb-install-db" if kind.flavour == "mariadb" else None
    probe = ServerBinaries(kind.flavour, server, install_db, "", root)
    reported = _version_of(probe.command(server))
    match = _VERSION.search(reported)
    if match is None:
        raise ServerNotAvailableError(f"{server} in {root} did not report a version: {reported!r}")
    return ServerBinaries(kind.flavour, server, install_db, match.group(1), root)


def binaries_for(kind: ServerKind) -> ServerBinaries:
    """The binaries of ``kind``: the host's if they are that kind, else its Debian root's.

    Raises:
        ServerNotAvailableError: The host has other binaries (or none) and no Debian
            root can be used or built; the message says what to install or provide.
    """
    try:
        host: ServerBinaries | None = find_host_binaries()
    except ServerNotAvailableError as exc:
        host, host_problem = None, str(exc)
    if host is not None:
        if host.version.startswith(kind.version) and host.flavour == kind.flavour:
            return host
        host_problem = f"the host's server is {host.flavour} {host.version}"
    try:
        root = ensure_root(kind)
    except RootNotAvailableError as exc:
        raise ServerNotAvailableError(
            f"{kind.name}: {host_problem}, and its Debian {kind.suite} root is unavailable: {exc}"
        ) from None
    return _root_binaries(kind, root)
