"""Retry policy for flips, shared by the sync and async wrappers (no I/O here).

A flip can fail with a deadlock (1213), a lock wait timeout (1205) or, on Group
Replication, a lost certification (3101, or 1180 with engine error 149). Whether a
retry is safe depends on who owns the transaction the procedure ran in:

* **the procedure's own** (autocommit on, no transaction open): the failed attempt
  was rolled back completely and nothing else was lost, so the wrapper waits a
  bounded, jittered backoff and calls again;
* **the caller's**: after 1213 the server has rolled back the caller's whole
  transaction, so repeating only the flip would commit it without the caller's
  earlier work. The wrapper raises :class:`TransactionConflictError` telling the
  caller to retry its whole transaction.

Who owns the transaction is read from the driver before the call (see
:func:`owns_transaction`): the wrappers sleep, this module decides.

Two more answers are retried whoever owns the transaction, because the failed
attempt changed nothing: "procedure does not exist" (1305) for a short window
(on MySQL a revision replaces a procedure with DROP then CREATE), and nothing else.

The wait is bounded in time, not only in attempts: the wrappers set the session's
``innodb_lock_wait_timeout`` to :attr:`RetryPolicy.lock_wait_timeout` for the
flip, and no attempt starts after :attr:`RetryPolicy.deadline`. When a flip gives
up on a lock wait, the wrapper adds the transactions holding the lock to the error
(:func:`batchflag_db.flag.naming_holders`, from :mod:`batchflag_db.locks`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchflag_db.errors import (
    ER_CANT_CHANGE_TX_CHARACTERISTICS,
    ER_CHECKREAD,
    ER_ERROR_DURING_COMMIT,
    ER_LOCK_DEADLOCK,
    ER_LOCK_WAIT_TIMEOUT,
    ER_SCOPE_CHANGED,
    ER_SP_DOES_NOT_EXIST,
    ER_TRANSACTION_ROLLBACK_DURING_COMMIT,
    BatchFlagError,
    TransactionConflictError,
)

__all__ = [
    "DEFAULT_RETRY",
    "ER_IN_TRANSACTION",
    "IN_TRANSACTION_PROBE",
    "RetryPolicy",
    "RetryState",
    "owns_transaction",
]

logger = logging.getLogger("batchflag_db")

RETRY_EVENT = "current_batch_flip_retry"
"""Log event emitted before each retry (INFO), with the failed attempt's number and errno."""

_RETRYABLE = {
    ER_LOCK_DEADLOCK: f"deadlock (error {ER_LOCK_DEADLOCK})",
    ER_LOCK_WAIT_TIMEOUT: f"lock wait timeout (error {ER_LOCK_WAIT_TIMEOUT})",
    ER_TRANSACTION_ROLLBACK_DURING_COMMIT: (
        f"certification conflict (error {ER_TRANSACTION_ROLLBACK_DURING_COMMIT})"
    ),
    ER_ERROR_DURING_COMMIT: (
        f"certification conflict (error {ER_ERROR_DURING_COMMIT}, engine error 149)"
    ),
    ER_SCOPE_CHANGED: f"the batch changed scope during the flip (error {ER_SCOPE_CHANGED})",
    ER_CHECKREAD: f"a row changed since the transaction's snapshot (error {ER_CHECKREAD})",
}

# Server status flags of the MySQL protocol (the same bits in every driver).
_SERVER_STATUS_IN_TRANS = 0x0001
_SERVER_STATUS_AUTOCOMMIT = 0x0002

IN_TRANSACTION_PROBE = "SET TRANSACTION READ WRITE"
"""Statement that fails with :data:`ER_IN_TRANSACTION` exactly when a transaction is open.

The procedures use the same test; it only sets the characteristics of the next
transaction, which the procedure then sets to the same value itself.
"""

ER_IN_TRANSACTION = ER_CANT_CHANGE_TX_CHARACTERISTICS
"""The error of :data:`IN_TRANSACTION_PROBE` inside a transaction (named in :mod:`batchflag_db.errors`)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a flip that owns its transaction is retried.

    The wait before retry ``n`` (``n`` = 1 after the first failure) is drawn
    uniformly from ``[0, min(max_delay, base_delay * 2 ** (n - 1))]``
    ("full jitter"), so callers that collided spread out instead of colliding
    again in step.

    A flip takes at most about ``deadline + lock_wait_timeout`` seconds in all:
    no attempt starts after the deadline, and each attempt waits for a lock at
    most ``lock_wait_timeout`` seconds.

    Attributes:
        attempts: Calls in total, the first included; 1 disables retrying.
        base_delay: Upper bound of the first wait, in seconds.
        max_delay: Upper bound of any single wait, in seconds.
        lock_wait_timeout: The session's ``innodb_lock_wait_timeout`` (whole seconds,
            at least 1) while the flip runs, put back afterwards; None keeps the
            session's own (the server's default is 50 s).
        deadline: Seconds after the first attempt's start after which no attempt
            starts; None bounds the flip by ``attempts`` alone.
        missing_routine_window: Seconds during which "procedure does not exist"
            (1305) is retried, for a revision replacing it on MySQL.
    """

    attempts: int = 5
    base_delay: float = 0.05
    max_delay: float = 1.0
    lock_wait_timeout: int | None = 2
    deadline: float | None = 8.0
    missing_routine_window: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"RetryPolicy.attempts must be an int, not {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, not {self.attempts}")
        if not self.base_delay >= 0 or not self.max_delay >= 0:  # also refuses NaN
            raise ValueError("RetryPolicy delays must be non-negative numbers of seconds")
        if self.lock_wait_timeout is not None and (
            isinstance(self.lock_wait_timeout, bool)
            or not isinstance(self.lock_wait_timeout, int)
            or self.lock_wait_timeout < 1
        ):
            raise ValueError(
                "RetryPolicy.lock_wait_timeout must be a whole number of seconds, at least 1, "
                f"or None, not {self.lock_wait_timeout!r}"
            )
        if self.deadline is not None and not self.deadline >= 0:
            raise ValueError(
                "RetryPolicy.deadline must be a non-negative number of seconds or None"
            )
        if not self.missing_routine_window >= 0:
            raise ValueError("RetryPolicy.missing_routine_window must be non-negative seconds")

    def ceiling(self, retry: int) -> float:
        """Return the upper bound of the wait before retry number ``retry`` (1-based)."""
        exponent = min(retry - 1, 62)  # keeps 2 ** n finite; the cap applies long before
        return float(min(self.max_delay, self.base_delay * 2**exponent))

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Return the jittered wait before retry number ``retry`` (1-based), in seconds."""
        draw = (rng or _RNG).random()
        return draw * self.ceiling(retry)


DEFAULT_RETRY = RetryPolicy()
"""5 attempts; waits of at most 0.05, 0.1, 0.2, 0.4 s; 2 s per lock wait; none started after 8 s.

A flip blocked by a transaction that never ends gives up after about 8-10 s.
"""

_MISSING_ROUTINE_DELAY = 0.02

_RNG = random.Random()  # noqa: S311 - jitter, not cryptography


def owns_transaction(driver_connection: Any) -> bool | None:
    """Tell from a driver connection whether a CALL would run in its own transaction.

    True: autocommit is on and no transaction is open, so the procedure starts,
    commits or rolls back its own transaction. False: the call would join the
    caller's transaction. None: the driver does not say (run
    :data:`IN_TRANSACTION_PROBE` to find out, or treat it as the caller's).

    Reads only what the driver already knows, without a round trip where it can:
    PyMySQL, aiomysql and asyncmy keep the server's status flags
    (``server_status``); mysql-connector-python keeps ``in_transaction`` (its
    ``autocommit`` property asks the server); mysqlclient knows only autocommit.
    """
    status = getattr(driver_connection, "server_status", None)
    if isinstance(status, int) and not isinstance(status, bool):
        return bool(status & _SERVER_STATUS_AUTOCOMMIT) and not status & _SERVER_STATUS_IN_TRANS
    in_transaction = getattr(driver_connection, "in_transaction", None)
    if isinstance(in_transaction, bool):
        if in_transaction:
            return False
        autocommit = getattr(driver_connection, "autocommit", None)
        return autocommit if isinstance(autocommit, bool) else None
    get_autocommit = getattr(driver_connection, "get_autocommit", None)
    if callable(get_autocommit):
        return None if get_autocommit() else False
    return None


class RetryState:
    """The attempts of one flip: counts them and decides after each failure.

    Usage (the sync and async wrappers differ only in how they sleep)::

        state = RetryState(policy, owns, "set_current_batch", 7)
        while True:
            try:
                row = call()
            except BatchFlagError as error:
                sleep(state.failed(error))  # raises when there is no retry
                continue
            return row, state.attempt
    """

    def __init__(
        self,
        policy: RetryPolicy,
        owns_transaction: bool | None,
        procedure: str,
        batch_id: int,
        rng: random.Random | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.policy = policy
        self.owns_transaction = owns_transaction is True
        self.procedure = procedure
        self.batch_id = batch_id
        self.attempt = 1
        self._rng = rng
        self._clock = clock
        self._started = clock()

    def _conflict(self, message: str, error: BatchFlagError) -> TransactionConflictError:
        return TransactionConflictError(
            message, errno=error.errno, sqlstate=error.sqlstate, attempts=self.attempt
        )

    def failed(self, error: BatchFlagError) -> float:
        """Return the seconds to wait before the next attempt, or raise.

        Call it inside the ``except`` block that caught ``error``, so the raised
        error chains to the driver error (``__cause__``).

        Raises:
            TransactionConflictError: A deadlock or lock wait timeout inside the
                caller's transaction, or one the policy gave up on.
            BatchFlagError: ``error`` itself, when it is not a conflict.
        """
        elapsed = self._clock() - self._started
        if error.errno == ER_SP_DOES_NOT_EXIST:
            if elapsed + _MISSING_ROUTINE_DELAY <= self.policy.missing_routine_window:
                return _MISSING_ROUTINE_DELAY  # a revision replacing it: nothing ran
            raise error
        # errors.from_driver_error makes 1180 a conflict only with engine error 149.
        what = _RETRYABLE.get(error.errno or 0)
        if what is None or (
            error.errno == ER_ERROR_DURING_COMMIT
            and not isinstance(error, TransactionConflictError)
        ):
            raise error
        call = f"{self.procedure}({self.batch_id})"
        if not self.owns_transaction:
            if error.errno != ER_LOCK_WAIT_TIMEOUT:
                detail = "the server rolled back your whole transaction"
            else:
                detail = (
                    "the flip was undone (and, with innodb_rollback_on_timeout=ON, "
                    "your whole transaction)"
                )
            raise self._conflict(
                f"{what} in {call} inside your transaction: {detail}; "
                "roll back and retry the whole transaction from its start",
                error,
            ) from error.__cause__
        delay = self.policy.delay(self.attempt, self._rng)
        deadline = self.policy.deadline
        past_deadline = deadline is not None and elapsed + delay >= deadline
        if self.attempt >= self.policy.attempts or past_deadline:
            cause = (
                "another transaction holds a lock the flip needs"
                if error.errno == ER_LOCK_WAIT_TIMEOUT
                else "other flips kept conflicting with it"
            )
            raise self._conflict(
                f"{what} in {call}: gave up after {self.attempt} attempt"
                f"{'s' if self.attempt != 1 else ''} in {elapsed:.1f} s; nothing changed "
                f"({cause})",
                error,
            ) from error.__cause__
        logger.info(
            "%s procedure=%s batch_id=%s attempt=%s errno=%s delay=%.3f",
            RETRY_EVENT,
            self.procedure,
            self.batch_id,
            self.attempt,
            error.errno,
            delay,
            extra={
                "event": RETRY_EVENT,
                "procedure": self.procedure,
                "batch_id": self.batch_id,
                "attempt": self.attempt,
                "errno": error.errno,
                "delay": delay,
            },
        )
        self.attempt += 1
        return delay
