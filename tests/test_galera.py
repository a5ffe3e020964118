"""The invariant and the wrapper's retries on a 3-node MariaDB Galera cluster (issue 6).

Every node of a Galera cluster accepts writes. Two flips on different nodes meet
only at certification, where one of them is refused with 1213
(ER_LOCK_DEADLOCK) and the wrapper retries it. These tests run storms of flips
from callers spread over the three nodes, through the Python wrapper with a
retry budget, and check what another node shows after every acknowledged flip
and what every node holds at the end.

How an acknowledged flip is checked, without comparing clocks: every caller
owns its batches (no other caller sets or unsets them), so the history rows
of those batches are exactly the caller's own flips that changed something.
Right after a flip is acknowledged, the caller reads from another node with
``wsrep_sync_wait = 15`` (the read waits until that node has applied
everything the cluster committed before it), in one statement, so one read
view: the current rows, the number of history rows of its batches, and, per
batch, how many times it became current minus how many times it stopped being
current ("net"). Then:

* the caller's count equals the number of its flips that reported
  ``changed``: every one is visible on the other node, none is missing and
  none is there twice (a flip that committed although the caller was told it
  failed, and was then retried, would show up here);
* net is 1 for the current row and 0 for every other batch: the state the
  node shows is the end of the history it shows. With the first point, the
  current batch is the caller's or the result of a later flip;
* exactly one row is current (at most one in the storm that also unsets).

The cluster is started once for the module; every test gets a fresh database
on it. The test that kills a node restarts it before it ends.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import random
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pymysql
import pytest

from batchflag_db import (
    BatchFlagError,
    BatchNotFoundError,
    DatabaseConnectionError,
    Flip,
    RetryPolicy,
    migrate,
    set_current_batch,
    unset_current_batch,
)
from batchflag_db.errors import ER_BATCH_NOT_FOUND, ER_LOCK_DEADLOCK
from batchflag_db.testing.galera import GaleraCluster, GaleraNode, galera_available
from tests.cluster_checks import (
    Tables,
    assert_tables_agree,
    inconsistency,
    publisher,
    quiet_retry_log,
    read_tables,
    snapshot,
)

pytestmark = pytest.mark.galera

NODES = 3
CALLERS_PER_NODE = 3
CALLERS = NODES * CALLERS_PER_NODE
FLIPS_EACH = 100
"""Sets per caller (the storm with unsets adds its unsets on top)."""
BATCHES_PER_CALLER = 3
SPARE_BATCHES = 3
"""Batches no caller owns: the starting point and the final flip."""

SYNC_WAIT_ALL = 15
"""wsrep_sync_wait bitmask: wait before reads, UPDATE/DELETE, INSERT/REPLACE and SHOW."""

# The server's own lock wait and no deadline: a node killed mid-storm makes conflicts
# pile up for seconds.
RETRY = RetryPolicy(
    attempts=30, base_delay=0.05, max_delay=1.0, lock_wait_timeout=None, deadline=None
)
"""The retry budget of every flip here: the wrapper's default backoff, more attempts.

Measured on a 2-core machine with 9 callers spread over 3 nodes (0.05 s doubling,
at most 1 s, full jitter): in these storms 1-11 % of calls needed a retry; the worst
of 12,900 calls took 9 attempts, of 13,600 calls around a node kill 11. Nine
callers flipping non-stop next to three sessions inserting batches (three runs,
about 117,000 calls): 8-9 % retried, the worst took 17 attempts, and beyond 5
attempts each further attempt was still needed by half to three quarters of the
calls that needed the one before.
The default budget (5 attempts) would fail a handful of calls in every storm
here; 30 leaves a wide margin for a slower CI machine, at a worst case of about
25 s of backoff for one call.
"""

MAX_SETS_EACH = 600
"""Hard cap per caller in the storm that keeps going while a node rejoins."""
SETS_AFTER_REJOIN = 20
"""Sets every caller makes after the killed node is back, through all three nodes."""
KILL_AFTER = 3 * CALLERS * 10
"""Acknowledged calls before the kill: about a third of the way through the storm."""

RETRY_EVENT = "current_batch_flip_retry"

FLIP_SESSION = "SET SESSION wsrep_retry_autocommit = 0"
"""Run in every session that calls the procedures; README "Running on Galera" says why.

With the server's default (``wsrep_retry_autocommit = 1``) a node that aborts an
autocommit CALL for a conflicting replicated write re-runs the CALL itself instead
of returning 1213. Measured here: about 1 CALL in 8,000 under cross-node conflicts
then sends the client a malformed result (PyMySQL raises ``struct.error`` while
reading the column definitions), which no retry policy can handle. With 0 the
client gets 1213 and the wrapper retries; no malformed result in 78,000 calls.
"""


def _require_galera() -> None:
    problem = galera_available()
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="module")
def galera() -> Iterator[GaleraCluster | None]:
    """One 3-node cluster for the module, or None if it cannot run here.

    Unavailability is reported from inside each test (see ``cluster``), so the
    tests FAIL with the install hint instead of erroring in setup or skipping.
    """
    if galera_available() is not None:
        yield None
        return
    # A read with wsrep_sync_wait on the donor of a rejoining node waits for the whole
    # rsync SST; on a loaded 2-core machine that took 62 s once, past Galera's default
    # causal read timeout (30 s, then 1205). The storm's read-backs wait longer instead.
    with GaleraCluster(NODES, provider_options=["repl.causal_read_timeout=PT120S"]) as c:
        yield c


@pytest.fixture
def cluster(galera: GaleraCluster | None) -> GaleraCluster:
    """The module's cluster, all nodes synced; fails with the install hint if unavailable."""
    _require_galera()
    assert galera is not None
    galera.wait_synced(60)
    return galera


def _connect(
    node: GaleraNode, database: str | None = None, *, sync_wait: int = 0, flips: bool = False
) -> pymysql.connections.Connection[Any]:
    """Autocommit connection to ``node``.

    Args:
        node: The node.
        database: Default database.
        sync_wait: ``wsrep_sync_wait`` for the session (0: the server's default, no wait).
        flips: The session will CALL the procedures: turn the server's own retry of
            autocommit statements off (:data:`FLIP_SESSION`).
    """
    conn = node.connect(database=database, timeout=30)
    with conn.cursor() as cur:
        if sync_wait:
            cur.execute(f"SET SESSION wsrep_sync_wait = {sync_wait}")
        if flips:
            cur.execute(FLIP_SESSION)
    return conn


@dataclass(frozen=True)
class _Database:
    """A fresh migrated database on the cluster and its batches.

    Attributes:
        name: Database name.
        owned: Per caller index, the batch ids only that caller flips.
        spares: Batch ids no caller owns.
        ids: Every batch id, ascending.
    """

    name: str
    owned: tuple[tuple[int, ...], ...]
    spares: tuple[int, ...]
    ids: tuple[int, ...]


def _insert_batch(conn: pymysql.Connection, number: int, attempts: int = 5) -> None:
    """Insert one batch through ``conn`` (autocommit), again after a certification conflict.

    Right after the migration's DDL, an INSERT on one node can still lose certification
    against another node's (1213, rolled back whole): a Galera client retries it.
    """
    for attempt in range(attempts):
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-11-28', %s)",
                    (number,),
                )
            return
        except pymysql.err.OperationalError as exc:
            if exc.args[0] != 1213 or attempt == attempts - 1:
                raise


@pytest.fixture
def galera_db(cluster: GaleraCluster) -> Iterator[_Database]:
    """A fresh database migrated through node 0, batches inserted through every node.

    Galera spaces AUTO_INCREMENT values by the cluster size and offsets them by
    node (inserts through one node leave gaps; round-robin over the nodes, as
    here, happens to fill them), so the ids are read back from the table.
    """
    name = f"bfg_{uuid.uuid4().hex[:12]}"
    admin = _connect(cluster.nodes[0])
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
        migrate.upgrade(cluster.nodes[0].url + name)
        total = CALLERS * BATCHES_PER_CALLER + SPARE_BATCHES
        conns = [_connect(node, name) for node in cluster.nodes]
        try:
            for i in range(total):
                _insert_batch(conns[i % NODES], i + 1)
        finally:
            for conn in conns:
                conn.close()
        reader = _connect(cluster.nodes[0], name, sync_wait=SYNC_WAIT_ALL)
        with reader.cursor() as cur:
            cur.execute("SELECT id FROM batchStatus ORDER BY id")
            ids = tuple(int(r[0]) for r in cur.fetchall())
        reader.close()
        assert len(ids) == total
        owned = tuple(
            ids[k * BATCHES_PER_CALLER : (k + 1) * BATCHES_PER_CALLER] for k in range(CALLERS)
        )
        yield _Database(name, owned, ids[CALLERS * BATCHES_PER_CALLER :], ids)
    finally:
        with contextlib.suppress(pymysql.MySQLError), admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


class _RetryEvents(logging.Handler):
    """Counts the wrapper's ``current_batch_flip_retry`` log events by errno and by thread."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.by_errno: collections.Counter[int] = collections.Counter()
        self.by_thread: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == RETRY_EVENT:
            self.by_errno[int(getattr(record, "errno", 0) or 0)] += 1
            self.by_thread[record.threadName or ""] += 1


@pytest.fixture
def retry_events() -> Iterator[_RetryEvents]:
    """Counts retry log events on logger ``batchflag_db`` for the test (kept from propagating)."""
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
# Reading a node
# --------------------------------------------------------------------------


def _node_state(node: GaleraNode, database: str) -> Tables:
    """Read a node's tables with ``wsrep_sync_wait = 15``, with the checksums of the
    tables that have no generated column (see :func:`cluster_checks.read_tables`)."""
    conn = _connect(node, database, sync_wait=SYNC_WAIT_ALL)
    try:
        return read_tables(conn, node.index, checksums=True)
    finally:
        conn.close()


def _assert_nodes_agree(cluster: GaleraCluster, database: str) -> list[Tables]:
    """Every node: same rows, same history, exactly one current row, tables check OK."""
    states = [_node_state(node, database) for node in cluster.nodes]
    assert_tables_agree(states)
    return states


def _processlists(cluster: GaleraCluster) -> str:
    """Every node's state and its running statements, for failure messages."""
    out = []
    for node in cluster.nodes:
        try:
            conn = node.connect(timeout=5)
        except pymysql.MySQLError as exc:
            out.append(f"node {node.index}: cannot connect ({exc})")
            continue
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW STATUS LIKE 'wsrep_local_state_comment'")
                state = cur.fetchall()
                cur.execute(
                    "SELECT ID, USER, TIME, STATE, LEFT(INFO, 100) FROM information_schema.PROCESSLIST "
                    "WHERE COMMAND <> 'Sleep' AND ID <> CONNECTION_ID()"
                )
                running = cur.fetchall()
        finally:
            conn.close()
        out.append(f"node {node.index}: {state}")
        out.extend(f"  {row}" for row in running)
    return "\n".join(out)


def _final_flip(cluster: GaleraCluster, database: str, node: int, batch: int) -> Flip:
    """One last acknowledged flip through ``node``; every node must show exactly it."""
    conn = _connect(cluster.nodes[node], database, flips=True)
    try:
        flip = set_current_batch(conn, batch, retry=RETRY)
    finally:
        conn.close()
    assert flip.changed, f"batch {batch} was already current"
    for other in cluster.nodes:
        reader = _connect(other, database, sync_wait=SYNC_WAIT_ALL)
        try:
            snap = snapshot(reader, ())
        finally:
            reader.close()
        assert snap.current == (batch,), (
            f"node {other.index} shows {snap.current} after the final flip to {batch}"
        )
    return flip


# --------------------------------------------------------------------------
# The storm
# --------------------------------------------------------------------------


@dataclass
class _Caller:
    """One caller thread: its batches, its connections and its tally."""

    index: int
    home: int
    reader: int
    ids: tuple[int, ...]
    refuge: int = -1
    """Node it moves to when its home node dies (kill test only)."""
    node: int = -1
    conn: Any = None
    read_conn: Any = None
    attempts: list[tuple[int, int]] = field(default_factory=list)
    """(node the call ran on, attempts it took) per acknowledged call."""
    sets: int = 0
    unsets: int = 0
    changed: int = 0
    """Acknowledged calls that reported ``changed``, plus in-doubt calls found committed."""
    in_doubt: int = 0
    in_doubt_committed: int = 0
    readbacks: int = 0
    sets_after_rejoin: int = 0
    moved: bool = False
    failed: bool = False
    """A call failed: the caller stops (the failure is in the storm's errors)."""


class _Storm:
    """Callers flipping their own batches concurrently, each checking every acknowledged flip.

    Args:
        cluster: The cluster.
        database: The test database.
        homes: Per caller, the node its flips go to.
        readers: Per caller, the node its read-backs go to.
        unset_share: Probability that a set is followed by an unset of the same batch.
        victim: Node the test will kill (its callers then move), or None.
    """

    def __init__(
        self,
        cluster: GaleraCluster,
        database: _Database,
        homes: Sequence[int],
        readers: Sequence[int],
        *,
        unset_share: float = 0.0,
        victim: int | None = None,
        seed: int = 0,
    ) -> None:
        self.cluster = cluster
        self.db = database
        self.unset_share = unset_share
        self.exactly_one = unset_share == 0.0
        self.victim = victim
        self.seed = seed
        self.callers = [
            _Caller(k, home, reader, database.owned[k])
            for k, (home, reader) in enumerate(zip(homes, readers, strict=True))
        ]
        if victim is not None:
            survivors = [n for n in range(NODES) if n != victim]
            for c in self.callers:
                if c.home == victim:
                    c.refuge = survivors[c.index % len(survivors)]
                    c.reader = survivors[(c.index + 1) % len(survivors)]
        self.errors: list[str] = []
        self.problems: list[str] = []
        self.crashes: list[BaseException] = []
        self.killing = threading.Event()
        self.rejoined = threading.Event()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._acked = 0
        self._barrier = threading.Barrier(len(self.callers) + 1)
        self._threads = [
            threading.Thread(target=self._run, args=(c,), name=f"galera-caller-{c.index}")
            for c in self.callers
        ]
        self.elapsed = 0.0
        self.started_at = 0.0
        self.stuck: list[str] = []

    # -- driving ----------------------------------------------------------

    def start(self) -> None:
        """Start every caller; they begin flipping together."""
        for t in self._threads:
            t.start()
        self._barrier.wait(timeout=120)
        self.started_at = time.monotonic()

    def join(self, timeout: float = 180) -> None:
        """Wait for every caller to finish; :meth:`assert_clean` reports any still running."""
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.elapsed = time.monotonic() - self.started_at
        self.stuck = [t.name for t in self._threads if t.is_alive()]
        if self.stuck:
            self.stop.set()

    def run(self) -> None:
        """Start, then join."""
        self.start()
        self.join()

    @property
    def acked(self) -> int:
        """Acknowledged calls so far (sets and unsets)."""
        with self._lock:
            return self._acked

    def wait_acked(self, count: int, timeout: float = 120) -> None:
        """Block until ``count`` calls have been acknowledged."""
        deadline = time.monotonic() + timeout
        while self.acked < count:
            assert time.monotonic() < deadline, f"only {self.acked} calls acknowledged"
            assert not self.crashes, f"a caller crashed: {self.crashes[0]!r}"
            time.sleep(0.05)

    # -- one caller ----------------------------------------------------------

    def _done(self, c: _Caller) -> bool:
        if self.stop.is_set() or c.failed:
            return True
        if self.victim is None:
            return c.sets >= FLIPS_EACH
        if c.sets >= MAX_SETS_EACH:
            return True
        return (
            c.sets >= FLIPS_EACH
            and self.rejoined.is_set()
            and c.sets_after_rejoin >= SETS_AFTER_REJOIN
        )

    def _run(self, c: _Caller) -> None:
        try:
            c.node = c.home
            c.conn = _connect(self.cluster.nodes[c.node], self.db.name, flips=True)
            c.read_conn = _connect(
                self.cluster.nodes[c.reader], self.db.name, sync_wait=SYNC_WAIT_ALL
            )
        except BaseException as exc:  # reported by assert_clean, not as a thread warning
            self.crashes.append(exc)
            self._barrier.abort()
            return
        rng = random.Random(f"{self.seed}-{c.index}")
        try:
            self._barrier.wait(timeout=120)
            while not self._done(c):
                if c.moved and self.rejoined.is_set():
                    self._move(c, c.home)
                rejoined = self.rejoined.is_set()
                batch = rng.choice(c.ids)
                if self._flip(c, "set", batch):
                    c.sets += 1
                    c.sets_after_rejoin += rejoined
                if rng.random() < self.unset_share and self._flip(c, "unset", batch):
                    c.unsets += 1
        except BaseException as exc:  # reported by assert_clean, not as a thread warning
            self.crashes.append(exc)
        finally:
            for conn in (c.conn, c.read_conn):
                with contextlib.suppress(Exception):
                    conn.close()

    def _move(self, c: _Caller, node: int) -> None:
        with contextlib.suppress(Exception):
            c.conn.close()
        c.node = node
        c.conn = _connect(self.cluster.nodes[node], self.db.name, flips=True)
        c.moved = node != c.home

    def _flip(self, c: _Caller, action: str, batch: int) -> bool:
        """One call through the wrapper, then its read-back; False if not acknowledged."""
        call = set_current_batch if action == "set" else unset_current_batch
        node = c.node
        try:
            flip = call(c.conn, batch, retry=RETRY)
        except DatabaseConnectionError as exc:
            if node == self.victim and self.killing.is_set():
                self._lost_home(c)
                return False
            self._error(c, node, action, batch, exc)
            return False
        except BatchFlagError as exc:
            self._error(c, node, action, batch, exc)
            return False
        c.attempts.append((node, flip.attempts))
        c.changed += flip.changed
        with self._lock:
            self._acked += 1
        self._read_back(c, action, batch)
        return True

    def _error(self, c: _Caller, node: int, action: str, batch: int, exc: BatchFlagError) -> None:
        c.failed = True
        with self._lock:
            self.errors.append(
                f"caller {c.index} on node {node}: {action}({batch}) failed with "
                f"{type(exc).__name__} errno {exc.errno}: {exc}"
            )

    def _problem(self, text: str) -> None:
        with self._lock:
            self.problems.append(text)

    def _read_back(self, c: _Caller, action: str, batch: int) -> None:
        snap = snapshot(c.read_conn, c.ids)
        c.readbacks += 1
        where = (
            f"caller {c.index} after {action}({batch}) acknowledged by node {c.node}, "
            f"read on node {c.reader}"
        )
        if len(snap.current) > 1 or (self.exactly_one and len(snap.current) != 1):
            self._problem(f"{where}: current rows {list(snap.current)}")
        if snap.mine != c.changed:
            self._problem(
                f"{where}: {snap.mine} history rows of its batches, it made {c.changed} changes"
            )
        wrong = inconsistency(snap)
        if wrong:
            self._problem(f"{where}: {wrong}")
        if action == "unset" and batch in snap.current:
            self._problem(f"{where}: batch {batch} is still current")

    def _lost_home(self, c: _Caller) -> None:
        """The home node died under the call: move, then find out whether the call committed.

        The call's outcome is unknown: its write set may have been certified
        before the kill. A read with ``wsrep_sync_wait`` on a survivor returns
        once the survivors have a primary view without the dead node, and then
        shows the write set or never will; the caller's own history rows tell
        whether it changed something.
        """
        c.in_doubt += 1
        self._move(c, c.refuge)
        snap = snapshot(c.read_conn, c.ids)
        extra = snap.mine - c.changed
        if extra not in (0, 1):
            self._problem(
                f"caller {c.index}: {snap.mine} history rows after losing node {self.victim}, "
                f"it made {c.changed} changes plus one in doubt"
            )
            return
        c.changed += extra
        c.in_doubt_committed += extra

    # -- results ------------------------------------------------------------

    def assert_clean(self) -> None:
        """No caller crashed, every call succeeded, every read-back was consistent."""
        assert self.crashes == [], "a caller crashed:\n" + "".join(
            traceback.format_exception(self.crashes[0])
        )
        assert self.errors == [], f"{len(self.errors)} calls failed, first: {self.errors[:5]}"
        assert self.problems == [], (
            f"{len(self.problems)} inconsistent read-backs, first: {self.problems[:5]}"
        )
        assert self.stuck == [], (
            f"callers still running at the deadline: {self.stuck}\n" + _processlists(self.cluster)
        )
        assert all(c.sets >= FLIPS_EACH for c in self.callers), [c.sets for c in self.callers]

    @property
    def changed(self) -> int:
        """Flips that changed the current batch (history rows the storm wrote)."""
        return sum(c.changed for c in self.callers)

    def report(self, title: str, retry_events: _RetryEvents) -> list[str]:
        """Calls, retries and the attempts distribution per node, as text lines."""
        by_node: dict[int, collections.Counter[int]] = collections.defaultdict(collections.Counter)
        for c in self.callers:
            for node, attempts in c.attempts:
                by_node[node][attempts] += 1
        every = collections.Counter[int]()
        for counter in by_node.values():
            every.update(counter)
        calls = sum(every.values())
        retries = sum((a - 1) * n for a, n in every.items())
        retried = sum(n for a, n in every.items() if a > 1)
        sets = sum(c.sets for c in self.callers)
        unsets = sum(c.unsets for c in self.callers)
        lines = [
            f"galera storm [{title}]: {len(self.callers)} callers, {sets} sets + {unsets} unsets "
            f"= {calls} calls acknowledged in {self.elapsed:.1f} s ({calls / max(self.elapsed, 1e-6):.0f}/s); "
            f"{retries} retries ({dict(sorted(retry_events.by_errno.items()))} by errno in the "
            f"log), {retried} calls retried ({100 * retried / max(calls, 1):.1f} %), "
            f"max {max(every) if every else 0} attempts (budget {RETRY.attempts})",
        ]
        for node in sorted(by_node):
            dist = by_node[node]
            n = sum(dist.values())
            r = sum((a - 1) * k for a, k in dist.items())
            lines.append(
                f"  node {node}: {n} calls, {r} retries, attempts per call {dict(sorted(dist.items()))}"
            )
        lines.append(
            f"  read-backs on another node (wsrep_sync_wait={SYNC_WAIT_ALL}): "
            f"{sum(c.readbacks for c in self.callers)}, inconsistent: {len(self.problems)}; "
            f"failed calls: {len(self.errors)}"
        )
        return lines

    def retries(self) -> int:
        """Retries over all acknowledged calls (attempts beyond the first)."""
        return sum(a - 1 for c in self.callers for _, a in c.attempts)

    def assert_retries_logged(
        self, events: _RetryEvents, *, except_home: int | None = None
    ) -> None:
        """Each caller's logged retries match its calls' attempts (callers on ``except_home``:
        at least as many, since their calls cut off by the kill retried too)."""
        for c in self.callers:
            logged = events.by_thread[f"galera-caller-{c.index}"]
            counted = sum(a - 1 for _, a in c.attempts)
            if c.home == except_home:
                assert logged >= counted, (c.index, logged, counted)
            else:
                assert logged == counted, (
                    f"caller {c.index}: {logged} retries logged, {counted} in its Flips"
                )


def _spread() -> tuple[list[int], list[int]]:
    """Homes 0,1,2,0,1,2,...; each caller reads back on the next node."""
    homes = [k % NODES for k in range(CALLERS)]
    return homes, [(h + 1) % NODES for h in homes]


def _flip_count(cluster: GaleraCluster, database: str) -> int:
    conn = _connect(cluster.nodes[0], database, sync_wait=SYNC_WAIT_ALL)
    try:
        return snapshot(conn, ()).flip_count
    finally:
        conn.close()


def _set(cluster: GaleraCluster, database: str, node: int, batch: int) -> Flip:
    conn = _connect(cluster.nodes[node], database, flips=True)
    try:
        return set_current_batch(conn, batch, retry=RETRY)
    finally:
        conn.close()


def _assert_storm_accounted(
    states: Sequence[Tables], storm: _Storm, flips_before: int, history_before: int
) -> None:
    """Every acknowledged call counted once by the lock row; every change in the history once."""
    acked = sum(len(c.attempts) for c in storm.callers)
    in_doubt = sum(c.in_doubt for c in storm.callers)
    done = states[0].snapshot.flip_count - flips_before
    assert acked <= done <= acked + in_doubt, (
        f"lock row counted {done} calls; {acked} acknowledged, {in_doubt} in doubt"
    )
    assert len(states[0].history) == history_before + storm.changed
    for state in states:
        for c in storm.callers:
            mine = sum(1 for row in state.history if row[1] in c.ids)
            assert mine == c.changed, (
                f"node {state.node}: {mine} history rows of caller {c.index}'s batches, "
                f"it made {c.changed} changes"
            )


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


class TestFlipStorm:
    def test_spread_storm_from_one_current_batch(
        self,
        cluster: GaleraCluster,
        galera_db: _Database,
        retry_events: _RetryEvents,
        publish: Callable[[str, list[str]], None],
    ) -> None:
        """9 callers, 3 per node, 100 flips each: every call succeeds within the budget, every acknowledged flip is seen on another node, all nodes end equal with one current row."""
        db = galera_db.name
        _set(cluster, db, 0, galera_db.spares[0])
        flips_before = _flip_count(cluster, db)
        homes, readers = _spread()
        storm = _Storm(cluster, galera_db, homes, readers, seed=1)
        storm.run()
        publish("galera_storm_spread", storm.report("spread, one current at start", retry_events))
        storm.assert_clean()
        storm.assert_retries_logged(retry_events)
        assert set(retry_events.by_errno) <= {ER_LOCK_DEADLOCK}, retry_events.by_errno
        states = _assert_nodes_agree(cluster, db)
        _assert_storm_accounted(states, storm, flips_before, history_before=1)
        _final_flip(cluster, db, 1, galera_db.spares[1])

    def test_spread_storm_from_no_current_batch(
        self,
        cluster: GaleraCluster,
        galera_db: _Database,
        retry_events: _RetryEvents,
        publish: Callable[[str, list[str]], None],
    ) -> None:
        """Starting with no current batch and unsetting often, so flips race from "none" again and again: never two current rows, every acknowledged flip seen, all nodes end equal."""
        db = galera_db.name
        conn = _connect(cluster.nodes[0], db, sync_wait=SYNC_WAIT_ALL)
        try:
            start = snapshot(conn, ())
        finally:
            conn.close()
        assert start.current == ()
        homes, readers = _spread()
        storm = _Storm(cluster, galera_db, homes, readers, unset_share=0.4, seed=2)
        storm.run()
        publish(
            "galera_storm_from_none",
            storm.report("spread, none current at start, with unsets", retry_events),
        )
        storm.assert_clean()
        assert sum(c.unsets for c in storm.callers) >= CALLERS * FLIPS_EACH // 4
        storm.assert_retries_logged(retry_events)
        assert set(retry_events.by_errno) <= {ER_LOCK_DEADLOCK}, retry_events.by_errno
        # The storm may end with no current batch; one final flip makes it exactly one.
        _final_flip(cluster, db, 2, galera_db.spares[0])
        states = _assert_nodes_agree(cluster, db)
        assert len(states[0].history) == storm.changed + 1
        acked = sum(len(c.attempts) for c in storm.callers)
        assert states[0].snapshot.flip_count == start.flip_count + acked + 1
        for state in states:
            for c in storm.callers:
                assert sum(1 for row in state.history if row[1] in c.ids) == c.changed

    def test_callers_on_one_node_never_retry(
        self,
        cluster: GaleraCluster,
        galera_db: _Database,
        retry_events: _RetryEvents,
        publish: Callable[[str, list[str]], None],
    ) -> None:
        """9 callers all on node 0: flips queue on the node's row locks and none needs a retry (the case for sending flips to one node)."""
        db = galera_db.name
        _set(cluster, db, 0, galera_db.spares[0])
        flips_before = _flip_count(cluster, db)
        homes = [0] * CALLERS
        readers = [1 + k % 2 for k in range(CALLERS)]
        storm = _Storm(cluster, galera_db, homes, readers, seed=3)
        storm.run()
        publish("galera_storm_one_node", storm.report("all callers on node 0", retry_events))
        storm.assert_clean()
        assert storm.retries() == 0
        assert sum(retry_events.by_errno.values()) == 0
        states = _assert_nodes_agree(cluster, db)
        _assert_storm_accounted(states, storm, flips_before, history_before=1)


class TestNoFalseErrors:
    ROUNDS = 150

    def test_batch_inserted_on_one_node_flips_at_once_on_another(
        self,
        cluster: GaleraCluster,
        galera_db: _Database,
        publish: Callable[[str, list[str]], None],
    ) -> None:
        """A batch inserted through one node and flipped at once through another whose session sets wsrep_sync_wait = 1 is never reported missing; without it, only 31002 can occur."""
        db = galera_db.name
        writers = [_connect(node, db) for node in cluster.nodes]
        waiting = [_connect(node, db, sync_wait=1, flips=True) for node in cluster.nodes]
        plain = [_connect(node, db, flips=True) for node in cluster.nodes]
        checker = _connect(cluster.nodes[0], db, sync_wait=SYNC_WAIT_ALL)
        errors: list[str] = []
        unsynced_refusals: list[tuple[int, int | None, int]] = []
        insert_retries: list[int] = []
        try:

            def insert(node: int, number: int) -> int:
                # Like any write on Galera, the pipeline's INSERT of a batch can be
                # refused with 1213 when it meets a replicated flip; it retries too.
                for _ in range(10):
                    try:
                        with writers[node].cursor() as cur:
                            cur.execute(
                                "INSERT INTO batchStatus (batchDate, batchNumber) "
                                "VALUES ('2026-12-01', %s)",
                                (number,),
                            )
                            return int(cur.lastrowid)
                    except pymysql.err.OperationalError as exc:
                        if exc.args[0] != ER_LOCK_DEADLOCK:
                            raise
                        insert_retries.append(number)
                raise AssertionError(f"INSERT of batch number {number} refused 10 times")

            for r in range(self.ROUNDS):
                src = r % NODES
                dst = (src + 1 + (r // NODES) % (NODES - 1)) % NODES  # every ordered pair
                batch = insert(src, r)
                try:
                    flip = set_current_batch(waiting[dst], batch, retry=RETRY)
                except BatchFlagError as exc:
                    errors.append(f"round {r}: node {dst} refused batch {batch}: {exc!r}")
                    continue
                if not flip.changed:
                    errors.append(f"round {r}: set({batch}) on node {dst} changed nothing")
                # For comparison: the same without wsrep_sync_wait. The only error
                # allowed is 31002 for a batch the cluster already holds.
                batch = insert(src, 10_000 + r)
                try:
                    set_current_batch(plain[dst], batch, retry=RETRY)
                except BatchNotFoundError as exc:
                    with checker.cursor() as cur:
                        cur.execute("SELECT COUNT(*) FROM batchStatus WHERE id = %s", (batch,))
                        unsynced_refusals.append((batch, exc.errno, cur.fetchone()[0]))
        finally:
            for conn in (*writers, *waiting, *plain, checker):
                conn.close()
        publish(
            "galera_insert_then_flip",
            [
                f"galera insert-then-flip on another node, {self.ROUNDS} rounds: "
                f"with wsrep_sync_wait=1: {len(errors)} errors; "
                f"with wsrep_sync_wait=0: {len(unsynced_refusals)} refused with 31002 "
                f"(batch not yet applied there); INSERTs retried after 1213: {len(insert_retries)}"
            ],
        )
        assert errors == []
        # Every refusal without wsrep_sync_wait was 31002 for a batch the cluster holds.
        assert all(
            errno == ER_BATCH_NOT_FOUND and exists == 1 for _, errno, exists in unsynced_refusals
        ), unsynced_refusals
        _assert_nodes_agree(cluster, db)

    def test_missing_batch_refused_on_every_node_changing_nothing(
        self, cluster: GaleraCluster, galera_db: _Database
    ) -> None:
        """An id skipped by Galera's auto-increment spacing is refused with 31002 by every node, for set and unset, and nothing changes, not even the lock row's counter."""
        db = galera_db.name
        conn = _connect(cluster.nodes[0], db)
        try:
            with conn.cursor() as cur:
                made = []
                for number in (1, 2):
                    cur.execute(
                        "INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-12-02', %s)",
                        (number,),
                    )
                    made.append(int(cur.lastrowid))
        finally:
            conn.close()
        # Two inserts through one node leave a gap (auto_increment_increment = cluster size).
        assert made[1] - made[0] == NODES, made
        missing = made[0] + 1
        _set(cluster, db, 0, galera_db.spares[0])
        before = _flip_count(cluster, db)
        for node in cluster.nodes:
            conn = _connect(node, db, sync_wait=SYNC_WAIT_ALL, flips=True)
            try:
                for call in (set_current_batch, unset_current_batch):
                    with pytest.raises(BatchNotFoundError) as caught:
                        call(conn, missing, retry=RETRY)
                    assert caught.value.errno == ER_BATCH_NOT_FOUND
                    assert f"batch {missing} does not exist" in str(caught.value)
            finally:
                conn.close()
        states = _assert_nodes_agree(cluster, db)
        assert states[0].snapshot.current == (galera_db.spares[0],)
        assert states[0].snapshot.flip_count == before


def _rejoin_method(log: str, offset: int) -> str:
    """Whether the restarted node's log, from ``offset``, shows IST, SST or both."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"unknown ({exc})"
    found = [m for m in ("SST", "IST") if f"{m} received" in text]
    return "+".join(found) or "neither logged"


class TestNodeKilledMidStorm:
    def test_kill_9_one_node_mid_storm_and_rejoin(
        self,
        cluster: GaleraCluster,
        galera_db: _Database,
        retry_events: _RetryEvents,
        publish: Callable[[str, list[str]], None],
    ) -> None:
        """kill -9 of node 2 mid-storm, restarted while the storm goes on: its callers move, every acknowledged flip is on every node, one current row, equal tables, CHECK TABLE OK."""
        db = galera_db.name
        victim = 2
        _set(cluster, db, 0, galera_db.spares[0])
        flips_before = _flip_count(cluster, db)
        homes, _ = _spread()
        readers = [1 if h == 0 else 0 for h in homes]  # never the victim
        storm = _Storm(cluster, galera_db, homes, readers, victim=victim, seed=4)
        log = cluster.nodes[victim].error_log
        restarted = False
        try:
            storm.start()
            storm.wait_acked(KILL_AFTER)
            acked_at_kill = storm.acked
            storm.killing.set()
            t_kill = time.monotonic() - storm.started_at
            cluster.kill_node(victim)
            log_offset = os.path.getsize(log)
            t0 = time.monotonic()
            cluster.restart_node(victim)
            restart_s = time.monotonic() - t0
            restarted = True
            acked_at_rejoin = storm.acked
            storm.rejoined.set()
            storm.join()
        finally:
            if not restarted:  # the test failed early: end the storm, leave a whole cluster
                storm.stop.set()
                storm.rejoined.set()
                storm.join(120)
                cluster.restart_node(victim)
        lines = storm.report(f"kill -9 node {victim} mid-storm", retry_events)
        lines.append(
            f"  killed node {victim} at {t_kill:.1f} s after {acked_at_kill} calls; restarted and "
            f"synced in {restart_s:.1f} s (rejoined by {_rejoin_method(log, log_offset)}); "
            f"{acked_at_rejoin - acked_at_kill} calls acknowledged meanwhile; "
            f"{sum(c.in_doubt for c in storm.callers)} calls cut off by the kill, "
            f"{sum(c.in_doubt_committed for c in storm.callers)} of them found committed"
        )
        publish("galera_storm_kill", lines)
        storm.assert_clean()
        storm.assert_retries_logged(retry_events, except_home=victim)
        assert set(retry_events.by_errno) <= {ER_LOCK_DEADLOCK}, retry_events.by_errno
        on_victim = [c for c in storm.callers if c.home == victim]
        assert [c.in_doubt for c in on_victim] == [1] * CALLERS_PER_NODE, (
            "every caller on the killed node loses its connection exactly once"
        )
        assert acked_at_rejoin > acked_at_kill, "the survivors kept flipping"
        assert all(c.sets_after_rejoin >= SETS_AFTER_REJOIN for c in storm.callers)
        assert any(
            node == victim for c in on_victim for node, _ in c.attempts[-SETS_AFTER_REJOIN:]
        ), "callers went back to the restarted node"
        states = _assert_nodes_agree(cluster, db)
        _assert_storm_accounted(states, storm, flips_before, history_before=1)
        current = states[0].snapshot.current[0]
        final = next(b for b in galera_db.spares if b != current)
        _final_flip(cluster, db, victim, final)
        _assert_nodes_agree(cluster, db)
