"""Process plumbing shared by the throwaway clusters (:mod:`.galera`, :mod:`.grouprepl`).

Each server runs in its own process group (its helpers, e.g. Galera's SST scripts, share
it); a watchdog process kills the groups and removes the scratch directory if the Python
process dies without stopping them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

__all__ = [
    "LOG_TAIL_LINES",
    "Watchdog",
    "free_ports",
    "reap",
    "signal_group",
    "sigterm_as_interrupt",
    "spawn",
    "tail",
]

#: Lines of a log :func:`tail` returns by default.
LOG_TAIL_LINES = 40


WATCHDOG_CODE = r"""
import os, shutil, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
groups = set()
base_dir = None
for line in sys.stdin:
    line = line.rstrip("\n")
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))
    elif line[:1] == "D":
        base_dir = line[1:]
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
deadline = time.monotonic() + 10
for pgid in groups:
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except OSError:
            break
        time.sleep(0.05)
if base_dir:
    shutil.rmtree(base_dir, ignore_errors=True)
"""


class Watchdog:
    """Helper process that kills the nodes if this Python process dies.

    The cluster or group tells it (over a pipe) which process groups are live. When
    the pipe reaches EOF, because :meth:`close` was called or because this
    process died in any way (SIGKILL, SIGTERM without handler, crash), it
    SIGKILLs every group it still knows and removes its temp dir.
    Unlike ``PR_SET_PDEATHSIG`` this also works for servers that change uid
    (``--user=mysql``).
    """

    def __init__(self) -> None:
        """Start the helper in its own session (immune to terminal Ctrl-C)."""
        self._proc = subprocess.Popen(  # noqa: S603 - this Python, running our own code
            [sys.executable, "-I", "-c", WATCHDOG_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _send(self, line: str) -> None:
        stdin = self._proc.stdin
        if stdin is None or stdin.closed:
            return
        with contextlib.suppress(OSError, ValueError):
            stdin.write(line.encode() + b"\n")
            stdin.flush()

    def set_dir(self, path: str) -> None:
        """Remove ``path`` (the cluster's temp dir) when the pipe closes."""
        self._send(f"D{path}")

    def add(self, pgid: int) -> None:
        """Start watching process group ``pgid``."""
        self._send(f"+{pgid}")

    def remove(self, pgid: int) -> None:
        """Stop watching process group ``pgid`` (it was killed by us)."""
        self._send(f"-{pgid}")

    def close(self) -> None:
        """Close the pipe and reap the helper."""
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def free_ports(count: int) -> list[int]:
    """Find ``count`` distinct free TCP ports on 127.0.0.1.

    All sockets are held open until every port is chosen, so the ports are
    distinct; there is still a small window before the server binds them.

    Args:
        count: Number of ports wanted.

    Returns:
        The port numbers.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path: str | os.PathLike[str], lines: int = LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a text file, or a note if unreadable.

    Args:
        path: File to read.
        lines: Number of lines.

    Returns:
        The tail, as one string.
    """
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(data.splitlines()[-lines:])


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the process group led by ``proc`` (and to ``proc``).

    Args:
        proc: A process started with ``start_new_session=True``.
        sig: Signal number.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def spawn(
    args: Sequence[str],
    log: str | os.PathLike[str],
    watchdog: Watchdog | None,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server in its own process group, output appended to ``log``, watched.

    Args:
        args: The command line.
        log: File its stdout and stderr go to (a header line with the command first).
        watchdog: Told to kill the process group if this process dies (None: not watched).
        cwd: Its working directory (None: this process's).
        env: Its environment (None: this process's).

    Returns:
        The process.
    """
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%H:%M:%S')} start: {list(args)!r}\n".encode())
        out.flush()
        proc = subprocess.Popen(  # noqa: S603 - the kind's own server binary
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    if watchdog is not None:
        watchdog.add(proc.pid)
    return proc


def reap(proc: subprocess.Popen[bytes], watchdog: Watchdog | None) -> None:
    """Wait for a killed server, sweep its process group (helpers share it), stop watching it."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if watchdog is not None:
        watchdog.remove(proc.pid)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into KeyboardInterrupt while active.

    SIGINT is included because a shell starts background jobs with SIGINT
    ignored, in which case Python would not raise KeyboardInterrupt.
    """

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
