"""A team's existing writers after adoption: what each legacy pattern gets now.

docs/legacy-writers.md lists these patterns, the exact error each gets, and what to
write instead; each test here pins one row of that page. The table is the default
installation's (``batchStatus``, flag ``currentBatch``); on other names the
statements and the index name change, the outcomes do not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext

import pytest
from sqlalchemy import Integer, SmallInteger, String, create_engine, pool, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from batchflag_db import current_batch, get_current_batch, set_current_batch
from batchflag_db.dashboard import resolve_dashboard_batch
from batchflag_db.errors import ER_DUP_ENTRY, driver_error_details

INDEX = "uq_batchStatus_currentBatchKey"


class Base(DeclarativeBase):
    pass


class Batch(Base):
    """The team's ORM model of its table, as it was before adoption."""

    __tablename__ = "batchStatus"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column("batchStatus", String(32))
    is_current: Mapped[int] = mapped_column("currentBatch", SmallInteger)


@pytest.fixture
def team(migrated_url: URL) -> Iterator[tuple[Engine, list[int]]]:
    """An Engine in autocommit, and five batches (ids ascending) with the third current."""
    engine = create_engine(migrated_url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        ids = []
        for _ in range(5):
            result = conn.execute(
                text("INSERT INTO batchStatus (batchDate, batchNumber) VALUES (CURDATE(), 1)")
            )
            ids.append(int(result.lastrowid))
    set_current_batch(engine, ids[2])
    yield engine, ids
    engine.dispose()


def run(engine: Engine, statements: tuple[str, ...], *, transaction: bool) -> None:
    """Run the statements in autocommit, or in one transaction."""
    target = transactional(engine) if transaction else engine
    with target.connect() as conn, conn.begin() if transaction else nullcontext():
        for statement in statements:
            conn.execute(text(statement))


def refused(engine: Engine, *statements: str, transaction: bool = False) -> str:
    """Run the statements; return the duplicate-key message they fail with."""
    with pytest.raises(IntegrityError) as info:
        run(engine, statements, transaction=transaction)
    errno, _, message = driver_error_details(info.value)
    assert errno == ER_DUP_ENTRY
    assert INDEX in message
    assert message.startswith("Duplicate entry '1' for key ")
    return message


def transactional(engine: Engine) -> Engine:
    """The same engine in the driver's default isolation: a Session gets real transactions."""
    return engine.execution_options(isolation_level="REPEATABLE READ")


class TestWhatStillWorks:
    def test_two_update_flip_alone(self, team: tuple[Engine, list[int]]) -> None:
        """Clear the old flag, then set the new one, each in autocommit: works."""
        engine, ids = team
        with engine.connect() as conn:
            conn.execute(text("UPDATE batchStatus SET currentBatch = 0 WHERE currentBatch = 1"))
            conn.execute(text(f"UPDATE batchStatus SET currentBatch = 1 WHERE id = {ids[0]}"))
        assert get_current_batch(engine) == ids[0]

    def test_two_update_flip_in_a_transaction(self, team: tuple[Engine, list[int]]) -> None:
        """The same two UPDATEs in one transaction: works."""
        engine, ids = team
        run(
            engine,
            (
                "UPDATE batchStatus SET currentBatch = 0 WHERE currentBatch = 1",
                f"UPDATE batchStatus SET currentBatch = 1 WHERE id = {ids[4]}",
            ),
            transaction=True,
        )
        assert get_current_batch(engine) == ids[4]

    def test_set_expression_when_the_new_id_is_higher(self, team: tuple[Engine, list[int]]) -> None:
        """SET flag = (id = X) with X above the current id: rows are visited in id order, works."""
        engine, ids = team
        with engine.connect() as conn:
            conn.execute(text(f"UPDATE batchStatus SET currentBatch = (id = {ids[4]})"))
        assert get_current_batch(engine) == ids[4]


class TestWhatFailsNow:
    def test_stray_set(self, team: tuple[Engine, list[int]]) -> None:
        """SET flag = 1 on a second row while one is current: 1062, nothing changes."""
        engine, ids = team
        refused(engine, f"UPDATE batchStatus SET currentBatch = 1 WHERE id = {ids[0]}")
        assert get_current_batch(engine) == ids[2]

    def test_insert_current(self, team: tuple[Engine, list[int]]) -> None:
        """INSERT a new row with flag = 1 while one is current: 1062, no row added."""
        engine, ids = team
        refused(
            engine,
            "INSERT INTO batchStatus (batchDate, batchNumber, currentBatch) VALUES (CURDATE(), 2, 1)",
        )
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM batchStatus")).scalar() == len(ids)

    def test_set_new_before_clearing_old(self, team: tuple[Engine, list[int]]) -> None:
        """Set the new row first, clear the old one second: the first UPDATE gets 1062."""
        engine, ids = team
        refused(
            engine,
            f"UPDATE batchStatus SET currentBatch = 1 WHERE id = {ids[4]}",
            f"UPDATE batchStatus SET currentBatch = 0 WHERE id = {ids[2]}",
            transaction=True,
        )
        assert get_current_batch(engine) == ids[2]

    def test_set_expression_when_the_new_id_is_lower(self, team: tuple[Engine, list[int]]) -> None:
        """SET flag = (id = X) with X below the current id: X is set before the old is cleared."""
        engine, ids = team
        refused(engine, f"UPDATE batchStatus SET currentBatch = (id = {ids[0]})")
        assert get_current_batch(engine) == ids[2]

    def test_orm_flip_to_a_lower_id(self, team: tuple[Engine, list[int]]) -> None:
        """old.is_current = 0; new.is_current = 1; commit: SQLAlchemy flushes in id order."""
        engine, ids = team
        with Session(transactional(engine)) as session:
            old, new = session.get_one(Batch, ids[2]), session.get_one(Batch, ids[0])
            old.is_current, new.is_current = 0, 1
            with pytest.raises(IntegrityError) as info:
                session.commit()
        errno, _, message = driver_error_details(info.value)
        assert (errno, INDEX in message) == (ER_DUP_ENTRY, True)
        assert get_current_batch(engine) == ids[2]

    def test_orm_flip_to_a_higher_id_works(self, team: tuple[Engine, list[int]]) -> None:
        """The same ORM flip to a higher id happens to work: the old row is flushed first."""
        engine, ids = team
        with Session(transactional(engine)) as session:
            old, new = session.get_one(Batch, ids[2]), session.get_one(Batch, ids[4])
            old.is_current, new.is_current = 0, 1
            session.commit()
        assert get_current_batch(engine) == ids[4]


class TestWhatToWriteInstead:
    def test_orm_recipe_commits_with_the_session(self, team: tuple[Engine, list[int]]) -> None:
        """set_current_batch(session.connection(), id) joins the session's transaction."""
        engine, ids = team
        with Session(transactional(engine)) as session:
            session.get_one(Batch, ids[0]).status = "InProgress"
            flip = set_current_batch(session.connection(), ids[0])
            assert flip.previous_batch_id == ids[2]
            session.commit()
        assert get_current_batch(engine) == ids[0]
        with engine.connect() as conn:
            status = conn.execute(text(f"SELECT batchStatus FROM batchStatus WHERE id = {ids[0]}"))
            assert status.scalar() == "InProgress"

    def test_orm_recipe_rolls_back_with_the_session(self, team: tuple[Engine, list[int]]) -> None:
        """A session rolled back after the call leaves the old batch current."""
        engine, ids = team
        with Session(transactional(engine)) as session:
            set_current_batch(session.connection(), ids[0])
            session.rollback()
        assert get_current_batch(engine) == ids[2]

    def test_dashboard_after_a_successful_run(self, team: tuple[Engine, list[int]]) -> None:
        """After a clean current_batch() run no row is flagged; resolve_dashboard_batch still shows one."""
        engine, ids = team
        with engine.connect() as conn:
            conn.execute(text("UPDATE batchStatus SET batchStatus = 'Completed'"))
        with current_batch(engine, ids[4]):
            pass
        with engine.connect() as conn:
            flagged = conn.execute(text("SELECT id FROM batchStatus WHERE currentBatch = 1"))
            assert flagged.all() == []
        resolution = resolve_dashboard_batch(engine)
        assert resolution is not None
        assert (resolution.batch_id, resolution.reason) == (ids[4], "most_recent")
