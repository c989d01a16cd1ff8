"""Guarantee: ``recorded_at`` never decreases along a stream, nor along the
global log, on every backend, with several processes (each with its own
store object and group commit) writing to the same streams at once. So
``load(as_of=T)`` and time-travel builds leave out no event recorded before T.

On PostgreSQL positions follow transaction ids, not commit order: the test
reads the log after all writers are done and checks it in position order.
"""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from eventfold import connect
from eventfold.store.api import NewEvent, RecordedEvent

WRITER_SCRIPT = Path(__file__).with_name("clock_writer.py")
PROCESSES = 4
STREAMS = 5
APPENDS = 60


def decreasing(records: list[RecordedEvent]) -> list[tuple[int, dt.datetime, int, dt.datetime]]:
    return [
        (a.position, a.recorded_at, b.position, b.recorded_at)
        for a, b in itertools.pairwise(records)
        if b.recorded_at < a.recorded_at
    ]


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    return str(request.getfixturevalue("pg_url"))


async def test_recorded_at_never_decreases_along_streams_and_the_log(url: str) -> None:
    async with connect(url):
        pass  # created once here, so the writers race on appends only
    procs = [
        subprocess.Popen(
            [sys.executable, str(WRITER_SCRIPT), url, str(n), str(STREAMS), str(APPENDS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(PROCESSES)
    ]
    written = 0
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        written += int(out.split()[-1])
    async with connect(url) as store:
        log = [r async for r in store.read_all()]
        assert len(log) == written
        assert decreasing(log) == []
        for n in range(STREAMS):
            stream = [r async for r in store.read_stream(f"clock-{n}")]
            assert stream, f"clock-{n} got no events"
            assert decreasing(stream) == []


async def test_a_clock_set_back_does_not_make_recorded_at_decrease(tmp_path: Path) -> None:
    """The last event was recorded ahead of the clock (the clock has since
    been set back): the next append is recorded no earlier than it."""
    url = f"sqlite:///{tmp_path}/events.db"
    async with connect(url) as store:
        await store.append("clock-0", [NewEvent("Tick", b"{}")])
    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with sqlite3.connect(tmp_path / "events.db") as con:
        con.execute("UPDATE events SET recorded_at = ?", (int(ahead.timestamp() * 1_000_000),))
    async with connect(url) as store:
        await store.append("clock-1", [NewEvent("Tick", b"{}")])
        log = [r async for r in store.read_all()]
    assert [r.recorded_at for r in log] == [ahead, ahead]
