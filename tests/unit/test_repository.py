"""Repository: handle, retries, snapshots, time travel, class-style aggregates."""

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventfold import (
    Aggregate,
    Codec,
    CommandRejected,
    EventRegistry,
    Metadata,
    Repository,
    Snapshot,
    SnapshotPolicy,
    WrongExpectedVersion,
)
from eventfold.examples.shop.events import registry
from eventfold.examples.shop.inventory import ReceiveStock, ReserveStock, Stock, inventory
from eventfold.examples.shop.orders import AddLine, ConfirmOrder, Order, PlaceOrder, orders
from eventfold.store import MemoryStore, RecordedEvent

codec = Codec(registry)


class YieldingStore(MemoryStore):
    """A memory store whose reads give way to other tasks, so that concurrent
    commands interleave between load and append as they do on a real database."""

    reads = 0

    async def read_stream(self, stream_id: str, **kw: Any) -> AsyncIterator[RecordedEvent]:
        async for record in super().read_stream(stream_id, **kw):
            self.reads += 1
            await asyncio.sleep(0)
            yield record


async def test_handle_appends_and_load_folds() -> None:
    store = MemoryStore()
    repo = Repository(store, orders, codec)
    placed = await repo.handle(
        "order-1", PlaceOrder("order-1", "c-1"), metadata=Metadata(actor="ana")
    )
    assert (placed.version, len(placed.events)) == (1, 1)
    assert placed.position == await store.head_position()
    await repo.handle("order-1", AddLine("apple", 2, 100))
    done = await repo.handle("order-1", ConfirmOrder())
    assert done.version == 3
    loaded = await repo.load("order-1")
    assert loaded.version == 3
    assert loaded.state.status == "confirmed" and loaded.state.total_cents == 200
    again = await repo.handle("order-1", ConfirmOrder())
    assert (again.events, again.version, again.position) == ([], 3, 0)
    records = [r async for r in store.read_stream("order-1")]
    assert codec.decode(records[0]).metadata.actor == "ana"


async def test_rejected_command_writes_nothing() -> None:
    store = MemoryStore()
    repo = Repository(store, orders, codec)
    with pytest.raises(CommandRejected):
        await repo.handle("order-1", AddLine("apple", 1, 1))
    assert await store.head_position() == 0


async def test_concurrent_commands_are_retried_until_they_land() -> None:
    store = YieldingStore()
    repo = Repository(store, inventory, codec, max_retries=50)
    await repo.handle("stock-apple", ReceiveStock("apple", 100))
    await asyncio.gather(
        *(repo.handle("stock-apple", ReserveStock(f"o-{i}", 1)) for i in range(20))
    )
    stock = (await repo.load("stock-apple")).state
    assert stock.available == 80
    assert sorted(stock.reservations) == sorted(f"o-{i}" for i in range(20))


async def test_retries_are_bounded() -> None:
    store = YieldingStore()
    repo = Repository(store, inventory, codec, max_retries=0)
    await repo.handle("stock-apple", ReceiveStock("apple", 100))
    outcomes = await asyncio.gather(
        *(repo.handle("stock-apple", ReserveStock(f"o-{i}", 1)) for i in range(5)),
        return_exceptions=True,
    )
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert failures and all(isinstance(f, WrongExpectedVersion) for f in failures)
    assert await store.stream_version("stock-apple") == 1 + 5 - len(failures)


async def test_explicit_expected_version_is_not_retried() -> None:
    store = MemoryStore()
    repo = Repository(store, inventory, codec, max_retries=10)
    await repo.handle("stock-apple", ReceiveStock("apple", 10))
    with pytest.raises(WrongExpectedVersion) as info:
        await repo.handle("stock-apple", ReceiveStock("apple", 1), expected_version=0)
    assert info.value.actual == 1
    ok = await repo.handle("stock-apple", ReceiveStock("apple", 1), expected_version=1)
    assert ok.version == 2


async def test_snapshots_are_written_by_policy_and_used() -> None:
    store = YieldingStore()
    policy = SnapshotPolicy(every=5, state_type=Stock)
    repo = Repository(store, inventory, codec, snapshots=policy)
    for i in range(12):
        await repo.handle("stock-apple", ReceiveStock("apple", 1 + i))
    snap = await store.load_snapshot("stock-apple", "state")
    assert snap is not None and snap.version >= 5
    store.reads = 0
    loaded = await repo.load("stock-apple")
    assert loaded.state.on_hand == sum(range(1, 13)) and loaded.version == 12
    assert store.reads == 12 - snap.version
    plain = await Repository(store, inventory, codec).load("stock-apple")
    assert plain == loaded


async def test_snapshot_with_another_schema_version_is_ignored() -> None:
    store = MemoryStore()
    repo = Repository(store, inventory, codec)
    await repo.handle("stock-apple", ReceiveStock("apple", 3))
    await repo.handle("stock-apple", ReceiveStock("apple", 4))
    # A deliberately wrong snapshot: a repository that trusts it shows 999.
    bogus = msgspec.json.encode(Stock("apple", 999))
    await store.save_snapshot(Snapshot("stock-apple", "state", 2, 1, bogus))
    v1 = Repository(store, inventory, codec, snapshots=SnapshotPolicy(100, Stock, 1))
    v2 = Repository(store, inventory, codec, snapshots=SnapshotPolicy(100, Stock, 2))
    assert (await v1.load("stock-apple")).state.on_hand == 999
    assert (await v2.load("stock-apple")).state.on_hand == 7
    await store.save_snapshot(Snapshot("stock-apple", "state", 2, 2, b'{"on_hand": "nope"}'))
    assert (await v2.load("stock-apple")).state.on_hand == 7


async def test_time_travel_by_version_and_timestamp() -> None:
    store = MemoryStore()
    policy = SnapshotPolicy(every=1, state_type=Order)
    repo = Repository(store, orders, codec, snapshots=policy)
    await repo.handle("order-7", PlaceOrder("order-7", "c-1"))
    await repo.handle("order-7", AddLine("apple", 1, 100))
    await asyncio.sleep(0.01)
    middle = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.01)
    await repo.handle("order-7", AddLine("pear", 1, 50))
    await repo.handle("order-7", ConfirmOrder())
    await repo.load("order-7")  # leaves a snapshot at version 4
    at_two = await repo.load("order-7", version=2)
    assert at_two.version == 2 and at_two.state.total_cents == 100
    at_time = await repo.load("order-7", as_of=middle)
    assert at_time.version == 2 and at_time.state.status == "open"
    before = await repo.load("order-7", as_of=middle - dt.timedelta(days=1))
    assert before.version == 0 and before.state.status == "none"
    assert (await repo.load("order-7")).state.status == "confirmed"
    with pytest.raises(ValueError):
        await repo.load("order-7", as_of=dt.datetime.now())


@dataclasses.dataclass
class Counter(Aggregate):
    total: int = 0
    history: list[int] = dataclasses.field(default_factory=list)

    def add(self, n: int) -> None:
        if n <= 0:
            raise CommandRejected("only positive amounts")
        self.record(Added(n))
        if self.total > 100:
            self.record(Overflowed(self.total))

    def apply(self, event: Any) -> None:
        match event:
            case Added(n):
                self.total += n
                self.history.append(n)
            case Overflowed():
                self.total = 0


counter_events = EventRegistry()


@counter_events.register("Added")
class Added(msgspec.Struct, frozen=True):
    n: int


@counter_events.register("Overflowed")
class Overflowed(msgspec.Struct, frozen=True):
    at: int


async def test_class_style_aggregate_runs_on_the_same_fold() -> None:
    store = MemoryStore()
    policy = SnapshotPolicy(every=2, state_type=Counter)
    repo = Repository(store, Counter.decider(), Codec(counter_events), snapshots=policy)
    await repo.handle("counter-1", lambda c: c.add(60))
    done = await repo.handle("counter-1", lambda c: c.add(50))
    assert [type(e) for e in done.events] == [Added, Overflowed]
    loaded = await repo.load("counter-1")
    assert (loaded.state.total, loaded.state.history, loaded.version) == (0, [60, 50], 3)
    again = await repo.load("counter-1")  # from the snapshot written by the load above
    assert again.state == loaded.state
    with pytest.raises(CommandRejected):
        await repo.handle("counter-1", lambda c: c.add(-1))
    assert await store.stream_version("counter-1") == 3


stock_commands = st.lists(
    st.one_of(
        st.builds(ReceiveStock, sku=st.just("apple"), quantity=st.integers(1, 20)),
        st.builds(ReserveStock, order_id=st.sampled_from("abcdef"), quantity=st.integers(1, 20)),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(stock_commands, st.integers(1, 10))
def test_fold_equals_snapshot_plus_later_events(commands: list[Any], every: int) -> None:
    async def run() -> None:
        store = MemoryStore()
        snapshotting = Repository(store, inventory, codec, snapshots=SnapshotPolicy(every, Stock))
        for command in commands:
            with contextlib.suppress(CommandRejected):
                await snapshotting.handle("stock-apple", command)
            await snapshotting.load("stock-apple")
        plain = await Repository(store, inventory, codec).load("stock-apple")
        assert await snapshotting.load("stock-apple") == plain
        records = [r async for r in store.read_stream("stock-apple")]
        assert inventory.fold(codec.decode_event(r) for r in records) == plain.state

    asyncio.run(run())


async def test_idempotency_key_makes_a_repeated_command_write_nothing() -> None:
    store = MemoryStore()
    repo = Repository(store, orders, codec)
    await repo.handle("order-1", PlaceOrder("order-1", "c-1"))
    first = await repo.handle("order-1", AddLine("apple", 1, 10), idempotency_key="cmd-42")
    again = await repo.handle("order-1", AddLine("apple", 1, 10), idempotency_key="cmd-42")
    assert (again.version, again.position) == (first.version, first.position)
    assert await store.stream_version("order-1") == 2
    other = await repo.handle("order-1", AddLine("apple", 1, 10), idempotency_key="cmd-43")
    assert other.version == 3
    plain = await repo.handle("order-1", AddLine("apple", 1, 10))
    assert plain.version == 4
