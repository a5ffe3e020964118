"""A server kind as a container image, built here from its Debian root.

No registry is needed: the kind's Debian root (:mod:`batchflag_db.testing.debian_root`)
is packed with ``tar`` and loaded with ``docker import``, together with the project's
entrypoint (``image/entrypoint.sh`` beside this module), which honours the official
mariadb/mysql images' environment (``MYSQL_ROOT_PASSWORD``, ``MYSQL_DATABASE``...).

The tag is a hash of the inputs (the root's recipe and the entrypoint's text), e.g.
``batchflag-db/mysql-9.7:3f2a9c1b0d4e``: an image is built once and rebuilt only when
one of them changes. Building needs root (for the Debian root) and the ``docker``
command with an engine that answers; it takes 5-10 s once the root exists.

Run ``python -m batchflag_db.testing.images KIND...`` to build ahead of time.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

from batchflag_db.testing.debian_root import (
    RootNotAvailableError,
    ensure_root,
    recipe,
    roots_dir,
)
from batchflag_db.testing.kinds import KINDS, ServerKind, kind_named

__all__ = [
    "ImageNotAvailableError",
    "ensure_image",
    "entrypoint_text",
    "image_exists",
    "image_name",
    "main",
]

#: Bumped when the way an image is packed changes, so old images are not reused.
_IMAGE_RECIPE = "1"

#: Where the entrypoint lands inside the image.
_ENTRYPOINT = "usr/local/bin/batchflag-db-entrypoint"

#: Left out of the image: scratch space (a running throwaway server's socket and datadir
#: live under the root's var/tmp) and the datadir the packages' scripts initialised.
_EXCLUDED = ("./tmp/*", "./var/tmp/*", "./var/lib/mysql/*", "./run/*")

_TIMEOUT = 900


class ImageNotAvailableError(RuntimeError):
    """Raised when a kind's image cannot be built here; the message says why and what to do."""


def entrypoint_text() -> str:
    """The entrypoint script every image of this project runs."""
    return files("batchflag_db.testing").joinpath("image/entrypoint.sh").read_text()


def image_name(kind: ServerKind) -> str:
    """``kind``'s image with its tag, a hash of everything the image is made from."""
    inputs = f"{_IMAGE_RECIPE}\n{recipe(kind)}\n{entrypoint_text()}"
    return f"{kind.image_repository}:{hashlib.sha256(inputs.encode()).hexdigest()[:12]}"


def _docker_command() -> str:
    docker = shutil.which("docker")
    if docker is None:
        raise ImageNotAvailableError(
            "the docker command is not installed (Debian: apt-get install docker.io)"
        )
    return docker


def _docker(args: list[str], environ: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the docker CLI with fixed arguments
        [_docker_command(), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=_TIMEOUT,
        env=environ,
    )


def image_exists(name: str, environ: dict[str, str] | None = None) -> bool:
    """Tell whether the engine has image ``name``."""
    return _docker(["image", "inspect", "--format", "{{.Id}}", name], environ).returncode == 0


def _import(kind: ServerKind, root: Path, name: str, environ: dict[str, str] | None) -> None:
    docker = _docker_command()
    with tempfile.TemporaryDirectory(prefix="batchflag-image-") as staging:
        script = Path(staging) / _ENTRYPOINT
        script.parent.mkdir(parents=True)
        script.write_text(entrypoint_text())
        script.chmod(0o755)
        tar_args = ["tar", "--numeric-owner", "-c", "-C", str(root)]
        tar_args += [f"--exclude={pattern}" for pattern in _EXCLUDED]
        tar_args += [".", "-C", staging, _ENTRYPOINT]
        changes = [
            f'ENTRYPOINT ["/{_ENTRYPOINT}"]',
            "CMD []",
            "EXPOSE 3306",
            f"LABEL batchflag-db.kind={kind.name}",
        ]
        import_args = [docker, "import"]
        for change in changes:
            import_args += ["--change", change]
        import_args += ["-", name]
        with subprocess.Popen(tar_args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as tar:  # noqa: S603 - fixed arguments
            done = subprocess.run(  # noqa: S603 - the docker CLI with fixed arguments
                import_args,
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                check=False,
                timeout=_TIMEOUT,
                env=environ,
            )
            if tar.stdout is not None:
                tar.stdout.close()
            tar_errors = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
            tar_code = tar.wait()
    if tar_code != 0 or done.returncode != 0:
        raise ImageNotAvailableError(
            f"packing {root} into image {name} failed (tar exit {tar_code}, docker import "
            f"exit {done.returncode}): {tar_errors[-1500:]}{done.stderr[-1500:]}"
        )


def ensure_image(kind: ServerKind, environ: dict[str, str] | None = None) -> str:
    """Return the name of ``kind``'s image, building it (and its Debian root) if missing.

    Args:
        kind: The server kind.
        environ: The environment the ``docker`` command sees (default: this process's).

    Raises:
        ImageNotAvailableError: The root cannot be built here, or ``docker`` failed;
            the message says why.
    """
    name = image_name(kind)
    if image_exists(name, environ):
        return name
    try:
        root = ensure_root(kind)
    except RootNotAvailableError as exc:
        raise ImageNotAvailableError(f"{kind.name}'s image needs its Debian root: {exc}") from None
    # One build at a time per kind (the root's build lock guards the same directory).
    lock_dir = roots_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / f"{kind.name}.image.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not image_exists(name, environ):
            _import(kind, root, name, environ)
    return name


def main(argv: list[str] | None = None) -> int:
    """Build (or find) the image of each kind named on the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m batchflag_db.testing.images", description=__doc__.splitlines()[0]
    )
    choices = list(KINDS)
    parser.add_argument(
        "kinds", nargs="+", choices=choices, metavar="KIND", help=", ".join(choices)
    )
    args = parser.parse_args(argv)
    for name in args.kinds:
        try:
            print(f"{name}: {ensure_image(kind_named(name))}")
        except ImageNotAvailableError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
