"""current_batch(): set on entry, unset on a clean exit, left set when the block raises."""

from __future__ import annotations

from collections.abc import Callable

import pymysql
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, Engine

from batchflag_db import (
    BatchNotFoundError,
    Flip,
    InvalidBatchIdError,
    current_batch,
    get_current_batch,
    set_current_batch,
)
from tests.conftest import connect, current_rows


class PipelineFailedError(Exception):
    """Stands for whatever a pipeline stage raises."""


def failing_stage(work: Callable[[], object]) -> None:
    """A pipeline stage that does some work, then fails."""
    work()
    raise PipelineFailedError


class TestCleanExit:
    def test_set_inside_unset_after(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """Inside the block the batch is current for everyone; after a clean exit none is."""
        (a,) = add_batches(1)
        with current_batch(engine, a) as flip:
            assert flip == Flip(a, None, True)
            assert current_rows(connect_db()) == [a]  # committed: the dashboard sees it
        assert current_rows(connect_db()) == []

    def test_reports_the_batch_it_replaced(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """Entering over another current batch replaces it; the Flip names the one replaced."""
        a, b = add_batches(2)
        set_current_batch(engine, a)
        with current_batch(engine, b) as flip:
            assert flip.previous_batch_id == a
            assert current_rows(connect_db()) == [b]
        assert current_rows(connect_db()) == []

    def test_block_that_moved_on_is_not_undone(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """If the block made another batch current, the exit leaves that batch alone."""
        a, b = add_batches(2)
        with current_batch(engine, a):
            set_current_batch(engine, b)
        assert current_rows(connect_db()) == [b]


class TestBlockRaises:
    def test_flag_left_set_and_error_propagates(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """A failing block leaves its batch current (the dashboard shows it) and re-raises as is."""
        (a,) = add_batches(1)
        error = PipelineFailedError("stage 3 failed")
        with pytest.raises(PipelineFailedError) as info, current_batch(engine, a):
            raise error
        assert info.value is error
        assert info.value.__cause__ is None
        assert current_rows(connect_db()) == [a]
        assert get_current_batch(engine) == a

    def test_keyboard_interrupt_leaves_it_set_too(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """Any exception, not only Exception subclasses, leaves the flag set."""
        (a,) = add_batches(1)
        with pytest.raises(KeyboardInterrupt), current_batch(engine, a):
            raise KeyboardInterrupt
        assert current_rows(connect_db()) == [a]

    def test_next_run_takes_over_the_failed_batch(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """After a failed run, the next run's batch replaces the failed one and clears on success."""
        a, b = add_batches(2)
        with pytest.raises(PipelineFailedError), current_batch(engine, a):
            raise PipelineFailedError
        with current_batch(engine, b) as flip:
            assert flip.previous_batch_id == a
        assert current_rows(connect_db()) == []


class TestEntryFails:
    def test_unknown_batch_never_runs_the_block(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """A missing batch raises on entry, the block does not run, the current batch stays."""
        (a,) = add_batches(1)
        set_current_batch(engine, a)
        ran = []
        with (
            pytest.raises(BatchNotFoundError, match=f"batch {a + 50} does not exist"),
            current_batch(engine, a + 50),
        ):
            ran.append(True)
        assert ran == []
        assert current_rows(connect_db()) == [a]

    def test_invalid_id(self, engine: Engine) -> None:
        """An invalid id is refused before any SQL runs."""
        with pytest.raises(InvalidBatchIdError), current_batch(engine, 0):
            pytest.fail("the block ran")


class TestTransactions:
    def test_in_a_connection_the_flips_follow_its_transaction(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """With a Connection both flips belong to the caller's transaction, invisible until commit."""
        a, b = add_batches(2)
        set_current_batch(engine, a)
        with engine.connect() as conn:
            with current_batch(conn, b):
                assert get_current_batch(conn) == b
                assert current_rows(connect_db()) == [a]
            conn.commit()
        assert current_rows(connect_db()) == []

    def test_a_rollback_after_failure_also_undoes_the_set(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """In the caller's transaction, rolling back after a failure undoes the set as well.

        This is why the pipeline should pass an Engine: only then is the failed batch
        left current whatever the caller does with its own transaction.
        """
        a, b = add_batches(2)
        set_current_batch(engine, a)
        with engine.connect() as conn:
            with pytest.raises(PipelineFailedError), current_batch(conn, b):
                failing_stage(lambda: conn.execute(text("UPDATE batchStatus SET batchNumber = 7")))
            conn.rollback()
        assert current_rows(connect_db()) == [a]

    def test_pep249_autocommit_connection(
        self,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """A PyMySQL connection in autocommit mode behaves like an Engine: each flip commits."""
        (a,) = add_batches(1)
        conn = connect(migrated_url, autocommit=True)
        try:
            seen: list[list[int]] = []
            with pytest.raises(PipelineFailedError), current_batch(conn, a):
                failing_stage(lambda: seen.append(current_rows(connect_db())))
            assert seen == [[a]]
            assert current_rows(connect_db()) == [a]
            with current_batch(conn, a) as flip:
                assert flip.changed is False
            assert current_rows(connect_db()) == []
        finally:
            conn.close()
