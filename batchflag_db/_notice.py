"""Warnings a migration must never swallow: a cleared flag, a table kept on downgrade.

A migration's warnings go to the ``batchflag_db.migrations`` logger. The ``env.py``
that ``alembic init`` writes calls ``fileConfig()`` with its default
``disable_existing_loggers=True``, which silences that logger when batchflag-db was
imported first; a program may also have no logging set up at all. :func:`notice`
logs the warning and, when no handler would show it, writes it to stderr itself.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["notice", "would_show"]


def would_show(logger: logging.Logger, level: int) -> bool:
    """Return True when a record of ``level`` on ``logger`` reaches a handler that emits it."""
    if logger.disabled or not logger.isEnabledFor(level):
        return False
    current: logging.Logger | None = logger
    while current is not None:
        if current.disabled:
            return False
        if any(level >= handler.level for handler in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def notice(logger: logging.Logger, message: str, *args: object) -> None:
    """Log ``message % args`` as a warning; write it to stderr too when no handler shows it."""
    if would_show(logger, logging.WARNING):
        logger.warning(message, *args)
        return
    sys.stderr.write(f"batchflag-db: warning: {message % args}\n")
    sys.stderr.flush()
