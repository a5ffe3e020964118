"""How the suite finds its server: URL, local binaries or a Debian root, Docker, or a clear failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import URL

import batchflag_db.testing.binaries
from batchflag_db.testing import debian_root
from batchflag_db.testing.binaries import ServerNotAvailableError, binaries_for
from batchflag_db.testing.kinds import KINDS, kind_named
from batchflag_db.testing.selection import (
    IMAGE_VARIABLE,
    URL_VARIABLE,
    NoServerError,
    SessionServer,
    acquire_server,
)
from batchflag_db.testing.server import ThrowawayServer


def _no_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide the host's binaries and point the root cache at an empty directory."""
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(batchflag_db.testing.binaries, "_SEARCH_DIRS", ())
    monkeypatch.setenv("BATCHFLAG_ROOTS_DIR", str(tmp_path / "roots"))


class TestServerSelection:
    def test_url_from_the_environment_wins(
        self, server_url: URL, batchflag_server: SessionServer
    ) -> None:
        """A URL in BATCHFLAG_TEST_DATABASE_URL is used as is; its kind is read off VERSION()."""
        given = server_url.set(database="ignored").render_as_string(hide_password=False)
        with acquire_server(environ={URL_VARIABLE: given}) as found:
            assert found.url == server_url._replace(database=None)
            assert found.how == URL_VARIABLE
            assert found.version == batchflag_server.version
            assert found.kind == batchflag_server.kind

    def test_nothing_available_fails_naming_every_way(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """No URL, no image, no binaries, no Docker engine: the error names every way to get one."""
        _no_binaries(monkeypatch, tmp_path)
        with (
            pytest.raises(NoServerError) as info,
            acquire_server("mariadb-10.11", {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}),
        ):
            pass
        message = str(info.value)
        assert URL_VARIABLE in message
        assert IMAGE_VARIABLE in message
        assert "docker.io" in message
        assert "no Docker engine at unix:///nonexistent/docker.sock" in message
        assert "mariadb-server" in message
        assert "debootstrap" in message
        assert "Docker" in message

    def test_unknown_kind_is_refused(self) -> None:
        """A kind that does not exist is named, with the ones that do."""
        with pytest.raises(ValueError, match=r"unknown server kind 'mysql-5\.7'.*mysql-9\.7"):
            kind_named("mysql-5.7")

    def test_binaries_missing_is_a_clear_error(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """ThrowawayServer without binaries says what to install."""
        _no_binaries(monkeypatch, tmp_path)
        with pytest.raises(ServerNotAvailableError, match="apt-get install mariadb-server"):
            ThrowawayServer()

    def test_debian_kind_without_debootstrap_says_what_to_install(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """A Debian kind with no built root and no debootstrap: install it, or give a URL."""
        _no_binaries(monkeypatch, tmp_path)
        with pytest.raises(ServerNotAvailableError) as info:
            binaries_for(KINDS["mysql-9.7"])
        message = str(info.value)
        assert "mysql-9.7" in message
        assert "apt-get install debootstrap" in message or "need root" in message
        assert URL_VARIABLE in message
        assert not (tmp_path / "roots" / "mysql-9.7").exists()


class TestDebianRoots:
    def test_mirror_comes_from_the_hosts_apt(self) -> None:
        """The mirror is the host's Debian archive, read from apt, not written in the code."""
        mirror = debian_root.debian_mirror()
        assert mirror.startswith(("http://", "https://", "file:/"))
        assert "/dists/" not in mirror
        sources = "".join(
            p.read_text()
            for p in Path("/etc/apt").rglob("*")
            if p.is_file() and p.suffix in {".list", ".sources"}
        )
        assert mirror.rstrip("/") in sources

    def test_each_kind_runs_its_own_version(self, batchflag_server: SessionServer) -> None:
        """The run's kind, from whatever source, answers with that kind's version."""
        assert batchflag_server.kind is not None
        assert batchflag_server.kind.matches(batchflag_server.version), batchflag_server.version

    def test_root_paths_are_per_recipe(self) -> None:
        """A root's directory names its kind and recipe, so a changed recipe never reuses it."""
        paths = {debian_root.root_path(kind) for kind in KINDS.values()}
        assert len(paths) == len(KINDS)
        assert all(p.parent == debian_root.roots_dir() for p in paths)


class TestThrowawayServer:
    def test_start_kill_restart_keeps_data(self, batchflag_server: SessionServer) -> None:
        """A killed throwaway server of the run's kind restarts on its datadir with data intact."""
        server = ThrowawayServer(durable=True, kind=batchflag_server.kind)
        server.start()
        try:
            conn = server.connect(autocommit=True)
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE k")
                cur.execute("CREATE TABLE k.t (x INT PRIMARY KEY) ENGINE=InnoDB")
                cur.execute("INSERT INTO k.t VALUES (42)")
                cur.execute("SELECT VERSION()")
                # The run's kind, not always its point release: the session's server may be
                # a container of Debian's main archive, this one the host's updated package.
                assert batchflag_server.kind is not None
                assert batchflag_server.kind.matches(cur.fetchone()[0])
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
