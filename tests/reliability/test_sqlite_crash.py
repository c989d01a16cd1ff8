"""SQLite durability and concurrency under abuse: writer processes killed with
SIGKILL mid-traffic, and writers racing through separate connections."""

from __future__ import annotations

import asyncio
import functools
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

import eventfold
from eventfold.errors import WrongExpectedVersion
from eventfold.store.api import NO_STREAM, RecordedEvent, StreamAppend
from eventfold.testing.conformance import collect, numbered

WRITER = Path(__file__).with_name("sqlite_crash_writer.py")
SRC = Path(__file__).resolve().parents[2] / "src"
ACKS_PER_WRITER = 8


class Writer:
    """A writer process whose stdout is drained as it goes, so it never blocks."""

    def __init__(self, url: str, name: str) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        }
        self.process = subprocess.Popen(
            [sys.executable, str(WRITER), url, name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.endswith("\n"):  # a line cut by the kill was never acknowledged
                self.lines.append(line.rstrip("\n"))

    def acknowledged(self, count: int) -> Callable[[], bool]:
        return lambda: len(self.lines) >= count

    def wait_until(self, done: Callable[[], bool], deadline: float) -> None:
        """Wait (polling every 5 ms) until ``done()``, the writer still alive."""
        while not done():
            if self.process.poll() is not None:
                assert self.process.stderr is not None
                pytest.fail(f"writer exited early:\n{self.process.stderr.read()}")
            if time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"writer acknowledged too little in time: {self.lines}")
            time.sleep(0.005)

    def kill(self) -> list[str]:
        assert self.process.poll() is None, "the writer must still be running when killed"
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.process.returncode == -signal.SIGKILL
        return self.lines


def every_shared_stream_acked(writers: list[Writer]) -> bool:
    lines = [line for writer in writers for line in writer.lines]
    return all(any(line.startswith(f"ack shared-{i} ") for line in lines) for i in range(3))


async def check_store(
    url: str, acked: dict[tuple[str, int], uuid.UUID], pairs: list[tuple[int, int]]
) -> dict[str, int]:
    """Every acknowledged append is there, nothing twice, versions contiguous, and
    every stream accepts its next append at expected version = its event count."""
    async with eventfold.connect(url) as store:
        records = await collect(store.read_all())
        assert len({r.event_id for r in records}) == len(records), "an event is stored twice"
        positions = [r.position for r in records]
        assert positions == sorted(set(positions))
        streams: dict[str, list[RecordedEvent]] = {}
        for record in records:
            streams.setdefault(record.stream_id, []).append(record)
        for stream, events in streams.items():
            assert [e.version for e in events] == list(range(1, len(events) + 1)), stream
            assert [msgspec.json.decode(e.data)["n"] for e in events] == [e.version for e in events]
            assert await store.stream_version(stream) == len(events)
        for (stream, version), event_id in acked.items():
            assert version <= len(streams.get(stream, [])), f"acknowledged {stream}@{version} lost"
            assert streams[stream][version - 1].event_id == event_id, f"{stream}@{version}"
        # Each append_many added one event to pair-a and two to pair-b: all or nothing.
        assert len(streams.get("pair-b", [])) == 2 * len(streams.get("pair-a", []))
        for a, b in pairs:
            assert len(streams["pair-a"]) >= a and len(streams["pair-b"]) >= b
        counts = {stream: len(events) for stream, events in streams.items()}
        for stream, count in counts.items():
            if not stream.startswith("pair-"):
                result = await store.append(stream, numbered(1, start=count + 1), count)
                assert result.version == count + 1
        if "pair-a" in counts:  # keep pair-b at twice pair-a
            a, b = counts["pair-a"], counts["pair-b"]
            await store.append_many(
                [
                    StreamAppend("pair-a", numbered(1, start=a + 1), a),
                    StreamAppend("pair-b", numbered(2, start=b + 1), b),
                ]
            )
        return counts


def test_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    path = tmp_path / "crash.db"
    acked: dict[tuple[str, int], uuid.UUID] = {}
    pairs: list[tuple[int, int]] = []
    total_acks = 0
    for round_ in range(3):
        # FULL and NORMAL both promise to survive a crash of the process.
        url = f"sqlite:///{path}" + ("?synchronous=NORMAL" if round_ % 2 else "")
        writers = [Writer(url, f"w{round_}{i}") for i in range(2)]
        deadline = time.monotonic() + 60
        # Traffic enough to prove something, whatever the machine's speed:
        # each writer acknowledged some appends, every shared stream got one.
        for writer in writers:
            writer.wait_until(writer.acknowledged(ACKS_PER_WRITER), deadline)
        writers[0].wait_until(functools.partial(every_shared_stream_acked, writers), deadline)
        time.sleep(rng.uniform(0.1, 0.4))  # then die at a random moment
        outputs = [writer.kill() for writer in writers]
        for line in (line for output in outputs for line in output):
            kind, *fields = line.split()
            if kind == "ack":
                key = (fields[0], int(fields[1]))
                assert key not in acked, f"{key} acknowledged twice"
                acked[key] = uuid.UUID(fields[2])
            else:
                assert kind == "pair"
                pairs.append((int(fields[0]), int(fields[1])))
            total_acks += 1
        counts = asyncio.run(check_store(url, acked, pairs))
        # The check appended one event per stream; its acknowledgement counts too.
        assert all(count >= 1 for count in counts.values())
    assert total_acks > 20, "too little traffic to prove anything"
    assert {stream for stream, _ in acked} >= {"shared-0", "shared-1", "shared-2"}


async def test_racing_writers_on_two_connections_one_wins_per_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    async with eventfold.connect(url) as left, eventfold.connect(url) as right:
        await left.append("race-1", numbered(1), NO_STREAM)
        for version in range(1, 6):
            outcomes = await asyncio.gather(
                *(
                    (left if i % 2 else right).append("race-1", numbered(1, start=i), version)
                    for i in range(32)
                ),
                return_exceptions=True,
            )
            wins = [o for o in outcomes if not isinstance(o, BaseException)]
            losses = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(wins) == 1, outcomes
            assert wins[0].version == version + 1
            assert all(isinstance(o, WrongExpectedVersion) for o in losses), losses
            assert all(
                o.actual == version + 1 for o in losses if isinstance(o, WrongExpectedVersion)
            )
        for store in (left, right):
            records = await collect(store.read_stream("race-1"))
            assert [r.version for r in records] == list(range(1, 7))
