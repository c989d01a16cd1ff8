"""A writer process for the PostgreSQL crash test.

    python pg_crash_writer.py URL WRITER

Appends events numbered 0, 1, 2, ... to stream ``crash-WRITER``, one per
append, with the exact expected version and an event id derived from the
number (so a retry after an unknown outcome is idempotent). After each
acknowledged append it prints ``ack WRITER N VERSION POSITION`` and flushes.
On any store error it waits a moment and retries the same event, forever:
the test kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import msgspec

from eventfold.errors import EventfoldError
from eventfold.store.api import NewEvent
from eventfold.store.url import connect

NAMESPACE = uuid.UUID("6f1c2a8e-3d4b-4c5a-9e7f-0a1b2c3d4e5f")


def event_id(writer: int, n: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{writer}-{n}")


async def main(url: str, writer: int) -> None:
    stream_id = f"crash-{writer}"
    while True:
        try:
            store = await connect(url, connect_timeout=2, pool_timeout=2)
            break
        except EventfoldError:
            await asyncio.sleep(0.05)
    n: int | None = None
    while True:
        try:
            if n is None:  # where a previous incarnation of this writer stopped
                n = await store.stream_version(stream_id)
            data = msgspec.json.encode({"writer": writer, "n": n})
            event = NewEvent("Numbered", data, event_id=event_id(writer, n))
            result = await store.append(stream_id, [event], n)
        except EventfoldError as exc:
            print(f"error {writer} {n} {type(exc).__name__}", file=sys.stderr, flush=True)
            await asyncio.sleep(0.05)
            continue
        print(f"ack {writer} {n} {result.version} {result.position}", flush=True)
        n += 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
