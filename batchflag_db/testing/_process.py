"""Log tails and signals for the throwaway clusters' modules and their command lines.

What :mod:`.galera` and :mod:`.grouprepl` share besides their containers (:mod:`.container`).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

__all__ = ["LOG_TAIL_LINES", "sigterm_as_interrupt", "tail"]

#: Lines of a log :func:`tail` returns by default.
LOG_TAIL_LINES = 40


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
