"""Archiving process for tests/reliability/test_archive_kill.py.

``python archive_worker.py URL ROOT POINT`` archives every stream of the
SQLite store at URL into ROOT (segments of 10 events) and stops, waiting to
be killed, at POINT:

    fsync        the segment's temporary file is written, not yet flushed
    rename       the segment is flushed, not yet renamed into place
    truncate:N   before the N-th stream's truncation (N from 0)
    none         nowhere: it prints ``done`` and exits

It prints ``at POINT`` (flushed) when it gets there.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import eventfold
from eventfold.archive import Archiver, ArchiveRoot, Selection


def stop(point: str) -> None:
    sys.stdout.write(f"at {point}\n")
    sys.stdout.flush()
    while True:
        signal.pause()


class StoppingArchiver(Archiver):
    def __init__(self, *args: Any, stop_before: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.count = 0
        self.stop_before = stop_before

    async def _truncate(self, stream_id: str, before: int, location: str) -> Any:
        if self.count == self.stop_before:
            stop(f"truncate:{self.count}")
        self.count += 1
        return await super()._truncate(stream_id, before, location)


async def main(url: str, root: str, point: str) -> None:
    if point in ("fsync", "rename"):
        original = getattr(os, point)

        def stopping(*args: Any) -> Any:
            stop(point)
            return original(*args)

        setattr(os, point, stopping)
    stop_before = int(point.split(":")[1]) if point.startswith("truncate:") else -1
    async with eventfold.connect(url) as store:
        streams = tuple(sorted({r.stream_id async for r in store.read_all()}))
        archiver = StoppingArchiver(
            store, ArchiveRoot(root), segment_events=10, stop_before=stop_before
        )
        await archiver.run(Selection(streams=streams))
    sys.stdout.write("done\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
