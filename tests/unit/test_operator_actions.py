"""What an operator does: pause and resume a projection (in every runner on
the read model, across a restart), and retry or skip a parked bus message
(applied at its own position, behind the head if need be; still parked with
the reason it fails now; skipped; each logged with who did it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

import eventfold
from eventfold import Codec, Envelope, EventRegistry, EventStore
from eventfold.errors import UnknownProjection
from eventfold.messaging import BusConsumer, InProcessBus, Message, MirrorStore, Topology
from eventfold.messaging.wire import event_message
from eventfold.subscriptions import Projection, ProjectionRunner, SQLiteReadModel, Tx

registry = EventRegistry()


@registry.register("Ticked")
class Ticked(msgspec.Struct, frozen=True):
    n: int


codec = Codec(registry)
TOPOLOGY = Topology("ops")


SQL = {
    "paused_one": (
        "INSERT INTO {paused_one} (n) VALUES (?)",
        "SELECT n FROM {paused_one} ORDER BY n",
    ),
    "witness": ("INSERT INTO {witness} (n) VALUES (?)", "SELECT n FROM {witness} ORDER BY n"),
}


def counter(name: str) -> Projection:
    """A projection with a table of its own name, holding every tick."""
    projection = Projection(name, version=1, tables={name: "n BIGINT NOT NULL"})
    insert = SQL[name][0]

    @projection.on(Ticked)
    def apply(tx: Tx, env: Envelope[Ticked]) -> None:
        tx.execute(insert, (env.event.n,))

    return projection


async def ticks(runner: ProjectionRunner, name: str) -> list[int]:
    result = await runner.query(name, SQL[name][1], freshness=False)
    return [row[0] for row in result.rows]


async def append(store: EventStore, first: int, count: int) -> int:
    position = 0
    for n in range(first, first + count):
        position = (await store.append(f"tick-{n % 3}", [codec.encode(Ticked(n))])).position
    return position


async def test_a_paused_projection_applies_nothing_until_resumed_even_after_a_restart(
    tmp_path: Path,
) -> None:
    projections = [counter("paused_one"), counter("witness")]
    async with eventfold.connect("memory://") as store:
        head = await append(store, 0, 5)
        async with SQLiteReadModel(tmp_path / "reads.db") as reads:
            async with ProjectionRunner(store, reads, projections, codec, poll_interval=0.05) as r:
                await r.wait_for(head)
                pause = await r.pause("paused_one", by="ops")
                assert pause.paused_by == "ops"
                assert (await r.pause("paused_one", by="someone else")).paused_by == "ops"
                head = await append(store, 5, 5)
                await r.wait_for(head, projections=["witness"])
                assert await ticks(r, "witness") == list(range(10))
                assert await ticks(r, "paused_one") == list(range(5))
                status = {s.name: s for s in await r.status()}
                assert status["paused_one"].state == "paused"
                assert status["paused_one"].paused_by == "ops"
                assert status["paused_one"].freshness is not None
                assert status["paused_one"].freshness.events_behind == 5
                assert status["witness"].state == "running"
                with pytest.raises(UnknownProjection):
                    await r.pause("nope")
            # A new runner on the same read model finds it paused.
            async with ProjectionRunner(store, reads, projections, codec, poll_interval=0.05) as r:
                head = await append(store, 10, 2)
                await r.wait_for(head, projections=["witness"])
                assert await ticks(r, "paused_one") == list(range(5))
                assert await r.resume("paused_one") is True
                assert await r.resume("paused_one") is False
                await r.wait_for(head, timeout=10)
                assert await ticks(r, "paused_one") == list(range(12))
                status = {s.name: s for s in await r.status()}
                assert status["paused_one"].state == "running"


async def _mirrored(tmp_path: Path, store: EventStore) -> tuple[SQLiteReadModel, MirrorStore]:
    reads = SQLiteReadModel(tmp_path / "reads.db")
    mirror = MirrorStore(reads)
    await mirror.setup()
    return reads, mirror


async def _take_in(bus: InProcessBus, mirror: MirrorStore) -> BusConsumer:
    consumer = BusConsumer(bus, mirror, TOPOLOGY, fetch_timeout=0.05)
    await asyncio.wait_for(consumer.run(until_idle=True), 30)
    return consumer


async def test_a_parked_message_retried_is_applied_in_its_place_or_stays_parked_with_why(
    tmp_path: Path,
) -> None:
    async with eventfold.connect("memory://") as store:
        await append(store, 0, 6)
        records = [r async for r in store.read_all()]
        reads, mirror = await _mirrored(tmp_path, store)
        async with reads, mirror:
            bus = InProcessBus()
            stream = TOPOLOGY.events_stream
            await bus.ensure_stream(TOPOLOGY.events_spec())
            # Published out of order (two relays racing, an old relay's bug):
            # 1, 2, 3, 5, then 4 and 6, and a message that is not an event.
            order = [records[i] for i in (0, 1, 2, 4, 3, 5)]
            await bus.publish(stream, [event_message(TOPOLOGY, r) for r in order])
            await bus.publish(stream, [Message("ops.x.Junk", b"not json")])
            consumer = await _take_in(bus, mirror)
            assert consumer.parked == 2
            parked = {p.seq: p for p in await mirror.parked()}
            assert sorted(parked) == [5, 7]
            assert parked[5].reason.startswith("out of order")
            assert [r.position async for r in mirror.read_all()] == [1, 2, 3, 5, 6]

            retried = await mirror.retry(stream, 5, actor="ops")
            assert retried is not None and retried.outcome == "applied"
            assert retried.position == 4 and retried.behind is True
            assert [r.position async for r in mirror.read_all()] == [1, 2, 3, 4, 5, 6]
            assert [(r.stream_id, r.version) async for r in mirror.read_stream("tick-0")] == [
                ("tick-0", 1),
                ("tick-0", 2),
            ]
            assert await mirror.retry(stream, 5, actor="ops") is None

            junk = await mirror.retry(stream, 7, actor="ops")
            assert junk is not None and junk.outcome == "parked"
            assert junk.reason.startswith("not an event")
            assert [p.seq for p in await mirror.parked()] == [7]
            assert await mirror.skip(stream, 7, actor="ana") is True
            assert await mirror.skip(stream, 7, actor="ana") is False
            assert await mirror.parked() == []
            state = await mirror.source(stream)
            assert state is not None and state.parked == 0

            log = await mirror.parked_log()
            assert [(a.seq, a.action, a.outcome, a.actor) for a in reversed(log)] == [
                (5, "retry", "applied", "ops"),
                (7, "retry", "parked", "ops"),
                (7, "skip", "skipped", "ana"),
            ]


async def test_a_retried_message_that_would_break_the_log_stays_parked(tmp_path: Path) -> None:
    async with eventfold.connect("memory://") as store:
        await append(store, 0, 3)
        records = [r async for r in store.read_all()]
        reads, mirror = await _mirrored(tmp_path, store)
        async with reads, mirror:
            bus = InProcessBus()
            stream = TOPOLOGY.events_stream
            await bus.ensure_stream(TOPOLOGY.events_spec())
            messages = [event_message(TOPOLOGY, r) for r in records]
            # Another event claiming stream tick-0's version 1, and the real one
            # again under another sequence (a re-publish after the duplicate window).
            clash = msgspec.json.decode(messages[0].data)
            clash["event_id"] = "00000000-0000-4000-8000-000000000009"
            clash["position"] = 9
            forged = Message(messages[0].subject, msgspec.json.encode(clash))
            again = msgspec.structs.replace(messages[1], msg_id=None)
            await bus.publish(stream, [*messages, forged, again])
            await _take_in(bus, mirror)
            seqs = sorted(p.seq for p in await mirror.parked())
            assert seqs == [4]
            retried = await mirror.retry(stream, 4, actor="ops")
            assert retried is not None and retried.outcome == "parked"
            assert "already holds" in retried.reason
            assert [r.position async for r in mirror.read_all()] == [1, 2, 3]
