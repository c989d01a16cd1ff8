"""Property: however the bus hands messages out (any order, any batches,
duplicates, redeliveries), the mirror only ever holds a prefix of the log,
in the log's order, each event once, and ends up holding all of it."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventfold
from eventfold.messaging import Incoming, MirrorStore, Topology, event_message
from eventfold.store.api import RecordedEvent
from eventfold.subscriptions import SQLiteReadModel
from tests.unit.test_messaging_relay import codec, fill

TOPOLOGY = Topology("prop")


@st.composite
def schedules(draw: st.DrawFn) -> tuple[int, list[list[int]]]:
    """A number of messages and batches of sequences that deliver each at
    least once, shuffled, with duplicates."""
    count = draw(st.integers(1, 14))
    seqs = list(range(1, count + 1))
    extra = draw(st.lists(st.sampled_from(seqs), max_size=count))
    order = draw(st.permutations(seqs + extra))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=6)))
    batches, start = [], 0
    for cut in [*cuts, len(order)]:
        if cut > start:
            batches.append(order[start:cut])
            start = cut
    return count, batches


async def _check(count: int, batches: list[list[int]], root: Path) -> None:
    async with (
        eventfold.connect("memory://") as store,
        SQLiteReadModel(root / "reads.db") as reads,
    ):
        await fill(store, count, streams=3)
        log: list[RecordedEvent] = [r async for r in store.read_all()]
        messages = {n + 1: event_message(TOPOLOGY, r) for n, r in enumerate(log)}
        mirror = MirrorStore(reads)
        for batch in batches:
            items = [Incoming(seq, messages[seq].subject, {}, messages[seq].data) for seq in batch]
            taken = await mirror.take_in("S", "one", items)
            assert set(taken.verdicts) == set(batch)
            assert "parked" not in taken.verdicts.values()
            held = [(r.event_id, r.position) async for r in mirror.read_all()]
            assert held == [(r.event_id, r.position) for r in log[: len(held)]]
        mirrored = [r async for r in mirror.read_all()]
        assert [(r.event_id, r.stream_id, r.version, r.position) for r in mirrored] == [
            (r.event_id, r.stream_id, r.version, r.position) for r in log
        ]
        assert [codec.decode_event(r) for r in mirrored] == [codec.decode_event(r) for r in log]
        state = await mirror.source("S")
        assert state is not None and state.seq == count and state.pending == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_any_delivery_schedule_mirrors_the_log_once_in_order(
    schedule: tuple[int, list[list[int]]],
) -> None:
    count, batches = schedule
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(_check(count, batches, Path(root)))
