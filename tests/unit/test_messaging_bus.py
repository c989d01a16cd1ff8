"""The in-process bus keeps the bus contract: ordered sequences, message-id
de-duplication, expected last sequence, durable consumers that hand out
again what was not acknowledged, work queues, subject filters."""

from __future__ import annotations

import asyncio

import pytest

from eventfold.errors import BusError
from eventfold.messaging import (
    ConsumerSpec,
    InProcessBus,
    Message,
    PublishFailed,
    StreamSpec,
    Topology,
)
from eventfold.messaging.memory import subject_matches
from eventfold.messaging.topology import token

SPEC = StreamSpec("EV", ("ev.>",))


def msg(n: int, msg_id: str | None = None) -> Message:
    return Message(f"ev.x.{n}", str(n).encode(), msg_id=msg_id)


async def test_publish_numbers_messages_and_drops_duplicate_ids() -> None:
    bus = InProcessBus()
    await bus.ensure_stream(SPEC)
    acks = await bus.publish("EV", [msg(1, "a"), msg(2, "b")])
    assert [a.seq for a in acks] == [1, 2]
    again = await bus.publish("EV", [msg(1, "a")])
    assert again[0].duplicate and again[0].seq == 1
    info = await bus.stream_info("EV")
    assert (info.first_seq, info.last_seq, info.messages) == (1, 2, 2)
    stored = await bus.get("EV", 2)
    assert stored is not None and stored.data == b"2"
    assert await bus.get("EV", 3) is None


async def test_expected_last_sequence_stores_only_an_in_order_prefix() -> None:
    bus = InProcessBus()
    await bus.ensure_stream(SPEC)
    await bus.publish("EV", [msg(1)])
    with pytest.raises(PublishFailed) as failed:
        await bus.publish("EV", [msg(2), msg(3)], expected_last_seq=0)
    assert failed.value.acked == []
    assert (await bus.stream_info("EV")).last_seq == 1
    acks = await bus.publish("EV", [msg(2), msg(3)], expected_last_seq=1)
    assert [a.seq for a in acks] == [2, 3]


async def test_a_deleted_stream_is_gone_with_its_messages() -> None:
    bus = InProcessBus()
    await bus.ensure_stream(SPEC)
    await bus.publish("EV", [msg(1), msg(2)])
    await bus.delete_stream("EV")
    await bus.delete_stream("EV")  # a missing stream: nothing to do
    with pytest.raises(BusError):
        await bus.stream_info("EV")
    await bus.ensure_stream(SPEC)  # made anew, empty
    assert (await bus.stream_info("EV")).last_seq == 0


async def test_subjects_outside_the_stream_are_refused() -> None:
    bus = InProcessBus()
    await bus.ensure_stream(SPEC)
    with pytest.raises(PublishFailed):
        await bus.publish("EV", [Message("other.x", b"1")])


async def test_unacknowledged_deliveries_come_again_after_ack_wait() -> None:
    bus = InProcessBus()
    await bus.ensure_stream(SPEC)
    await bus.publish("EV", [msg(n) for n in range(1, 5)])
    puller = await bus.puller("EV", ConsumerSpec("c", ack_wait=0.05))
    first = await puller.fetch(10, 0.1)
    assert [d.seq for d in first] == [1, 2, 3, 4]
    assert first[0].pending == 3 and first[-1].pending == 0
    for d in first:
        if d.seq != 2:
            await d.ack()
    again = await puller.fetch(10, 1.0)
    assert [(d.seq, d.attempt) for d in again] == [(2, 2)]
    await again[0].ack()
    assert await puller.fetch(10, 0.1) == []


async def test_nak_term_and_in_progress() -> None:
    bus = InProcessBus()
    await bus.ensure_stream(SPEC)
    await bus.publish("EV", [msg(1), msg(2)])
    puller = await bus.puller("EV", ConsumerSpec("c", ack_wait=0.2))
    one, two = await puller.fetch(2, 0.1)
    await one.nak()
    await two.term()
    again = await puller.fetch(5, 0.5)
    assert [d.seq for d in again] == [1]
    await again[0].in_progress()
    await asyncio.sleep(0.1)
    await again[0].in_progress()
    await asyncio.sleep(0.15)
    assert await puller.fetch(5, 0.01) == []  # kept alive: not handed out again


async def test_max_deliver_stops_redelivery() -> None:
    bus = InProcessBus()
    await bus.ensure_stream(SPEC)
    await bus.publish("EV", [msg(1)])
    puller = await bus.puller("EV", ConsumerSpec("c", ack_wait=0.01, max_deliver=2))
    assert len(await puller.fetch(1, 0.1)) == 1
    assert len(await puller.fetch(1, 0.5)) == 1
    assert await puller.fetch(1, 0.1) == []


async def test_a_work_queue_removes_acknowledged_messages_and_shares_work() -> None:
    bus = InProcessBus()
    await bus.ensure_stream(StreamSpec("Q", ("q.>",), work_queue=True))
    await bus.publish("Q", [Message(f"q.{n}", b"", msg_id=str(n)) for n in range(6)])
    a = await bus.puller("Q", ConsumerSpec("w"))
    b = await bus.puller("Q", ConsumerSpec("w"))
    got = [*await a.fetch(3, 0.1), *await b.fetch(3, 0.1)]
    assert sorted(d.seq for d in got) == [1, 2, 3, 4, 5, 6]
    for d in got:
        await d.ack()
    assert (await bus.stream_info("Q")).messages == 0


async def test_a_waiting_fetch_wakes_on_publish() -> None:
    bus = InProcessBus()
    await bus.ensure_stream(SPEC)
    puller = await bus.puller("EV", ConsumerSpec("c"))
    waiting = asyncio.create_task(puller.fetch(5, 5.0))
    await asyncio.sleep(0.01)
    await bus.publish("EV", [msg(1)])
    got = await asyncio.wait_for(waiting, 1.0)
    assert [d.seq for d in got] == [1]


def test_subject_wildcards() -> None:
    assert subject_matches("ev.>", "ev.order.Placed")
    assert not subject_matches("ev.>", "ev")
    assert subject_matches("ev.*.Placed", "ev.order.Placed")
    assert not subject_matches("ev.*", "ev.order.Placed")
    assert not subject_matches("ev.order", "ev.orders")


def test_subject_tokens_are_sanitized() -> None:
    topology = Topology("shop.live")
    assert topology.event_subject("order-1", "OrderPlaced") == "shop.live.order.OrderPlaced"
    assert topology.event_subject("a.b*>c-1", "T y.pe") == "shop.live.a_b__c.T_y_pe"
    assert topology.event_subject("ünï-1", "X") == "shop.live._n_.X"
    assert token("") == "_"
    assert topology.events_stream == "SHOP_LIVE_EVENTS"
    assert topology.command_subject("Place.Order") == "shop.live-commands.Place_Order"
    assert not subject_matches(topology.events_spec().subjects[0], "shop.live-commands.X")


def test_a_bad_prefix_is_refused() -> None:
    from eventfold import ConfigurationError

    for bad in ("", "a..b", "a b", "a.>", "x" * 65):
        with pytest.raises(ConfigurationError):
            Topology(bad)
