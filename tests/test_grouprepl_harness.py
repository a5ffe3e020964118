"""Tests for the throwaway Group Replication harness in ``batchflag_db.testing.grouprepl``.

These start real MySQL 9.7 members, one container each (the ``mysql-9.7`` image), on a
Docker network of the group's own. Where no Docker engine answers the tests fail (not
skip) with the message of ``grouprepl_available()``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pymysql
import pytest
from sqlalchemy.engine import make_url

from batchflag_db.testing.container import labelled_names
from batchflag_db.testing.grouprepl import (
    GroupMember,
    GroupReplicationCluster,
    grouprepl_available,
)

pytestmark = pytest.mark.grouprepl


@pytest.fixture(scope="module")
def group() -> Iterator[GroupReplicationCluster | None]:
    """A 3-member single-primary group for the module, or None if it cannot run here."""
    if grouprepl_available() is not None:
        yield None
        return
    with GroupReplicationCluster(3) as g:
        yield g


def _require() -> None:
    problem = grouprepl_available()
    if problem is not None:
        pytest.fail(problem, pytrace=False)


def _need(group: GroupReplicationCluster | None) -> GroupReplicationCluster:
    _require()
    assert group is not None
    return group


def _rows(node: GroupMember, sql: str) -> list[tuple[object, ...]]:
    conn = node.connect(timeout=30)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION group_replication_consistency = 'BEFORE'")
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


def _labelled(kind: str, name: str) -> bool:
    """Tell whether a container or network called ``name`` exists with the suite's label."""
    return name in labelled_names(kind)


class TestGroupReplicationHarness:
    def test_members_online_with_one_primary(self, group: GroupReplicationCluster | None) -> None:
        """Three distinct members reached on 127.0.0.1 with root's password, each a labelled container known to the group by its own name on the group's network; all ONLINE in every view, exactly one PRIMARY, the others super_read_only."""
        g = _need(group)
        urls = g.urls()
        assert len(set(urls)) == 3
        password = g.nodes[0].password
        assert password
        assert all(u.startswith(f"mysql+pymysql://root:{password}@127.0.0.1:") for u in urls)
        assert g.network is not None
        assert _labelled("network", g.network)
        assert all(_labelled("container", n.container) for n in g.nodes)
        assert {_rows(n, "SELECT @@server_id")[0][0] for n in g.nodes} == {1, 2, 3}
        assert [n.address for n in g.nodes] == ["node0", "node1", "node2"]
        for i in range(3):
            seen = g.members(i)
            assert sorted(m.host for m in seen) == ["node0", "node1", "node2"]
            assert {m.state for m in seen} == {"ONLINE"}
        primary = g.primary()
        assert g.primaries() == [primary]
        for node in g.nodes:
            ro = _rows(node, "SELECT @@super_read_only")[0][0]
            assert ro == (0 if node.index == primary else 1)

    def test_write_on_primary_is_seen_everywhere(
        self, group: GroupReplicationCluster | None
    ) -> None:
        """A write through the primary is read on both secondaries."""
        g = _need(group)
        db = f"harness_{uuid.uuid4().hex[:12]}"
        p = g.nodes[g.primary()]
        conn = p.connect()
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {db}")
            cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, note VARCHAR(20) NOT NULL)")
            cur.execute(f"INSERT INTO {db}.t VALUES (1, 'from primary')")
        conn.close()
        for node in g.nodes:
            assert _rows(node, f"SELECT id, note FROM {db}.t") == [(1, "from primary")]

    def test_kill_primary_elects_another_and_restart_rejoins(
        self, group: GroupReplicationCluster | None
    ) -> None:
        """kill -9 of the primary: another member becomes primary and takes writes; the killed member restarts, rejoins ONLINE and has the writes it missed."""
        g = _need(group)
        db = f"harness_{uuid.uuid4().hex[:12]}"
        victim = g.primary()
        conn = g.nodes[victim].connect()
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {db}")
            cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY)")
        conn.close()
        old_pid = g.nodes[victim].pid
        g.kill_node(victim)
        assert not _pid_alive(old_pid)
        with pytest.raises(pymysql.err.OperationalError):
            g.nodes[victim].connect(timeout=2).close()
        deadline = time.monotonic() + 60
        new = victim
        while new == victim:  # the survivors list the dead primary until they expel it
            assert time.monotonic() < deadline, "no new primary within 60 s"
            time.sleep(0.2)
            new = g.primary(timeout=60)
        conn = g.nodes[new].connect()
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {db}.t VALUES (2)")
        conn.close()
        g.restart_node(victim)
        assert g.nodes[victim].pid != old_pid
        assert _rows(g.nodes[victim], f"SELECT id FROM {db}.t") == [(2,)]
        assert {m.state for m in g.members(victim)} == {"ONLINE"}
        assert len(g.members(victim)) == 3

    def test_stop_kills_members_and_removes_files(self) -> None:
        """stop() kills every member, removes the containers, the network and the files, and can be called twice."""
        _require()
        g = GroupReplicationCluster(1, multi_primary=True)
        g.start()
        try:
            pid = g.nodes[0].pid
            base = g.nodes[0].directory.parent
            network = g.network
            containers = g.containers()
            assert network is not None
            assert base.is_dir()
            assert _pid_alive(pid)
        finally:
            g.stop()
        assert not _pid_alive(pid)
        assert not base.exists()
        assert not _labelled("network", network)
        assert not any(_labelled("container", name) for name in containers)
        g.stop()

    def test_command_line_prints_urls_and_stops_on_sigint(self) -> None:
        """`python -m batchflag_db.testing.grouprepl --size 1` prints a URL that answers, and Ctrl-C tears it down."""
        _require()
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchflag_db.testing.grouprepl", "--size", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("mysql+pymysql://root:"), url
            parsed = make_url(url)
            assert parsed.host == "127.0.0.1"
            port = parsed.port
            conn = pymysql.connect(
                host="127.0.0.1", port=port, user="root", password=parsed.password
            )
            conn.close()
        finally:
            proc.send_signal(2)
            rc = proc.wait(60)
            if proc.stdout is not None:
                proc.stdout.close()
        assert rc == 0
        with pytest.raises(pymysql.err.OperationalError):
            pymysql.connect(
                host="127.0.0.1",
                port=port,
                user="root",
                password=parsed.password,
                connect_timeout=2,
            )
