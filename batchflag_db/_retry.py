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
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

from batchflag_db.errors import (
    ER_ERROR_DURING_COMMIT,
    ER_LOCK_DEADLOCK,
    ER_LOCK_WAIT_TIMEOUT,
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
    ER_LOCK_DEADLOCK: "deadlock (error 1213)",
    ER_LOCK_WAIT_TIMEOUT: "lock wait timeout (error 1205)",
    ER_TRANSACTION_ROLLBACK_DURING_COMMIT: "certification conflict (error 3101)",
    ER_ERROR_DURING_COMMIT: "certification conflict (error 1180, engine error 149)",
}

# Server status flags of the MySQL protocol (the same bits in every driver).
_SERVER_STATUS_IN_TRANS = 0x0001
_SERVER_STATUS_AUTOCOMMIT = 0x0002

IN_TRANSACTION_PROBE = "SET TRANSACTION READ WRITE"
"""Statement that fails with :data:`ER_IN_TRANSACTION` exactly when a transaction is open.

The procedures use the same test; it only sets the characteristics of the next
transaction, which the procedure then sets to the same value itself.
"""

ER_IN_TRANSACTION = 1568
"""ER_CANT_CHANGE_TX_CHARACTERISTICS: "... can't be changed while a transaction is in progress"."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a flip that owns its transaction is retried.

    The wait before retry ``n`` (``n`` = 1 after the first failure) is drawn
    uniformly from ``[0, min(max_delay, base_delay * 2 ** (n - 1))]``
    ("full jitter"), so callers that collided spread out instead of colliding
    again in step.

    Attributes:
        attempts: Calls in total, the first included; 1 disables retrying.
        base_delay: Upper bound of the first wait, in seconds.
        max_delay: Upper bound of any single wait, in seconds.
    """

    attempts: int = 5
    base_delay: float = 0.05
    max_delay: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"RetryPolicy.attempts must be an int, not {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, not {self.attempts}")
        if not self.base_delay >= 0 or not self.max_delay >= 0:  # also refuses NaN
            raise ValueError("RetryPolicy delays must be non-negative numbers of seconds")

    def ceiling(self, retry: int) -> float:
        """Return the upper bound of the wait before retry number ``retry`` (1-based)."""
        exponent = min(retry - 1, 62)  # keeps 2 ** n finite; the cap applies long before
        return float(min(self.max_delay, self.base_delay * 2**exponent))

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Return the jittered wait before retry number ``retry`` (1-based), in seconds."""
        draw = (rng or _RNG).random()
        return draw * self.ceiling(retry)


DEFAULT_RETRY = RetryPolicy()
"""5 attempts; waits of at most 0.05, 0.1, 0.2, 0.4 s: at most 0.75 s of sleep in total."""

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
    ):
        self.policy = policy
        self.owns_transaction = owns_transaction is True
        self.procedure = procedure
        self.batch_id = batch_id
        self.attempt = 1
        self._rng = rng

    def failed(self, error: BatchFlagError) -> float:
        """Return the seconds to wait before the next attempt, or raise.

        Call it inside the ``except`` block that caught ``error``, so the raised
        error chains to the driver error (``__cause__``).

        Raises:
            TransactionConflictError: A deadlock or lock wait timeout inside the
                caller's transaction, or one the policy gave up on.
            BatchFlagError: ``error`` itself, when it is not a conflict.
        """
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
            raise TransactionConflictError(
                f"{what} in {call} inside your transaction: {detail}; "
                "roll back and retry the whole transaction from its start",
                errno=error.errno,
                sqlstate=error.sqlstate,
                attempts=self.attempt,
            ) from error.__cause__
        if self.attempt >= self.policy.attempts:
            raise TransactionConflictError(
                f"{what} in {call}: gave up after {self.attempt} attempt"
                f"{'s' if self.attempt != 1 else ''}; nothing changed, try again later "
                "(the database is busy with other flips)",
                errno=error.errno,
                sqlstate=error.sqlstate,
                attempts=self.attempt,
            ) from error.__cause__
        delay = self.policy.delay(self.attempt, self._rng)
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
