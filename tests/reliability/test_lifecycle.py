"""Stream lifecycle under abuse: hard deletes racing appends from other
processes, and a process truncating streams killed with SIGKILL, on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import eventfold
from eventfold.compliance.chain import verify
from eventfold.errors import StreamDeleted
from eventfold.store.api import StreamAppend
from eventfold.testing.conformance import collect, numbered

WORKER = Path(__file__).with_name("lifecycle_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"
KEY = "a chain key for the tests"
ROUNDS = 12
DEADLINE = 120.0


class Worker:
    """A worker process whose stdout is drained as it goes."""

    def __init__(self, *args: str) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
            "CHAIN_KEY": KEY,
        }
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
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

    def failed(self) -> str | None:
        if self.process.poll() not in (None, 0):
            assert self.process.stderr is not None
            return self.process.stderr.read()
        return None

    def finish(self) -> None:
        self.process.wait(timeout=DEADLINE)
        self._reader.join(timeout=10)
        assert self.process.returncode == 0, self.failed()

    def kill(self) -> None:
        assert self.process.poll() is None, "the worker must still be running when killed"
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


async def _until(check: object, workers: list[Worker]) -> None:
    """Wait (polling) until ``await check()`` is true, the workers alive."""
    deadline = time.monotonic() + DEADLINE
    while not await check():  # type: ignore[operator]
        for worker in workers:
            if (error := worker.failed()) is not None:
                pytest.fail(f"worker failed:\n{error}")
        assert time.monotonic() < deadline, "no progress in time"
        await asyncio.sleep(0.005)


async def test_a_hard_delete_racing_appends_never_lets_the_stream_back(store_url: str) -> None:
    """Two processes append to a stream (lone appends and append_many) while
    this one deletes it for good, round after round: after the delete no
    event of the stream is stored, and every later append is refused."""
    async with eventfold.connect(store_url) as store:
        await store.append("side-0", numbered(1))  # the store exists before the workers open it
        workers = [Worker("race", store_url, str(ROUNDS), f"w{i}") for i in range(2)]
        for r in range(ROUNDS):
            stream = f"race-{r}"

            async def started(stream: str = stream) -> bool:
                return await store.stream_version(stream) >= 2

            await _until(started, workers)
            cut = await store.delete_stream(stream, hard=True)
            assert cut is not None and cut.tombstone
        for worker in workers:
            worker.finish()
            assert worker.lines == [f"done {r}" for r in range(ROUNDS)]
        for r in range(ROUNDS):
            stream = f"race-{r}"
            assert await collect(store.read_stream(stream)) == []
            with pytest.raises(StreamDeleted):
                await store.append(stream, numbered(1))
            with pytest.raises(StreamDeleted):
                await store.append_many(
                    [StreamAppend("side-0", numbered(1)), StreamAppend(stream, numbered(1))]
                )
        assert not [r for r in await collect(store.read_all()) if r.stream_id.startswith("race-")]
        assert (await verify(store, key=None)).clean


async def test_kill_9_during_truncations_loses_and_duplicates_nothing(store_url: str) -> None:
    """A process truncating stream after stream is killed: each stream is
    either whole or truncated with exactly one cut, never half; running the
    truncations again finishes the rest and adds no second cut."""
    streams = 150
    async with eventfold.connect(store_url) as store:
        await store.append_many([StreamAppend(f"t-{s}", numbered(8)) for s in range(streams)])
    worker = Worker("truncate", store_url, str(streams))
    deadline = time.monotonic() + DEADLINE
    while len(worker.lines) < 10:
        assert (error := worker.failed()) is None, error
        assert time.monotonic() < deadline, "no truncation in time"
        time.sleep(0.002)
    worker.kill()
    acknowledged = {line.split()[1] for line in worker.lines}
    key = KEY.encode()
    async with eventfold.connect(store_url) as store:
        cuts = {cut.stream_id: cut async for cut in store.read_cuts()}
        assert len(cuts) == len(await collect(store.read_cuts()))  # one per stream at most
        assert acknowledged <= set(cuts)
        for s in range(streams):
            versions = [r.version for r in await collect(store.read_stream(f"t-{s}"))]
            assert versions == ([6, 7, 8] if f"t-{s}" in cuts else list(range(1, 9)))
        assert (await verify(store, key=key)).clean
        for s in range(streams):  # resume: finish the rest
            await store.truncate_stream(f"t-{s}", 6, key=key)
        all_cuts = await collect(store.read_cuts())
        assert sorted(c.stream_id for c in all_cuts) == sorted(f"t-{s}" for s in range(streams))
        for s in range(streams):
            assert [r.version for r in await collect(store.read_stream(f"t-{s}"))] == [6, 7, 8]
        report = await verify(store, key=key)
        assert report.clean and report.events == 3 * streams


async def test_kill_9_during_scavenge_then_a_rerun_finishes_it(store_url: str) -> None:
    """``eventfold scavenge`` killed while it truncates: every stream is
    whole or cut at its limit, with at most one cut; running the command
    again cuts the rest, adds no second cut, and the chain verifies."""
    streams = 400
    async with eventfold.connect(store_url) as store:
        await store.append_many([StreamAppend(f"order-{s}", numbered(5)) for s in range(streams)])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "CHAIN_KEY": KEY,
    }
    command = [
        sys.executable,
        "-c",
        "from eventfold.cli import main; main()",
        "scavenge",
        "--store",
        store_url,
        "--category",
        "order",
        "--max-count",
        "2",
        "--key-env",
        "CHAIN_KEY",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    async with eventfold.connect(store_url) as store:

        async def some_cut() -> bool:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            return len(await collect(store.read_cuts())) >= 5

        await _until(some_cut, [])
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        cuts = await collect(store.read_cuts())
        assert 5 <= len(cuts) < streams, "killed after it had finished"
        cut = {c.stream_id for c in cuts}
        assert len(cut) == len(cuts)
        for s in range(streams):
            versions = [r.version for r in await collect(store.read_stream(f"order-{s}"))]
            assert versions == ([4, 5] if f"order-{s}" in cut else [1, 2, 3, 4, 5])
        assert (await verify(store, key=KEY.encode())).clean
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=DEADLINE)
    assert rerun.returncode == 0, rerun.stderr
    assert f"from {streams - len(cuts)} streams" in rerun.stdout
    async with eventfold.connect(store_url) as store:
        cuts = await collect(store.read_cuts())
        assert sorted(c.stream_id for c in cuts) == sorted(f"order-{s}" for s in range(streams))
        report = await verify(store, key=KEY.encode())
        assert report.clean and report.events == 2 * streams
