"""Guarantee: on a three-node JetStream cluster (loopback ports, streams
with three replicas), killing a node (SIGKILL; here the events stream's
leader) while the relay publishes and the consumer consumes loses no
acknowledged event: the relay carries on against the survivors, the
consumer carries on on them, and the mirror ends up with the whole log,
each event once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import Any

import eventfold
from eventfold import EventStore
from eventfold.messaging import BusConsumer, BusError, MirrorStore, Relay, Topology
from eventfold.messaging.jetstream import JetStreamBus
from eventfold.subscriptions import MemoryCheckpointStore, SQLiteReadModel
from eventfold.testing.natsserver import NatsCluster
from tests.conftest import nats_unavailable
from tests.unit.test_messaging_relay import Ticked, codec

EVENTS = 1200


async def write(store: EventStore, count: int, written: list[int]) -> None:
    rng = random.Random(3)
    for n in range(count):
        await store.append(f"tick-{rng.randrange(9)}", [codec.encode(Ticked(n))])
        written[0] += 1
        if n % 10 == 0:
            await asyncio.sleep(0.02)


class WatchedRelay(Relay):
    """Notes the stream's last sequence each time it resynchronises (after a
    failure): had the cluster lost acknowledged messages, it would be lower
    than before the failure."""

    synced: list[int]

    async def _sync(self) -> None:
        await super()._sync()
        self.synced.append(self._last_seq)


async def stream_leader(bus: JetStreamBus, stream: str) -> str:
    js: Any = await bus._js()
    info = await js.stream_info(stream)
    return str(info.cluster.leader)


async def ensure(bus: JetStreamBus, topology: Topology) -> None:
    """Create the stream; a fresh cluster may need a moment to place replicas."""
    for _ in range(100):
        try:
            await bus.ensure_stream(topology.events_spec())
            return
        except BusError:
            await asyncio.sleep(0.1)
    await bus.ensure_stream(topology.events_spec())


async def test_a_node_killed_during_traffic_loses_no_acknowledged_event(tmp_path: Path) -> None:
    cluster = NatsCluster(3)
    try:
        cluster.start()
    except Exception as exc:
        cluster.cleanup()
        nats_unavailable(f"cannot start a three-node cluster: {exc}")
        raise
    topology = Topology("cluster", replicas=3)
    try:
        async with (
            eventfold.connect("memory://") as store,
            SQLiteReadModel(tmp_path / "reads.db") as reads,
            JetStreamBus(cluster.urls, timeout=2.0) as relay_bus,
            JetStreamBus(list(reversed(cluster.urls)), timeout=2.0) as consumer_bus,
        ):
            await ensure(relay_bus, topology)
            mirror = MirrorStore(reads)
            relay = WatchedRelay(
                store,
                relay_bus,
                topology,
                checkpoints=MemoryCheckpointStore(),
                batch_size=50,
                poll_interval=0.1,
                max_retry_delay=0.5,
            )
            relay.synced = []
            consumer = BusConsumer(
                consumer_bus,
                mirror,
                topology,
                batch_size=100,
                ack_wait=2.0,
                fetch_timeout=0.3,
                max_retry_delay=0.5,
            )
            written = [0]
            tasks = [
                asyncio.create_task(write(store, EVENTS, written)),
                asyncio.create_task(relay.run()),
                asyncio.create_task(consumer.run()),
            ]
            try:
                loop = asyncio.get_running_loop()
                began = loop.time()
                while relay.position < EVENTS // 3:
                    assert loop.time() - began < 30, "the relay did not get going"
                    await asyncio.sleep(0.02)
                leader = await stream_leader(relay_bus, topology.events_stream)
                victim = next(i for i, s in enumerate(cluster.servers) if s.name == leader)
                # Every message up to here was acknowledged: stored on a quorum.
                acknowledged, resyncs = relay._last_seq, len(relay.synced)
                cluster.kill(victim)
                assert written[0] < EVENTS, "the traffic must go on after the kill"
                while (head := await mirror.head_position()) < EVENTS:
                    assert loop.time() - began < 60, f"the mirror stopped at {head}"
                    for task in tasks:
                        if task.done():
                            task.result()  # a failure surfaces here
                    await asyncio.sleep(0.05)
                assert relay.failures > 0  # it did lose its leader mid-traffic
                after = relay.synced[resyncs:]
                assert after and min(after) >= acknowledged, (acknowledged, after)
            finally:
                relay.stop()
                consumer.stop()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait_for(task, 15)
            log = [(r.event_id, r.stream_id, r.version) async for r in store.read_all()]
            mirrored = [(r.event_id, r.stream_id, r.version) async for r in mirror.read_all()]
            assert mirrored == log
            info = await relay_bus.stream_info(topology.events_stream)
            assert info.messages == EVENTS  # nothing lost, nothing twice
    finally:
        cluster.cleanup()
