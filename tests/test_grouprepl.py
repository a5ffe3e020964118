"""The invariant and the wrapper on a 3-member MySQL 9.7 Group Replication group.

Multi-primary mode: every member accepts writes, and two flips on different members
meet at certification, where one loses (3101, 1180 with engine error 149, or 1213 when
the winner's applier rolls back the loser) and the wrapper retries it. Single-primary
mode: the primary takes every flip, the secondaries refuse writes (1290), and after the
primary dies the group elects another, where the callers carry on.

How an acknowledged flip is checked (as in ``tests/test_galera.py``): every caller owns
its batches, so the history rows of those batches are exactly its own flips that
changed something. Right after a flip is acknowledged, the caller reads from another
member with ``group_replication_consistency = 'BEFORE'`` in one statement: the current
rows, the number of history rows of its batches, and per batch how many times it
became current minus how many times it stopped ("net"). The count must equal the
caller's flips that reported ``changed``; net must be 1 for the current row and 0
elsewhere; exactly one row is current (at most one in the storm that unsets).

One group per mode for the module; every test gets a fresh database on it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import statistics
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pymysql
import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from batchflag_db import (
    BatchFlagError,
    DatabaseConnectionError,
    RetryPolicy,
    aio,
    migrate,
    set_current_batch,
    unset_current_batch,
)
from batchflag_db.errors import (
    ER_ERROR_DURING_COMMIT,
    ER_LOCK_DEADLOCK,
    ER_OPTION_PREVENTS_STATEMENT,
    ER_TRANSACTION_ROLLBACK_DURING_COMMIT,
    PYMYSQL_CONNECTION_CLOSED,
    ReadOnlyServerError,
)
from batchflag_db.testing.grouprepl import (
    GroupMember,
    GroupReplicationCluster,
    grouprepl_available,
)
from tests.cluster_checks import (
    Tables,
    assert_tables_agree,
    inconsistency,
    publisher,
    quiet_retry_log,
    read_tables,
    snapshot,
)

pytestmark = pytest.mark.grouprepl

NODES = 3
CALLERS_PER_NODE = 3
CALLERS = NODES * CALLERS_PER_NODE
FLIPS_EACH = 100
BATCHES_PER_CALLER = 3
SPARE_BATCHES = 3

# No deadline: conflicts can pile up for seconds around a member's failure.
RETRY = RetryPolicy(attempts=30, base_delay=0.05, max_delay=1.0, deadline=None)
"""The policy docs/grouprepl.md recommends: the default backoff, 30 attempts.

Multi-primary conflicts are frequent under a storm (see the printed figures); the
default 5 attempts would fail a few calls in every storm here.
"""

READ_CONSISTENCY = "BEFORE"
"""Set on the reading session: a read waits until the member has applied everything
the group had committed when the read began."""

CONFLICT_ERRNOS = {ER_LOCK_DEADLOCK, ER_TRANSACTION_ROLLBACK_DURING_COMMIT, ER_ERROR_DURING_COMMIT}
RETRY_EVENT = "current_batch_flip_retry"


def _require() -> None:
    problem = grouprepl_available()
    if problem is not None:
        pytest.fail(problem, pytrace=False)


def _group(multi_primary: bool) -> Iterator[GroupReplicationCluster | None]:
    if grouprepl_available() is not None:
        yield None
        return
    with GroupReplicationCluster(NODES, multi_primary=multi_primary) as group:
        yield group


@pytest.fixture(scope="module")
def multi_group() -> Iterator[GroupReplicationCluster | None]:
    """One multi-primary group for the module (None where it cannot run; tests then fail)."""
    yield from _group(True)


@pytest.fixture(scope="module")
def single_group() -> Iterator[GroupReplicationCluster | None]:
    """One single-primary group for the module (None where it cannot run; tests then fail)."""
    yield from _group(False)


@pytest.fixture
def multi(multi_group: GroupReplicationCluster | None) -> GroupReplicationCluster:
    """The multi-primary group, every member ONLINE."""
    _require()
    assert multi_group is not None
    multi_group.wait_online(60)
    return multi_group


@pytest.fixture
def single(single_group: GroupReplicationCluster | None) -> GroupReplicationCluster:
    """The single-primary group, every member ONLINE."""
    _require()
    assert single_group is not None
    single_group.wait_online(60)
    return single_group


def _connect(
    node: GroupMember, database: str | None = None, *, consistency: str | None = None
) -> pymysql.connections.Connection[Any]:
    conn = node.connect(database=database, timeout=60)
    if consistency:
        with conn.cursor() as cur:
            cur.execute(f"SET SESSION group_replication_consistency = '{consistency}'")
    return conn


@dataclass(frozen=True)
class _Database:
    name: str
    owned: tuple[tuple[int, ...], ...]
    spares: tuple[int, ...]


def _make_db(group: GroupReplicationCluster) -> _Database:
    """A fresh migrated database; batches inserted through every writable member.

    Multi-primary spaces auto-increment ids by 7 (offset by server_id), so the ids are
    read back from the table, never computed.
    """
    name = f"bfgr_{uuid.uuid4().hex[:12]}"
    writers = list(range(NODES)) if group.multi_primary else [group.primary()]
    first = group.nodes[writers[0]]
    admin = _connect(first)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    admin.close()
    migrate.upgrade(first.url + name)
    total = CALLERS * BATCHES_PER_CALLER + SPARE_BATCHES
    conns = [_connect(group.nodes[w], name, consistency="BEFORE") for w in writers]
    try:
        for i in range(total):
            with conns[i % len(conns)].cursor() as cur:
                cur.execute(
                    "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-12-01', %s)",
                    (i + 1,),
                )
        with conns[0].cursor() as cur:
            cur.execute("SELECT id FROM batchStatus ORDER BY id")
            ids = tuple(int(r[0]) for r in cur.fetchall())
    finally:
        for conn in conns:
            conn.close()
    assert len(ids) == total
    owned = tuple(
        ids[k * BATCHES_PER_CALLER : (k + 1) * BATCHES_PER_CALLER] for k in range(CALLERS)
    )
    return _Database(name, owned, ids[CALLERS * BATCHES_PER_CALLER :])


@pytest.fixture
def multi_db(multi: GroupReplicationCluster) -> Iterator[_Database]:
    """A fresh database on the multi-primary group, dropped afterwards."""
    db = _make_db(multi)
    yield db
    _drop(multi, db.name)


@pytest.fixture
def single_db(single: GroupReplicationCluster) -> Iterator[_Database]:
    """A fresh database on the single-primary group, dropped afterwards."""
    db = _make_db(single)
    yield db
    _drop(single, db.name)


def _drop(group: GroupReplicationCluster, name: str) -> None:
    with contextlib.suppress(Exception):
        writer = 0 if group.multi_primary else group.primary()
        conn = _connect(group.nodes[writer])
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


class _RetryEvents(logging.Handler):
    """Counts the wrapper's retry log events by (thread, errno)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.by_thread: collections.Counter[tuple[str, int]] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == RETRY_EVENT:
            key = (record.threadName or "", int(getattr(record, "errno", 0) or 0))
            self.by_thread[key] += 1

    def errnos(self) -> set[int]:
        return {e for _, e in self.by_thread}


@pytest.fixture
def retry_events() -> Iterator[_RetryEvents]:
    """Counts retry events on logger ``batchflag_db`` (kept from propagating meanwhile)."""
    handler = _RetryEvents()
    with quiet_retry_log(handler):
        yield handler


@pytest.fixture
def publish(
    capsys: pytest.CaptureFixture[str], record_property: Callable[[str, object], None]
) -> Callable[[str, list[str]], None]:
    """Print report lines to the terminal even without ``-s``, and record them for JUnit XML."""
    return publisher(capsys, record_property)


# --------------------------------------------------------------------------
# Reading a member
# --------------------------------------------------------------------------


def _member_state(node: GroupMember, database: str) -> Tables:
    conn = _connect(node, database, consistency=READ_CONSISTENCY)
    try:
        return read_tables(conn, node.index)
    finally:
        conn.close()


def _replay(history: Sequence[tuple[Any, ...]]) -> int | None:
    """Walk the history oldest first; each row's "before" must be the state so far (a chain)."""
    state: int | None = None
    for i, (row_id, batch, previous, action, *_) in enumerate(history):
        before = previous if action == "set" else batch
        if i > 0 or before is not None:
            assert before == state, (
                f"history row {row_id}: says {before} was current, chain says {state}"
            )
        state = batch if action == "set" else None
    return state


def _assert_members_agree(
    group: GroupReplicationCluster, database: str, members: Sequence[int] | None = None
) -> list[Tables]:
    """Same rows, same history (an unbroken chain ending at the current row), one current row, CHECK TABLE OK."""
    states = [_member_state(group.nodes[i], database) for i in (members or range(NODES))]
    assert_tables_agree(states, "member")
    first = states[0]
    assert _replay(first.history) == first.snapshot.current[0]
    return states


# --------------------------------------------------------------------------
# The storm
# --------------------------------------------------------------------------


@dataclass
class _Caller:
    index: int
    home: int
    reader: int
    ids: tuple[int, ...]
    target: Any = None
    """What the wrapper is given: an Engine (every third caller) or a PyMySQL connection."""
    read_conn: Any = None
    attempts: list[int] = field(default_factory=list)
    sets: int = 0
    unsets: int = 0
    changed: int = 0
    readbacks: int = 0
    stale: int = 0


class _Storm:
    """Callers flipping their own batches on their home members, reading back elsewhere."""

    def __init__(
        self,
        group: GroupReplicationCluster,
        db: _Database,
        *,
        unset_share: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.group = group
        self.db = db
        self.unset_share = unset_share
        self.exactly_one = unset_share == 0.0
        self.seed = seed
        self.callers = [_Caller(k, k % NODES, (k + 1) % NODES, db.owned[k]) for k in range(CALLERS)]
        self.errors: list[str] = []
        self.problems: list[str] = []
        self.crashes: list[BaseException] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(c,), name=f"gr-caller-{c.index}")
            for c in self.callers
        ]
        self._barrier = threading.Barrier(len(self.callers) + 1)
        self.elapsed = 0.0
        self.engines: list[Engine] = []

    def run(self, timeout: float = 240) -> None:
        for t in self._threads:
            t.start()
        self._barrier.wait(timeout=120)
        t0 = time.monotonic()
        for t in self._threads:
            t.join(max(0.0, t0 + timeout - time.monotonic()))
        self.elapsed = time.monotonic() - t0
        for engine in self.engines:
            engine.dispose()
        assert not any(t.is_alive() for t in self._threads), "callers still running"

    def _run(self, c: _Caller) -> None:
        node = self.group.nodes[c.home]
        try:
            if c.index % 3 == 0:
                engine = create_engine(node.url + self.db.name, poolclass=pool.QueuePool)
                self.engines.append(engine)
                c.target = engine
            else:
                c.target = _connect(node, self.db.name)
            c.read_conn = _connect(
                self.group.nodes[c.reader], self.db.name, consistency=READ_CONSISTENCY
            )
        except BaseException as exc:
            self.crashes.append(exc)
            self._barrier.abort()
            return
        rng = random.Random(f"{self.seed}-{c.index}")
        try:
            self._barrier.wait(timeout=120)
            while c.sets < FLIPS_EACH and not self.errors:
                batch = rng.choice(c.ids)
                if self._flip(c, set_current_batch, batch):
                    c.sets += 1
                if rng.random() < self.unset_share and self._flip(c, unset_current_batch, batch):
                    c.unsets += 1
        except BaseException as exc:
            self.crashes.append(exc)
        finally:
            for conn in (c.target, c.read_conn):
                if isinstance(conn, pymysql.connections.Connection):
                    with contextlib.suppress(Exception):
                        conn.close()

    def _flip(self, c: _Caller, call: Callable[..., Any], batch: int) -> bool:
        try:
            flip = call(c.target, batch, retry=RETRY)
        except BatchFlagError as exc:
            with self._lock:
                self.errors.append(
                    f"caller {c.index} on member {c.home}: {call.__name__}({batch}): "
                    f"{type(exc).__name__} errno {exc.errno}: {exc}"
                )
            return False
        c.attempts.append(flip.attempts)
        c.changed += flip.changed
        snap = snapshot(c.read_conn, c.ids)
        c.readbacks += 1
        where = f"caller {c.index}: {call.__name__}({batch}) on member {c.home}, read on {c.reader}"
        wrong = []
        if len(snap.current) > 1 or (self.exactly_one and len(snap.current) != 1):
            wrong.append(f"current rows {list(snap.current)}")
        if snap.mine != c.changed:
            wrong.append(f"{snap.mine} history rows of its batches, it made {c.changed} changes")
        if inconsistency(snap):
            wrong.append(str(inconsistency(snap)))
        if wrong:
            c.stale += 1
            with self._lock:
                self.problems.append(f"{where}: {'; '.join(wrong)}")
        return True

    def assert_clean(self) -> None:
        assert self.crashes == [], "".join(traceback.format_exception(self.crashes[0]))
        assert self.errors == [], f"{len(self.errors)} calls failed: {self.errors[:5]}"
        assert self.problems == [], f"{len(self.problems)} stale read-backs: {self.problems[:5]}"
        assert all(c.sets == FLIPS_EACH for c in self.callers)

    @property
    def changed(self) -> int:
        return sum(c.changed for c in self.callers)

    def report(self, title: str, events: _RetryEvents) -> list[str]:
        calls = sum(len(c.attempts) for c in self.callers)
        lines = [
            f"group replication storm [{title}]: {len(self.callers)} callers, "
            f"{sum(c.sets for c in self.callers)} sets + {sum(c.unsets for c in self.callers)} "
            f"unsets = {calls} calls acknowledged in {self.elapsed:.1f} s; "
            f"policy {RETRY.attempts} attempts, backoff {RETRY.base_delay}-{RETRY.max_delay} s"
        ]
        for node in range(NODES):
            mine = [c for c in self.callers if c.home == node]
            dist = collections.Counter(a for c in mine for a in c.attempts)
            errnos: collections.Counter[int] = collections.Counter()
            for c in mine:
                for (thread, errno), n in events.by_thread.items():
                    if thread == f"gr-caller-{c.index}":
                        errnos[errno] += n
            lines.append(
                f"  member {node}: {sum(dist.values())} calls, "
                f"{sum((a - 1) * n for a, n in dist.items())} retries, "
                f"attempts per call {dict(sorted(dist.items()))}, "
                f"errors met {dict(sorted(errnos.items()))}"
            )
        lines.append(
            f"  read-backs on another member (group_replication_consistency={READ_CONSISTENCY}): "
            f"{sum(c.readbacks for c in self.callers)}, stale: {sum(c.stale for c in self.callers)}; "
            f"failed calls: {len(self.errors)}"
        )
        return lines

    def assert_retries_logged(self, events: _RetryEvents) -> None:
        for c in self.callers:
            logged = sum(n for (t, _), n in events.by_thread.items() if t == f"gr-caller-{c.index}")
            assert logged == sum(a - 1 for a in c.attempts), c.index


def _final_flip(group: GroupReplicationCluster, db: str, node: int, batch: int) -> None:
    conn = _connect(group.nodes[node], db)
    try:
        assert set_current_batch(conn, batch, retry=RETRY).changed
    finally:
        conn.close()
    for other in group.running():
        reader = _connect(group.nodes[other], db, consistency=READ_CONSISTENCY)
        try:
            assert snapshot(reader, ()).current == (batch,), other
        finally:
            reader.close()


class TestMultiPrimaryStorm:
    def test_storm_from_one_current_batch(
        self,
        multi: GroupReplicationCluster,
        multi_db: _Database,
        retry_events: _RetryEvents,
        publish: Callable[[str, list[str]], None],
    ) -> None:
        """9 callers, 3 per member, 100 flips each: every call succeeds, every acknowledged flip is seen on another member, all members end equal with one current row and an unbroken history."""
        _final_flip(multi, multi_db.name, 0, multi_db.spares[0])
        storm = _Storm(multi, multi_db, seed=1)
        storm.run()
        publish(
            "grouprepl_storm_one", storm.report("multi-primary, one current at start", retry_events)
        )
        storm.assert_clean()
        storm.assert_retries_logged(retry_events)
        assert retry_events.errnos() <= CONFLICT_ERRNOS, retry_events.errnos()
        assert retry_events.errnos(), "no conflict at all: the storm did not contend"
        states = _assert_members_agree(multi, multi_db.name)
        assert len(states[0].history) == 1 + storm.changed
        for c in storm.callers:
            assert sum(1 for r in states[0].history if r[1] in c.ids) == c.changed
        _final_flip(multi, multi_db.name, 2, multi_db.spares[1])
        _assert_members_agree(multi, multi_db.name)

    def test_storm_from_no_current_batch(
        self,
        multi: GroupReplicationCluster,
        multi_db: _Database,
        retry_events: _RetryEvents,
        publish: Callable[[str, list[str]], None],
    ) -> None:
        """From no current batch, unsetting often so flips race from "none" again and again: never two current rows, every acknowledged flip seen, all members end equal."""
        conn = _connect(multi.nodes[0], multi_db.name, consistency=READ_CONSISTENCY)
        assert snapshot(conn, ()).current == ()
        conn.close()
        storm = _Storm(multi, multi_db, unset_share=0.4, seed=2)
        storm.run()
        publish(
            "grouprepl_storm_none",
            storm.report("multi-primary, none current at start", retry_events),
        )
        storm.assert_clean()
        storm.assert_retries_logged(retry_events)
        assert retry_events.errnos() <= CONFLICT_ERRNOS, retry_events.errnos()
        _final_flip(multi, multi_db.name, 1, multi_db.spares[0])
        states = _assert_members_agree(multi, multi_db.name)
        assert len(states[0].history) == storm.changed + 1
        for c in storm.callers:
            assert sum(1 for r in states[0].history if r[1] in c.ids) == c.changed


# --------------------------------------------------------------------------
# Consistency: what a read on another member shows right after a flip
# --------------------------------------------------------------------------


class TestReadConsistency:
    ROUNDS = 200

    def _run(
        self, group: GroupReplicationCluster, db: _Database, writer_level: str, reader_level: str
    ) -> tuple[int, list[float], list[float]]:
        writer = _connect(group.nodes[0], db.name, consistency=writer_level)
        reader = _connect(group.nodes[1], db.name, consistency=reader_level)
        stale, flips, reads = 0, [], []
        try:
            for r in range(self.ROUNDS):
                batch = db.spares[r % 2]
                t0 = time.perf_counter()
                set_current_batch(writer, batch, retry=RETRY)
                t1 = time.perf_counter()
                with reader.cursor() as cur:
                    cur.execute("SELECT id FROM batchStatus WHERE currentBatchKey = 1")
                    seen = cur.fetchall()
                t2 = time.perf_counter()
                stale += seen != ((batch,),)
                flips.append(t1 - t0)
                reads.append(t2 - t1)
        finally:
            writer.close()
            reader.close()
        return stale, flips, reads

    def test_before_on_reader_or_after_on_writer_never_stale(
        self,
        multi: GroupReplicationCluster,
        multi_db: _Database,
        publish: Callable[[str, list[str]], None],
    ) -> None:
        """A read on another member right after an acknowledged flip: stale under the default, never with BEFORE on the reader or AFTER on the writer; the cost of each is printed."""
        lines = [f"group replication read-after-flip on another member, {self.ROUNDS} rounds each:"]
        results = {}
        for writer_level, reader_level in (
            ("EVENTUAL", "EVENTUAL"),
            ("BEFORE_ON_PRIMARY_FAILOVER", "BEFORE_ON_PRIMARY_FAILOVER"),
            ("BEFORE_ON_PRIMARY_FAILOVER", "BEFORE"),
            ("AFTER", "BEFORE_ON_PRIMARY_FAILOVER"),
        ):
            stale, flips, reads = self._run(multi, multi_db, writer_level, reader_level)
            results[(writer_level, reader_level)] = stale
            lines.append(
                f"  writer {writer_level:<26} reader {reader_level:<26}: stale {stale:3d}; "
                f"flip median {1000 * statistics.median(flips):.2f} ms "
                f"(p95 {1000 * statistics.quantiles(flips, n=20)[-1]:.2f}); "
                f"read median {1000 * statistics.median(reads):.2f} ms"
            )
        publish("grouprepl_consistency", lines)
        assert results[("BEFORE_ON_PRIMARY_FAILOVER", "BEFORE")] == 0
        assert results[("AFTER", "BEFORE_ON_PRIMARY_FAILOVER")] == 0


# --------------------------------------------------------------------------
# Single-primary mode
# --------------------------------------------------------------------------


def _find_primary(members: Sequence[GroupMember], timeout: float = 60) -> GroupMember:
    """Ask the members, in turn, which one is the ONLINE primary; return it.

    What a client without a router does: any reachable member's
    ``performance_schema.replication_group_members`` names the primary (by its host
    name on the group's network, which the host maps to the member's published port).
    """
    by_host = {m.address: m for m in members}
    deadline = time.monotonic() + timeout
    while True:
        for member in members:
            try:
                conn = member.connect(timeout=2)
            except pymysql.MySQLError:
                continue
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT MEMBER_HOST FROM performance_schema.replication_group_members "
                        "WHERE MEMBER_ROLE = 'PRIMARY' AND MEMBER_STATE = 'ONLINE'"
                    )
                    rows = cur.fetchall()
                    cur.execute(
                        "SELECT MEMBER_STATE FROM performance_schema.replication_group_members "
                        "WHERE MEMBER_ID = @@server_uuid"
                    )
                    me = cur.fetchall()
            except pymysql.MySQLError:
                continue
            finally:
                conn.close()
            if len(rows) == 1 and me == (("ONLINE",),) and rows[0][0] in by_host:
                return by_host[rows[0][0]]
        if time.monotonic() >= deadline:
            raise AssertionError(f"no member names an ONLINE primary within {timeout:.0f}s")
        time.sleep(0.2)


@dataclass
class _PrimaryCaller:
    """A caller that sends its flips to the primary and follows it through a failover."""

    index: int
    ids: tuple[int, ...]
    members: tuple[GroupMember, ...]
    database: str
    conn: Any = None
    url: str = ""
    acked: list[tuple[int, bool]] = field(default_factory=list)
    """(batch, changed) per acknowledged set."""
    in_doubt: list[int] = field(default_factory=list)
    in_doubt_committed: int = 0
    errnos: collections.Counter[int] = field(default_factory=collections.Counter)
    failovers: int = 0
    attempts: list[int] = field(default_factory=list)

    def connect(self, timeout: float = 60) -> None:
        """Connect to the member the group names as primary.

        Until a dead primary is expelled the survivors still name it: try again.
        """
        deadline = time.monotonic() + timeout
        while True:
            primary = _find_primary(self.members, timeout)
            self.url = primary.url
            try:
                self.conn = pymysql.connect(
                    host="127.0.0.1",
                    port=primary.port,
                    user="root",
                    password=primary.password,
                    database=self.database,
                    autocommit=True,
                    connect_timeout=5,
                    read_timeout=30,
                    write_timeout=30,
                )
                return
            except pymysql.MySQLError as exc:
                self.errnos[exc.args[0] if exc.args else 0] += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def changed(self) -> int:
        return sum(ch for _, ch in self.acked) + self.in_doubt_committed

    def own_history(self) -> int:
        with self.conn.cursor() as cur:
            ids = ", ".join(map(str, self.ids))
            cur.execute(f"SELECT COUNT(*) FROM currentBatchHistory WHERE batchId IN ({ids})")
            return int(cur.fetchone()[0])

    def flip(self, batch: int, deadline: float) -> None:
        """Set ``batch`` current; on a lost or read-only member find the primary and go on."""
        while True:
            try:
                flip = set_current_batch(self.conn, batch, retry=RETRY)
            except (DatabaseConnectionError, ReadOnlyServerError) as exc:
                self.errnos[exc.errno or 0] += 1
                if time.monotonic() > deadline:
                    raise
                cut_off = isinstance(exc, DatabaseConnectionError)
                with contextlib.suppress(Exception):
                    self.conn.close()
                self.failovers += 1
                self.connect()
                if cut_off:
                    # The call's outcome is unknown: its own history rows tell.
                    extra = self.own_history() - self.changed()
                    assert extra in (0, 1), (self.index, extra)
                    self.in_doubt.append(batch)
                    self.in_doubt_committed += extra
                    if extra:
                        return
                continue
            self.acked.append((batch, flip.changed))
            self.attempts.append(flip.attempts)
            return


class TestSinglePrimary:
    def test_flip_on_a_secondary_names_the_primary(
        self, single: GroupReplicationCluster, single_db: _Database
    ) -> None:
        """A flip through a secondary raises ReadOnlyServerError (1290) telling to send flips to the primary, and naming it; nothing changes."""
        primary = single.primary()
        secondary = next(i for i in range(NODES) if i != primary)
        conn = _connect(single.nodes[secondary], single_db.name)
        try:
            with pytest.raises(ReadOnlyServerError) as caught:
                set_current_batch(conn, single_db.spares[0], retry=RETRY)
        finally:
            conn.close()
        assert caught.value.errno == ER_OPTION_PREVENTS_STATEMENT
        message = str(caught.value)
        assert "send flips to the primary" in message
        assert f"primary is {single.nodes[primary].address}:3306" in message
        assert isinstance(caught.value.__cause__, pymysql.err.OperationalError)
        reader = _connect(single.nodes[primary], single_db.name)
        assert snapshot(reader, ()).current == ()
        reader.close()

    def test_aio_flip_on_a_secondary_names_the_primary(
        self, single: GroupReplicationCluster, single_db: _Database
    ) -> None:
        """Through batchflag_db.aio the same: ReadOnlyServerError naming the primary; nothing changes."""
        primary = single.primary()
        secondary = next(i for i in range(NODES) if i != primary)
        url = make_url(single.nodes[secondary].url + single_db.name)

        async def flip() -> None:
            engine = create_async_engine(
                url.set(drivername="mysql+aiomysql"), poolclass=pool.NullPool
            )
            try:
                await aio.set_current_batch(engine, single_db.spares[0], retry=RETRY)
            finally:
                await engine.dispose()

        with pytest.raises(ReadOnlyServerError) as caught:
            asyncio.run(flip())
        assert caught.value.errno == ER_OPTION_PREVENTS_STATEMENT
        message = str(caught.value)
        assert "send flips to the primary" in message
        assert f"primary is {single.nodes[primary].address}:3306" in message
        assert caught.value.__cause__ is not None
        reader = _connect(single.nodes[primary], single_db.name)
        assert snapshot(reader, ()).current == ()
        reader.close()

    @pytest.mark.parametrize("outcome", ["commit", "rollback"])
    def test_flip_inside_callers_transaction(
        self, single: GroupReplicationCluster, single_db: _Database, outcome: str
    ) -> None:
        """A flip in the caller's transaction on the primary (the savepoint path) lands with the caller's COMMIT on every member, or not at all after its ROLLBACK, new batch row included."""
        primary = single.primary()
        start = single_db.spares[0]
        _final_flip(single, single_db.name, primary, start)
        engine = create_engine(single.nodes[primary].url + single_db.name, poolclass=pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.begin()
                new = conn.execute(
                    text(
                        "INSERT INTO batchStatus (batchDate, batchNumber) "
                        "VALUES ('2026-12-02', 999)"
                    )
                ).lastrowid
                flip = set_current_batch(conn, new, retry=RETRY)
                assert (flip.previous_batch_id, flip.changed, flip.attempts) == (start, True, 1)
                if outcome == "commit":
                    conn.commit()
                else:
                    conn.rollback()
        finally:
            engine.dispose()
        states = _assert_members_agree(single, single_db.name)
        if outcome == "commit":
            assert states[0].snapshot.current == (new,)
            assert states[0].history[-1][1:4] == (new, start, "set")
        else:
            assert states[0].snapshot.current == (start,)
            assert all(r[0] != new for r in states[0].rows)
            assert len(states[0].history) == 1

    def test_kill_9_primary_mid_storm(
        self,
        single: GroupReplicationCluster,
        single_db: _Database,
        publish: Callable[[str, list[str]], None],
    ) -> None:
        """kill -9 of the primary mid-storm: the group elects another, the callers find it and carry on, every acknowledged flip is on every survivor, and the killed member rejoins and agrees."""
        victim = single.primary()
        _final_flip(single, single_db.name, victim, single_db.spares[0])
        members = tuple(single.nodes)  # the ports stay when a member is restarted
        callers = [
            _PrimaryCaller(k, single_db.owned[k], members, single_db.name) for k in range(CALLERS)
        ]
        crashes: list[BaseException] = []
        acked = threading.Semaphore(0)

        def run(c: _PrimaryCaller) -> None:
            rng = random.Random(f"sp-{c.index}")
            try:
                c.connect()
                deadline = time.monotonic() + 180
                while len(c.acked) + c.in_doubt_committed < FLIPS_EACH:
                    c.flip(rng.choice(c.ids), deadline)
                    acked.release()
            except BaseException as exc:
                crashes.append(exc)
            finally:
                with contextlib.suppress(Exception):
                    c.conn.close()

        threads = [
            threading.Thread(target=run, args=(c,), name=f"gr-sp-{c.index}") for c in callers
        ]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for _ in range(CALLERS * FLIPS_EACH // 3):
            assert acked.acquire(timeout=60), "the storm stalled before the kill"
        t_kill = time.monotonic() - t0
        single.kill_node(victim)
        for t in threads:
            t.join(240)
        elapsed = time.monotonic() - t0
        assert not any(t.is_alive() for t in threads), "callers still running"
        assert crashes == [], "".join(traceback.format_exception(crashes[0]))
        new_primary = single.primary()
        assert new_primary != victim
        survivors = [i for i in range(NODES) if i != victim]
        states = _assert_members_agree(single, single_db.name, survivors)
        lost = []
        for c in callers:
            own = [r[1] for r in states[0].history if r[1] in c.ids]
            wanted = [b for b, ch in c.acked if ch]
            if len(own) != c.changed() or not _is_subsequence(wanted, own):
                lost.append((c.index, len(wanted), len(own)))
        t1 = time.monotonic()
        single.restart_node(victim)
        rejoin = time.monotonic() - t1
        _assert_members_agree(single, single_db.name)
        errnos = collections.Counter[int]()
        for c in callers:
            errnos.update(c.errnos)
        dist = collections.Counter(a for c in callers for a in c.attempts)
        publish(
            "grouprepl_kill_primary",
            [
                f"group replication single-primary storm, kill -9 of primary (member {victim}) "
                f"after {t_kill:.1f} s: {CALLERS} callers, "
                f"{sum(len(c.acked) for c in callers)} calls acknowledged in {elapsed:.1f} s; "
                f"new primary member {new_primary}",
                f"  retries inside the wrapper: {sum((a - 1) * n for a, n in dist.items())}, "
                f"attempts per call {dict(sorted(dist.items()))}",
                f"  errors met by the callers: {dict(sorted(errnos.items()))}; reconnections "
                f"{sum(c.failovers for c in callers)}; calls cut off by the kill "
                f"{sum(len(c.in_doubt) for c in callers)}, found committed "
                f"{sum(c.in_doubt_committed for c in callers)}",
                f"  acknowledged flips missing on a survivor: {len(lost)}; "
                f"killed member rejoined in {rejoin:.1f} s and agrees",
            ],
        )
        assert lost == [], lost
        # PYMYSQL_CONNECTION_CLOSED: a caller whose connection the kill had already cut
        # and who called once more before reconnecting.
        connection_lost = {2003, 2006, 2013, PYMYSQL_CONNECTION_CLOSED}
        assert set(errnos) <= connection_lost | {ER_OPTION_PREVENTS_STATEMENT}, errnos


def _is_subsequence(wanted: Sequence[int], seen: Sequence[int]) -> bool:
    it = iter(seen)
    return all(any(b == s for s in it) for b in wanted)
