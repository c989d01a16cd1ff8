"""DCB and streams share one log: events appended without a stream and
stream events, both with tags, travel in one order through subscriptions
(as envelopes with their tags), the relay and the bus (the wire format)
into the mirror, which reads back exactly the store's log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

import eventfold
from eventfold import Codec, Envelope, EventRegistry
from eventfold.errors import PoisonMessage
from eventfold.messaging import InProcessBus, MirrorStore, decode_event, event_message
from eventfold.store.api import NO_STREAM_ID, RecordedEvent
from eventfold.store.dcb import AppendCondition, Query, QueryItem
from eventfold.subscriptions import MemoryCheckpointStore, SQLiteReadModel, Subscription
from tests.unit.test_messaging_relay import TOPOLOGY, run_pipeline

registry = EventRegistry()


@registry.register("Enrolled")
class Enrolled(msgspec.Struct, frozen=True):
    course: str
    student: str


codec = Codec(registry)


def enrolled(course: str, student: str) -> Any:
    event = codec.encode(Enrolled(course, student))
    return msgspec.structs.replace(event, tags=(f"course:{course}", f"student:{student}"))


async def fill(store: Any) -> list[RecordedEvent]:
    for i in range(12):
        if i % 3:
            course = Query.of(QueryItem(tags=(f"course:c{i % 2}",)))
            await store.append_events(
                [enrolled(f"c{i % 2}", f"s{i}")],
                AppendCondition(course, await store.head_position()),
            )
        else:
            await store.append(f"enrolment-{i}", [enrolled("c9", f"s{i}")])
    return [r async for r in store.read_all()]


async def test_subscriptions_hand_both_kinds_over_with_their_tags() -> None:
    async with eventfold.connect("memory://") as store:
        log = await fill(store)
        seen: list[Envelope[Any]] = []

        async def handle(envelope: Envelope[Any]) -> None:
            seen.append(envelope)

        subscription = Subscription(
            store, codec, "enrolments", handle, checkpoints=MemoryCheckpointStore()
        )
        await asyncio.wait_for(subscription.run(until_caught_up=True), 30)
        assert [(e.position, e.stream_id, e.version, e.tags) for e in seen] == [
            (r.position, r.stream_id, r.version, r.tags) for r in log
        ]
        assert {e.stream_id for e in seen} >= {NO_STREAM_ID, "enrolment-0"}
        assert all(
            e.tags == (f"course:{e.event.course}", f"student:{e.event.student}") for e in seen
        )


async def test_the_relay_and_the_bus_carry_both_kinds_into_the_mirror(tmp_path: Path) -> None:
    async with (
        eventfold.connect("memory://") as store,
        SQLiteReadModel(tmp_path / "reads.db") as reads,
    ):
        log = await fill(store)
        mirror = MirrorStore(reads)
        await run_pipeline(store, InProcessBus(), mirror)
        mirrored = [r async for r in mirror.read_all()]

        def fields(r: RecordedEvent) -> tuple[Any, ...]:
            data = r.data.encode() if isinstance(r.data, str) else r.data
            return r.stream_id, r.version, r.position, r.event_id, r.type, data, r.tags

        assert [fields(r) for r in mirrored] == [fields(r) for r in log]


def test_the_wire_refuses_hostile_tags_and_streamless_versions() -> None:
    good = asyncio.run(_one_streamless())
    message = event_message(TOPOLOGY, good)
    assert decode_event(message.data) == good
    for change in ({"tags": ["bad tag"]}, {"tags": ["x"] * 40}, {"version": good.version + 1}):
        body = msgspec.json.decode(message.data)
        body.update(change)
        with pytest.raises(PoisonMessage):
            decode_event(msgspec.json.encode(body))


async def _one_streamless() -> RecordedEvent:
    async with eventfold.connect("memory://") as store:
        await store.append_events([enrolled("c1", "s1")])
        (record,) = [r async for r in store.read_all()]
        return record
