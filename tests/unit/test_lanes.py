"""Keyed lanes: events of different keys are handled concurrently, those of
one key in order and never at once; the checkpoint is the exact watermark
(the lowest position not yet handled, less one) whatever order the lanes
finish in; a failure stops the lanes with the checkpoint before the failing
event. Synchronised with events, never with sleeps."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Hashable
from typing import Any

import msgspec
import pytest

from eventfold import Codec, Envelope, EventRegistry
from eventfold.errors import InvalidArgument
from eventfold.store import MemoryStore
from eventfold.subscriptions import (
    MemoryCheckpointStore,
    ProcessManager,
    RetryPolicy,
    Subscription,
    SubscriptionFailed,
)
from eventfold.subscriptions.lanes import Lanes

registry = EventRegistry()


@registry.register("Step")
class Step(msgspec.Struct, frozen=True):
    job: str
    n: int


codec = Codec(registry)
NO_RETRY = RetryPolicy(attempts=1)


async def steps(store: MemoryStore, *pairs: tuple[str, int]) -> None:
    for job, n in pairs:
        await store.append(f"step-{job}-{n}", [codec.encode(Step(job, n))])


def by_job(envelope: Envelope[Any]) -> Hashable:
    return envelope.event.job


class Gates:
    """Handler whose events wait for a gate of their own: the test decides
    when each event may finish, and sees which are being handled at once."""

    def __init__(self, fail: set[tuple[str, int]] | None = None) -> None:
        self.gates: dict[tuple[str, int], asyncio.Event] = defaultdict(asyncio.Event)
        self.started: dict[tuple[str, int], asyncio.Event] = defaultdict(asyncio.Event)
        self.active: dict[str, int] = defaultdict(int)
        self.done: list[tuple[str, int]] = []
        self.overlap_within_a_key = False
        self.fail = fail or set()

    async def __call__(self, envelope: Envelope[Any]) -> None:
        step = (envelope.event.job, envelope.event.n)
        self.active[step[0]] += 1
        self.overlap_within_a_key |= self.active[step[0]] > 1
        self.started[step].set()
        try:
            await self.gates[step].wait()
            if step in self.fail:
                raise RuntimeError(f"step {step} failed")
            self.done.append(step)
        finally:
            self.active[step[0]] -= 1

    def open(self, *steps: tuple[str, int]) -> None:
        for step in steps:
            self.gates[step].set()


async def wait_for(condition: Any, what: str) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0)

    try:
        await asyncio.wait_for(poll(), timeout=10)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def test_keys_run_concurrently_and_in_order_within_a_key() -> None:
    store = MemoryStore()
    # positions 1..6: a1 b1 a2 c1 b2 a3
    await steps(store, ("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2), ("a", 3))
    gates = Gates()
    checkpoints = MemoryCheckpointStore()
    sub = Subscription(
        store, codec, "jobs", gates, checkpoints=checkpoints, lanes=8, key=by_job, retry=NO_RETRY
    )
    run = asyncio.ensure_future(sub.run(until_caught_up=True))
    # The first event of every key starts at once, beside the others...
    for step in [("a", 1), ("b", 1), ("c", 1)]:
        await asyncio.wait_for(gates.started[step].wait(), 10)
    # ...while the second of a key waits for the first.
    assert not gates.started["a", 2].is_set() and not gates.started["b", 2].is_set()
    # c1 (position 4) finishing first moves nothing: 1..3 are not done.
    gates.open(("c", 1))
    await wait_for(lambda: ("c", 1) in gates.done, "c1")
    assert await checkpoints.load("jobs") == 0
    gates.open(("a", 1))
    await asyncio.wait_for(gates.started["a", 2].wait(), 10)
    await wait_for(lambda: sub.position == 1, "the checkpoint at a1")
    gates.open(("b", 1), ("a", 2), ("b", 2))
    await wait_for(lambda: sub.position == 5, "the checkpoint at b2")
    assert await checkpoints.load("jobs") == 5  # a3 (6) is still running
    gates.open(("a", 3))
    await asyncio.wait_for(run, 10)
    assert await checkpoints.load("jobs") == 6
    assert [s for s in gates.done if s[0] == "a"] == [("a", 1), ("a", 2), ("a", 3)]
    assert [s for s in gates.done if s[0] == "b"] == [("b", 1), ("b", 2)]
    assert not gates.overlap_within_a_key


async def test_a_failure_stops_the_lanes_with_the_exact_checkpoint() -> None:
    store = MemoryStore()
    # positions 1..5: a1 b1 c1 a2 d1; b1 fails, the others are allowed to finish
    await steps(store, ("a", 1), ("b", 1), ("c", 1), ("a", 2), ("d", 1))
    gates = Gates(fail={("b", 1)})
    checkpoints = MemoryCheckpointStore()
    sub = Subscription(
        store, codec, "jobs", gates, checkpoints=checkpoints, lanes=4, key=by_job, retry=NO_RETRY
    )
    run = asyncio.ensure_future(sub.run(until_caught_up=True))
    await asyncio.wait_for(gates.started["c", 1].wait(), 10)
    gates.open(("a", 1), ("c", 1), ("a", 2), ("d", 1))
    await wait_for(lambda: len(gates.done) == 4, "the other keys")
    gates.open(("b", 1))
    with pytest.raises(SubscriptionFailed) as info:
        await asyncio.wait_for(run, 10)
    assert info.value.position == 2 and info.value.stream_id == "step-b-1"
    # Positions 3, 4 and 5 were handled, but 2 was not: the checkpoint is 1,
    # and a restart delivers 2..5 again (at least once, never skipped).
    assert await checkpoints.load("jobs") == 1
    again = Gates()
    again.open(*[("a", 1), ("b", 1), ("c", 1), ("a", 2), ("d", 1)])
    sub = Subscription(store, codec, "jobs", again, checkpoints=checkpoints, lanes=4, key=by_job)
    await asyncio.wait_for(sub.run(until_caught_up=True), 10)
    assert sorted(again.done) == [("a", 2), ("b", 1), ("c", 1), ("d", 1)]
    assert await checkpoints.load("jobs") == 5


async def test_stop_lets_running_events_finish_and_keeps_the_watermark() -> None:
    store = MemoryStore()
    await steps(store, ("a", 1), ("b", 1), ("a", 2))
    gates = Gates()
    checkpoints = MemoryCheckpointStore()
    sub = Subscription(store, codec, "jobs", gates, checkpoints=checkpoints, lanes=2, key=by_job)
    run = asyncio.ensure_future(sub.run())
    await asyncio.wait_for(gates.started["b", 1].wait(), 10)
    gates.open(("b", 1))
    await wait_for(lambda: ("b", 1) in gates.done, "b1")
    sub.stop()
    gates.open(("a", 1))  # running when stopped: it finishes; a2 never starts
    await asyncio.wait_for(run, 10)
    assert gates.done == [("b", 1), ("a", 1)]
    assert not gates.started["a", 2].is_set()
    assert await checkpoints.load("jobs") == 2


async def test_lanes_deliver_everything_once_per_key_in_order_and_follow_live() -> None:
    store = MemoryStore()
    seen: dict[str, list[int]] = defaultdict(list)
    calls = 0

    async def handler(envelope: Envelope[Any]) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)  # let other lanes run between steps
        seen[envelope.event.job].append(envelope.event.n)

    jobs = [f"j{i}" for i in range(13)]
    await steps(store, *[(job, n) for n in range(20) for job in jobs])
    checkpoints = MemoryCheckpointStore()
    sub = Subscription(
        store, codec, "jobs", handler, checkpoints=checkpoints, lanes=5, key=by_job, batch_size=7
    )
    run = asyncio.ensure_future(sub.run())
    await asyncio.wait_for(sub.caught_up.wait(), 10)
    await steps(store, *[(job, 20) for job in jobs])  # live
    head = await store.head_position()
    await wait_for(lambda: sub.position == head, "the live events")
    sub.stop()
    await asyncio.wait_for(run, 10)
    assert calls == 21 * len(jobs)
    assert all(seen[job] == list(range(21)) for job in jobs)


async def test_a_process_manager_keys_its_events_and_runs_in_lanes() -> None:
    store = MemoryStore()
    manager = ProcessManager("jobs", key=by_job)
    order: dict[str, list[int]] = defaultdict(list)

    @manager.on(Step)
    async def _(ctx: Any, envelope: Envelope[Step]) -> None:
        await asyncio.sleep(0)
        order[envelope.event.job].append(envelope.event.n)

    await steps(store, *[(job, n) for n in range(5) for job in "xyz"])
    sub = manager.subscribe(store, codec, MemoryCheckpointStore(), lanes=3)
    assert sub.lanes == 3
    await asyncio.wait_for(sub.run(until_caught_up=True), 10)
    assert dict(order) == {job: list(range(5)) for job in "xyz"}


@pytest.mark.parametrize("lanes", [0, -1, 1025, True, "8"])
def test_lanes_must_be_a_sensible_number(lanes: Any) -> None:
    with pytest.raises(InvalidArgument):
        Subscription(MemoryStore(), codec, "x", Gates(), checkpoints=None, lanes=lanes)  # type: ignore[arg-type]


async def test_the_watermark_waits_for_skipped_positions_behind_running_events() -> None:
    done: list[int] = []
    gate = asyncio.Event()

    async def handle(envelope: Envelope[Any]) -> None:
        if envelope.position == 1:
            await gate.wait()
        done.append(envelope.position)

    lanes = Lanes(
        handle,
        lanes=2,
        retry=NO_RETRY,
        failure=lambda env, exc, n: exc,
        start=0,
    )
    store = MemoryStore()
    await steps(store, ("a", 1), ("b", 1))
    for record in [r async for r in store.read_all()]:
        await lanes.put(codec.decode(record))
    lanes.skip_to(10)  # a filtered read looked up to 10
    await wait_for(lambda: done == [2], "event 2")
    assert lanes.watermark == 0
    gate.set()
    await asyncio.wait_for(lanes.drain(), 10)
    assert lanes.watermark == 10 and lanes.idle
    await lanes.close()


async def test_an_event_delivered_twice_counts_twice_for_the_watermark() -> None:
    gate = asyncio.Event()

    async def handle(envelope: Envelope[Any]) -> None:
        if envelope.event.job == "slow":
            await gate.wait()

    lanes = Lanes(handle, lanes=2, retry=NO_RETRY, failure=lambda env, exc, n: exc, start=0)
    store = MemoryStore()
    await steps(store, ("slow", 1), ("fast", 1))
    slow, fast = [codec.decode(r) async for r in store.read_all()]
    # The log delivers position 2 twice; both copies finish before position 1.
    for envelope in (slow, fast, fast):
        await lanes.put(envelope)
    await wait_for(lambda: lanes._done[2] == 2, "both copies of position 2")
    assert lanes.watermark == 0
    gate.set()
    await asyncio.wait_for(lanes.drain(), 10)
    assert lanes.watermark == 2 and lanes.idle
    await lanes.close()


async def test_projection_effects_run_in_lanes_and_keep_their_position_exact(
    tmp_path: Any,
) -> None:
    from eventfold.subscriptions import Projection, ProjectionFailed, ProjectionRunner
    from eventfold.subscriptions.builds import projection_row
    from eventfold.subscriptions.readmodel_sqlite import SQLiteReadModel

    current = {"gates": Gates()}
    proj = Projection(
        "jobs", tables={"t": "n INTEGER"}, effects_from="beginning", lanes=4, key=by_job
    )

    @proj.effect(Step)
    async def effect(envelope: Envelope[Step]) -> None:
        await current["gates"](envelope)

    async def effects_position(reads: SQLiteReadModel) -> int:
        row = await reads.read(lambda conn: projection_row(conn, name="jobs"))
        assert row is not None
        return row.effects_position

    store = MemoryStore()
    # positions 1..4: a1 b1 c1 a2; b1's effect fails after c1 and a1 ran
    await steps(store, ("a", 1), ("b", 1), ("c", 1), ("a", 2))
    async with SQLiteReadModel(tmp_path / "reads.db") as reads:
        # The first catch-up builds the tables; effects run once the build is active.
        await ProjectionRunner(store, reads, [proj], codec, retry=NO_RETRY).catch_up()
        assert await effects_position(reads) == 0
        gates = current["gates"] = Gates(fail={("b", 1)})
        runner = ProjectionRunner(store, reads, [proj], codec, retry=NO_RETRY)
        caught = asyncio.ensure_future(runner.catch_up())
        for step in [("a", 1), ("b", 1), ("c", 1)]:  # three keys at once
            await asyncio.wait_for(gates.started[step].wait(), 10)
        gates.open(("a", 1), ("c", 1))
        await asyncio.wait_for(gates.started["a", 2].wait(), 10)
        gates.open(("a", 2), ("b", 1))
        with pytest.raises(ProjectionFailed) as info:
            await asyncio.wait_for(caught, 10)
        assert info.value.position == 2
        assert sorted(gates.done) == [("a", 1), ("a", 2), ("c", 1)]
        assert not gates.overlap_within_a_key
        # Event 2's effect failed: the effects position is 1, whatever ran after.
        assert await effects_position(reads) == 1
        again = current["gates"] = Gates()
        again.open(("b", 1), ("c", 1), ("a", 2))
        await asyncio.wait_for(ProjectionRunner(store, reads, [proj], codec).catch_up(), 10)
        assert sorted(again.done) == [("a", 2), ("b", 1), ("c", 1)]
        assert await effects_position(reads) == 4
