"""How the suite finds its server: URL, local binaries, Docker, or a clear failure."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL

import batchflag_db.server
from batchflag_db.server import ServerNotAvailableError, ThrowawayServer
from tests._servers import URL_VARIABLE, acquire_server


class TestServerSelection:
    def test_url_from_the_environment_wins(self, server_url: URL) -> None:
        """A URL in BATCHFLAG_TEST_DATABASE_URL is used as is (its database part dropped)."""
        given = server_url.set(database="ignored").render_as_string(hide_password=False)
        with acquire_server({URL_VARIABLE: given}) as (url, how):
            assert url == server_url._replace(database=None).render_as_string(hide_password=False)
            assert how == URL_VARIABLE

    def test_nothing_available_fails_naming_all_three(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No URL, no binaries, no Docker engine: the error names the three ways to provide one."""
        monkeypatch.setenv("PATH", "/nonexistent")
        monkeypatch.setattr(batchflag_db.server, "_SEARCH_DIRS", ())
        with (
            pytest.raises(RuntimeError) as info,
            acquire_server({"DOCKER_HOST": "unix:///nonexistent/docker.sock"}),
        ):
            pass
        message = str(info.value)
        assert URL_VARIABLE in message
        assert "mariadb-server" in message
        assert "Docker" in message

    def test_binaries_missing_is_a_clear_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """ThrowawayServer without binaries says what to install."""
        monkeypatch.setenv("PATH", "/nonexistent")
        monkeypatch.setattr(batchflag_db.server, "_SEARCH_DIRS", ())
        with pytest.raises(ServerNotAvailableError, match="apt-get install mariadb-server"):
            ThrowawayServer()


class TestThrowawayServer:
    def test_start_kill_restart_keeps_data(self) -> None:
        """A killed throwaway server restarts on its datadir with committed data intact, then is removed."""
        server = ThrowawayServer(durable=True)
        server.start()
        try:
            conn = server.connect(autocommit=True)
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE k")
                cur.execute("CREATE TABLE k.t (x INT PRIMARY KEY) ENGINE=InnoDB")
                cur.execute("INSERT INTO k.t VALUES (42)")
            conn.close()
            server.kill()
            server.start()
            conn = server.connect()
            with conn.cursor() as cur:
                cur.execute("SELECT x FROM k.t")
                assert cur.fetchall() == ((42,),)
            conn.close()
        finally:
            server.stop()
        assert not server.datadir.exists()
