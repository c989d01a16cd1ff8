"""kill -9 during an archive run, at each step of its order (segment written
but not flushed, flushed but not renamed, renamed but no stream truncated,
some truncated): at every point a reader of the store with its archive sees
each event exactly once, and the next run finishes the job with nothing lost,
nothing duplicated, no stray file, and the chain verifying across the
boundary."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest

import eventfold
from eventfold.archive import ArchivedStore, Archiver, ArchiveRoot, Selection, verify_archive
from eventfold.compliance.chain import verify
from eventfold.store.api import NewEvent, RecordedEvent
from eventfold.store.capabilities import StreamLifecycle, require

WORKER = Path(__file__).with_name("archive_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"
STREAMS = ("order-1", "order-2", "order-3", "cart-1", "cart-2")


def _key(r: RecordedEvent) -> tuple[Any, ...]:
    data = r.data.decode() if isinstance(r.data, bytes) else r.data
    meta = r.metadata.decode() if isinstance(r.metadata, bytes) else r.metadata
    return (r.stream_id, r.version, r.position, r.event_id, r.type, data, meta, r.recorded_at)


async def _seed(url: str) -> list[tuple[Any, ...]]:
    async with eventfold.connect(url) as store:
        for n in range(6):
            for stream in STREAMS:
                data = msgspec.json.encode({"n": n, "s": stream})
                await store.append(stream, [NewEvent("Noted", data), NewEvent("Noted", b"{}")])
        return [_key(r) async for r in store.read_all()]


async def _seen(url: str, root: ArchiveRoot) -> tuple[list[tuple[Any, ...]], int]:
    async with eventfold.connect(url) as store:
        archived = ArchivedStore(store, root)
        everything = [_key(r) async for r in archived.read_all()]
        live = [r async for r in store.read_all()]
        return everything, len(live)


def _run_until(url: str, root: Path, point: str) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, str(WORKER), url, str(root), point],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.strip())
        lines.put("<exit>")

    threading.Thread(target=drain, daemon=True).start()
    said = "<no answer in 120 s>"
    try:
        said = lines.get(timeout=120)
    finally:
        if said != "done":
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    if said == "<exit>" or said.startswith("<no"):
        assert process.stderr is not None
        pytest.fail(f"the worker exited early: {process.stderr.read()}")
    return said


@pytest.mark.parametrize(
    "point", ["fsync", "rename", "truncate:0", "truncate:1", "truncate:3", "none"]
)
def test_kill_9_during_an_archive_run_loses_and_duplicates_nothing(
    tmp_path: Path, point: str
) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    root_path = tmp_path / "archive"
    before = asyncio.run(_seed(url))
    said = _run_until(url, root_path, point)
    assert said == ("done" if point == "none" else f"at {point}")
    root = ArchiveRoot(root_path)

    # Killed at any point: every event is read exactly once, archived or live.
    seen, _ = asyncio.run(_seen(url, root))
    assert seen == before

    async def finish() -> None:
        async with eventfold.connect(url) as store:
            await Archiver(store, root, segment_events=10).run(Selection(streams=STREAMS))
            assert (await verify(store)).clean
            report = await verify_archive(require(store, StreamLifecycle), root)
            assert report.clean and report.events == len(before)
            named = {
                (cut.stream_id, cut.archive)
                async for cut in require(store, StreamLifecycle).read_cuts()
                if cut.reason == "archived"
            }
            assert len(named) == len(STREAMS)  # one archived part per stream, none twice
            # the segment a killed run wrote was reused, not written again
            assert set(root.locations()) == {location for _, location in named}

    asyncio.run(finish())
    seen, live = asyncio.run(_seen(url, root))
    assert seen == before and live == 0
    assert not [p for p in root_path.iterdir() if p.name.startswith(".tmp-")]
