"""The run's kind as an image: the official images' environment contract, labels, clean-up."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from batchflag_db.testing.containers import (
    OWNER_HOST_LABEL,
    OWNER_PID_LABEL,
    OWNER_START_LABEL,
    SUITE_LABEL,
    ServerContainer,
    engine_problem,
    owner_labels,
    remove_stale,
)
from batchflag_db.testing.images import ensure_image, image_name
from batchflag_db.testing.selection import IMAGE_VARIABLE, SessionServer, acquire_server

pytestmark = pytest.mark.slow

ER_DBACCESS_DENIED = 1044
APP_PASSWORD = "app-'pw\\"  # noqa: S105 - a throwaway account; a quote and a backslash on purpose


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    """A docker-py client; the test fails (never skips) where no engine answers."""
    problem = engine_problem()
    if problem is not None:
        pytest.fail(f"these tests need a Docker engine: {problem}", pytrace=False)
    import docker  # noqa: PLC0415 - only where an engine answers

    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="module")
def kind_image(batchflag_server: SessionServer, docker_client: Any) -> str:
    """The image of the run's kind, built here if missing."""
    if batchflag_server.kind is None:
        pytest.fail("the run's server is of no known kind: there is no image of it to test")
    return ensure_image(batchflag_server.kind)


@pytest.fixture(scope="module")
def contract(kind_image: str) -> Iterator[ServerContainer]:
    """The kind's image started with a database, an account and a server option."""
    with ServerContainer(
        kind_image,
        args=["--max-connections=77"],
        env={"MYSQL_DATABASE": "appdb", "MYSQL_USER": "app", "MYSQL_PASSWORD": APP_PASSWORD},
    ) as container:
        yield container


def _query(conn: pymysql.Connection, sql: str) -> tuple[Any, ...]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return tuple(cur.fetchall())


class TestEnvironmentContract:
    def test_tag_is_a_hash_of_the_inputs(
        self, kind_image: str, batchflag_server: SessionServer
    ) -> None:
        """The image is named after its kind and tagged with the hash of what it is made of."""
        assert batchflag_server.kind is not None
        assert kind_image == image_name(batchflag_server.kind)
        repository, _, tag = kind_image.partition(":")
        assert repository == f"batchflag-db/{batchflag_server.kind.name}"
        assert len(tag) == 12
        int(tag, 16)

    def test_root_logs_in_from_outside_with_the_password(
        self, contract: ServerContainer, batchflag_server: SessionServer
    ) -> None:
        """Through the published port root comes from the bridge, as root@'%'; no password fails."""
        conn = pymysql.connect(
            host=contract.host, port=contract.port, user="root", password=contract.password
        )
        try:
            assert _query(conn, "SELECT CURRENT_USER()") == (("root@%",),)
            version = _query(conn, "SELECT VERSION()")[0][0]
            assert batchflag_server.kind is not None
            assert batchflag_server.kind.matches(version), version
        finally:
            conn.close()
        with pytest.raises(pymysql.err.OperationalError):
            pymysql.connect(host=contract.host, port=contract.port, user="root", password="")

    def test_database_is_created_and_the_user_gets_it(self, contract: ServerContainer) -> None:
        """MYSQL_DATABASE exists; MYSQL_USER/MYSQL_PASSWORD may use it and nothing more."""
        conn = pymysql.connect(
            host=contract.host,
            port=contract.port,
            user="app",
            password=APP_PASSWORD,
            database="appdb",
            autocommit=True,
        )
        try:
            _query(conn, "CREATE TABLE t (x INT PRIMARY KEY)")
            _query(conn, "INSERT INTO t VALUES (7)")
            assert _query(conn, "SELECT x FROM t") == ((7,),)
            with pytest.raises(pymysql.err.OperationalError) as info:
                _query(conn, "CREATE DATABASE not_granted")
            assert info.value.args[0] == ER_DBACCESS_DENIED
        finally:
            conn.close()

    def test_command_arguments_reach_the_server(self, contract: ServerContainer) -> None:
        """Options after the image name are server options: --max-connections=77."""
        conn = pymysql.connect(
            host=contract.host, port=contract.port, user="root", password=contract.password
        )
        try:
            assert _query(conn, "SELECT @@max_connections") == ((77,),)
        finally:
            conn.close()

    def test_container_carries_the_suite_label_and_its_owner(
        self, contract: ServerContainer, docker_client: Any
    ) -> None:
        """The label marks it as the suite's, with this process as its owner."""
        labels = docker_client.containers.get(contract.id).labels
        assert labels[SUITE_LABEL] == "1"
        for key, value in owner_labels().items():
            assert labels[key] == value


class TestContainerLife:
    def test_container_is_gone_after_stop(self, kind_image: str, docker_client: Any) -> None:
        """Stopping the harness's container removes it: nothing is left behind."""
        container = ServerContainer(kind_image).start()
        assert docker_client.containers.list(all=True, filters={"id": container.id})
        container.stop()
        assert docker_client.containers.list(all=True, filters={"id": container.id}) == []
        assert container.status() == "removed"

    def test_image_variable_runs_any_image_and_removes_it(
        self, kind_image: str, batchflag_server: SessionServer, docker_client: Any
    ) -> None:
        """BATCHFLAG_TEST_IMAGE starts that image, reads its kind off VERSION(), removes it."""
        with acquire_server(environ={IMAGE_VARIABLE: kind_image}) as found:
            assert found.how.startswith(f"testcontainers image {kind_image}, container ")
            assert found.kind == batchflag_server.kind
            assert found.url.password
            running = docker_client.containers.list(
                filters={"label": f"{OWNER_PID_LABEL}={owner_labels()[OWNER_PID_LABEL]}"}
            )
            assert any(c.name in found.how for c in running)
        after = docker_client.containers.list(all=True, filters={"label": SUITE_LABEL})
        assert not any(c.name in found.how for c in after)


def _dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


class TestStaleContainers:
    @pytest.fixture
    def labelled(self, kind_image: str, docker_client: Any) -> Iterator[Any]:
        """A factory of created (never started) containers with given owner labels."""
        made: list[Any] = []

        def create(labels: dict[str, str]) -> Any:
            container = docker_client.containers.create(
                kind_image, labels={SUITE_LABEL: "1", **labels}
            )
            made.append(container)
            return container

        yield create
        for container in made:
            if _exists(docker_client, container.id):
                container.remove(force=True)

    def test_a_dead_owners_container_is_removed(self, labelled: Any, docker_client: Any) -> None:
        """A container whose owner process is gone (killed mid-run) is removed by the next run."""
        mine = owner_labels()
        stale = labelled(
            {
                OWNER_HOST_LABEL: mine[OWNER_HOST_LABEL],
                OWNER_PID_LABEL: str(_dead_pid()),
                OWNER_START_LABEL: "1",
            }
        )
        removed = remove_stale(docker_client)
        assert stale.name in removed
        assert not _exists(docker_client, stale.id)

    def test_a_live_owners_container_is_kept(self, labelled: Any, docker_client: Any) -> None:
        """A container of a run still going (its owner alive), or of another host, is kept."""
        live = labelled(owner_labels())
        elsewhere = labelled(
            {OWNER_HOST_LABEL: "some-other-host", OWNER_PID_LABEL: str(_dead_pid())}
        )
        removed = remove_stale(docker_client)
        assert live.name not in removed
        assert elsewhere.name not in removed
        assert _exists(docker_client, live.id)
        assert _exists(docker_client, elsewhere.id)

    def test_a_reused_pid_is_not_the_owner(self, labelled: Any, docker_client: Any) -> None:
        """Same pid, other start time: the owner is gone and its pid was reused."""
        mine = owner_labels()
        stale = labelled({**mine, OWNER_START_LABEL: "1"})
        assert stale.name in remove_stale(docker_client)


def _exists(client: Any, container_id: str) -> bool:
    return bool(client.containers.list(all=True, filters={"id": container_id}))
