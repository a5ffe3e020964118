"""One server in a container (``batchflag_db.testing.container``), as the clusters use it.

The lifecycle tests start a real container of the run's kind (its image is built here on
first use). Where no Docker engine answers they fail with the reason; they never skip.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from batchflag_db.testing.container import (
    ContainerServer,
    DockerNetwork,
    docker,
    docker_problem,
    labelled_names,
    remove_directory,
    remove_stale,
)
from batchflag_db.testing.containers import OWNER_HOST_LABEL, OWNER_PID_LABEL, SUITE_LABEL
from batchflag_db.testing.galera import galera_available
from batchflag_db.testing.grouprepl import grouprepl_available
from batchflag_db.testing.images import ensure_image
from batchflag_db.testing.kinds import kind_named


class TestWithoutAnEngine:
    def test_clusters_say_no_engine_answers(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With DOCKER_HOST pointing nowhere, both clusters report that no engine answers (the tests then fail with it)."""
        monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        problem = docker_problem()
        assert problem is not None
        assert "Docker engine" in problem or "docker command" in problem
        galera = galera_available()
        grouprepl = grouprepl_available()
        assert galera is not None
        assert galera.startswith("Galera test cluster unavailable: its nodes run in containers")
        assert grouprepl is not None
        assert grouprepl.startswith("Group Replication test group unavailable")
        assert problem in galera
        assert problem in grouprepl


def _require_engine() -> None:
    problem = docker_problem()
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def network() -> Iterator[DockerNetwork]:
    """A labelled network of the test's own, removed afterwards."""
    _require_engine()
    net = DockerNetwork("bf-test")
    net.create()
    try:
        yield net
    finally:
        net.remove()


@pytest.mark.slow
class TestContainerServer:
    def test_start_kill_recreate_remove(self, network: DockerNetwork) -> None:
        """A server starts labelled on its network under its alias and takes a password login on 127.0.0.1; kill -9 stops it; re-created on its datadir it has its data and its port; remove() leaves nothing."""
        image = ensure_image(kind_named())
        with tempfile.TemporaryDirectory(prefix="bf-container-") as scratch:
            datadir = Path(scratch) / "data"
            datadir.mkdir()
            server = ContainerServer(
                image,
                name=f"{network.name}-solo",
                alias="solo",
                datadir=datadir,
                password=secrets.token_hex(8),
                network=network,
            )
            try:
                server.start(["--max-connections=50"])
                server.wait_ready(time.monotonic() + 180)
                assert (
                    server.url == f"mysql+pymysql://root:{server.password}@127.0.0.1:{server.port}/"
                )
                assert server.name in labelled_names("container")
                labels = docker("inspect", "--format", "{{json .Config.Labels}}", server.name)
                assert f'"{SUITE_LABEL}":"1"' in labels
                assert f'"{OWNER_PID_LABEL}":"{os.getpid()}"' in labels
                aliases = docker(
                    "inspect",
                    "--format",
                    f'{{{{json (index .NetworkSettings.Networks "{network.name}").Aliases}}}}',
                    server.name,
                )
                assert '"solo"' in aliases
                conn = server.connect()
                with conn.cursor() as cur:
                    cur.execute("SELECT @@max_connections")
                    assert cur.fetchone() == (50,)
                    cur.execute("CREATE DATABASE kept")
                    cur.execute("CREATE TABLE kept.t (id INT PRIMARY KEY)")
                    cur.execute("INSERT INTO kept.t VALUES (7)")
                conn.close()
                port, pid = server.port, server.pid()
                assert pid > 0
                server.kill()
                assert not server.running()
                assert server.pid() == 0
                with pytest.raises(pymysql.err.OperationalError):
                    server.connect(timeout=2).close()
                server.recreate()
                server.wait_ready(time.monotonic() + 180)
                assert server.port == port
                conn = server.connect()
                with conn.cursor() as cur:
                    cur.execute("SELECT id FROM kept.t")
                    assert cur.fetchall() == ((7,),)
                conn.close()
                assert "entrypoint" in server.logs()
            finally:
                server.remove()
                remove_directory(datadir, image)
            assert server.name not in labelled_names("container")
            assert not datadir.exists()


@pytest.mark.slow
class TestRemoveStale:
    def test_removes_what_a_dead_owner_left_and_keeps_the_living(
        self, network: DockerNetwork
    ) -> None:
        """A labelled network whose owner process has ended is removed; this run's own network is kept."""
        ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)  # fmt: skip
        stale = f"bf-test-stale-{secrets.token_hex(4)}"
        docker(
            "network", "create",
            "--label", f"{SUITE_LABEL}=1",
            "--label", f"{OWNER_HOST_LABEL}={socket.gethostname()}",
            "--label", f"{OWNER_PID_LABEL}={ended.stdout.strip()}",
            stale,
        )  # fmt: skip
        try:
            removed = remove_stale()
            assert stale in removed
            assert network.name not in removed
            names = labelled_names("network")
            assert stale not in names
            assert network.name in names
        finally:
            docker("network", "rm", stale, check=False)
