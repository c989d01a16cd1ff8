"""Worker process for tests/reliability/test_lifecycle.py.

``python lifecycle_worker.py race URL ROUNDS NAME`` appends to ``race-0`` ..
``race-{ROUNDS-1}`` in turn, each until the append is refused with
``StreamDeleted`` (another process deletes them for good), alternating lone
appends and ``append_many`` with a stream of its own (so both append paths
race the delete), and prints ``done R`` after each round.

``python lifecycle_worker.py truncate URL STREAMS`` truncates ``t-0`` ..
``t-{STREAMS-1}`` before version 6, signing the cuts with the key in
``CHAIN_KEY``, and prints ``cut STREAM`` after each truncation returned,
until it is killed (or has done them all).
"""

from __future__ import annotations

import asyncio
import os
import sys

import eventfold
from eventfold.errors import StreamDeleted
from eventfold.store.api import NewEvent, StreamAppend


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def race(url: str, rounds: int, name: str) -> None:
    async with eventfold.connect(url) as store:
        for r in range(rounds):
            stream, turn = f"race-{r}", 0
            while True:
                turn += 1
                event = NewEvent("Raced", b'{"n": %d}' % turn)
                try:
                    if turn % 2:
                        await store.append(stream, [event])
                    else:
                        side = NewEvent("Side", b"{}")
                        await store.append_many(
                            [StreamAppend(f"side-{name}", [side]), StreamAppend(stream, [event])]
                        )
                except StreamDeleted:
                    break
            say(f"done {r}")


async def truncate(url: str, streams: int) -> None:
    key = os.environ["CHAIN_KEY"].encode()
    async with eventfold.connect(url) as store:
        for s in range(streams):
            await store.truncate_stream(f"t-{s}", 6, key=key)
            say(f"cut t-{s}")


if __name__ == "__main__":
    mode, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "race":
        asyncio.run(race(url, count, sys.argv[4]))
    else:
        asyncio.run(truncate(url, count))
