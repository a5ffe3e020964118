"""A Debian root with a kind's server packages, built once into a cache and reused.

Debian 12 ships MariaDB 10.11 only. MariaDB 11.8 (trixie) and MySQL 9.7 (sid) do not
install on it, so each is installed into its own minimal root with ``debootstrap`` and
run with ``chroot``. Every kind has a suite (MariaDB 10.11's is bookworm): its root is
also what the kind's container image is made of (:mod:`batchflag_db.testing.images`),
and it serves a host that lacks the kind's packages. The Debian mirror is read from the host's apt configuration (the
index target whose Origin and Label are "Debian"); no host name is written anywhere.

Building needs root (``debootstrap`` and ``chroot``) and the ``debootstrap`` package;
it takes about half a minute per kind and 0.4-0.8 GiB of disk. A finished root is a
directory named after the kind and its recipe under the cache directory
(``$BATCHFLAG_ROOTS_DIR``, else ``$XDG_CACHE_HOME/batchflag-db/roots``, else
``~/.cache/batchflag-db/roots``); a half-built one never takes that name.

Run ``python -m batchflag_db.testing.debian_root KIND`` to build one ahead of time.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from batchflag_db.testing.kinds import KINDS, ServerKind, kind_named

__all__ = [
    "RootNotAvailableError",
    "debian_mirror",
    "ensure_root",
    "main",
    "recipe",
    "root_path",
    "roots_dir",
]

#: Bumped when the way a root is built changes, so old roots are not reused.
_RECIPE_VERSION = "2"

#: apt inside the root: the archive served here may be a snapshot whose Release files
#: have expired, and the host's own apt is configured the same way.
_APT_OPTIONS = ("-o", "Acquire::Check-Valid-Until=false", "-o", "APT::Sandbox::User=root")

#: Keeps package scripts from starting services inside the root.
_POLICY_RC_D = "#!/bin/sh\nexit 101\n"

_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

_BUILD_TIMEOUT = 1800


class RootNotAvailableError(RuntimeError):
    """Raised when a Debian root cannot be built or used here; the message says what to do."""


def roots_dir() -> Path:
    """The cache directory that holds the built roots."""
    given = os.environ.get("BATCHFLAG_ROOTS_DIR")
    if given:
        return Path(given)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "batchflag-db" / "roots"


def recipe(kind: ServerKind) -> str:
    """A short hash of how ``kind``'s root is built (suite, packages, this module's recipe)."""
    text = f"{_RECIPE_VERSION} {kind.suite} {' '.join(sorted(kind.packages))}"
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def root_path(kind: ServerKind) -> Path:
    """Where ``kind``'s finished root lives (it may not exist yet)."""
    return roots_dir() / f"{kind.name}-{recipe(kind)}"


def debian_mirror() -> str:
    """The Debian archive this host's apt uses, as a URL ending before ``/dists/``.

    Raises:
        RootNotAvailableError: apt names no archive whose Origin and Label are "Debian".
    """
    try:
        done = subprocess.run(
            ["apt-get", "indextargets", "--format", "$(ORIGIN)\t$(LABEL)\t$(URI)"],  # noqa: S607 - apt from PATH
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RootNotAvailableError(f"cannot read the host's apt configuration: {exc}") from None
    for line in done.stdout.splitlines():
        origin, _, rest = line.partition("\t")
        label, _, uri = rest.partition("\t")
        if origin == "Debian" and label == "Debian" and "/dists/" in uri:
            return uri.split("/dists/", 1)[0]
    raise RootNotAvailableError(
        "the host's apt configuration names no Debian archive (Origin and Label 'Debian'); "
        "run `apt-get update` first, or give the test suite a server URL instead"
    )


def check_can_build() -> None:
    """Raise if this process cannot build or enter a Debian root.

    Raises:
        RootNotAvailableError: Not root, or ``debootstrap`` is not installed.
    """
    if os.geteuid() != 0:
        raise RootNotAvailableError(
            "a Debian root is built with debootstrap and run with chroot, which need root: "
            "run as root, or give a server URL in BATCHFLAG_TEST_DATABASE_URL instead"
        )
    if shutil.which("debootstrap") is None:
        raise RootNotAvailableError(
            "debootstrap is not installed: apt-get install debootstrap "
            "(or give a server URL in BATCHFLAG_TEST_DATABASE_URL instead)"
        )


def _run(args: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        done = subprocess.run(  # noqa: S603 - fixed commands, arguments from ServerKind
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=_BUILD_TIMEOUT,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"},
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RootNotAvailableError(
            f"building a Debian root failed at `{' '.join(args)}` (exit {done.returncode}); "
            f"log {log}:\n{tail}"
        )


@contextlib.contextmanager
def _build_lock(directory: Path, kind: ServerKind) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"{kind.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(kind: ServerKind, final: Path) -> None:
    suite = kind.suite
    check_can_build()
    mirror = debian_mirror()
    work = Path(tempfile.mkdtemp(prefix=f".{kind.name}-building-", dir=final.parent))
    root = work / "root"
    log = final.parent / f"{kind.name}.build.log"
    log.write_text(f"building {kind.name} from Debian {suite} into {final}\n")
    try:
        _run(["debootstrap", "--variant=minbase", suite, str(root), mirror], log)
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text(_POLICY_RC_D)
        policy.chmod(0o755)
        _run(["chroot", str(root), "apt-get", *_APT_OPTIONS, "-q", "update"], log)
        _run(
            [
                "chroot",
                str(root),
                "apt-get",
                *_APT_OPTIONS,
                "-q",
                "-y",
                "install",
                "--no-install-recommends",
                *kind.packages,
            ],
            log,
        )
        _run(["chroot", str(root), "apt-get", "clean"], log)
        (root / "var/tmp").mkdir(parents=True, exist_ok=True)
        # mariadb-install-db looks the host name up; debootstrap writes no /etc/hosts.
        (root / "etc/hosts").write_text(_HOSTS)
        root.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_root(kind: ServerKind) -> Path:
    """Return ``kind``'s Debian root, building it first if the cache has none.

    Raises:
        RootNotAvailableError: It is not built and cannot be built here; the message
            says what to install or which URL to give instead.
    """
    final = root_path(kind)
    if final.is_dir():
        check_can_build()  # running it needs chroot, hence root, too
        return final
    with _build_lock(final.parent, kind):
        if not final.is_dir():
            _build(kind, final)
    return final


def main(argv: list[str] | None = None) -> int:
    """Build (or find) the Debian root of each kind named on the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m batchflag_db.testing.debian_root", description=__doc__.splitlines()[0]
    )
    choices = list(KINDS)
    parser.add_argument(
        "kinds", nargs="+", choices=choices, metavar="KIND", help=", ".join(choices)
    )
    args = parser.parse_args(argv)
    for name in args.kinds:
        try:
            print(f"{name}: {ensure_root(kind_named(name))}")
        except RootNotAvailableError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
