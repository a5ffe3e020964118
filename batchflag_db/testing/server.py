"""A throwaway MariaDB/MySQL server: temporary datadir, its own port, torn down after.

Used by the test suite (when no URL is given) and by ``batchflag demo``. Without a
kind it runs the host's own binaries (Debian: ``apt-get install mariadb-server``);
given a kind (:mod:`batchflag_db.testing.kinds`) it runs that kind's binaries, from
the host or from a cached Debian root. It never touches the system server or its datadir.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from types import TracebackType

import pymysql

from batchflag_db.testing.binaries import (
    ServerBinaries,
    ServerNotAvailableError,
    binaries_for,
    find_host_binaries,
)
from batchflag_db.testing.kinds import ServerKind, kind_named
from batchflag_db.testing.settings import server_settings

__all__ = ["ServerNotAvailableError", "ThrowawayServer", "free_port"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ThrowawayServer:
    """A private server process on 127.0.0.1, root without a password, deleted on stop.

    Use as a context manager::

        with ThrowawayServer() as server:
            print(server.url)   # mysql+pymysql://root@127.0.0.1:PORT/

    Args:
        durable: Flush the redo log at every commit (``innodb_flush_log_at_trx_commit=1``,
            the production setting). The default, False, is faster and fine for tests
            that never crash the server.
        extra_args: More server options, e.g. ``["--innodb-lock-wait-timeout=5"]``.
        base_dir: Where to make the temporary datadir (default: the system temp dir).
        keep_datadir: Leave the datadir on disk after :meth:`stop` (for crash tests).
        kind: The server kind (a :class:`~batchflag_db.testing.kinds.ServerKind` or its
            name, e.g. ``"mysql-9.7"``); None runs whatever the host has installed.
        binlog: Keep the binary log. The default, False, passes ``--skip-log-bin`` (a
            throwaway server needs no binary log, and MySQL writes one by default); a
            replication source sets True and names its options in ``extra_args``
            (:mod:`batchflag_db.testing.replica`).

    Raises:
        ServerNotAvailableError: No binaries of that kind here, nor a way to get them.
    """

    def __init__(
        self,
        *,
        durable: bool = False,
        extra_args: Sequence[str] = (),
        base_dir: str | None = None,
        keep_datadir: bool = False,
        kind: ServerKind | str | None = None,
        binlog: bool = False,
    ) -> None:
        if kind is None:
            self.binaries: ServerBinaries = find_host_binaries()
        else:
            self.binaries = binaries_for(kind if isinstance(kind, ServerKind) else kind_named(kind))
        self.flavour = self.binaries.flavour
        self.binary = self.binaries.server
        self.install_db = self.binaries.install_db
        self.durable = durable
        self.extra_args = list(extra_args)
        self.keep_datadir = keep_datadir
        self.binlog = binlog
        self._tmp, inner = self.binaries.scratch_dir("batchflag-server-", base_dir)
        #: The datadir as this process sees it.
        self.datadir = self._tmp / "data"
        #: Paths as the server sees them (inside its Debian root, if it has one).
        self._datadir_arg = f"{inner}/data"
        self._inner = inner
        self.socket = str(self._tmp / "mysqld.sock")
        self.log_path = self._tmp / "error.log"
        # The server's own temporary files (implicit temporary tables, filesorts) stay
        # in its scratch directory: a shared /tmp may be swept under it.
        (self._tmp / "scratch").mkdir(exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._initialised = False

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the server, without a database."""
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/"

    def connect(self, database: str | None = None, **kwargs: object) -> pymysql.Connection:
        """Return a PyMySQL connection as root over TCP."""
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            password="",
            database=database,
            **kwargs,
        )

    def _server_args(self) -> list[str]:
        args = [
            "--no-defaults",
            f"--datadir={self._datadir_arg}",
            f"--socket={self._inner}/mysqld.sock",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self._inner}/mysqld.pid",
            f"--log-error={self._inner}/error.log",
            *server_settings(self.flavour, durable=self.durable, binlog=self.binlog),
            f"--tmpdir={self._inner}/scratch",
        ]
        if self.flavour == "mysql":
            # MySQL aborts unless secure-file-priv names an existing directory (Debian's
            # default does not exist in a minimal root); NULL turns file import/export off.
            args += ["--secure-file-priv=NULL"]
        if os.geteuid() == 0:
            args.append("--user=root")
        return self.binaries.command(self.binary, *args, *self.extra_args)

    def _initialise(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self.flavour == "mariadb":
            if self.install_db is None:  # pragma: no cover - binaries pair them
                raise ServerNotAvailableError("mariadb-install-db not found")
            cmd = [
                self.install_db,
                "--no-defaults",
                f"--datadir={self._datadir_arg}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]
            if os.geteuid() == 0:
                cmd.append("--user=root")
        else:
            cmd = [
                self.binary,
                "--no-defaults",
                f"--datadir={self._datadir_arg}",
                "--initialize-insecure",
            ]
            if os.geteuid() == 0:
                cmd.append("--user=root")
        cmd = self.binaries.command(*cmd)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServerNotAvailableError(
                f"initialising a throwaway datadir failed ({' '.join(cmd)}):\n"
                f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        self._initialised = True

    def start(self, timeout: float = 60.0) -> ThrowawayServer:
        """Initialise the datadir (first time only), start the server, wait until it answers.

        Raises:
            ServerNotAvailableError: It did not start; the message has its error log's tail.
        """
        if not self._initialised:
            self._initialise()
        self.process = subprocess.Popen(
            self._server_args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ServerNotAvailableError(
                    f"throwaway server exited with code {self.process.returncode}:\n"
                    + self.log_tail()
                )
            try:
                self._prepare_accounts()
                return self
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServerNotAvailableError(
                        f"throwaway server did not answer within {timeout:.0f}s:\n"
                        + self.log_tail()
                    ) from None
                time.sleep(0.1)

    def _socket_connection(self) -> pymysql.Connection:
        """Connect as root over the unix socket, never leaking the socket on failure."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(2)
            sock.connect(self.socket)
        except OSError as exc:
            sock.close()
            raise pymysql.err.OperationalError(2002, f"not listening yet: {exc}") from None
        conn = pymysql.Connection(
            unix_socket=self.socket, user="root", password="", defer_connect=True
        )
        conn.connect(sock)  # closes the socket itself if the handshake fails
        return conn

    def _prepare_accounts(self) -> None:
        # Over the socket, root exists on every flavour; make root@127.0.0.1 usable over TCP.
        # root@'%' too, as a container has it (the server listens on 127.0.0.1 only): a
        # dump of a container's database names it as its routines' definer.
        conn = self._socket_connection()
        try:
            with conn.cursor() as cur:
                for host in ("127.0.0.1", "%"):
                    cur.execute(f"CREATE USER IF NOT EXISTS 'root'@'{host}' IDENTIFIED BY ''")
                    cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO 'root'@'{host}' WITH GRANT OPTION")
        finally:
            conn.close()

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of the server's error log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no error log)"

    def kill(self) -> None:
        """SIGKILL the server (a crash: no shutdown, no flush). The datadir stays for a restart."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        """Shut the server down cleanly (SIGKILL after 30 s) and delete its files."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if not self.keep_datadir:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> ThrowawayServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
