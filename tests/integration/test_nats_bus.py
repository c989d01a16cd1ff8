"""The JetStream bus against a real nats-server: the same contract as the
in-process bus, and the relay and consumer carrying a log end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import eventfold
from eventfold.messaging import (
    BusConsumer,
    BusUnavailable,
    ConsumerSpec,
    Message,
    MirrorStore,
    PublishFailed,
    Relay,
    StreamSpec,
    Topology,
    decode_event,
)
from eventfold.messaging.jetstream import JetStreamBus
from eventfold.subscriptions import MemoryCheckpointStore, SQLiteReadModel
from eventfold.testing.natsserver import free_port
from tests.unit.test_messaging_relay import fill, log_of


def spec(prefix: str, **kwargs: object) -> StreamSpec:
    return StreamSpec(f"{prefix.upper()}_S", (f"{prefix}.>",), **kwargs)  # type: ignore[arg-type]


async def test_publish_dedup_expected_sequence_and_get(nats_url: str, nats_prefix: str) -> None:
    async with JetStreamBus(nats_url) as bus:
        s = spec(nats_prefix, duplicate_window=30.0)
        info = await bus.ensure_stream(s)
        assert info.last_seq == 0 and info.identity
        msgs = [Message(f"{nats_prefix}.a.{n}", str(n).encode(), msg_id=f"m{n}") for n in range(3)]
        acks = await bus.publish(s.name, msgs, expected_last_seq=0)
        assert [a.seq for a in acks] == [1, 2, 3]
        again = await bus.publish(s.name, msgs[:1])
        assert again[0].duplicate and again[0].seq == 1
        with pytest.raises(PublishFailed):
            await bus.publish(s.name, [Message(f"{nats_prefix}.a.x", b"x")], expected_last_seq=1)
        stored = await bus.get(s.name, 2)
        assert stored is not None and stored.data == b"1"
        assert stored.headers.get("Nats-Msg-Id") == "m1"
        assert await bus.get(s.name, 99) is None
        assert (await bus.ensure_stream(s)).identity == info.identity
        await bus.delete_stream(s.name)


async def test_a_durable_consumer_redelivers_what_was_not_acked(
    nats_url: str, nats_prefix: str
) -> None:
    async with JetStreamBus(nats_url) as bus:
        s = spec(nats_prefix)
        await bus.ensure_stream(s)
        await bus.publish(s.name, [Message(f"{nats_prefix}.a", bytes([n])) for n in range(4)])
        puller = await bus.puller(s.name, ConsumerSpec("c", ack_wait=0.5))
        first = await puller.fetch(10, 2.0)
        assert [d.seq for d in first] == [1, 2, 3, 4]
        for d in first:
            if d.seq != 3:
                await d.ack()
        await puller.close()
        # A new process binds the same durable consumer and gets what was left.
        again_puller = await bus.puller(s.name, ConsumerSpec("c", ack_wait=0.5))
        again = await again_puller.fetch(10, 3.0)
        assert [(d.seq, d.attempt) for d in again] == [(3, 2)]
        await again[0].term()
        assert await again_puller.fetch(10, 0.7) == []
        await again_puller.close()
        await bus.delete_stream(s.name)


async def test_a_work_queue_removes_acknowledged_commands(nats_url: str, nats_prefix: str) -> None:
    async with JetStreamBus(nats_url) as bus:
        s = spec(nats_prefix, work_queue=True)
        await bus.ensure_stream(s)
        await bus.publish(s.name, [Message(f"{nats_prefix}.c", b"", msg_id="c1")])
        puller = await bus.puller(s.name, ConsumerSpec("w", ack_wait=5))
        (delivery,) = await puller.fetch(1, 2.0)
        await delivery.in_progress()
        await delivery.ack()
        for _ in range(1500):  # the server takes the ack in its own time: up to 30 s
            if (await bus.stream_info(s.name)).messages == 0:
                break
            await asyncio.sleep(0.02)
        assert (await bus.stream_info(s.name)).messages == 0
        await puller.close()
        await bus.delete_stream(s.name)


async def test_no_server_is_a_clear_error() -> None:
    bus = JetStreamBus(f"nats://127.0.0.1:{free_port()}", connect_timeout=0.5)
    with pytest.raises(BusUnavailable):
        await bus.ensure_stream(StreamSpec("X", ("x.>",)))
    await bus.close()


async def test_the_log_travels_through_jetstream_into_the_mirror(
    nats_url: str, nats_prefix: str, tmp_path: Path
) -> None:
    topology = Topology(nats_prefix)
    async with (
        eventfold.connect("memory://") as store,
        SQLiteReadModel(tmp_path / "reads.db") as reads,
        JetStreamBus(nats_url) as bus,
    ):
        await fill(store, 400)
        relay = Relay(store, bus, topology, checkpoints=MemoryCheckpointStore(), batch_size=64)
        await relay.run(until_caught_up=True)
        info = await bus.stream_info(topology.events_stream)
        assert info.messages == 400
        last = await bus.get(topology.events_stream, info.last_seq)
        assert last is not None and decode_event(last.data).position == 400
        mirror = MirrorStore(reads)
        sink = BusConsumer(bus, mirror, topology, batch_size=100, fetch_timeout=0.3)
        await asyncio.wait_for(sink.run(until_idle=True), 30)
        assert [(r.stream_id, r.version, r.position) async for r in mirror.read_all()] == (
            await log_of(store)
        )
        assert sink.applied == 400 and sink.bus_pending == 0
        await bus.delete_stream(topology.events_stream)
