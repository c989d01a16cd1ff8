"""Servers a test run starts do not outlive it: a process that started a
PostgreSQL or NATS server and is killed (SIGKILL, no cleanup) leaves no
server running; one that stops its server cleanly leaves no watchdog; a
server meant to outlive its starter (``outlive=True``) does."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventfold.testing.pgserver import PostgresServer

BOUND = 60.0

STARTER = """
import sys
from pathlib import Path
from eventfold.testing.natsserver import NatsServer
from eventfold.testing.pgserver import PostgresServer

kind, data = sys.argv[1], sys.argv[2]
if kind == "nats":
    server = NatsServer()
    server.start()
    port = server.port
else:
    server = PostgresServer(Path(data), outlive=kind == "pg-outlive")
    server.start()
    port = server.port
print(port, flush=True)
sys.stdin.read()  # until killed
"""


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder for a server's data. Not under tmp_path: the server runs as
    another user when the tests run as root, and every pytest session that
    starts takes the group and other bits off pytest's temporary root."""
    made = Path(tempfile.mkdtemp(prefix="eventfold-watchdog-"))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _start_and_kill(kind: str, data: Path) -> int:
    """Run a process that starts a server, then SIGKILL it; the server's port."""
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, kind, str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert starter.stdout is not None
        port = int(starter.stdout.readline())
        assert _listening(port)
    finally:
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait()
    return port


def test_a_killed_run_leaves_no_postgres_running(folder: Path) -> None:
    data = folder / "pg"
    port = _start_and_kill("pg", data)
    _until(lambda: not _listening(port), "the server to stop")
    server = PostgresServer(data, port=port)
    assert not server.is_running()


def test_a_killed_run_leaves_no_nats_running(folder: Path) -> None:
    port = _start_and_kill("nats", folder)
    _until(lambda: not _listening(port), "the server to stop")


def test_a_server_meant_to_outlive_its_starter_does(folder: Path) -> None:
    data = folder / "pg"
    port = _start_and_kill("pg-outlive", data)
    server = PostgresServer(data, port=port)
    try:
        assert server.is_running() and _listening(port)
    finally:
        server.stop("immediate")
    assert not server.is_running()


def test_a_clean_stop_leaves_no_watchdog_behind() -> None:
    with PostgresServer() as server:
        watchdog = server._watchdog
        assert watchdog is not None and watchdog.armed
        server.stop()
        assert not watchdog.armed and server._watchdog is None
        server.start()
        assert server._watchdog is not None and server._watchdog.armed
