"""Tests for the throwaway Galera cluster harness in ``batchflag_db.testing.galera``.

These start real MariaDB Galera nodes, one container each, on a Docker network of the
cluster's own. Where no Docker engine answers the tests fail (not skip) with the message
of ``galera_available()``: a harness that silently skips proves nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pymysql
import pytest

from batchflag_db.testing.container import docker, labelled_names
from batchflag_db.testing.galera import GaleraCluster, GaleraNode, galera_available

SYNC_WAIT_ALL = 15  # wsrep_sync_wait bitmask: READ, UPDATE/DELETE, INSERT/REPLACE, SHOW


@pytest.fixture(scope="class")
def galera() -> Iterator[GaleraCluster | None]:
    """A 3-node cluster shared by the class, or None if it cannot run here.

    Unavailability is reported by :func:`_need` from inside each test, so
    such tests FAIL (not ERROR in setup, not skip) with the install hint.
    """
    if galera_available() is not None:
        yield None
        return
    with GaleraCluster(3) as c:
        yield c


def _require_galera() -> None:
    problem = galera_available()
    if problem is not None:
        pytest.fail(problem, pytrace=False)


def _need(cluster: GaleraCluster | None) -> GaleraCluster:
    _require_galera()
    assert cluster is not None
    return cluster


def _connect(node: GaleraNode) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    """Autocommit connection whose reads wait for everything replicated so far."""
    conn = node.connect(timeout=30)
    with conn.cursor() as cur:
        cur.execute(f"SET SESSION wsrep_sync_wait = {SYNC_WAIT_ALL}")
    return conn


def _rows(node: GaleraNode, sql: str) -> list[tuple[object, ...]]:
    conn = _connect(node)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def _execute(node: GaleraNode, *statements: str) -> None:
    conn = _connect(node)
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A reaped child is gone; an unreaped zombie would still answer kill(0),
    # so also look at its state.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


def _address(container: str, network: str) -> str:
    """``container``'s IPv4 address on ``network``."""
    return docker(
        "inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
        container,
    )  # fmt: skip


def _labelled(kind: str, name: str) -> bool:
    """Tell whether a container or network called ``name`` exists with the suite's label."""
    return name in labelled_names(kind)


@pytest.mark.galera
class TestGaleraHarness:
    def test_urls_point_at_distinct_nodes(self, galera: GaleraCluster | None) -> None:
        """Three URLs on 127.0.0.1 with root's password reach three nodes, each its own labelled container at its own address on the cluster's own network."""
        cluster = _need(galera)
        urls = cluster.urls()
        assert len(urls) == 3
        assert len(set(urls)) == 3
        password = cluster.nodes[0].password
        assert password
        assert all(u.startswith(f"mysql+pymysql://root:{password}@127.0.0.1:") for u in urls)
        network = cluster.network
        assert network is not None
        assert _labelled("network", network)
        assert all(_labelled("container", n.container) for n in cluster.nodes)
        addresses = {_address(n.container, network) for n in cluster.nodes}
        assert len(addresses) == 3
        assert all(addresses)
        assert [n.address for n in cluster.nodes] == ["node0", "node1", "node2"]
        # Each URL reaches a different server (distinct wsrep node names).
        names = {_rows(n, "SELECT @@wsrep_node_name")[0][0] for n in cluster.nodes}
        assert names == {"node0", "node1", "node2"}
        for node in cluster.nodes:
            assert _rows(node, "SHOW STATUS LIKE 'wsrep_cluster_size'") == [
                ("wsrep_cluster_size", "3")
            ]

    def test_write_on_node0_is_seen_by_nodes_1_and_2(self, galera: GaleraCluster | None) -> None:
        """A write through node 0 is read on nodes 1 and 2."""
        cluster = _need(galera)
        db = f"harness_{uuid.uuid4().hex[:12]}"
        n0, n1, n2 = cluster.nodes
        _execute(
            n0,
            f"CREATE DATABASE {db}",
            f"CREATE TABLE {db}.t (id INT PRIMARY KEY, note VARCHAR(20) NOT NULL)",
            f"INSERT INTO {db}.t VALUES (1, 'from node0')",
        )
        query = f"SELECT id, note FROM {db}.t ORDER BY id"
        assert _rows(n1, query) == [(1, "from node0")]
        assert _rows(n2, query) == [(1, "from node0")]

    def test_killed_node_catches_up_after_restart(self, galera: GaleraCluster | None) -> None:
        """kill -9 of a node: the others take writes; restarted on its datadir it catches up."""
        cluster = _need(galera)
        db = f"harness_{uuid.uuid4().hex[:12]}"
        n0 = cluster.nodes[0]
        _execute(
            n0,
            f"CREATE DATABASE {db}",
            f"CREATE TABLE {db}.t (id INT PRIMARY KEY, note VARCHAR(20) NOT NULL)",
            f"INSERT INTO {db}.t VALUES (1, 'before kill')",
        )
        query = f"SELECT id, note FROM {db}.t ORDER BY id"
        assert _rows(cluster.nodes[2], query) == [(1, "before kill")]

        old_pid = cluster.nodes[2].pid
        cluster.kill_node(2)
        assert not _pid_alive(old_pid)
        with pytest.raises(pymysql.err.OperationalError):
            cluster.nodes[2].connect(timeout=2).close()

        # The survivors keep quorum (2 of 3) and accept the write; it may
        # stall until the dead member is evicted (evs.suspect_timeout).
        _execute(n0, f"INSERT INTO {db}.t VALUES (2, 'while down')")
        assert _rows(cluster.nodes[1], query) == [(1, "before kill"), (2, "while down")]

        cluster.restart_node(2)
        assert cluster.nodes[2].pid != old_pid
        assert _pid_alive(cluster.nodes[2].pid)
        assert _rows(cluster.nodes[2], query) == [(1, "before kill"), (2, "while down")]
        assert _rows(cluster.nodes[2], "SHOW STATUS LIKE 'wsrep_cluster_size'") == [
            ("wsrep_cluster_size", "3")
        ]

    def test_killed_node_0_rejoins_without_bootstrapping(
        self, galera: GaleraCluster | None
    ) -> None:
        """Node 0 (the one that bootstrapped) killed and restarted joins the running cluster: one cluster UUID, size 3, the writes it missed."""
        cluster = _need(galera)
        db = f"harness_{uuid.uuid4().hex[:12]}"
        uuid_before = _rows(cluster.nodes[1], "SHOW STATUS LIKE 'wsrep_cluster_state_uuid'")
        cluster.kill_node(0)
        _execute(
            cluster.nodes[1],
            f"CREATE DATABASE {db}",
            f"CREATE TABLE {db}.t (id INT PRIMARY KEY)",
            f"INSERT INTO {db}.t VALUES (1)",
        )
        cluster.restart_node(0)
        assert _rows(cluster.nodes[0], f"SELECT id FROM {db}.t") == [(1,)]
        for node in cluster.nodes:
            assert _rows(node, "SHOW STATUS LIKE 'wsrep_cluster_state_uuid'") == uuid_before
            assert _rows(node, "SHOW STATUS LIKE 'wsrep_cluster_size'") == [
                ("wsrep_cluster_size", "3")
            ]

    def test_stop_kills_nodes_and_removes_files(self) -> None:
        """stop() removes the containers, the network and the datadirs, and can be called twice."""
        _require_galera()
        c = GaleraCluster(1)
        c.start()
        try:
            pid = c.nodes[0].pid
            base_dir = c.base_dir
            network = c.network
            containers = c.containers()
            assert base_dir is not None
            assert network is not None
            assert os.path.isdir(base_dir)
            assert _pid_alive(pid)
        finally:
            c.stop()
        assert not _pid_alive(pid)
        assert not os.path.exists(base_dir)
        assert c.base_dir is None
        assert not _labelled("network", network)
        assert not any(_labelled("container", name) for name in containers)
        c.stop()  # idempotent
