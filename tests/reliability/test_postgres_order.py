"""Guarantee: a reader of the whole log never skips a committed event, never
sees one twice, and sees one total order, even when writers commit out of
position order. Writers to different streams run in parallel; some hold their
transaction open (pg_sleep between insert and commit) so that later positions
commit first. Several readers follow the log from their last position + 1.

The same scenario run with a naive reader (``position > last ORDER BY
position`` on the table, without the xmin rule) must miss events: that
negative control shows the scenario really produces out-of-order commits.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql

from eventfold.store.api import NewEvent, StreamAppend
from eventfold.store.postgres import PostgresStore
from eventfold.store.url import connect

Seen = list[tuple[int, uuid.UUID]]
ReadAfter = Callable[[int], Awaitable[Seen]]

WRITERS = 8
SLOW_WRITERS = 3
APPENDS = 20


def event(writer: int, n: int) -> NewEvent:
    return NewEvent("Numbered", f'{{"writer": {writer}, "n": {n}}}'.encode())


class Reader:
    """Follows the log: each poll reads everything after the last position seen."""

    def __init__(self, read_after: ReadAfter) -> None:
        self.read_after = read_after
        self.seen: Seen = []
        self.last = 0
        self.lock = asyncio.Lock()

    async def poll(self) -> None:
        async with self.lock:
            for position, event_id in await self.read_after(self.last):
                self.seen.append((position, event_id))
                self.last = position


def store_reader(store: PostgresStore) -> ReadAfter:
    async def read_after(last: int) -> Seen:
        return [(r.position, r.event_id) async for r in store.read_all(from_position=last + 1)]

    return read_after


def naive_reader(conn: psycopg.AsyncConnection[Any], schema: str) -> ReadAfter:
    query = sql.SQL(
        "SELECT position, event_id FROM {} WHERE position > %s ORDER BY position"
    ).format(sql.Identifier(schema, "events"))

    async def read_after(last: int) -> Seen:
        cur = await conn.execute(query, [last])
        return [(int(p), e) for p, e in await cur.fetchall()]

    return read_after


async def out_of_order_traffic(
    store: PostgresStore,
    base_url: str,
    readers: list[Reader],
    settle: Callable[[], Awaitable[None]] | None = None,
) -> set[uuid.UUID]:
    """Run writers (some slow, in raw transactions) while the readers poll;
    return the ids of every committed event. ``settle()``, if given, runs
    before the readers look past the held transaction (readers of a
    standby wait there until it has replayed the newer commit)."""
    committed: set[uuid.UUID] = set()
    rng = random.Random(7)
    slow_conns = [
        await psycopg.AsyncConnection.connect(base_url, autocommit=True)
        for _ in range(SLOW_WRITERS + 1)
    ]
    try:
        # 1. Forced: an older transaction inserts first and commits last.
        held = slow_conns[-1]
        await held.execute("BEGIN")
        early = [event(-1, 0)]
        await store.append_within(held, [StreamAppend("held-1", early)])
        late = [event(-2, 0)]
        await store.append("quick-1", late)  # a newer transaction commits first
        committed.update(e.event_id for e in late)
        if settle is not None:
            await settle()
        for reader in readers:
            await reader.poll()  # a naive reader now passes the held event's position
        await held.execute("COMMIT")
        committed.update(e.event_id for e in early)

        # 2. Random: parallel writers, some holding their transactions open.
        done = asyncio.Event()

        async def fast_writer(w: int) -> None:
            for n in range(APPENDS):
                batch = [event(w, n) for _ in range(rng.randint(1, 3))]
                await store.append(f"fast-{w}", batch)
                committed.update(e.event_id for e in batch)
                await asyncio.sleep(rng.random() * 0.004)

        async def slow_writer(w: int, conn: psycopg.AsyncConnection[Any]) -> None:
            for n in range(APPENDS // 2):
                batch = [event(w, n) for _ in range(rng.randint(1, 3))]
                await conn.execute("BEGIN")
                await store.append_within(conn, [StreamAppend(f"slow-{w}", batch)])
                await conn.execute("SELECT pg_sleep(%s)", [rng.random() * 0.03])
                await conn.execute("COMMIT")
                committed.update(e.event_id for e in batch)

        async def follow(reader: Reader) -> None:
            while not done.is_set():
                await reader.poll()
                await asyncio.sleep(0.001)

        followers = [asyncio.create_task(follow(r)) for r in readers]
        await asyncio.gather(
            *(fast_writer(w) for w in range(WRITERS - SLOW_WRITERS)),
            *(slow_writer(100 + i, slow_conns[i]) for i in range(SLOW_WRITERS)),
        )
        done.set()
        await asyncio.gather(*followers)
    finally:
        for conn in slow_conns:
            await conn.close()
    return committed


async def catch_up(readers: list[Reader], expected: int) -> None:
    """Final polls after every writer has committed (an unrelated transaction,
    autovacuum say, may hold visibility back for a moment)."""
    for _ in range(1500):  # up to 30 s
        for reader in readers:
            await reader.poll()
        if all(len(r.seen) >= expected for r in readers):
            return
        await asyncio.sleep(0.02)


async def test_readers_see_every_committed_event_once_in_order(pg_url: str) -> None:
    base_url = pg_url.split("?")[0]
    async with await connect(pg_url) as writer_store:
        assert isinstance(writer_store, PostgresStore)
        reader_stores = [await connect(pg_url) for _ in range(3)]
        try:
            readers = [Reader(store_reader(s)) for s in reader_stores]  # type: ignore[arg-type]
            committed = await out_of_order_traffic(writer_store, base_url, readers)
            await catch_up(readers, len(committed))
        finally:
            for s in reader_stores:
                await s.close()
    orders = []
    for reader in readers:
        positions = [p for p, _ in reader.seen]
        ids = [e for _, e in reader.seen]
        assert positions == sorted(positions), "positions not increasing"
        assert len(set(positions)) == len(positions), "a position seen twice"
        assert len(set(ids)) == len(ids), "an event seen twice"
        assert set(ids) == committed, f"missed {len(committed - set(ids))} committed events"
        orders.append(reader.seen)
    assert all(order == orders[0] for order in orders), "readers disagree on the order"


async def test_naive_reader_misses_out_of_order_commits(pg_url: str, pg_schema: str) -> None:
    """Negative control: without the xmin rule the same traffic loses events."""
    base_url = pg_url.split("?")[0]
    async with await connect(pg_url) as writer_store:
        assert isinstance(writer_store, PostgresStore)
        conns = [await psycopg.AsyncConnection.connect(base_url, autocommit=True) for _ in range(2)]
        try:
            readers = [Reader(naive_reader(c, pg_schema)) for c in conns]
            committed = await out_of_order_traffic(writer_store, base_url, readers)
            for reader in readers:
                await reader.poll()
        finally:
            for conn in conns:
                await conn.close()
    for reader in readers:
        ids = {e for _, e in reader.seen}
        assert ids < committed, "the naive reader unexpectedly saw every event"


async def test_each_streams_versions_follow_positions(pg_url: str) -> None:
    """Writers racing on a few hot streams (separate stores, multi-stream
    appends, group commit): in the global order every stream's events appear
    in version order, so a projection can trust either."""
    stores = [await connect(pg_url, pool_max_size=3) for _ in range(6)]
    rng = random.Random(11)
    hot = [f"hot-{i}" for i in range(4)]
    try:

        async def writer(store: Any, w: int) -> None:
            for n in range(25):
                streams = rng.sample(hot, rng.randint(1, 3))
                await store.append_many([StreamAppend(s, [event(w, n)]) for s in streams])

        await asyncio.gather(*(writer(s, w) for w, s in enumerate(stores) for _ in range(2)))
        log = [r async for r in stores[0].read_all()]
    finally:
        for store in stores:
            await store.close()
    assert [r.position for r in log] == sorted(r.position for r in log)
    for stream_id in hot:
        versions = [r.version for r in log if r.stream_id == stream_id]
        assert versions == list(range(1, len(versions) + 1)), f"{stream_id}: {versions[:20]}"
