"""A writer process for the recorded_at test.

    python clock_writer.py URL WRITER STREAMS APPENDS

Opens its own store on URL and runs four tasks at once, each appending
APPENDS times to streams chosen among ``clock-0`` .. ``clock-{STREAMS-1}``
(any expected version; every fourth append writes to two streams at once).
Prints ``done N`` with the number of events it wrote, then exits.
"""

from __future__ import annotations

import asyncio
import random
import sys

from eventfold.store.api import ANY, NewEvent, StreamAppend
from eventfold.store.url import connect

TASKS = 4


async def main(url: str, writer: int, streams: int, appends: int) -> None:
    written = 0
    async with connect(url) as store:

        async def task(number: int) -> None:
            nonlocal written
            rng = random.Random(writer * 100 + number)
            for n in range(appends):
                data = f'{{"writer": {writer}, "task": {number}, "n": {n}}}'.encode()
                first, second = rng.sample(range(streams), 2)
                if n % 4 == 3:
                    await store.append_many(
                        [
                            StreamAppend(f"clock-{first}", [NewEvent("Tick", data)], ANY),
                            StreamAppend(f"clock-{second}", [NewEvent("Tick", data)], ANY),
                        ]
                    )
                    written += 2
                else:
                    await store.append(f"clock-{first}", [NewEvent("Tick", data)], ANY)
                    written += 1

        await asyncio.gather(*(task(i) for i in range(TASKS)))
    print(f"done {written}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
