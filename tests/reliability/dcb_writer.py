"""A writer process for the DCB race and crash tests.

    python dcb_writer.py URL WRITER MODE COUNT

Modes:

In ``race`` and ``disjoint`` modes the writer prints ``ready`` once
connected and starts when a line arrives on its stdin, so that writers
started one after another still run at the same time.

- ``race``: COUNT operations. Three in four read a query over one or two
  random keys of six (``k:0`` .. ``k:5``, sometimes with a type) and append
  two ``Claimed`` events with the condition of what they read, recording in
  their data the keys and the position read (``after``); the fourth appends
  a ``Noise`` event on a random key with no condition. Prints
  ``done WRITER OK FAILED``.
- ``disjoint``: COUNT conditional appends on the writer's own tag only; any
  failure is printed (``done`` as above).
- ``crash``: appends forever, pairs of events with ids derived from the
  writer and a counter (a retry after an unknown outcome is idempotent), with
  the condition of what it read; prints ``ack WRITER N POSITION`` after each
  acknowledged append. The test kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import random
import sys
import uuid

import msgspec

from eventfold.errors import ConditionFailed, EventfoldError
from eventfold.store.api import NewEvent
from eventfold.store.dcb import AppendCondition, Query, QueryItem
from eventfold.store.url import connect

NAMESPACE = uuid.UUID("5d3c1b2a-6e4f-4a7b-8c9d-0e1f2a3b4c5d")
KEYS = 6


def query_of(keys: list[int], typed: bool) -> Query:
    types = ("Claimed", "Noise") if typed else ()
    return Query.of(*(QueryItem(types=types, tags=(f"k:{k}",)) for k in keys))


def claims(writer: int, n: int, keys: list[int], typed: bool, after: int | None) -> list[NewEvent]:
    """Two events that must land together, both carrying every key."""
    tags = tuple(f"k:{k}" for k in keys)
    data = {"writer": writer, "n": n, "keys": keys, "typed": typed, "after": after}
    return [
        NewEvent(
            "Claimed",
            msgspec.json.encode({**data, "part": part}),
            event_id=uuid.uuid5(NAMESPACE, f"{writer}-{n}-{part}"),
            tags=tags,
        )
        for part in (0, 1)
    ]


async def read_after(store: object, query: Query) -> int | None:
    last = None
    async for record in store.read(query):  # type: ignore[attr-defined]
        last = record.position
    return last


async def race(store: object, writer: int, count: int, disjoint: bool) -> None:
    rng = random.Random(writer)
    ok = failed = 0
    for n in range(count):
        if not disjoint and n % 4 == 3:
            noise = NewEvent("Noise", b"{}", tags=(f"k:{rng.randrange(KEYS)}",))
            await store.append_events([noise])  # type: ignore[attr-defined]
            continue
        if disjoint:
            keys, typed = [100 + writer], False
        else:
            keys, typed = sorted(rng.sample(range(KEYS), rng.randint(1, 2))), rng.random() < 0.5
        query = query_of(keys, typed)
        after = await read_after(store, query)
        condition = AppendCondition(query, after)
        try:
            await store.append_events(claims(writer, n, keys, typed, after), condition)  # type: ignore[attr-defined]
        except ConditionFailed:
            failed += 1
        else:
            ok += 1
    print(f"done {writer} {ok} {failed}", flush=True)


async def crash(store: object, writer: int) -> None:
    rng = random.Random(writer)
    n = 0
    while True:
        keys = sorted(rng.sample(range(KEYS), rng.randint(1, 2)))
        query = query_of(keys, False)
        decided: tuple[list[NewEvent], AppendCondition] | None = None
        while True:
            try:
                if decided is None:
                    after = await read_after(store, query)
                    decided = claims(writer, n, keys, False, after), AppendCondition(query, after)
                # After an unknown outcome the same events go again: a retry.
                position = await store.append_events(*decided)  # type: ignore[attr-defined]
            except ConditionFailed:
                decided = None  # read again and decide again
                continue
            except EventfoldError as exc:
                print(f"error {writer} {n} {type(exc).__name__}", file=sys.stderr, flush=True)
                await asyncio.sleep(0.05)
                continue
            break
        print(f"ack {writer} {n} {position}", flush=True)
        n += 1


async def main(url: str, writer: int, mode: str, count: int) -> None:
    while True:
        try:
            store = await connect(url, **({"connect_timeout": 2} if "postgres" in url else {}))
            break
        except EventfoldError:
            await asyncio.sleep(0.05)
    try:
        if mode == "crash":
            await crash(store, writer)
        else:
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)  # the start signal
            await race(store, writer, count, mode == "disjoint")
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
