"""Processes for the bus kill tests: a relay, a consumer with a strict
projection, or command workers, each running until it is killed (SIGKILL)
or stopped (SIGTERM, exit 0).

    python -m tests.reliability.bus_process relay STORE_URL NATS_URL PREFIX CHECKPOINTS [KILL]
    python -m tests.reliability.bus_process consumer READS_URL NATS_URL PREFIX [KILL]
    python -m tests.reliability.bus_process workers STORE_URL OUTCOMES_URL NATS_URL PREFIX [KILL]

KILL makes the process SIGKILL itself at an exact point:

- relay ``half:N``: in the first publish from the N-th on with more than
  one message, after the first half of the batch is stored and
  acknowledged (the rest never sent, no checkpoint);
  ``acked:N``: after the N-th publish was acknowledged, before the checkpoint;
- consumer ``committed:N``: after the N-th batch was committed to the mirror,
  before any message of it is acknowledged;
- workers ``handled:N``: after the N-th command appended its events, before
  its outcome is recorded; ``recorded:N``: after its outcome is recorded,
  before the message is acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

import eventfold
from eventfold import Decider, Envelope
from eventfold.messaging import BusConsumer, Message, MirrorStore, PublishAck, Relay, Topology
from eventfold.messaging.jetstream import JetStreamBus
from eventfold.services import (
    CommandBus,
    CommandOutcome,
    Commands,
    CommandWorkers,
    OutcomeStore,
    Prepared,
    open_outcomes,
)
from eventfold.subscriptions import (
    Projection,
    ProjectionRunner,
    RetryPolicy,
    Tx,
    open_checkpoints,
    open_read_model,
)
from tests.unit.test_messaging_relay import Ticked, codec

ACK_WAIT = 1.0


class Add(msgspec.Struct, frozen=True):
    """Add ``amount`` to ``counter``: one more event each time it is handled."""

    counter: str
    amount: int


def _decide(command: Add, state: int) -> list[Ticked]:
    return [Ticked(command.amount)]


def _evolve(state: int, event: Ticked) -> int:
    return state + event.n


counters: Decider[Add, Ticked, int] = Decider(_decide, _evolve, int)
commands = Commands(codec)
commands.register(Add, counters, stream=lambda c: f"tick-{c.counter}")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_point(argv: Sequence[str], index: int) -> tuple[str, int] | None:
    if len(argv) <= index:
        return None
    name, _, count = argv[index].partition(":")
    return name, int(count)


class OrderBroken(Exception):
    pass


def strict_tally() -> Projection:
    """Every event applied once (the primary key), each stream's versions
    one after the other (a gap or a repeat stops the projection)."""
    proj = Projection(
        "strict_tally",
        tables={
            "applied": "event_id TEXT PRIMARY KEY, stream_id TEXT NOT NULL, "
            "version BIGINT NOT NULL, position BIGINT NOT NULL",
            "streams": "stream_id TEXT PRIMARY KEY, version BIGINT NOT NULL",
        },
    )

    @proj.on(Ticked)
    def ticked(tx: Tx, env: Envelope[Ticked]) -> None:
        row = tx.fetchone("SELECT version FROM {streams} WHERE stream_id = ?", (env.stream_id,))
        last = 0 if row is None else int(row[0])
        if env.version != last + 1:
            raise OrderBroken(f"{env.stream_id}: version {env.version} after {last}")
        tx.execute(
            "INSERT INTO {streams} (stream_id, version) VALUES (?, ?) ON CONFLICT (stream_id) "
            "DO UPDATE SET version = excluded.version",
            (env.stream_id, env.version),
        )
        tx.execute(
            "INSERT INTO {applied} (event_id, stream_id, version, position) VALUES (?, ?, ?, ?)",
            (str(env.event_id), env.stream_id, env.version, env.position),
        )

    return proj


class DyingBus(JetStreamBus):
    def __init__(self, url: str, kill: tuple[str, int] | None) -> None:
        super().__init__(url, timeout=2.0)
        self.kill = kill
        self.calls = 0

    async def publish(
        self, stream: str, messages: Sequence[Message], *, expected_last_seq: int | None = None
    ) -> list[PublishAck]:
        self.calls += 1
        if self.kill is not None and self.kill[0] == "half" and self.calls >= self.kill[1]:
            if len(messages) < 2:
                return await super().publish(stream, messages, expected_last_seq=expected_last_seq)
            half = messages[: len(messages) // 2]
            await super().publish(stream, half, expected_last_seq=expected_last_seq)
            die()
        acks = await super().publish(stream, messages, expected_last_seq=expected_last_seq)
        if self.kill == ("acked", self.calls):
            die()
        return acks


class DyingMirror(MirrorStore):
    kill: tuple[str, int] | None = None
    batches = 0

    async def take_in(self, source: str, identity: str, items: Any) -> Any:
        taken = await super().take_in(source, identity, items)
        self.batches += 1
        if self.kill == ("committed", self.batches):
            die()
        return taken


class DyingCommandBus(CommandBus):
    kill: tuple[str, int] | None = None
    handled = 0

    async def run(self, prepared: Prepared, command_id: str, *, key: str | None) -> CommandOutcome:
        outcome = await super().run(prepared, command_id, key=key)
        self.handled += 1
        if self.kill == ("handled", self.handled):
            die()
        return outcome


class DyingOutcomes:
    """An outcome store that dies right after recording the N-th outcome."""

    def __init__(self, inner: OutcomeStore, kill: tuple[str, int] | None) -> None:
        self.inner = inner
        self.kill = kill
        self.recorded = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def complete(self, outcome: CommandOutcome) -> Any:
        stored = await self.inner.complete(outcome)
        self.recorded += 1
        if self.kill == ("recorded", self.recorded):
            die()
        return stored


async def until_terminated(*tasks: asyncio.Task[Any], stop: Any) -> None:
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    waiter = asyncio.create_task(done.wait())
    finished, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    stopped = stop()
    if asyncio.iscoroutine(stopped):
        await stopped
    for task in tasks:
        if task in finished and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    await asyncio.gather(*tasks, return_exceptions=True)


async def relay(argv: Sequence[str]) -> None:
    store_url, nats_url, prefix, checkpoints_url = argv[:4]
    bus = DyingBus(nats_url, kill_point(argv, 4))
    checkpoints = open_checkpoints(checkpoints_url)
    async with eventfold.connect(store_url) as store:
        publisher = Relay(
            store, bus, Topology(prefix), checkpoints=checkpoints, batch_size=40, poll_interval=0.2
        )
        print("relay running", flush=True)
        await until_terminated(asyncio.create_task(publisher.run()), stop=publisher.stop)
    await bus.close()


async def consumer(argv: Sequence[str]) -> None:
    reads_url, nats_url, prefix = argv[:3]
    bus = JetStreamBus(nats_url, timeout=2.0)
    async with open_read_model(reads_url) as reads:
        mirror = DyingMirror(reads)
        mirror.kill = kill_point(argv, 3)
        sink = BusConsumer(bus, mirror, Topology(prefix), batch_size=50, ack_wait=ACK_WAIT)
        runner = ProjectionRunner(
            mirror, reads, [strict_tally()], codec, retry=RetryPolicy(attempts=1), poll_interval=0.2
        )
        await runner.start()
        print("consumer running", flush=True)

        async def stop() -> None:
            sink.stop()
            await runner.stop()

        try:
            await until_terminated(
                asyncio.create_task(sink.run()), asyncio.create_task(runner.run()), stop=stop
            )
        finally:
            await runner.stop()
    await bus.close()


async def workers(argv: Sequence[str]) -> None:
    store_url, outcomes_url, nats_url, prefix = argv[:4]
    kill = kill_point(argv, 4)
    bus = JetStreamBus(nats_url, timeout=2.0)
    outcomes: OutcomeStore = open_outcomes(outcomes_url)
    async with eventfold.connect(store_url) as store:
        command_bus = DyingCommandBus(commands, store, DyingOutcomes(outcomes, kill))
        command_bus.kill = kill
        pool = CommandWorkers(
            command_bus, bus, Topology(prefix), concurrency=2, ack_wait=ACK_WAIT, fetch_timeout=0.5
        )
        print("workers running", flush=True)
        await until_terminated(asyncio.create_task(pool.run()), stop=pool.stop)
    await outcomes.close()
    await bus.close()


if __name__ == "__main__":
    role, rest = sys.argv[1], sys.argv[2:]
    main = {"relay": relay, "consumer": consumer, "workers": workers}[role]
    asyncio.run(main(rest))
