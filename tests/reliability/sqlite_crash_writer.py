"""Writer process for tests/reliability/test_sqlite_crash.py.

``python sqlite_crash_writer.py URL NAME`` appends to a SQLite store until it is
killed, printing one line per acknowledged append (after the append returned):

    ack STREAM VERSION EVENT_ID      one event at VERSION
    pair A_VERSION B_VERSION         one atomic append_many to pair-a and pair-b

Streams: ``solo-NAME`` (only this process writes it: exact expected versions
must always match), ``shared-0..2`` and ``pair-a``/``pair-b`` (every writer
process races for them with exact expected versions and retries when it loses).
Each event's data is ``{"n": VERSION, "writer": NAME}``.
"""

from __future__ import annotations

import asyncio
import sys

import msgspec

import eventfold
from eventfold.errors import WrongExpectedVersion
from eventfold.store.api import EventStore, NewEvent, StreamAppend


def event(version: int, name: str) -> NewEvent:
    return NewEvent("Numbered", msgspec.json.encode({"n": version, "writer": name}))


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def solo(store: EventStore, name: str) -> None:
    stream = f"solo-{name}"
    version = await store.stream_version(stream)
    while True:
        new = event(version + 1, name)
        result = await store.append(stream, [new], version)
        version = result.version
        say(f"ack {stream} {version} {new.event_id}")


async def shared(store: EventStore, name: str, stream: str) -> None:
    while True:
        version = await store.stream_version(stream)
        new = event(version + 1, name)
        try:
            result = await store.append(stream, [new], version)
        except WrongExpectedVersion:
            continue
        say(f"ack {stream} {result.version} {new.event_id}")


async def pair(store: EventStore, name: str) -> None:
    while True:
        a = await store.stream_version("pair-a")
        b = await store.stream_version("pair-b")
        try:
            results = await store.append_many(
                [
                    StreamAppend("pair-a", [event(a + 1, name)], a),
                    StreamAppend("pair-b", [event(b + 1, name), event(b + 2, name)], b),
                ]
            )
        except WrongExpectedVersion:
            continue
        say(f"pair {results[0].version} {results[1].version}")


async def main(url: str, name: str) -> None:
    async with eventfold.connect(url) as store:
        await asyncio.gather(
            solo(store, name),
            *(shared(store, name, f"shared-{i}") for i in range(3)),
            pair(store, name),
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
