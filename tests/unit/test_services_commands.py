"""The command bus: typed commands, checks before anything is written, and
idempotency keys whose first outcome is returned again, with nothing
written twice, also when the first outcome was lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import eventfold
from eventfold import EventStore, InvalidArgument
from eventfold.examples.shop.services import AddLine, PlaceOrder, commands
from eventfold.services import (
    CommandBus,
    IdempotencyKeyReused,
    InvalidCommand,
    MemoryOutcomeStore,
    OutcomeStore,
    UnknownCommand,
    open_outcomes,
)


async def events_in(store: EventStore) -> int:
    return len([r async for r in store.read_all()])


def outcome_stores(tmp_path: Path) -> list[OutcomeStore]:
    return [MemoryOutcomeStore(), open_outcomes(f"sqlite:///{tmp_path / 'outcomes.db'}")]


async def test_a_retry_with_the_same_key_returns_the_first_outcome(tmp_path: Path) -> None:
    for outcomes in outcome_stores(tmp_path):
        async with eventfold.connect("memory://") as store:
            bus = CommandBus(commands, store, outcomes)
            place = bus.prepare(
                "PlaceOrder", b'{"order_id": "order-1", "customer_id": "ada"}', idempotency_key="k1"
            )
            first = await bus.execute(place)
            assert first.status == "succeeded" and (first.version, first.position) == (1, 1)
            again = await bus.execute(place)
            assert again == first
            line = bus.prepare("AddLine", AddLine("order-1", "apple", 2, 50), idempotency_key="k2")
            added = await bus.execute(line)
            assert await bus.execute(line) == added
            assert await events_in(store) == 2
            # A rejection is an outcome too: the retry gets it again.
            dup = bus.prepare("PlaceOrder", PlaceOrder("order-1", "bo"), idempotency_key="k3")
            rejected = await bus.execute(dup)
            assert rejected.status == "rejected" and rejected.error is not None
            assert rejected.error.type == "OrderRejected"
            assert await bus.execute(dup) == rejected
            assert await events_in(store) == 2
        await outcomes.close()


async def test_a_key_reused_for_another_command_is_refused(tmp_path: Path) -> None:
    async with eventfold.connect("memory://") as store:
        bus = CommandBus(commands, store, MemoryOutcomeStore())
        await bus.execute(
            bus.prepare("PlaceOrder", PlaceOrder("order-1", "ada"), idempotency_key="k")
        )
        other = bus.prepare("PlaceOrder", PlaceOrder("order-2", "ada"), idempotency_key="k")
        with pytest.raises(IdempotencyKeyReused):
            await bus.execute(other)
        assert await events_in(store) == 1


async def test_the_first_outcome_is_found_when_it_was_lost() -> None:
    """The process died after the append and before the outcome was stored:
    the retry decides differently now (the order exists), but the events
    derived from its key are in the stream, so it reports where they landed."""
    async with eventfold.connect("memory://") as store:
        outcomes = MemoryOutcomeStore()
        bus = CommandBus(commands, store, outcomes)
        place = bus.prepare("PlaceOrder", PlaceOrder("order-7", "ada"), idempotency_key="once")
        await store.append("order-0", [])  # something before it
        lost = await bus.run(place, "lost-id", key="once")
        assert lost.status == "succeeded"
        await bus.execute(bus.prepare("AddLine", AddLine("order-7", "pear", 1, 10)))
        retried = await bus.execute(place)
        assert retried.status == "succeeded"
        assert (retried.version, retried.position) == (lost.version, lost.position)
        assert retried.events == ["OrderPlaced"]
        assert await events_in(store) == 2


async def test_concurrent_retries_with_one_key_write_once() -> None:
    async with eventfold.connect("memory://") as store:
        bus = CommandBus(commands, store, MemoryOutcomeStore())
        await bus.execute(bus.prepare("PlaceOrder", PlaceOrder("order-1", "ada")))
        line = bus.prepare("AddLine", AddLine("order-1", "fig", 3, 5), idempotency_key="same")
        results = await asyncio.gather(*(bus.execute(line) for _ in range(12)))
        assert {(r.status, r.version, r.position) for r in results} == {("succeeded", 2, 2)}
        assert len({r.command_id for r in results}) == 1
        assert await events_in(store) == 2


async def test_bad_commands_are_refused_before_anything_is_read_or_written() -> None:
    async with eventfold.connect("memory://") as store:
        bus = CommandBus(commands, store, MemoryOutcomeStore())
        with pytest.raises(UnknownCommand):
            bus.prepare("LaunchRocket", b"{}")
        with pytest.raises(InvalidCommand) as malformed:
            bus.prepare("PlaceOrder", b'{"order_id": ')
        assert malformed.value.malformed
        for body in (
            b"[]",
            b'{"order_id": "order-1"}',
            b'{"order_id": "nope", "customer_id": "a"}',
            b'{"order_id": "order-1", "customer_id": "order-1"}',
            b'{"order_id": "order-1", "customer_id": "a", "extra": 1}',
        ):
            with pytest.raises(InvalidCommand) as invalid:
                bus.prepare("PlaceOrder", body)
            assert not invalid.value.malformed
        with pytest.raises(InvalidCommand):
            bus.prepare(
                "AddLine", b'{"order_id":"order-1","sku":"a","quantity":0,"unit_price_cents":1}'
            )
        with pytest.raises(InvalidArgument):
            bus.prepare("PlaceOrder", PlaceOrder("order-1", "a"), idempotency_key="x" * 201)
        assert await events_in(store) == 0


async def test_a_wrong_expected_version_is_a_conflict_with_its_detail() -> None:
    async with eventfold.connect("memory://") as store:
        bus = CommandBus(commands, store, MemoryOutcomeStore())
        await bus.execute(bus.prepare("PlaceOrder", PlaceOrder("order-1", "ada")))
        stale = bus.prepare("AddLine", AddLine("order-1", "fig", 1, 5), expected_version=0)
        outcome = await bus.execute(stale)
        assert outcome.status == "conflict" and outcome.error is not None
        assert outcome.error.detail.actual == 1
        assert await events_in(store) == 1
