"""Guarantee: an acknowledged append survives a crash. Writer processes append
numbered events and print each acknowledgement; mid-traffic the server is
stopped with ``pg_ctl stop -m immediate`` (no checkpoint: recovery replays
the WAL) and the writers are killed with SIGKILL. After a restart nothing
acknowledged is lost, nothing is duplicated, each writer's events are in
order and the next expected version follows on. Runs on its own server."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec

from eventfold.store.api import NewEvent
from eventfold.store.url import connect
from eventfold.testing.conformance import collect, numbers
from eventfold.testing.pgserver import PostgresServer

WRITER_SCRIPT = Path(__file__).with_name("pg_crash_writer.py")
WRITERS = 4
ACKS_PER_ROUND = 25


class Writer:
    """A writer subprocess and the acknowledgements it printed."""

    def __init__(self, url: str, number: int) -> None:
        self.number = number
        self.acks: list[tuple[int, int, int]] = []  # (n, version, position)
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER_SCRIPT), url, str(number)],
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
            if len(parts) == 5 and parts[0] == "ack":
                n, version, position = (int(p) for p in parts[2:])
                self.acks.append((n, version, position))

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)


def wait_for_acks(writers: list[Writer], count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while any(len(w.acks) < count for w in writers):
        for writer in writers:
            assert writer.proc.poll() is None, f"writer {writer.number} exited"
        assert time.monotonic() < deadline, "writers made no progress"
        time.sleep(0.01)


async def check_after_restart(url: str, acks: dict[int, list[tuple[int, int, int]]]) -> None:
    async with connect(url) as store:
        log = await collect(store.read_all())
        ids = [r.event_id for r in log]
        assert len(set(ids)) == len(ids), "an event is stored twice"
        for writer, acked in acks.items():
            stream_id = f"crash-{writer}"
            records = await collect(store.read_stream(stream_id))
            count = len(records)
            assert numbers(records) == list(range(count)), "events out of order or missing"
            assert [r.version for r in records] == list(range(1, count + 1))
            assert acked, f"writer {writer} acknowledged nothing"
            assert max(n for n, _, _ in acked) < count, "an acknowledged event was lost"
            for n, version, position in acked:
                assert (records[n].version, records[n].position) == (version, position)
            assert [r for r in log if r.stream_id == stream_id] == records
            data = msgspec.json.encode({"writer": writer, "n": count})
            result = await store.append(stream_id, [NewEvent("Numbered", data)], count)
            assert result.version == count + 1, "the next expected version does not follow on"


async def test_acknowledged_appends_survive_crashes(dedicated_postgres: PostgresServer) -> None:
    url = dedicated_postgres.url()
    async with connect(url):
        pass  # create the schema before the writers race to
    acks: dict[int, list[tuple[int, int, int]]] = {w: [] for w in range(WRITERS)}

    # Round 1: the server crashes under the writers, then they are killed.
    writers = [Writer(url, w) for w in range(WRITERS)]
    try:
        wait_for_acks(writers, ACKS_PER_ROUND)
        dedicated_postgres.stop("immediate")
        time.sleep(0.2)
    finally:
        for writer in writers:
            writer.kill()
            acks[writer.number] += writer.acks
    dedicated_postgres.start()
    await check_after_restart(url, acks)

    # Round 2: the writers are killed mid-append, then the server crashes.
    writers = [Writer(url, w) for w in range(WRITERS)]
    try:
        wait_for_acks(writers, ACKS_PER_ROUND)
    finally:
        for writer in writers:
            writer.kill()
            acks[writer.number] += writer.acks
    dedicated_postgres.stop("immediate")
    dedicated_postgres.start()
    await check_after_restart(url, acks)
