"""Process managers: the shop's checkout saga end to end, and the guarantee
that duplicate delivery and a restart between steps make each command take
effect once."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

import eventfold
from eventfold import Codec, Decider, Envelope, EventRegistry, Repository
from eventfold.examples.shop.app import Shop, codec
from eventfold.examples.shop.events import (
    OrderConfirmed,
    OrderDeclined,
    StockReleased,
    StockReserved,
)
from eventfold.examples.shop.inventory import ReceiveStock
from eventfold.examples.shop.orders import AddLine, CancelOrder, PlaceOrder, SubmitOrder
from eventfold.examples.shop.saga import checkout_saga
from eventfold.store import MemoryStore
from eventfold.subscriptions import (
    MemoryCheckpointStore,
    ProcessContext,
    ProcessManager,
    RetryPolicy,
    SubscriptionFailed,
    open_checkpoints,
)


class Crash(Exception):
    """Stands in for the process dying between two steps."""


class DuplicatingStore(MemoryStore):
    """Delivers every event of the log twice in a row."""

    async def read_all(self, **kw: Any) -> Any:
        async for record in super().read_all(**kw):
            yield record
            yield record


async def submit(shop: Shop, order: str, **items: int) -> int:
    await shop.orders.handle(order, PlaceOrder(order, "customer"))
    for sku, quantity in items.items():
        await shop.orders.handle(order, AddLine(sku, quantity, 100))
    return (await shop.orders.handle(order, SubmitOrder())).position


async def run_saga(shop: Shop, checkpoints: Any, **options: Any) -> None:
    """Run the saga until it has handled everything, including what it wrote."""
    sub = shop.checkout.subscribe(shop.store, codec, checkpoints, **options)
    while True:
        await sub.run(until_caught_up=True)
        if sub.position >= await shop.store.head_position():
            return


async def events_of(store: Any, stream: str) -> list[Any]:
    return [codec.decode_event(r) async for r in store.read_stream(stream)]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'events.db'}"


async def test_an_order_is_confirmed_when_every_item_is_reserved(store_url: str) -> None:
    async with eventfold.connect(store_url) as store:
        shop = Shop(store)
        await shop.stock.handle("stock-apple", ReceiveStock("apple", 5))
        await shop.stock.handle("stock-pear", ReceiveStock("pear", 5))
        await submit(shop, "order-1", apple=2, pear=3)
        await run_saga(shop, MemoryCheckpointStore())
        assert (await shop.orders.load("order-1")).state.status == "confirmed"
        assert (await shop.stock.load("stock-pear")).state.available == 2


async def test_a_short_item_declines_the_order_and_releases_the_rest(store_url: str) -> None:
    async with eventfold.connect(store_url) as store:
        shop = Shop(store)
        await shop.stock.handle("stock-apple", ReceiveStock("apple", 5))
        await shop.stock.handle("stock-pear", ReceiveStock("pear", 1))
        await submit(shop, "order-1", apple=2, pear=3)
        await run_saga(shop, MemoryCheckpointStore())
        order = (await shop.orders.load("order-1")).state
        assert order.status == "declined"
        assert [type(e) for e in await events_of(store, "stock-apple")][-2:] == [
            StockReserved,
            StockReleased,
        ]
        assert (await shop.stock.load("stock-apple")).state.available == 5
        assert (await shop.stock.load("stock-pear")).state.available == 1


async def test_cancelling_a_confirmed_order_releases_its_stock(store_url: str) -> None:
    async with eventfold.connect(store_url) as store:
        shop = Shop(store)
        await shop.stock.handle("stock-apple", ReceiveStock("apple", 5))
        await submit(shop, "order-1", apple=4)
        checkpoints = MemoryCheckpointStore()
        await run_saga(shop, checkpoints)
        assert (await shop.stock.load("stock-apple")).state.available == 1
        await shop.orders.handle("order-1", CancelOrder("changed mind"))
        await run_saga(shop, checkpoints)
        assert (await shop.stock.load("stock-apple")).state.available == 5


class CrashingRepository(Repository[Any, Any, Any]):
    """Dies after ``after`` commands have gone through (once)."""

    def __init__(self, inner: Repository[Any, Any, Any], after: int) -> None:
        super().__init__(inner.store, inner.decider, inner.codec)
        self.after = after

    async def handle(self, *args: Any, **kw: Any) -> Any:
        if self.after == 0:
            self.after = -1
            raise Crash("killed between two steps")
        self.after -= 1
        return await super().handle(*args, **kw)


@pytest.mark.parametrize("lanes", [1, 4])
@pytest.mark.parametrize("crash_after", [1, 2, 3])
async def test_saga_under_duplicate_delivery_and_restarts_issues_each_command_once(
    tmp_path: Path, crash_after: int, lanes: int
) -> None:
    store = DuplicatingStore()
    checkpoints = open_checkpoints(f"sqlite:///{tmp_path / 'saga.db'}")
    shop = Shop(store)
    await shop.stock.handle("stock-apple", ReceiveStock("apple", 10))
    await shop.stock.handle("stock-pear", ReceiveStock("pear", 10))
    await shop.stock.handle("stock-plum", ReceiveStock("plum", 1))
    await submit(shop, "order-ok", apple=2, pear=2)  # confirmed: reserve, reserve, confirm
    await submit(shop, "order-short", apple=1, pear=1, plum=5)  # declined, then released

    # First run: the stock repository dies after `crash_after` commands.
    healthy = shop.stock
    shop.checkout = checkout_saga(shop.orders, CrashingRepository(healthy, crash_after))
    with pytest.raises(SubscriptionFailed) as caught:
        await run_saga(shop, checkpoints, retry=RetryPolicy(attempts=1), lanes=lanes)
    assert isinstance(caught.value.cause, Crash)

    # Restarted (new process: fresh objects, same checkpoint), every event
    # delivered twice; then everything delivered again from the start.
    shop.checkout = checkout_saga(shop.orders, healthy)
    await run_saga(shop, checkpoints, lanes=lanes)
    await checkpoints.save("process:checkout", 0)
    await run_saga(shop, checkpoints, lanes=lanes)

    async def counted(stream: str) -> Counter[str]:
        return Counter(type(e).__name__ for e in await events_of(store, stream))

    assert await counted("order-ok") == Counter(
        OrderPlaced=1, LineAdded=2, OrderSubmitted=1, OrderConfirmed=1
    )
    assert await counted("order-short") == Counter(
        OrderPlaced=1, LineAdded=3, OrderSubmitted=1, OrderDeclined=1
    )
    assert await counted("stock-apple") == Counter(
        StockReceived=1, StockReserved=2, StockReleased=1
    )
    assert await counted("stock-pear") == Counter(StockReceived=1, StockReserved=2, StockReleased=1)
    assert await counted("stock-plum") == Counter(StockReceived=1)
    assert (await shop.stock.load("stock-apple")).state.available == 8
    assert isinstance((await events_of(store, "order-ok"))[-1], OrderConfirmed)
    assert isinstance((await events_of(store, "order-short"))[-1], OrderDeclined)
    await checkpoints.close()  # type: ignore[attr-defined]


# --- a process manager whose commands are not idempotent by themselves ---------------

counter_registry = EventRegistry()


@counter_registry.register("Triggered")
class Triggered(msgspec.Struct, frozen=True):
    pass


@counter_registry.register("Incremented")
class Incremented(msgspec.Struct, frozen=True):
    pass


class Increment(msgspec.Struct, frozen=True):
    pass


counter: Decider[Increment, Incremented, int] = Decider(
    decide=lambda command, state: [Incremented()],
    evolve=lambda state, event: state + 1,
    initial_state=int,
)
counter_codec = Codec(counter_registry)


async def test_each_step_takes_effect_once_even_when_its_command_is_not_idempotent() -> None:
    store = DuplicatingStore()
    counters = Repository(store, counter, counter_codec)
    crash = {"armed": True}
    manager = ProcessManager("fanout", categories=["trigger"])

    @manager.on(Triggered)
    async def fan_out(ctx: ProcessContext, env: Envelope[Triggered]) -> None:
        name = env.stream_id.partition("-")[2]
        await ctx.handle(counters, f"counter-{name}a", Increment(), step="a")
        if crash["armed"]:
            crash["armed"] = False
            raise Crash("between step a and step b")
        await ctx.handle(counters, f"counter-{name}b", Increment(), step="b")

    for name in ("x", "y"):
        await store.append(f"trigger-{name}", [counter_codec.encode(Triggered())])
    checkpoints = MemoryCheckpointStore()

    def subscription() -> Any:
        return manager.subscribe(store, counter_codec, checkpoints, retry=RetryPolicy(1))

    with pytest.raises(SubscriptionFailed):
        await subscription().run(until_caught_up=True)
    assert await checkpoints.load("process:fanout") == 0
    await subscription().run(until_caught_up=True)
    await checkpoints.save("process:fanout", 0)
    await subscription().run(until_caught_up=True)
    for stream in ("counter-xa", "counter-xb", "counter-ya", "counter-yb"):
        assert (await counters.load(stream)).state == 1, stream
    # The commands carry the triggering event as their cause.
    first = [r async for r in store.read_stream("counter-xa")]
    trigger = [r async for r in store.read_stream("trigger-x")]
    meta = counter_codec.decode(first[0]).metadata
    assert meta.causation_id == str(trigger[0].event_id) and meta.actor == "fanout"


async def test_a_process_manager_follows_the_log_live() -> None:
    store = MemoryStore()
    counters = Repository(store, counter, counter_codec)
    manager = ProcessManager("live", categories=["trigger"])

    @manager.on(Triggered)
    async def bump(ctx: ProcessContext, env: Envelope[Triggered]) -> None:
        await ctx.handle(counters, "counter-live", Increment(), step="bump")

    sub = manager.subscribe(store, counter_codec, MemoryCheckpointStore(), poll_interval=0.05)
    task = asyncio.create_task(sub.run())
    for i in range(3):
        await store.append(f"trigger-{i}", [counter_codec.encode(Triggered())])
    for _ in range(500):
        if (await counters.load("counter-live")).state == 3:
            break
        await asyncio.sleep(0.01)
    sub.stop()
    await task
    assert (await counters.load("counter-live")).state == 3
