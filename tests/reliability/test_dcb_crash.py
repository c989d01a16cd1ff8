"""Guarantee: kill -9 in the middle of conditional appends leaves every
condition holding and nothing half-written. Writer processes
(``dcb_writer.py crash``) append pairs of events with the condition of what
they read and print each acknowledgement; mid-traffic they are killed with
SIGKILL (on PostgreSQL the server is also stopped with ``pg_ctl stop -m
immediate``, so recovery replays the WAL). After a restart: no violation,
every pair whole, every acknowledged append where it was acknowledged, the
hash chain clean, and conditional appends go on."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec

from eventfold.compliance.chain import verify
from eventfold.store.dcb import AppendCondition, Query, QueryItem
from eventfold.store.url import connect
from eventfold.testing.conformance import collect, tagged, violations
from eventfold.testing.pgserver import PostgresServer

WRITER = Path(__file__).with_name("dcb_writer.py")
WRITERS = 3
ACKS = 20


class Writer:
    def __init__(self, url: str, number: int) -> None:
        self.number = number
        self.acks: list[tuple[int, int]] = []  # (n, position)
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), url, str(number), "crash", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "ack":
                self.acks.append((int(parts[2]), int(parts[3])))

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)


def wait_for_acks(writers: list[Writer], count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while any(len(w.acks) < count for w in writers):
        for writer in writers:
            assert writer.proc.poll() is None, f"writer {writer.number} exited"
        assert time.monotonic() < deadline, "writers made no progress"
        time.sleep(0.01)


async def check_after_restart(url: str, writers: list[Writer]) -> None:
    async with connect(url) as store:
        records = await collect(store.read_all())
        assert violations(records) == [], "a condition was broken"
        pairs: dict[tuple[int, int], list[int]] = {}
        for r in records:
            data = msgspec.json.decode(r.data)
            pairs.setdefault((data["writer"], data["n"]), []).append(r.position)
        assert all(len(p) == 2 and p[1] == p[0] + 1 for p in pairs.values()), "half-written"
        for writer in writers:
            assert writer.acks, f"writer {writer.number} acknowledged nothing"
            for n, position in writer.acks:
                assert pairs[writer.number, n][1] == position, "an acknowledged append moved"
        assert (await verify(store)).clean
        query = Query.of(QueryItem(tags=("k:0",)))
        last = [r.position async for r in store.read(query)]
        after = last[-1] if last else None
        assert await store.append_events([tagged("Claimed", "k:0")], AppendCondition(query, after))


async def test_sqlite_conditional_appends_survive_kill_9(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dcb.db'}"
    async with connect(url):
        pass
    writers = [Writer(url, w) for w in range(WRITERS)]
    try:
        wait_for_acks(writers, ACKS)
    finally:
        for writer in writers:
            writer.kill()
    await check_after_restart(url, writers)


async def test_postgres_conditional_appends_survive_kill_9_and_a_server_crash(
    dedicated_postgres: PostgresServer,
) -> None:
    url = dedicated_postgres.url()
    async with connect(url):
        pass
    writers = [Writer(url, w) for w in range(WRITERS)]
    try:
        wait_for_acks(writers, ACKS)
        dedicated_postgres.stop("immediate")
    finally:
        for writer in writers:
            writer.kill()
    dedicated_postgres.start()
    await check_after_restart(url, writers)
