"""The server kinds the project is tested on, and where each one's binaries come from.

A kind names a server family and release line (``mariadb-10.11``, ``mariadb-11.8``,
``mysql-9.7``) and the Debian suite whose packages provide it. Where the host's own
packages are that kind (Debian 12 ships MariaDB 10.11) they are used as they are; otherwise
the suite is installed into a cached root (:mod:`batchflag_db.testing.debian_root`) and
run there with ``chroot``. The same root, turned into an image
(:mod:`batchflag_db.testing.images`), is what the test suite starts in a container.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["DEFAULT_KIND", "KINDS", "KIND_VARIABLE", "ServerKind", "kind_named"]

#: The environment variable that picks the kind the test suite runs on.
KIND_VARIABLE = "BATCHFLAG_TEST_SERVER"


@dataclass(frozen=True)
class ServerKind:
    """One server family and release line, and how to obtain it without Docker.

    Attributes:
        name: What the user types, e.g. ``"mysql-9.7"``.
        flavour: ``"mariadb"`` or ``"mysql"``: how a datadir is initialised and which
            client tools (``mariadb``/``mariadb-dump`` or ``mysql``/``mysqldump``) it has.
        version: The release line ``SELECT VERSION()`` starts with, e.g. ``"9.7."``.
        suite: The Debian suite whose packages provide it (its root and its image).
        packages: The Debian packages installed into that suite's root.
    """

    name: str
    flavour: str
    version: str
    suite: str
    packages: tuple[str, ...]

    @property
    def image_repository(self) -> str:
        """The name of the image built here for this kind, without its tag."""
        return f"batchflag-db/{self.name}"

    def matches(self, version: str) -> bool:
        """Tell whether a server's ``SELECT VERSION()`` belongs to this kind."""
        is_mariadb = "MariaDB" in version
        return version.startswith(self.version) and is_mariadb == (self.flavour == "mariadb")


KINDS: dict[str, ServerKind] = {
    kind.name: kind
    for kind in (
        ServerKind(
            name="mariadb-10.11",
            flavour="mariadb",
            version="10.11.",
            suite="bookworm",
            # galera-4, rsync and iproute2 (ss, for the rsync SST script): the Galera cluster.
            packages=("mariadb-server", "mariadb-client", "galera-4", "rsync", "iproute2"),
        ),
        ServerKind(
            name="mariadb-11.8",
            flavour="mariadb",
            version="11.8.",
            suite="trixie",
            packages=("mariadb-server", "mariadb-client"),
        ),
        ServerKind(
            name="mysql-9.7",
            flavour="mysql",
            version="9.7.",
            suite="sid",
            packages=("mysql-server-core", "mysql-client-core"),
        ),
    )
}

#: Debian 12's own server (the host's, on these machines), used when nothing else is asked for.
DEFAULT_KIND = "mariadb-10.11"


def kind_named(name: str | None = None) -> ServerKind:
    """Return the kind called ``name``, else the one ``BATCHFLAG_TEST_SERVER`` names.

    Raises:
        ValueError: No such kind; the message lists the known ones.
    """
    chosen = name or os.environ.get(KIND_VARIABLE) or DEFAULT_KIND
    try:
        return KINDS[chosen]
    except KeyError:
        raise ValueError(
            f"unknown server kind {chosen!r}: choose one of {', '.join(KINDS)}"
        ) from None
