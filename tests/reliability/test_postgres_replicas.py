"""Guarantees of reads on a hot standby, on a real primary and standby
(``replication``: streaming replication over loopback).

- Global order holds on the standby: the out-of-order commit scenario of
  test_postgres_order.py, read through replica views, loses and repeats
  nothing; a naive reader on the standby misses events in the same scenario.
- A subscription whose standby is killed and restarted delivers every event
  once, in order, reading the primary meanwhile and the standby again after.
- Read-your-writes under write load: a read carrying a write's position
  always sees that write, from the standby or from the primary.
- Replay paused: a read with a token falls back to the primary, or answers
  from the standby saying it is stale, as configured, within its bound
  (reads that start together on a fresh view included); a subscription
  keeps delivering from the primary once the standby lags.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg

from eventfold import Codec, Envelope, EventRegistry
from eventfold.store.api import NewEvent, RecordedEvent
from eventfold.store.postgres import PostgresStore
from eventfold.store.routing import RoutedReader, served_by
from eventfold.store.url import connect
from eventfold.subscriptions import MemoryCheckpointStore, Subscription
from tests.conftest import Replication
from tests.reliability.test_postgres_order import (
    ReadAfter,
    Reader,
    Seen,
    catch_up,
    naive_reader,
    out_of_order_traffic,
)

BOUND = 60.0  # seconds: generous bounds on waits for conditions, never expected to run out


def replica_name(replication: Replication) -> str:
    return f"127.0.0.1:{replication.standby.port}"


def fast_checks(replication: Replication, schema: str, **params: str) -> str:
    """A store on the primary reading the standby, its health checked often."""
    return replication.store_url(schema, replica_check_interval="0.1", **params)


async def until(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Wait for ``check()`` to hold (polling, within BOUND)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def replayed(replication: Replication) -> None:
    await asyncio.to_thread(replication.standby.wait_replayed)


def view_reader(view: RoutedReader, sources: Counter[str]) -> ReadAfter:
    async def read_after(last: int) -> Seen:
        seen = [(r.position, r.event_id) async for r in view.read_all(from_position=last + 1)]
        served = served_by(view)
        sources[served.source if served is not None else "-"] += 1
        return seen

    return read_after


# --- order ------------------------------------------------------------------------


async def test_replica_readers_see_every_committed_event_once_in_order(
    replication: Replication, pg_schema: str
) -> None:
    url = replication.store_url(pg_schema)
    sources: Counter[str] = Counter()
    async with await connect(url) as writer:
        assert isinstance(writer, PostgresStore)
        reader_stores = [await connect(url) for _ in range(3)]
        try:
            views = [s.reads("replica") for s in reader_stores]  # type: ignore[attr-defined]
            readers = [Reader(view_reader(v, sources)) for v in views]
            committed = await out_of_order_traffic(
                writer, replication.primary_url, readers, settle=lambda: replayed(replication)
            )
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
    # The standby answered (nearly) every poll: this is its order, not the primary's.
    assert sources[replica_name(replication)] > 0.9 * sum(sources.values()), sources


async def test_naive_reader_on_the_standby_misses_out_of_order_commits(
    replication: Replication, pg_schema: str
) -> None:
    """Negative control: on the standby too, the same traffic loses events
    for a reader without the xmin rule."""
    url = replication.store_url(pg_schema)
    async with await connect(url) as writer:
        assert isinstance(writer, PostgresStore)
        conns = [
            await psycopg.AsyncConnection.connect(replication.standby_url, autocommit=True)
            for _ in range(2)
        ]
        try:
            readers = [Reader(naive_reader(c, pg_schema)) for c in conns]
            committed = await out_of_order_traffic(
                writer, replication.primary_url, readers, settle=lambda: replayed(replication)
            )
            await replayed(replication)
            for reader in readers:
                await reader.poll()
        finally:
            for conn in conns:
                await conn.close()
    for reader in readers:
        ids = {e for _, e in reader.seen}
        assert ids < committed, "the naive reader unexpectedly saw every event"


# --- a standby killed under a subscription -----------------------------------------

codec = Codec(EventRegistry())


def numbered(n: int) -> NewEvent:
    return NewEvent("Numbered", f'{{"n": {n}}}'.encode())


class Writer:
    """Appends to a few streams until stopped; remembers every committed id."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.committed: list[uuid.UUID] = []
        self.stop = asyncio.Event()
        self._rng = random.Random(3)

    async def run(self, pause: float = 0.002) -> None:
        n = 0
        while not self.stop.is_set():
            batch = [numbered(n + i) for i in range(self._rng.randint(1, 4))]
            n += len(batch)
            await self.store.append(f"load-{self._rng.randint(1, 5)}", batch)
            self.committed += [e.event_id for e in batch]
            await asyncio.sleep(pause)


async def test_a_subscription_keeps_order_when_its_standby_is_killed_and_restarted(
    replication: Replication, pg_schema: str
) -> None:
    standby = replica_name(replication)
    delivered: list[tuple[int, uuid.UUID, str]] = []
    async with await connect(fast_checks(replication, pg_schema)) as store:
        writer = Writer(store)

        async def handle(envelope: Envelope[Any]) -> None:
            served = served_by(subscription.store)
            delivered.append(
                (envelope.position, envelope.event_id, served.source if served else "-")
            )

        subscription = Subscription(
            store,
            codec,
            "standby-killed",
            handle,
            checkpoints=MemoryCheckpointStore(),
            batch_size=25,
            poll_interval=0.1,
        )
        following = asyncio.create_task(subscription.run())
        writing = asyncio.create_task(writer.run())
        try:
            await until(lambda: sum(s == standby for *_, s in delivered) >= 50, "standby reads")
            await asyncio.to_thread(replication.standby.stop, "immediate")
            killed_at = len(delivered)
            await until(
                lambda: any(s == "primary" for *_, s in delivered[killed_at:]), "primary reads"
            )
            await until(lambda: len(delivered) >= killed_at + 100, "reads while it is down")
            await asyncio.to_thread(replication.standby.start)
            back_at = len(delivered)
            await until(lambda: any(s == standby for *_, s in delivered[back_at:]), "standby again")
            writer.stop.set()
            await writing
            await until(lambda: len(delivered) >= len(writer.committed), "every event")
        finally:
            writer.stop.set()
            subscription.stop()
            await asyncio.gather(following, writing, return_exceptions=True)
            if not replication.standby.is_running():
                await asyncio.to_thread(replication.standby.start)
    positions = [p for p, _, _ in delivered]
    ids = [e for _, e, _ in delivered]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert len(set(ids)) == len(ids), "an event delivered twice"
    assert ids == writer.committed or set(ids) == set(writer.committed)
    assert set(ids) == set(writer.committed), "an event never delivered"


# --- read-your-writes under load ----------------------------------------------------


async def test_a_read_with_a_writes_token_always_sees_that_write_under_load(
    replication: Replication, pg_schema: str
) -> None:
    async with await connect(replication.store_url(pg_schema)) as store:
        assert isinstance(store, PostgresStore)
        loaders = [Writer(store) for _ in range(4)]
        loading = [asyncio.create_task(w.run(pause=0)) for w in loaders]
        sources: Counter[str] = Counter()
        try:
            for n in range(150):
                written = await store.append(f"mine-{n}", [numbered(n)])
                # wait=0 answers from the standby only if it has the write at once,
                # else from the primary: both paths run, and both must see it.
                view = store.reads("replica", min_position=written.position, wait=n % 3 * 0.01)
                mine = [r async for r in view.read_stream(f"mine-{n}")]
                assert [r.position for r in mine] == [written.position]
                tail = [r.position async for r in view.read_all(from_position=written.position)]
                assert tail[:1] == [written.position]
                served = view.served
                assert served is not None and not served.stale
                sources[served.source] += 1
        finally:
            for w in loaders:
                w.stop.set()
            await asyncio.gather(*loading)
    assert set(sources) <= {"primary", replica_name(replication)}


# --- replay paused ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def replay_paused(replication: Replication) -> AsyncIterator[None]:
    """The standby with WAL replay paused once it has replayed everything
    so far (the store's schema included); resumed afterwards."""
    await replayed(replication)
    async with await psycopg.AsyncConnection.connect(
        replication.standby_url, autocommit=True
    ) as conn:
        await conn.execute("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            await conn.execute("SELECT pg_wal_replay_resume()")


async def test_with_replay_paused_a_tokened_read_falls_back_or_says_it_is_stale(
    replication: Replication, pg_schema: str
) -> None:
    standby = replica_name(replication)
    async with await connect(replication.store_url(pg_schema)) as store:
        assert isinstance(store, PostgresStore)
        await store.append("order-1", [numbered(0)])
        async with replay_paused(replication):
            written = await store.append("order-1", [numbered(1)])

            fallback = store.reads("replica", min_position=written.position, wait=0.3)
            seen = await asyncio.wait_for(positions(fallback.read_stream("order-1")), BOUND)
            assert seen[-1] == written.position
            assert fallback.served is not None
            assert fallback.served.source == "primary" and fallback.served.fell_back
            assert not fallback.served.stale

            stale = store.reads("replica", min_position=written.position, wait=0.3, on_lag="stale")
            seen = await asyncio.wait_for(positions(stale.read_stream("order-1")), BOUND)
            assert written.position not in seen  # the standby has not replayed the write
            served = stale.served
            assert served is not None and served.source == standby and served.stale
            assert served.visible is not None and served.visible < written.position


async def test_with_replay_paused_concurrent_first_reads_of_a_tokened_view_see_the_write(
    replication: Replication, pg_schema: str
) -> None:
    """Reads that start together on a fresh view all wait for its token to be
    resolved: none of them goes to the standby that cannot see the write."""
    async with await connect(replication.store_url(pg_schema)) as store:
        assert isinstance(store, PostgresStore)
        await store.append("order-1", [numbered(0)])
        async with replay_paused(replication):
            written = await store.append("order-1", [numbered(1)])
            view = store.reads("replica", min_position=written.position, wait=0.3)
            reads = (positions(view.read_stream("order-1", limit=10)) for _ in range(8))
            seen = await asyncio.wait_for(asyncio.gather(*reads), BOUND)
            assert [found[-1] for found in seen] == [written.position] * 8
            assert view.served is not None and view.served.source == "primary"


async def positions(records: AsyncIterator[RecordedEvent]) -> list[int]:
    return [r.position async for r in records]


async def test_with_replay_paused_a_subscription_moves_to_the_primary(
    replication: Replication, pg_schema: str
) -> None:
    url = fast_checks(replication, pg_schema, replica_max_lag="0.5")
    delivered: list[tuple[int, str]] = []
    async with await connect(url) as store, replay_paused(replication):
        assert isinstance(store, PostgresStore)

        async def handle(envelope: Envelope[Any]) -> None:
            served = served_by(subscription.store)
            delivered.append((envelope.position, served.source if served else "-"))

        subscription = Subscription(
            store,
            codec,
            "paused",
            handle,
            checkpoints=MemoryCheckpointStore(),
            poll_interval=0.1,
        )
        following = asyncio.create_task(subscription.run())
        try:
            written = [await store.append("order-1", [numbered(n)]) for n in range(20)]
            await until(lambda: len(delivered) == 20, "delivery while replay is paused")

            async def lagging() -> bool:
                health = await store.replica_health()
                return health[0].state == "lagging" and health[0].replay_paused

            await until(lagging, "the standby reported lagging")
        finally:
            subscription.stop()
            await following
    assert [p for p, _ in delivered] == [w.position for w in written]
    assert {s for _, s in delivered} == {"primary"}
