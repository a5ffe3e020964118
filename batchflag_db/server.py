"""A throwaway MariaDB/MySQL server: temporary datadir, its own port, torn down after.

Used by the test suite (when no URL is given) and by ``batchflag demo``. It needs
the server binaries installed locally (Debian: ``apt-get install mariadb-server``);
it never touches the system server or its datadir.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import pymysql

__all__ = ["ServerNotAvailableError", "ThrowawayServer", "find_server_binaries", "free_port"]

_SEARCH_DIRS = ("/usr/sbin", "/usr/libexec", "/usr/local/sbin", "/usr/local/mysql/bin", "/usr/bin")


class ServerNotAvailableError(RuntimeError):
    """Raised when no local server binaries are found, or the server will not start."""


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in _SEARCH_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_server_binaries() -> tuple[str, str | None, str]:
    """Return (server binary, install-db script or None, flavour).

    Flavour is ``"mariadb"`` (initialised with ``mariadb-install-db``) or
    ``"mysql"`` (initialised with ``mysqld --initialize-insecure``).

    Raises:
        ServerNotAvailableError: Neither ``mariadbd`` nor ``mysqld`` is installed.
    """
    mariadbd = _which("mariadbd")
    install_db = _which("mariadb-install-db") or _which("mysql_install_db")
    if mariadbd and install_db:
        return mariadbd, install_db, "mariadb"
    mysqld = _which("mysqld")
    if mysqld:
        version = subprocess.run(
            [mysqld, "--version"], capture_output=True, text=True, check=False
        ).stdout
        if "MariaDB" in version and install_db:
            return mysqld, install_db, "mariadb"
        if "MariaDB" not in version:
            return mysqld, None, "mysql"
    raise ServerNotAvailableError(
        "no local MariaDB/MySQL server binaries (mariadbd or mysqld) found: "
        "install them (Debian: apt-get install mariadb-server)"
    )


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
    """

    def __init__(
        self,
        *,
        durable: bool = False,
        extra_args: Sequence[str] = (),
        base_dir: str | None = None,
        keep_datadir: bool = False,
    ) -> None:
        self.binary, self.install_db, self.flavour = find_server_binaries()
        self.durable = durable
        self.extra_args = list(extra_args)
        self.keep_datadir = keep_datadir
        self._tmp = Path(tempfile.mkdtemp(prefix="batchflag-server-", dir=base_dir))
        self.datadir = self._tmp / "data"
        self.socket = str(self._tmp / "mysqld.sock")
        self.log_path = self._tmp / "error.log"
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
            self.binary,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self._tmp / 'mysqld.pid'}",
            f"--log-error={self.log_path}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=256M",
            f"--innodb-flush-log-at-trx-commit={1 if self.durable else 2}",
            "--max-connections=500",
        ]
        if self.flavour == "mariadb":
            args += ["--skip-log-bin"]
            if not self.durable:
                args += ["--innodb-doublewrite=0"]
        else:
            args += ["--skip-log-bin", "--mysqlx=OFF"]
        if os.geteuid() == 0:
            args.append("--user=root")
        return args + self.extra_args

    def _initialise(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self.flavour == "mariadb":
            if self.install_db is None:  # pragma: no cover - find_server_binaries pairs them
                raise ServerNotAvailableError("mariadb-install-db not found")
            cmd = [
                self.install_db,
                "--no-defaults",
                f"--datadir={self.datadir}",
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
                f"--datadir={self.datadir}",
                "--initialize-insecure",
            ]
            if os.geteuid() == 0:
                cmd.append("--user=root")
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
        conn = self._socket_connection()
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''")
                cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
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
