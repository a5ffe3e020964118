"""batchflag_db.aio: the same API on SQLAlchemy's AsyncEngine and AsyncConnection.

Every test runs with aiomysql (the recommended driver) and asyncmy. Coroutines
run under ``asyncio.run``: no pytest plugin needed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pymysql
import pytest
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from batchflag_db import (
    BatchNotFoundError,
    DatabaseConnectionError,
    Flip,
    InvalidBatchIdError,
    RetryPolicy,
    SchemaNotReadyError,
    TransactionConflictError,
    aio,
)
from batchflag_db.testing.server import free_port
from tests.conftest import current_rows
from tests.test_retry import (
    FAST,
    SHORT_WAIT,
    DeadlockPartner,
    LockHolder,
    RetryEvents,
    watch_retry_events,
)

ASYNC_DRIVERS = ["aiomysql", "asyncmy"]


@pytest.fixture(params=ASYNC_DRIVERS)
def async_url(request: pytest.FixtureRequest, migrated_url: URL) -> URL:
    """The migrated database's URL with an async driver."""
    return migrated_url.set(drivername=f"mysql+{request.param}")


AsyncRunner = Callable[..., Any]


@pytest.fixture
def run_async(async_url: URL) -> AsyncRunner:
    """Run ``body(engine)`` in a fresh event loop with an AsyncEngine that is disposed after."""

    def runner(body: Callable[[AsyncEngine], Awaitable[Any]], **engine_kwargs: Any) -> Any:
        async def main() -> Any:
            engine = create_async_engine(async_url, poolclass=pool.NullPool, **engine_kwargs)
            try:
                return await body(engine)
            finally:
                await engine.dispose()

        return asyncio.run(main())

    return runner


@pytest.fixture
def retry_events() -> Iterator[Callable[..., RetryEvents]]:
    """Attach RetryEvents handlers to the library's logger for the test only."""
    yield from watch_retry_events()


class PipelineFailedError(Exception):
    """Stands for whatever a pipeline stage raises."""


class TestAsyncEngine:
    def test_set_unset_get(
        self,
        run_async: AsyncRunner,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """With an AsyncEngine each flip commits on its own and returns what it did."""
        a, b = add_batches(2)

        async def body(engine: AsyncEngine) -> list[Any]:
            return [
                await aio.set_current_batch(engine, a),
                await aio.set_current_batch(engine, b),
                await aio.get_current_batch(engine),
                await aio.set_current_batch(engine, b),
                await aio.unset_current_batch(engine, a),
            ]

        assert run_async(body) == [
            Flip(a, None, True),
            Flip(b, a, True),
            b,
            Flip(b, b, False),
            Flip(a, None, False),
        ]
        assert current_rows(connect_db()) == [b]
        assert run_async(lambda engine: aio.unset_current_batch(engine, b)) == Flip(b, b, True)
        assert run_async(aio.get_current_batch) is None
        assert current_rows(connect_db()) == []

    def test_logs_the_seeds_events(
        self,
        run_async: AsyncRunner,
        add_batches: Callable[[int], list[int]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The async flips log current_batch_flag_set/unset with batch_id and previous_batch_id."""
        a, b = add_batches(2)

        async def body(engine: AsyncEngine) -> None:
            await aio.set_current_batch(engine, a)
            await aio.set_current_batch(engine, b)
            await aio.unset_current_batch(engine, b)

        with caplog.at_level(logging.INFO, logger="batchflag_db"):
            run_async(body)
        events = [(r.event, r.batch_id, r.previous_batch_id) for r in caplog.records]  # type: ignore[attr-defined]
        assert events == [
            ("current_batch_flag_set", a, None),
            ("current_batch_flag_set", b, a),
            ("current_batch_flag_unset", b, b),
        ]


class TestAsyncConnection:
    def test_async_connection_logs_pending_events(
        self,
        run_async: AsyncRunner,
        add_batches: Callable[[int], list[int]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Inside an AsyncConnection's transaction the flips log the pending events."""
        (a,) = add_batches(1)

        async def body(engine: AsyncEngine) -> None:
            async with engine.connect() as conn:
                await aio.set_current_batch(conn, a)
                await aio.unset_current_batch(conn, a)
                await conn.rollback()

        with caplog.at_level(logging.INFO, logger="batchflag_db"):
            run_async(body)
        events = [(r.event, r.batch_id) for r in caplog.records]  # type: ignore[attr-defined]
        assert events == [
            ("current_batch_flag_set_pending", a),
            ("current_batch_flag_unset_pending", a),
        ]

    def test_joins_the_transaction(
        self,
        run_async: AsyncRunner,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """With an AsyncConnection the flip is the caller's until it commits; rollback undoes it."""
        a, b = add_batches(2)
        seen: dict[str, Any] = {}

        async def body(engine: AsyncEngine) -> None:
            await aio.set_current_batch(engine, a)
            async with engine.connect() as conn:
                await aio.set_current_batch(conn, b)
                seen["own"] = await aio.get_current_batch(conn)
                seen["others"] = current_rows(connect_db())
                await conn.rollback()
            seen["after_rollback"] = current_rows(connect_db())
            async with engine.begin() as conn:
                await aio.set_current_batch(conn, b)
            seen["after_commit"] = current_rows(connect_db())

        run_async(body)
        assert seen == {"own": b, "others": [a], "after_rollback": [a], "after_commit": [b]}


class TestAsyncContextManager:
    def test_clean_exit_unsets(
        self,
        run_async: AsyncRunner,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """Set on entry (visible to others), unset on a clean exit."""
        (a,) = add_batches(1)
        inside: list[Any] = []

        async def body(engine: AsyncEngine) -> None:
            async with aio.current_batch(engine, a) as flip:
                inside.extend([flip, current_rows(connect_db())])

        run_async(body)
        assert inside == [Flip(a, None, True), [a]]
        assert current_rows(connect_db()) == []

    def test_failure_leaves_it_set(
        self,
        run_async: AsyncRunner,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """A failing block leaves the batch current and its error propagates unchanged."""
        (a,) = add_batches(1)
        error = PipelineFailedError("stage 2")

        async def body(engine: AsyncEngine) -> None:
            async with aio.current_batch(engine, a):
                raise error

        with pytest.raises(PipelineFailedError) as info:
            run_async(body)
        assert info.value is error
        assert current_rows(connect_db()) == [a]

    def test_cancellation_leaves_it_set(
        self,
        run_async: AsyncRunner,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """A cancelled pipeline task counts as a failure: the flag stays, CancelledError propagates."""
        (a,) = add_batches(1)
        outcome: list[str] = []

        async def pipeline(engine: AsyncEngine, started: asyncio.Event) -> None:
            async with aio.current_batch(engine, a):
                started.set()
                await asyncio.sleep(60)

        async def body(engine: AsyncEngine) -> None:
            started = asyncio.Event()
            task = asyncio.create_task(pipeline(engine, started))
            await started.wait()
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                outcome.append("cancelled")

        run_async(body)
        assert outcome == ["cancelled"]
        assert current_rows(connect_db()) == [a]

    def test_unknown_batch_never_runs_the_block(
        self,
        run_async: AsyncRunner,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """A missing batch raises on entry; the block does not run."""
        (a,) = add_batches(1)
        ran: list[bool] = []

        async def body(engine: AsyncEngine) -> None:
            async with aio.current_batch(engine, a + 9):
                ran.append(True)

        with pytest.raises(BatchNotFoundError, match=f"batch {a + 9} does not exist"):
            run_async(body)
        assert ran == []


class TestAsyncErrors:
    def test_invalid_id(self, run_async: AsyncRunner) -> None:
        """Invalid ids are refused before any SQL, as in the sync API."""
        with pytest.raises(InvalidBatchIdError):
            run_async(lambda engine: aio.set_current_batch(engine, -3))

    def test_unmigrated_database(self, db_url: URL) -> None:
        """An empty database says to run the migrations."""

        async def main() -> None:
            engine = create_async_engine(
                db_url.set(drivername="mysql+aiomysql"), poolclass=pool.NullPool
            )
            try:
                await aio.set_current_batch(engine, 1)
            finally:
                await engine.dispose()

        with pytest.raises(SchemaNotReadyError, match="batchflag upgrade"):
            asyncio.run(main())

    @pytest.mark.parametrize("driver", ASYNC_DRIVERS)
    def test_unreachable_server(self, driver: str) -> None:
        """A server that does not answer raises DatabaseConnectionError."""

        async def main() -> None:
            engine = create_async_engine(
                f"mysql+{driver}://root@127.0.0.1:{free_port()}/x", poolclass=pool.NullPool
            )
            try:
                await aio.get_current_batch(engine)
            finally:
                await engine.dispose()

        with pytest.raises(DatabaseConnectionError):
            asyncio.run(main())

    def test_sync_engine_is_refused(self, migrated_url: URL) -> None:
        """Passing a sync Engine to the async API is a TypeError that names the right module."""
        engine = create_engine(migrated_url, poolclass=pool.NullPool)
        with pytest.raises(TypeError, match="use batchflag_db"):
            asyncio.run(aio.set_current_batch(engine, 1))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="AsyncEngine or AsyncConnection"):
            asyncio.run(aio.get_current_batch(engine))  # type: ignore[arg-type]
        engine.dispose()


@pytest.mark.slow
class TestAsyncRetry:
    def test_engine_retries_a_real_deadlock(
        self,
        run_async: AsyncRunner,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        retry_events: Callable[..., RetryEvents],
    ) -> None:
        """A genuine deadlock in a flip the AsyncEngine owns is retried and then lands."""
        ids = add_batches(40)
        events = retry_events()

        async def body(engine: AsyncEngine) -> Flip:
            partner = DeadlockPartner(migrated_url, ids[0], ballast=ids[2:])
            try:
                return await aio.set_current_batch(engine, ids[0], retry=FAST)
            finally:
                await asyncio.to_thread(partner.join)

        flip = run_async(body)
        assert flip == Flip(ids[0], None, True)
        assert flip.attempts == 2
        assert [r.errno for r in events.records] == [1213]
        assert current_rows(connect_db()) == [ids[0]]

    def test_deadlock_in_a_transaction_raises(
        self,
        run_async: AsyncRunner,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        retry_events: Callable[..., RetryEvents],
    ) -> None:
        """In an AsyncConnection's transaction a deadlock raises TransactionConflictError at once."""
        ids = add_batches(40)
        events = retry_events()

        async def body(engine: AsyncEngine) -> None:
            async with engine.connect() as conn:
                partner = DeadlockPartner(migrated_url, ids[0], ballast=ids[2:])
                try:
                    await aio.set_current_batch(conn, ids[0], retry=FAST)
                finally:
                    await asyncio.to_thread(partner.join)
                    await conn.rollback()

        with pytest.raises(TransactionConflictError, match="retry the whole transaction") as info:
            run_async(body)
        assert info.value.errno == 1213
        assert events.records == []
        assert current_rows(connect_db()) == []

    def test_lock_wait_timeout_is_retried(
        self,
        run_async: AsyncRunner,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        retry_events: Callable[..., RetryEvents],
    ) -> None:
        """A 1205 is retried with backoff; the attempt after the lock is freed succeeds."""
        (a,) = add_batches(1)
        holder = LockHolder(migrated_url)
        events = retry_events(on_first=holder.release)
        try:
            flip = run_async(
                lambda engine: aio.set_current_batch(engine, a, retry=FAST),
                connect_args={"init_command": SHORT_WAIT},
            )
        finally:
            holder.close()
        assert flip.attempts == 2
        assert [r.errno for r in events.records] == [1205]
        assert current_rows(connect_db()) == [a]

    def test_lock_wait_gives_up(
        self,
        run_async: AsyncRunner,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        retry_events: Callable[..., RetryEvents],
    ) -> None:
        """With the lock never freed the async API stops after the policy's attempts."""
        (a,) = add_batches(1)
        holder = LockHolder(migrated_url)
        events = retry_events()
        try:
            with pytest.raises(TransactionConflictError, match="gave up after 2 attempts"):
                run_async(
                    lambda engine: aio.unset_current_batch(
                        engine, a, retry=RetryPolicy(attempts=2, base_delay=0)
                    ),
                    connect_args={"init_command": SHORT_WAIT},
                )
        finally:
            holder.close()
        assert len(events.records) == 1

    def test_autocommit_connection_is_retried(
        self,
        run_async: AsyncRunner,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        retry_events: Callable[..., RetryEvents],
    ) -> None:
        """An AsyncConnection in AUTOCOMMIT isolation owns nothing a retry could lose: retried."""
        (a,) = add_batches(1)
        holder = LockHolder(migrated_url)
        events = retry_events(on_first=holder.release)

        async def body(engine: AsyncEngine) -> Flip:
            async with engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                return await aio.set_current_batch(auto, a, retry=FAST)

        try:
            flip = run_async(body, connect_args={"init_command": SHORT_WAIT})
        finally:
            holder.close()
        assert flip.attempts == 2
        assert [r.errno for r in events.records] == [1205]
        assert current_rows(connect_db()) == [a]
