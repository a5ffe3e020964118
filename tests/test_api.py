"""The Python wrapper: every kind of connection, typed errors, index lookups."""

from __future__ import annotations

import pymysql
import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import URL, Engine

import batchflag_db
from batchflag_db import (
    BatchNotFoundError,
    InvalidBatchIdError,
    SchemaNotReadyError,
    get_current_batch,
    set_current_batch,
    unset_current_batch,
)
from tests.conftest import connect, current_rows


class TestWithEngine:
    def test_set_commits_on_its_own(self, engine: Engine, add_batches, connect_db) -> None:
        """With an Engine the procedure runs in its own transaction and commits it."""
        a, b = add_batches(2)
        flip = set_current_batch(engine, a)
        assert flip == batchflag_db.Flip(a, None, True)
        flip = set_current_batch(engine, b)
        assert flip == batchflag_db.Flip(b, a, True)
        assert current_rows(connect_db()) == [b]
        assert get_current_batch(engine) == b

    def test_already_current_is_a_no_op(self, engine: Engine, add_batches) -> None:
        """Setting the current batch again succeeds and reports no change."""
        (a,) = add_batches(1)
        set_current_batch(engine, a)
        assert set_current_batch(engine, a) == batchflag_db.Flip(a, a, False)

    def test_unset(self, engine: Engine, add_batches, connect_db) -> None:
        """Unset clears the current batch; unsetting a non-current batch changes nothing."""
        a, b = add_batches(2)
        set_current_batch(engine, a)
        assert unset_current_batch(engine, b).changed is False
        assert current_rows(connect_db()) == [a]
        assert unset_current_batch(engine, a) == batchflag_db.Flip(a, a, True)
        assert get_current_batch(engine) is None


class TestWithConnection:
    def test_joins_the_callers_transaction(self, engine: Engine, add_batches, connect_db) -> None:
        """With a Connection the flip is part of the caller's transaction until it commits."""
        a, b = add_batches(2)
        set_current_batch(engine, a)
        with engine.connect() as conn:
            set_current_batch(conn, b)
            assert get_current_batch(conn) == b  # own transaction sees it
            assert current_rows(connect_db()) == [a]  # others do not, yet
            conn.rollback()
        assert current_rows(connect_db()) == [a]
        with engine.begin() as conn:
            set_current_batch(conn, b)
        assert current_rows(connect_db()) == [b]


class TestWithPEP249:
    @pytest.mark.parametrize("autocommit", [True, False])
    def test_pymysql(self, migrated_url: URL, add_batches, connect_db, autocommit: bool) -> None:
        """A PyMySQL connection works in both autocommit modes; off, the caller commits."""
        a, b = add_batches(2)
        conn = connect(migrated_url, autocommit=autocommit)
        set_current_batch(conn, a)
        set_current_batch(conn, b)
        assert get_current_batch(conn) == b
        # the connection still works: CALL's extra result sets were drained
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        expected_outside = [b] if autocommit else []
        assert current_rows(connect_db()) == expected_outside
        conn.commit()
        assert current_rows(connect_db()) == [b]
        conn.close()


class TestErrors:
    @pytest.mark.parametrize(
        "bad",
        [None, 0, -1, 2**63, 1.0, 1.5, "1", "abc", "1; DROP TABLE batchStatus", True, "9" * 5000],
    )
    def test_invalid_ids_are_refused_before_the_server(self, engine: Engine, add_batches, connect_db, bad) -> None:
        """Anything but a positive BIGINT raises InvalidBatchIdError and changes nothing."""
        (a,) = add_batches(1)
        set_current_batch(engine, a)
        with pytest.raises(InvalidBatchIdError, match="invalid batch id"):
            set_current_batch(engine, bad)
        with pytest.raises(InvalidBatchIdError):
            unset_current_batch(engine, bad)
        assert current_rows(connect_db()) == [a]

    def test_unknown_batch(self, engine: Engine, add_batches, connect_db) -> None:
        """A missing id raises BatchNotFoundError naming it; the server's errno is kept."""
        (a,) = add_batches(1)
        set_current_batch(engine, a)
        with pytest.raises(BatchNotFoundError, match=f"batch {a + 100} does not exist") as info:
            set_current_batch(engine, a + 100)
        assert info.value.errno == 31002
        assert isinstance(info.value.__cause__, Exception)
        with pytest.raises(BatchNotFoundError):
            unset_current_batch(engine, a + 100)
        assert current_rows(connect_db()) == [a]

    def test_unmigrated_database(self, db_url: URL) -> None:
        """Without the migrations every call says to run them."""
        eng = create_engine(db_url, poolclass=pool.NullPool)
        with pytest.raises(SchemaNotReadyError, match="batchflag upgrade"):
            set_current_batch(eng, 1)
        with pytest.raises(SchemaNotReadyError, match="batchflag upgrade"):
            get_current_batch(eng)
        eng.dispose()

    def test_procedures_dropped(self, engine: Engine, add_batches) -> None:
        """A database whose procedures were dropped raises SchemaNotReadyError."""
        (a,) = add_batches(1)
        with engine.begin() as conn:
            conn.execute(text("DROP PROCEDURE set_current_batch"))
        with pytest.raises(SchemaNotReadyError, match="run `batchflag upgrade`"):
            set_current_batch(engine, a)

    def test_unreachable_server(self) -> None:
        """A server that does not answer raises DatabaseConnectionError."""
        from batchflag_db.server import free_port

        eng = create_engine(f"mysql+pymysql://root@127.0.0.1:{free_port()}/x", poolclass=pool.NullPool)
        with pytest.raises(batchflag_db.DatabaseConnectionError):
            get_current_batch(eng)


class TestLookup:
    def test_lookup_uses_the_unique_index(self, engine: Engine, add_batches) -> None:
        """get_current_batch's query is a const lookup on the key's UNIQUE index, not a scan."""
        ids = add_batches(50)
        set_current_batch(engine, ids[10])
        with engine.connect() as conn:
            plan = conn.execute(text("EXPLAIN SELECT id FROM batchStatus WHERE currentBatchKey = 1")).mappings().all()
        assert len(plan) == 1
        assert plan[0]["key"] == "uq_batchStatus_currentBatchKey"
        assert plan[0]["type"] in ("const", "ref")
