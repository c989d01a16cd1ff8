"""The relay and the consumer on the in-process bus: the log reaches the
mirror complete, in order, each event once, through lost messages, failed
publishes, restarts, crashes between commit and acknowledgement, poison."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

import eventfold
from eventfold import Codec, EventRegistry, EventStore
from eventfold.messaging import (
    BusConsumer,
    InProcessBus,
    Message,
    MirrorGap,
    MirrorStore,
    PublishAck,
    PublishFailed,
    Relay,
    StoredMessage,
    Topology,
    decode_event,
)
from eventfold.messaging.mirror import MirrorCheckpoints
from eventfold.subscriptions import MemoryCheckpointStore, SQLiteReadModel

registry = EventRegistry()


@registry.register("Ticked")
class Ticked(msgspec.Struct, frozen=True):
    n: int


codec = Codec(registry)
TOPOLOGY = Topology("test")


async def fill(store: EventStore, count: int, *, streams: int = 7, seed: int = 1) -> None:
    rng = random.Random(seed)
    for n in range(count):
        await store.append(f"tick-{rng.randrange(streams)}", [codec.encode(Ticked(n))])


async def log_of(store: EventStore) -> list[tuple[str, int, int]]:
    return [(r.stream_id, r.version, r.position) async for r in store.read_all()]


async def stream_messages(bus: InProcessBus, stream: str) -> list[StoredMessage]:
    info = await bus.stream_info(stream)
    out = []
    for seq in range(info.first_seq, info.last_seq + 1):
        found = await bus.get(stream, seq)
        assert found is not None
        out.append(found)
    return out


class LosingBus(InProcessBus):
    """Loses one message in the middle of some batches, as a stream leader
    stepping down does, and answers those batches with a failure. What
    follows the lost message is still offered to the stream, each message
    with its own expected-last-sequence header, as a pipelining client does."""

    def __init__(self, fail_every: int) -> None:
        super().__init__()
        self.fail_every = fail_every
        self.calls = 0

    async def publish(
        self,
        stream: str,
        messages: Sequence[Message],
        *,
        expected_last_seq: int | None = None,
    ) -> list[PublishAck]:
        self.calls += 1
        if self.calls % self.fail_every or len(messages) < 3 or stream != TOPOLOGY.events_stream:
            return await super().publish(stream, messages, expected_last_seq=expected_last_seq)
        lost = len(messages) // 2
        acks: list[PublishAck] = []
        for i, message in enumerate(messages):
            if i == lost:
                continue
            expected = None if expected_last_seq is None else expected_last_seq + i
            try:
                ack = await super().publish(stream, [message], expected_last_seq=expected)
            except PublishFailed:
                continue
            if i < lost:
                acks += ack
        raise PublishFailed(stream, "timeout: leader stepped down", acked=acks)


async def test_relay_publishes_the_log_in_order_once_despite_lost_messages() -> None:
    async with eventfold.connect("memory://") as store:
        await fill(store, 300)
        bus = LosingBus(fail_every=3)
        relay = Relay(
            store,
            bus,
            TOPOLOGY,
            checkpoints=MemoryCheckpointStore(),
            batch_size=16,
            retry_delay=0.001,
        )
        await asyncio.wait_for(relay.run(until_caught_up=True), 30)
        assert relay.failures > 3
        published = [
            decode_event(m.data) for m in await stream_messages(bus, TOPOLOGY.events_stream)
        ]
        assert [(r.stream_id, r.version, r.position) for r in published] == await log_of(store)
        assert relay.position == await store.head_position()


async def test_a_restarted_relay_resumes_after_the_streams_last_message() -> None:
    async with eventfold.connect("memory://") as store:
        await fill(store, 100)
        bus = InProcessBus()
        first = Relay(store, bus, TOPOLOGY, checkpoints=MemoryCheckpointStore(), batch_size=10)
        await first.run(until_caught_up=True)
        # The checkpoint was lost (the relay died before saving it): the
        # stream's tail says how far it got, so nothing is published again.
        second = Relay(store, bus, TOPOLOGY, checkpoints=MemoryCheckpointStore(), batch_size=10)
        await fill(store, 5, seed=2)
        await second.run(until_caught_up=True)
        assert second.published == 5
        messages = await stream_messages(bus, TOPOLOGY.events_stream)
        assert len(messages) == 105
        assert [decode_event(m.data).position for m in messages] == list(range(1, 106))


async def run_pipeline(store: EventStore, bus: InProcessBus, mirror: MirrorStore) -> BusConsumer:
    relay = Relay(store, bus, TOPOLOGY, checkpoints=MirrorCheckpoints(mirror), batch_size=32)
    await relay.run(until_caught_up=True)
    sink = BusConsumer(bus, mirror, TOPOLOGY, batch_size=20, fetch_timeout=0.05)
    await asyncio.wait_for(sink.run(until_idle=True), 30)
    return sink


async def mirror_log(mirror: MirrorStore) -> list[tuple[str, int, int]]:
    return [(r.stream_id, r.version, r.position) async for r in mirror.read_all()]


class Crash(Exception):
    """The process dies (here: the consumer's task ends without acknowledging)."""


class CrashingMirror(MirrorStore):
    def __init__(self, *args: object, crashes: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.crashes = crashes

    async def take_in(self, source: str, identity: str, items: Sequence[object]) -> object:  # type: ignore[override]
        result = await super().take_in(source, identity, items)  # type: ignore[arg-type]
        if self.crashes > 0:
            self.crashes -= 1
            raise Crash("killed after the commit, before the acknowledgements")
        return result


async def test_a_consumer_killed_between_commit_and_ack_applies_each_event_once(
    tmp_path: Path,
) -> None:
    async with (
        eventfold.connect("memory://") as store,
        SQLiteReadModel(tmp_path / "reads.db") as reads,
    ):
        await fill(store, 200)
        bus = InProcessBus()
        mirror = CrashingMirror(reads, crashes=3)
        relay = Relay(store, bus, TOPOLOGY, checkpoints=MemoryCheckpointStore())
        await relay.run(until_caught_up=True)
        crashed = 0
        while True:
            sink = BusConsumer(bus, mirror, TOPOLOGY, batch_size=30, fetch_timeout=0.05)
            try:
                await asyncio.wait_for(sink.run(until_idle=True), 30)
                break
            except Crash:
                crashed += 1
                await asyncio.sleep(0)
        assert crashed == 3
        # Redelivered after the crash (and the consumer's ack_wait) or not: each once.
        sink = BusConsumer(bus, mirror, TOPOLOGY, ack_wait=0.05, fetch_timeout=0.2)
        await asyncio.wait_for(sink.run(until_idle=True), 30)
        assert await mirror_log(mirror) == await log_of(store)


async def test_poison_is_parked_with_its_reason_and_the_rest_flows(tmp_path: Path) -> None:
    async with (
        eventfold.connect("memory://") as store,
        SQLiteReadModel(tmp_path / "reads.db") as reads,
    ):
        mirror = MirrorStore(reads)
        bus = InProcessBus()
        await fill(store, 10)
        await run_pipeline(store, bus, mirror)
        await bus.publish(
            TOPOLOGY.events_stream,
            [
                Message("test.x.Junk", b"not json at all"),
                Message("test.x.Junk", b'{"stream_id": "x-1"}'),
                Message("test.x.Junk", b'{"stream_id": "\xc3("}'),  # not UTF-8
            ],
        )
        # Another event at a stream version the mirror has, and an event that
        # would land behind the mirror's head: either would break the log.
        late = (await stream_messages(bus, TOPOLOGY.events_stream))[3]
        forged = decode_event(late.data)
        clash = msgspec.json.decode(late.data)
        clash["event_id"] = "00000000-0000-4000-8000-000000000001"
        behind = {**clash, "event_id": "00000000-0000-4000-8000-000000000002"}
        behind["stream_id"] = "tick-99"
        await bus.publish(
            TOPOLOGY.events_stream,
            [
                Message(late.subject, msgspec.json.encode(clash), dict(late.headers)),
                Message(late.subject, msgspec.json.encode(behind), dict(late.headers)),
            ],
        )
        await fill(store, 5, seed=3)
        sink = await run_pipeline(store, bus, mirror)
        assert await mirror_log(mirror) == await log_of(store)
        parked = await mirror.parked()
        reasons = sorted(p.reason.split(":")[0] for p in parked)
        assert len(parked) == 5 and sink.parked == 5
        assert reasons.count("not an event") == 3
        assert "out of order" in reasons
        assert any(f"{forged.stream_id!r} version {forged.version}" in r for r in reasons)
        state = await mirror.source(TOPOLOGY.events_stream)
        assert state is not None and state.parked == 5 and state.pending == 0


async def test_a_new_in_process_bus_continues_where_the_mirror_is(tmp_path: Path) -> None:
    """The embedded default after a restart: a fresh bus, sequences from 1
    again; the relay resumes from the mirror's head and the mirror starts
    counting the new stream's sequences anew."""
    async with (
        eventfold.connect("memory://") as store,
        SQLiteReadModel(tmp_path / "reads.db") as reads,
    ):
        mirror = MirrorStore(reads)
        await fill(store, 40)
        await run_pipeline(store, InProcessBus(), mirror)
        await fill(store, 25, seed=5)
        await run_pipeline(store, InProcessBus(), mirror)
        assert await mirror_log(mirror) == await log_of(store)


async def test_the_mirror_reads_like_the_store(tmp_path: Path) -> None:
    async with (
        eventfold.connect("memory://") as store,
        SQLiteReadModel(tmp_path / "reads.db") as reads,
    ):
        mirror = MirrorStore(reads)
        await fill(store, 1200, streams=3)
        await store.append("other-1", [codec.encode(Ticked(-1))])
        await run_pipeline(store, InProcessBus(), mirror)
        for kwargs in (
            {},
            {"from_position": 600},
            {"categories": ["other"]},
            {"types": ["Ticked"], "limit": 700},
            {"categories": ["tick"], "from_position": 1100, "limit": 3},
        ):
            got = [r async for r in mirror.read_all(**kwargs)]
            want = [r async for r in store.read_all(**kwargs)]
            assert [(r.event_id, r.position) for r in got] == [
                (r.event_id, r.position) for r in want
            ]
        for kwargs in ({}, {"backwards": True, "limit": 510}, {"from_version": 3, "to_version": 9}):
            got = [r async for r in mirror.read_stream("tick-1", **kwargs)]  # type: ignore[arg-type]
            want = [r async for r in store.read_stream("tick-1", **kwargs)]  # type: ignore[arg-type]
            assert [r.version for r in got] == [r.version for r in want]
            assert [codec.decode_event(r) for r in got] == [codec.decode_event(r) for r in want]
        assert await mirror.stream_version("tick-2") == await store.stream_version("tick-2")
        assert await mirror.head_position() == await store.head_position()
        assert not await mirror.wait_for_events(await mirror.head_position(), 0.05)


async def test_messages_gone_from_the_stream_stop_the_consumer_with_a_gap(tmp_path: Path) -> None:
    async with (
        eventfold.connect("memory://") as store,
        SQLiteReadModel(tmp_path / "reads.db") as reads,
    ):
        mirror = MirrorStore(reads)
        bus = InProcessBus()
        await fill(store, 6)
        await Relay(store, bus, TOPOLOGY, checkpoints=MemoryCheckpointStore()).run(
            until_caught_up=True
        )
        stream = bus._streams[TOPOLOGY.events_stream]
        # Messages 2 and 3 were removed (a limit, a purge) before the consumer read them.
        for seq in (2, 3):
            stream.messages.pop(seq)
        sink = BusConsumer(bus, mirror, TOPOLOGY, fetch_timeout=0.05)
        with pytest.raises(MirrorGap) as gap:
            await asyncio.wait_for(sink.run(), 10)
        assert (gap.value.missing_from, gap.value.first_available) == (2, 4)
        assert [r.position async for r in mirror.read_all()] == [1]
