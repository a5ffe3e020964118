"""How the wrapper reads Group Replication's error numbers (no server needed: the mapping itself).

The behaviour on a real group is pinned by tests/test_grouprepl.py (marker ``grouprepl``);
these pin the translation table so that a fast run catches a regression too.
"""

from __future__ import annotations

import pymysql
import pytest

from batchflag_db import BatchFlagError, TransactionConflictError
from batchflag_db._retry import RetryPolicy, RetryState
from batchflag_db.errors import ReadOnlyServerError, from_driver_error

ROLLBACK_3101 = "Plugin instructed the server to rollback the current transaction."
COMMIT_149 = "Got error 149 - 'Lock deadlock; Retry transaction' during COMMIT"
COMMIT_OTHER = "Got error 28 - 'No space left on device' during COMMIT"
READ_ONLY = (
    "The MySQL server is running with the --super-read-only option so it cannot execute "
    "this statement"
)


def _translated(errno: int, message: str) -> BatchFlagError:
    error = from_driver_error(pymysql.err.OperationalError(errno, message))
    assert error is not None
    return error


class TestGroupReplicationErrors:
    @pytest.mark.parametrize(("errno", "message"), [(3101, ROLLBACK_3101), (1180, COMMIT_149)])
    def test_certification_conflicts_are_conflicts(self, errno: int, message: str) -> None:
        """3101, and 1180 carrying engine error 149, become TransactionConflictError."""
        error = _translated(errno, message)
        assert type(error) is TransactionConflictError
        assert error.errno == errno

    def test_1180_with_another_engine_error_is_not_a_conflict(self) -> None:
        """1180 with an engine error other than 149 is a plain BatchFlagError, not retried."""
        error = _translated(1180, COMMIT_OTHER)
        assert type(error) is BatchFlagError
        state = RetryState(RetryPolicy(attempts=5), True, "set_current_batch", 7)
        with pytest.raises(BatchFlagError) as raised:
            state.failed(error)
        assert raised.value is error

    @pytest.mark.parametrize(("errno", "message"), [(3101, ROLLBACK_3101), (1180, COMMIT_149)])
    def test_conflicts_retried_when_the_flip_owns_its_transaction(
        self, errno: int, message: str
    ) -> None:
        """A flip in its own transaction waits and tries again after a certification conflict."""
        state = RetryState(RetryPolicy(attempts=5), True, "set_current_batch", 7)
        delay = state.failed(_translated(errno, message))
        assert 0 <= delay <= 0.05
        assert state.attempt == 2

    @pytest.mark.parametrize(("errno", "message"), [(3101, ROLLBACK_3101), (1180, COMMIT_149)])
    def test_conflicts_in_the_callers_transaction_raise(self, errno: int, message: str) -> None:
        """Inside the caller's transaction a certification conflict says retry the whole transaction."""
        state = RetryState(RetryPolicy(attempts=5), False, "set_current_batch", 7)
        with pytest.raises(TransactionConflictError) as raised:
            state.failed(_translated(errno, message))
        assert raised.value.errno == errno
        assert "retry the whole transaction" in str(raised.value)
        assert "certification conflict" in str(raised.value)

    def test_read_only_says_send_flips_to_the_primary(self) -> None:
        """1290 becomes ReadOnlyServerError telling where flips go; it is never retried."""
        error = _translated(1290, READ_ONLY)
        assert type(error) is ReadOnlyServerError
        assert "send flips to the primary" in str(error)
        assert "super-read-only" in str(error)
        state = RetryState(RetryPolicy(attempts=5), True, "set_current_batch", 7)
        with pytest.raises(ReadOnlyServerError):
            state.failed(error)
