"""The Python wrapper: every kind of connection, typed errors, index lookups."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
import structlog
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import URL, Engine

import batchflag_db
from batchflag_db import (
    BatchNotFoundError,
    Flip,
    InvalidBatchIdError,
    SchemaNotReadyError,
    get_current_batch,
    set_current_batch,
    unset_current_batch,
)
from batchflag_db.testing.explain import explain
from batchflag_db.testing.server import free_port
from tests.conftest import connect, current_rows


class TestWithEngine:
    def test_set_commits_on_its_own(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """With an Engine the procedure runs in its own transaction and commits it."""
        a, b = add_batches(2)
        flip = set_current_batch(engine, a)
        assert flip == batchflag_db.Flip(a, None, True)
        flip = set_current_batch(engine, b)
        assert flip == batchflag_db.Flip(b, a, True)
        assert current_rows(connect_db()) == [b]
        assert get_current_batch(engine) == b

    def test_already_current_is_a_no_op(
        self, engine: Engine, add_batches: Callable[[int], list[int]]
    ) -> None:
        """Setting the current batch again succeeds and reports no change."""
        (a,) = add_batches(1)
        set_current_batch(engine, a)
        assert set_current_batch(engine, a) == batchflag_db.Flip(a, a, False)

    def test_unset(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """Unset clears the current batch; unsetting a non-current batch changes nothing."""
        a, b = add_batches(2)
        set_current_batch(engine, a)
        assert unset_current_batch(engine, b).changed is False
        assert current_rows(connect_db()) == [a]
        assert unset_current_batch(engine, a) == batchflag_db.Flip(a, a, True)
        assert get_current_batch(engine) is None


class TestWithConnection:
    def test_joins_the_callers_transaction(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
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

    def test_commit_applies_when_the_flip_is_the_first_statement(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """A flip as a Connection's first statement begins its transaction: commit() keeps it."""
        (a,) = add_batches(1)
        with engine.connect() as conn:
            set_current_batch(conn, a)
            assert conn.in_transaction()
            conn.commit()
        assert current_rows(connect_db()) == [a]

    def test_close_without_commit_discards(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """Closing a Connection without commit() rolls the flip back, as for any statement."""
        (a,) = add_batches(1)
        with engine.connect() as conn:
            set_current_batch(conn, a)
        assert current_rows(connect_db()) == []

    def test_connection_stays_usable_after_calls(
        self, engine: Engine, add_batches: Callable[[int], list[int]]
    ) -> None:
        """After several flips on one Connection every result set was read: SQL still works."""
        a, b = add_batches(2)
        with engine.connect() as conn:
            for batch in (a, b, a):
                set_current_batch(conn, batch)
            unset_current_batch(conn, a)
            assert conn.execute(text("SELECT 40 + 2")).scalar_one() == 42
            conn.rollback()


class TestWithPEP249:
    @pytest.mark.parametrize("autocommit", [True, False])
    def test_pymysql(
        self,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        autocommit: bool,
    ) -> None:
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
        [
            None,
            0,
            -1,
            2**63,
            # str() of these raises ValueError (CPython's 4300-digit limit): the message must not need it
            pytest.param(10**5000, id="10**5000"),
            pytest.param(-(10**5000), id="-10**5000"),
            1.0,
            1.5,
            "1",
            "abc",
            "1; DROP TABLE batchStatus",
            True,
            "9" * 5000,
        ],
    )
    def test_invalid_ids_are_refused_before_the_server(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
        bad: Any,
    ) -> None:
        """Anything but a positive BIGINT raises InvalidBatchIdError and changes nothing."""
        (a,) = add_batches(1)
        set_current_batch(engine, a)
        with pytest.raises(InvalidBatchIdError, match="invalid batch id"):
            set_current_batch(engine, bad)
        with pytest.raises(InvalidBatchIdError):
            unset_current_batch(engine, bad)
        assert current_rows(connect_db()) == [a]

    def test_unknown_batch(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
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

    def test_procedures_dropped(
        self, engine: Engine, add_batches: Callable[[int], list[int]]
    ) -> None:
        """A database whose procedures were dropped raises SchemaNotReadyError."""
        (a,) = add_batches(1)
        with engine.begin() as conn:
            conn.execute(text("DROP PROCEDURE set_current_batch"))
        with pytest.raises(SchemaNotReadyError, match="run `batchflag upgrade`"):
            set_current_batch(engine, a)

    def test_unreachable_server(self) -> None:
        """A server that does not answer raises DatabaseConnectionError."""
        eng = create_engine(
            f"mysql+pymysql://root@127.0.0.1:{free_port()}/x", poolclass=pool.NullPool
        )
        with pytest.raises(batchflag_db.DatabaseConnectionError):
            get_current_batch(eng)


class TestLookup:
    def test_lookup_uses_the_unique_index(
        self, engine: Engine, add_batches: Callable[[int], list[int]]
    ) -> None:
        """get_current_batch's query is a const lookup on the key's UNIQUE index, not a scan."""
        ids = add_batches(50)
        set_current_batch(engine, ids[10])
        raw = engine.raw_connection()
        try:
            plan = explain(raw, "SELECT id FROM batchStatus WHERE currentBatchKey = 1")
        finally:
            raw.close()
        assert len(plan) == 1
        assert plan[0]["key"] == "uq_batchStatus_currentBatchKey"
        assert plan[0]["type"] in ("const", "ref")


class TestLogging:
    def test_events_name_the_batch_and_the_previous_one(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Each flip logs the seed's event name at INFO, with batch_id and previous_batch_id fields."""
        a, b = add_batches(2)
        with caplog.at_level(logging.INFO, logger="batchflag_db"):
            set_current_batch(engine, a)
            set_current_batch(engine, b)
            unset_current_batch(engine, b)
        got = [
            (r.levelname, r.event, r.batch_id, r.previous_batch_id, r.changed, r.attempts)  # type: ignore[attr-defined]
            for r in caplog.records
        ]
        assert got == [
            ("INFO", "current_batch_flag_set", a, None, True, 1),
            ("INFO", "current_batch_flag_set", b, a, True, 1),
            ("INFO", "current_batch_flag_unset", b, b, True, 1),
        ]
        assert caplog.records[1].getMessage() == (
            f"current_batch_flag_set batch_id={b} previous_batch_id={a} changed=True"
        )
        assert {r.name for r in caplog.records} == {"batchflag_db"}

    def test_flip_inside_the_callers_transaction_logs_a_pending_event(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A flip that joins the caller's transaction may still be rolled back: it logs
        current_batch_flag_set_pending / ..._unset_pending, never the committed event."""
        a, b = add_batches(2)
        with caplog.at_level(logging.INFO, logger="batchflag_db"), engine.connect() as conn:
            set_current_batch(conn, a)
            conn.commit()
            set_current_batch(conn, b)
            unset_current_batch(conn, b)
            conn.rollback()
        got = [(r.event, r.batch_id, r.previous_batch_id, r.changed) for r in caplog.records]  # type: ignore[attr-defined]
        assert got == [
            ("current_batch_flag_set_pending", a, None, True),
            ("current_batch_flag_set_pending", b, a, True),
            ("current_batch_flag_unset_pending", b, b, True),
        ]
        assert caplog.records[0].getMessage() == (
            f"current_batch_flag_set_pending batch_id={a} previous_batch_id=None changed=True "
            "(inside the caller's transaction: not committed yet)"
        )
        assert get_current_batch(engine) == a  # the rolled-back flips really were undone

    @pytest.mark.parametrize(("autocommit", "suffix"), [(True, ""), (False, "_pending")])
    def test_pep249_connection_logs_by_who_commits(
        self,
        migrated_url: URL,
        add_batches: Callable[[int], list[int]],
        caplog: pytest.LogCaptureFixture,
        autocommit: bool,
        suffix: str,
    ) -> None:
        """A PyMySQL connection: autocommit on, the flip commits itself (the plain event);
        autocommit off, it joins the open transaction (the pending event)."""
        (a,) = add_batches(1)
        conn = connect(migrated_url, autocommit=autocommit)
        try:
            with caplog.at_level(logging.INFO, logger="batchflag_db"):
                set_current_batch(conn, a)
            conn.rollback()
        finally:
            conn.close()
        events = [getattr(r, "event", None) for r in caplog.records]
        assert events == [f"current_batch_flag_set{suffix}"]

    def test_failed_flip_logs_no_flag_event(
        self,
        engine: Engine,
        add_batches: Callable[[int], list[int]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A flip that fails logs nothing claiming it happened; the error is the caller's to log."""
        (a,) = add_batches(1)
        with (
            caplog.at_level(logging.DEBUG, logger="batchflag_db"),
            pytest.raises(BatchNotFoundError),
        ):
            set_current_batch(engine, a + 1)
        assert caplog.records == []

    def test_structlog_renders_the_seeds_event(
        self, engine: Engine, add_batches: Callable[[int], list[int]]
    ) -> None:
        """Through structlog's stdlib bridge (ExtraAdder) the event reads exactly as in the seed."""
        a, b = add_batches(2)
        out = io.StringIO()
        handler = logging.StreamHandler(out)
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[structlog.stdlib.ExtraAdder()],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(sort_keys=True),
                ],
            )
        )
        logger = logging.getLogger("batchflag_db")
        old_level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            set_current_batch(engine, a)
            set_current_batch(engine, b)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert lines[1] == {
            "event": "current_batch_flag_set",
            "batch_id": b,
            "previous_batch_id": a,
            "changed": True,
            "attempts": 1,
        }

    def test_the_library_configures_no_logging(
        self, engine: Engine, add_batches: Callable[[int], list[int]]
    ) -> None:
        """Importing and using the library adds no handler, level or basicConfig anywhere."""
        (a,) = add_batches(1)
        url = engine.url.render_as_string(hide_password=False)
        script = (
            "import logging, sys\n"
            "import batchflag_db, batchflag_db.aio\n"
            "from sqlalchemy import create_engine\n"
            "batchflag_db.set_current_batch(create_engine(sys.argv[1]), int(sys.argv[2]))\n"
            "lib = logging.getLogger('batchflag_db')\n"
            "print(len(logging.root.handlers), logging.root.level, len(lib.handlers), lib.level,"
            " lib.propagate)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script, url, str(a)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["0", str(logging.WARNING), "0", "0", "True"]
        assert out.stderr == ""


class TestFlip:
    def test_attempts_are_not_part_of_equality(self) -> None:
        """Flip(7, None, True) equals a result that needed retries: attempts is information only."""
        assert Flip(7, None, True, attempts=3) == Flip(7, None, True)
        assert Flip(7, None, True, attempts=3).attempts == 3
        assert Flip(7, None, True) != Flip(7, 6, True)
