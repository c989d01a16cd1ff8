"""Asynchronous commands on the in-process bus: accepted at once, handled
by workers, the outcome readable by id and awaitable with a timeout; a
worker that dies mid-command leaves it to another, which writes nothing new."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import eventfold
from eventfold import EventStore
from eventfold.examples.shop.services import PlaceOrder, ReceiveStock, commands
from eventfold.messaging import InProcessBus, Topology
from eventfold.services import (
    CommandBus,
    CommandOutcome,
    CommandQueue,
    CommandWorkers,
    IdempotencyKeyReused,
    MemoryOutcomeStore,
    Prepared,
    open_outcomes,
)

TOPOLOGY = Topology("q")


class Crash(Exception):
    """The worker process dies here."""


class CrashingBus(CommandBus):
    """Dies after the events are appended, before the outcome is recorded."""

    crashes = 0

    async def run(self, prepared: Prepared, command_id: str, *, key: str | None) -> CommandOutcome:
        outcome = await super().run(prepared, command_id, key=key)
        if self.crashes > 0:
            self.crashes -= 1
            raise Crash(command_id)
        return outcome


@contextlib.asynccontextmanager
async def workers_running(workers: CommandWorkers) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(workers.run())
    try:
        yield task
    finally:
        workers.stop()
        with contextlib.suppress(Crash):
            await asyncio.wait_for(task, 10)


async def stock_events(store: EventStore) -> list[int]:
    return [r.version async for r in store.read_all(categories=["stock"])]


async def test_an_accepted_command_is_handled_and_its_outcome_awaited(tmp_path: Path) -> None:
    async with eventfold.connect("memory://") as store:
        outcomes = open_outcomes(f"sqlite:///{tmp_path / 'outcomes.db'}")
        bus = InProcessBus()
        commands_bus = CommandBus(commands, store, outcomes)
        queue = CommandQueue(commands_bus, bus, TOPOLOGY)
        accepted = await queue.accept(
            commands_bus.prepare("PlaceOrder", PlaceOrder("order-1", "a"))
        )
        assert accepted.status == "pending"
        # Nobody works yet: waiting ends at the timeout with the command still pending.
        waited = await outcomes.wait(accepted.command_id, 0.1)
        assert waited is not None and waited.outcome.status == "pending"
        workers = CommandWorkers(commands_bus, bus, TOPOLOGY, concurrency=2, fetch_timeout=0.05)
        async with workers_running(workers):
            done = await outcomes.wait(accepted.command_id, 5)
        assert done is not None and done.outcome.status == "succeeded"
        assert (done.outcome.version, done.outcome.position) == (1, 1)
        assert done.outcome.accepted_at == accepted.accepted_at
        assert await outcomes.wait("no-such-command", 0.1) is None
        await outcomes.close()


async def test_a_worker_dying_mid_command_leaves_it_to_another_that_writes_nothing_new() -> None:
    async with eventfold.connect("memory://") as store:
        outcomes = MemoryOutcomeStore()
        bus = InProcessBus()
        crashing = CrashingBus(commands, store, outcomes)
        crashing.crashes = 3
        queue = CommandQueue(crashing, bus, TOPOLOGY)
        ids = []
        for n in range(10):
            prepared = crashing.prepare("ReceiveStock", ReceiveStock("fig", n + 1))
            ids.append((await queue.accept(prepared)).command_id)
        for _ in range(3):
            dying = CommandWorkers(
                crashing, bus, TOPOLOGY, concurrency=1, ack_wait=0.1, fetch_timeout=0.05
            )
            with pytest.raises(Crash):
                await asyncio.wait_for(dying.run(), 10)
        assert crashing.crashes == 0
        healthy = CommandWorkers(crashing, bus, TOPOLOGY, ack_wait=0.1, fetch_timeout=0.05)
        async with workers_running(healthy):
            found = [await outcomes.wait(i, 5) for i in ids]
        assert [f.outcome.status for f in found if f is not None] == ["succeeded"] * 10
        assert healthy.redelivered >= 3
        # Each ReceiveStock took effect once: ten events, versions 1..10.
        assert await stock_events(store) == list(range(1, 11))
        positions = sorted(f.outcome.position or 0 for f in found if f is not None)
        assert positions == sorted({r.position async for r in store.read_all()})


async def test_idempotency_keys_hold_for_queued_commands_too() -> None:
    async with eventfold.connect("memory://") as store:
        outcomes = MemoryOutcomeStore()
        bus = InProcessBus()
        commands_bus = CommandBus(commands, store, outcomes)
        queue = CommandQueue(commands_bus, bus, TOPOLOGY)
        receive = commands_bus.prepare("ReceiveStock", ReceiveStock("fig", 5), idempotency_key="r1")
        first = await queue.accept(receive)
        assert (await queue.accept(receive)).command_id == first.command_id
        with pytest.raises(IdempotencyKeyReused):
            other = ReceiveStock("fig", 6)
            await queue.accept(commands_bus.prepare("ReceiveStock", other, idempotency_key="r1"))
        workers = CommandWorkers(commands_bus, bus, TOPOLOGY, fetch_timeout=0.05)
        async with workers_running(workers):
            done = await outcomes.wait(first.command_id, 5)
            assert done is not None and done.outcome.status == "succeeded"
            # Sent again, synchronously this time, with the key: the first outcome.
            assert (await commands_bus.execute(receive)).command_id == first.command_id
        assert await stock_events(store) == [1]


async def test_commands_left_pending_by_a_lost_queue_are_queued_again() -> None:
    async with eventfold.connect("memory://") as store:
        outcomes = MemoryOutcomeStore()
        commands_bus = CommandBus(commands, store, outcomes)
        lost = InProcessBus()  # the process ends: its in-process queue is gone
        queue = CommandQueue(commands_bus, lost, TOPOLOGY)
        accepted = [
            await queue.accept(commands_bus.prepare("ReceiveStock", ReceiveStock("fig", 1)))
            for _ in range(3)
        ]
        bus = InProcessBus()
        queue = CommandQueue(commands_bus, bus, TOPOLOGY)
        assert await queue.requeue_pending(older_than=0) == 3
        workers = CommandWorkers(commands_bus, bus, TOPOLOGY, fetch_timeout=0.05)
        async with workers_running(workers):
            for a in accepted:
                done = await outcomes.wait(a.command_id, 5)
                assert done is not None and done.outcome.status == "succeeded"
        assert await queue.requeue_pending(older_than=0) == 0
        assert await stock_events(store) == [1, 2, 3]


async def test_a_rejected_queued_command_records_its_typed_error() -> None:
    async with eventfold.connect("memory://") as store:
        outcomes = MemoryOutcomeStore()
        bus = InProcessBus()
        commands_bus = CommandBus(commands, store, outcomes)
        queue = CommandQueue(commands_bus, bus, TOPOLOGY)
        await commands_bus.execute(commands_bus.prepare("PlaceOrder", PlaceOrder("order-1", "a")))
        again = await queue.accept(commands_bus.prepare("PlaceOrder", PlaceOrder("order-1", "b")))
        workers = CommandWorkers(commands_bus, bus, TOPOLOGY, fetch_timeout=0.05)
        async with workers_running(workers):
            done = await outcomes.wait(again.command_id, 5)
        assert done is not None and done.outcome.status == "rejected"
        assert done.outcome.error is not None and done.outcome.error.type == "OrderRejected"
