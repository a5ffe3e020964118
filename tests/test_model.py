"""Model-based test: random sequences of every way to touch the flag, checked after each step.

Hypothesis drives a state machine through set / unset (the procedures, through
the wrapper, in their own transaction or in the caller's, committed or rolled
back), direct SQL writes of the flag (including ones the UNIQUE index refuses and
the application's old two-statement flip), inserts, and deletes (of the current
row too). After every step the whole table is compared with a plain-Python model.

Decided and pinned here: deleting the current batch's row leaves no batch current
(the row is gone, nothing else is promoted); the next set works and reports no
previous batch; unset or set of the deleted id raises BatchNotFoundError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pymysql
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine

from batchflag_db import (
    BatchNotFoundError,
    Flip,
    get_current_batch,
    set_current_batch,
    unset_current_batch,
)
from tests.conftest import check_table, connect

ER_DUP_ENTRY = 1062
ER_WARN_DATA_OUT_OF_RANGE = 1264

# Values a careless writer might put in the flag: non-zero means current.
FLAG_VALUES = st.sampled_from([0, 1, 2, -1, 127, 300])
NONZERO_VALUES = st.sampled_from([1, 2, -1, 127])


class FlagModel:
    """The expected table: id -> currentBatch value."""

    def __init__(self) -> None:
        self.rows: dict[int, int] = {}

    def current(self) -> int | None:
        holders = [i for i, v in self.rows.items() if v != 0]
        assert len(holders) <= 1, f"model broke its own invariant: {holders}"
        return holders[0] if holders else None

    def set(self, batch_id: int) -> Flip:
        previous = self.current()
        changed = previous != batch_id
        if changed:
            if previous is not None:
                self.rows[previous] = 0
            self.rows[batch_id] = 1
        return Flip(batch_id, previous, changed)

    def unset(self, batch_id: int) -> Flip:
        changed = self.current() == batch_id
        if changed:
            self.rows[batch_id] = 0
        return Flip(batch_id, batch_id if changed else None, changed)

    def write_refused(self, batch_id: int, value: int) -> int | None:
        """The errno the server must refuse a direct write with, or None if it must accept it."""
        if batch_id not in self.rows:
            return None  # matches no row: nothing to refuse
        if not -128 <= value <= 127:
            return ER_WARN_DATA_OUT_OF_RANGE
        holder = self.current()
        if value != 0 and holder is not None and holder != batch_id:
            return ER_DUP_ENTRY
        return None


class FlagMachine(RuleBasedStateMachine):
    """Drives one migrated database; the model says what every step must do."""

    url: URL

    batches = Bundle("batches")

    def __init__(self) -> None:
        super().__init__()
        self.model = FlagModel()
        self.sql = connect(self.url, autocommit=True)
        self.txn = connect(self.url, autocommit=False)
        self.engine = create_engine(self.url, pool_size=1)
        self.missing = 10**12
        with self.sql.cursor() as cur:
            cur.execute("DELETE FROM batchStatus")

    def teardown(self) -> None:
        self.sql.close()
        self.txn.close()
        self.engine.dispose()

    # --- helpers --------------------------------------------------------------

    def _insert(self, value: int) -> int:
        with self.sql.cursor() as cur:
            cur.execute(
                "INSERT INTO batchStatus (batchDate, batchNumber, currentBatch) "
                "VALUES ('2026-11-28', 1, %s)",
                (value,),
            )
            return int(cur.lastrowid)

    def _direct(self, sql: str, args: tuple[Any, ...] = ()) -> int | None:
        """Run a write; return the server's errno if it refused it."""
        try:
            with self.sql.cursor() as cur:
                cur.execute(sql, args)
        except pymysql.err.MySQLError as exc:
            return int(exc.args[0])
        return None

    def _next_missing(self) -> int:
        self.missing += 1
        return self.missing

    # --- rules: the procedures ---------------------------------------------------

    @initialize(target=batches)
    def first_batch(self) -> int:
        batch_id = self._insert(0)
        self.model.rows[batch_id] = 0
        return batch_id

    @rule(target=batches)
    def insert_batch(self) -> int:
        batch_id = self._insert(0)
        self.model.rows[batch_id] = 0
        return batch_id

    @rule(batch_id=batches)
    def set_batch(self, batch_id: int) -> None:
        if batch_id not in self.model.rows:
            with pytest.raises(BatchNotFoundError):
                set_current_batch(self.engine, batch_id)
            return
        assert set_current_batch(self.engine, batch_id) == self.model.set(batch_id)

    @rule(batch_id=batches)
    def unset_batch(self, batch_id: int) -> None:
        if batch_id not in self.model.rows:
            with pytest.raises(BatchNotFoundError):
                unset_current_batch(self.engine, batch_id)
            return
        assert unset_current_batch(self.engine, batch_id) == self.model.unset(batch_id)

    @rule()
    def set_missing_batch(self) -> None:
        with pytest.raises(BatchNotFoundError):
            set_current_batch(self.engine, self._next_missing())

    @rule(batch_id=batches, commit=st.booleans())
    def set_in_callers_transaction(self, batch_id: int, commit: bool) -> None:
        """Set inside the caller's transaction (autocommit off); commit or roll back."""
        if batch_id not in self.model.rows:
            with pytest.raises(BatchNotFoundError):
                set_current_batch(self.txn, batch_id)
            self.txn.rollback()
            return
        scratch = FlagModel()
        scratch.rows = dict(self.model.rows)
        flip = set_current_batch(self.txn, batch_id)
        assert flip == scratch.set(batch_id)
        if commit:
            self.txn.commit()
            self.model = scratch
        else:
            self.txn.rollback()

    # --- rules: direct SQL, as a careless or old writer would -----------------

    @rule(batch_id=batches, value=FLAG_VALUES)
    def direct_update(self, batch_id: int, value: int) -> None:
        expected = self.model.write_refused(batch_id, value)
        got = self._direct(
            "UPDATE batchStatus SET currentBatch = %s WHERE id = %s", (value, batch_id)
        )
        assert got == expected, (batch_id, value)
        if got is None and batch_id in self.model.rows:
            self.model.rows[batch_id] = value

    @rule(batch_id=batches)
    def old_two_statement_flip(self, batch_id: int) -> None:
        """The application's original code: clear all, then set one (two autocommits)."""
        assert self._direct("UPDATE batchStatus SET currentBatch = 0") is None
        for key in self.model.rows:
            self.model.rows[key] = 0
        assert (
            self._direct("UPDATE batchStatus SET currentBatch = 1 WHERE id = %s", (batch_id,))
            is None
        )
        if batch_id in self.model.rows:
            self.model.rows[batch_id] = 1

    @rule()
    def flag_every_row(self) -> None:
        """UPDATE batchStatus SET currentBatch = 1: refused as a whole when there are two rows."""
        got = self._direct("UPDATE batchStatus SET currentBatch = 1")
        if len(self.model.rows) >= 2:
            assert got == ER_DUP_ENTRY
        else:
            assert got is None
            for key in self.model.rows:
                self.model.rows[key] = 1

    @rule(target=batches, value=NONZERO_VALUES)
    def insert_flagged(self, value: int) -> int:
        """INSERT a row that is already current: refused while another row is current."""
        if self.model.current() is not None:
            got = self._direct(
                "INSERT INTO batchStatus (batchDate, batchNumber, currentBatch) "
                "VALUES ('2026-11-28', 2, %s)",
                (value,),
            )
            assert got == ER_DUP_ENTRY
            return self._next_missing()  # a never-existing id, for later rules
        batch_id = self._insert(value)
        self.model.rows[batch_id] = value
        return batch_id

    # --- rules: deletes --------------------------------------------------------

    @precondition(lambda self: self.model.current() is not None)
    @rule()
    def delete_current_row(self) -> None:
        """Delete the current batch's row: afterwards no batch is current."""
        holder = self.model.current()
        assert self._direct("DELETE FROM batchStatus WHERE currentBatchKey = 1") is None
        del self.model.rows[cast(int, holder)]  # the precondition: a batch is current
        assert get_current_batch(self.engine) is None

    @rule(batch_id=consumes(batches))
    def delete_batch(self, batch_id: int) -> None:
        assert self._direct("DELETE FROM batchStatus WHERE id = %s", (batch_id,)) is None
        self.model.rows.pop(batch_id, None)

    # --- checked after every step --------------------------------------------

    @invariant()
    def table_matches_model(self) -> None:
        with self.sql.cursor() as cur:
            cur.execute("SELECT id, currentBatch FROM batchStatus ORDER BY id")
            actual = {int(i): int(v) for i, v in cur.fetchall()}
            cur.execute("SELECT id FROM batchStatus WHERE currentBatch <> 0")
            flagged = [int(r[0]) for r in cur.fetchall()]
        assert actual == self.model.rows
        assert len(flagged) <= 1
        assert get_current_batch(self.engine) == self.model.current()


@pytest.mark.slow
def test_flag_state_machine(
    migrated_url: URL, connect_db: Callable[..., pymysql.Connection]
) -> None:
    """Every random sequence of flips, direct writes, inserts and deletes matches the model."""
    FlagMachine.url = migrated_url
    run_state_machine_as_test(
        FlagMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    assert check_table(connect_db())[-1][-1] == "OK"


class TestDeletingTheCurrentRow:
    def test_delete_current_then_set_again(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """Deleting the current row leaves none current; the next set works; the old id is gone."""
        a, b = add_batches(2)
        set_current_batch(engine, a)
        conn = connect_db(autocommit=True)
        with conn.cursor() as cur:
            cur.execute("DELETE FROM batchStatus WHERE id = %s", (a,))
        assert get_current_batch(engine) is None
        assert set_current_batch(engine, b) == Flip(b, None, True)
        with pytest.raises(BatchNotFoundError):
            unset_current_batch(engine, a)
        with pytest.raises(BatchNotFoundError):
            set_current_batch(engine, a)
        assert get_current_batch(engine) == b
