"""A short scripted story of the shop on an embedded SQLite file.

    python -m eventfold.examples.shop.demo [path/to/shop.db]

Prints each command, the events it produced and the state it led to, then an
order as it was at an earlier moment. Then the query side: read models in a
second SQLite file, the checkout saga, a read-your-writes query, a rebuild
while queries keep answering, a report as of a past moment, and the low-stock
mail that only live events send.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import Any

import eventfold
from eventfold import Codec, CommandRejected, EventStore, Metadata, Repository, SnapshotPolicy
from eventfold.examples.shop.app import Shop
from eventfold.examples.shop.compliance import forget_a_customer
from eventfold.examples.shop.events import registry
from eventfold.examples.shop.inventory import (
    ReceiveStock,
    ReleaseStock,
    ReserveStock,
    Stock,
    inventory,
)
from eventfold.examples.shop.orders import (
    AddLine,
    CancelOrder,
    ConfirmOrder,
    Order,
    PlaceOrder,
    SubmitOrder,
    orders,
)
from eventfold.examples.shop.read_models import low_stock_report
from eventfold.store.capabilities import SnapshotStore, require
from eventfold.subscriptions import (
    Freshness,
    ProjectionRunner,
    QueryResult,
    SQLCheckpointStore,
    SQLiteReadModel,
    Subscription,
    build_as_of,
    query_read_model,
)


def show_order(order: Order) -> str:
    lines = ", ".join(f"{line.quantity}x {line.sku}" for line in order.lines) or "no lines"
    return f"{order.status}, {lines}, total {order.total_cents / 100:.2f}"


def show_stock(stock: Stock) -> str:
    return f"on hand {stock.on_hand}, reserved {stock.reserved}, available {stock.available}"


async def story(path: Path, out: Any = print) -> None:
    codec = Codec(registry)
    async with eventfold.connect(f"sqlite:///{path}") as store:
        order_repo = Repository(
            store, orders, codec, snapshots=SnapshotPolicy(every=3, state_type=Order)
        )
        stock_repo = Repository(store, inventory, codec)
        clerk = Metadata(actor="clerk", correlation_id="demo-1")

        async def run(repo: Repository[Any, Any, Any], stream: str, command: Any) -> None:
            try:
                handled = await repo.handle(stream, command, metadata=clerk)
            except CommandRejected as exc:
                out(f"  {stream:<13} {command!r}\n      rejected: {exc}")
                return
            state = (await repo.load(stream)).state
            shown = show_order(state) if isinstance(state, Order) else show_stock(state)
            out(f"  {stream:<13} {command!r}")
            for event in handled.events:
                out(f"      -> {event!r}")
            out(f"      state v{handled.version} @{handled.position}: {shown}")

        out(f"eventfold shop demo: store {path}\n")
        out("Stock arrives:")
        await run(stock_repo, "stock-apple", ReceiveStock("apple", 10))
        await run(stock_repo, "stock-pear", ReceiveStock("pear", 2))

        out("\nAda places an order:")
        await run(order_repo, "order-1001", PlaceOrder("order-1001", "customer-ada"))
        await run(order_repo, "order-1001", AddLine("apple", 3, 45))
        await run(stock_repo, "stock-apple", ReserveStock("order-1001", 3))
        before_pears = dt.datetime.now(dt.UTC)
        await asyncio.sleep(0.01)
        await run(order_repo, "order-1001", AddLine("pear", 2, 80))
        await run(stock_repo, "stock-pear", ReserveStock("order-1001", 2))
        await run(order_repo, "order-1001", ConfirmOrder())

        out("\nBo wants more pears than there are:")
        await run(order_repo, "order-1002", PlaceOrder("order-1002", "customer-bo"))
        await run(order_repo, "order-1002", AddLine("pear", 5, 80))
        await run(stock_repo, "stock-pear", ReserveStock("order-1002", 5))
        await run(order_repo, "order-1002", CancelOrder("not enough pears"))
        await run(stock_repo, "stock-pear", ReleaseStock("order-1002"))

        out("\nTime travel:")
        then = await order_repo.load("order-1001", as_of=before_pears)
        moment = f"{before_pears:%H:%M:%S.%f}"
        out(f"  order-1001 as of {moment}: v{then.version}, {show_order(then.state)}")
        v1 = await order_repo.load("order-1001", version=1)
        out(f"  order-1001 at version 1:  {show_order(v1.state)}")
        now = await order_repo.load("order-1001")
        out(f"  order-1001 now:           v{now.version}, {show_order(now.state)}")
        snap = await require(store, SnapshotStore).load_snapshot("order-1001", "state")
        if snap is not None:
            out(f"  (a snapshot of order-1001 is stored at version {snap.version})")

        out("\nThe whole log, in global order:")
        async for record in store.read_all():
            env = codec.decode(record)
            out(
                f"  @{record.position:<3} {record.stream_id:<13} v{record.version:<2} "
                f"{record.type:<15} by {env.metadata.actor}"
            )

        await query_side(store, path, out)
        await forget_a_customer(store, path, out)


def table(result: QueryResult) -> str:
    rows = [", ".join(f"{k}={v}" for k, v in row.items()) for row in result.dicts()]
    return "\n".join(f"    {row}" for row in rows) or "    (none)"


def stale(fresh: Freshness | None) -> str:
    if fresh is None:
        return ""
    if fresh.up_to_date:
        return f"[up to date at @{fresh.position}]"
    return (
        f"[at @{fresh.position}, head @{fresh.head}: {fresh.events_behind} events "
        f"behind, {fresh.seconds_behind:.3f}s]"
    )


async def query_side(store: EventStore, path: Path, out: Any) -> None:
    """Read models, the checkout saga, read-your-writes, a rebuild under
    queries, time travel and effects."""
    reads_path = path.with_name(f"{path.stem}-reads.db")
    report_path = path.with_name(f"{path.stem}-report.db")
    report_path.unlink(missing_ok=True)
    shop = Shop(store, low_stock_threshold=3)
    summaries = "SELECT order_id, customer_id, status, items, total_cents FROM {order_summaries}"
    levels = "SELECT sku, on_hand, reserved, available FROM {stock_levels} ORDER BY sku"

    async with SQLiteReadModel(reads_path) as reads:
        # Small batches, so that the rebuild below spans several transactions.
        runner = ProjectionRunner(store, reads, shop.projections, batch_size=4, poll_interval=0.1)
        out(f"\nRead models, built from the log into {reads_path.name}:")
        await runner.catch_up()
        result = await runner.query("order_summaries", summaries + " ORDER BY order_id")
        out(f"  order_summaries {stale(result.freshness)}\n{table(result)}")
        result = await runner.query("stock_levels", levels)
        out(f"  stock_levels\n{table(result)}")

        saga = shop.checkout.subscribe(
            store, shop.projections.codec, SQLCheckpointStore(reads), poll_interval=0.1
        )
        await runner.start()
        try:
            await checkout(shop, runner, saga, store, summaries, out)
            before_restock = dt.datetime.now(dt.UTC)
            await asyncio.sleep(0.01)
            restock = await shop.stock.handle("stock-pear", ReceiveStock("pear", 10))
            low = await low_stock_report(runner, 3, min_position=restock.position)
            out(f"  ... and after 10 pears arrive {stale(low.freshness)}\n{table(low)}")
            await rebuild_under_queries(runner, summaries, out)
            await report_as_of(store, shop, before_restock, report_path, levels, out)
            await runner.wait_for(await store.head_position())
        finally:
            await runner.stop()
    out("\nLow-stock mail, sent by an effect only for reservations seen live:")
    for mail in shop.mail.sent:
        out(f"  {mail}")
    out("  (the rebuild above replayed every reservation and sent nothing again)")


async def run_saga(store: EventStore, saga: Subscription, runner: ProjectionRunner) -> None:
    """Let the saga handle every event in the log, those its own commands
    append included, then wait for the read models to apply them all. (The
    saga runs at these points only, so that the query before it shows the
    order as submitted; a service runs it all the time.)"""
    while True:
        await saga.run(until_caught_up=True)
        head = await store.head_position()
        if saga.position >= head:  # its commands appended nothing more
            await runner.wait_for(head, timeout=60.0)
            return


async def checkout(
    shop: Shop,
    runner: ProjectionRunner,
    saga: Subscription,
    store: EventStore,
    summaries: str,
    out: Any,
) -> None:
    out("\nCheckout saga: an order is confirmed once every item is reserved:")
    where = summaries + " WHERE order_id = ?"
    for order, customer, items in [
        ("order-1003", "customer-cy", {"apple": 6}),
        ("order-1004", "customer-di", {"apple": 1, "pear": 3}),
    ]:
        await shop.orders.handle(order, PlaceOrder(order, customer))
        for sku, quantity in items.items():
            await shop.orders.handle(order, AddLine(sku, quantity, 45 if sku == "apple" else 80))
        handled = await shop.orders.handle(order, SubmitOrder())
        out(f"  {order}: {customer} submits {items} -> position @{handled.position}")
        # Read your writes: wait until the read model has the submit, then query.
        mine = await runner.query("order_summaries", where, (order,), min_position=handled.position)
        out(f"    query with min_position=@{handled.position}: {stale(mine.freshness)}")
        out(table(mine))
        await run_saga(store, saga, runner)
        settled = await runner.query("order_summaries", where, (order,))
        out(f"    after the saga: {settled.dicts()[0]['status']}")
    apples = await runner.query(
        "stock_levels", "SELECT sku, available FROM {stock_levels} WHERE sku = ?", ("apple",)
    )
    out(f"  the declined order's apple was released again: {table(apples).strip()}")
    low = await low_stock_report(runner, 3)
    out(f"\n  Low-stock report (available < 3) {stale(low.freshness)}\n{table(low)}")


async def rebuild_under_queries(runner: ProjectionRunner, summaries: str, out: Any) -> None:
    out("\nRebuilding order_summaries into fresh tables while queries keep answering:")
    answers: list[tuple[int, int]] = []
    done = asyncio.Event()

    async def keep_asking() -> None:
        while not done.is_set():
            result = await runner.query("order_summaries", summaries)
            answers.append((result.build, len(result.rows)))
            await asyncio.sleep(0)

    asker = asyncio.create_task(keep_asking())
    build = await runner.rebuild("order_summaries")
    done.set()
    await asker
    by_build: dict[int, set[int]] = {}
    for number, rows in answers:
        by_build.setdefault(number, set()).add(rows)
    out(f"  {len(answers)} queries answered during the rebuild; rows seen per build:")
    for number, sizes in sorted(by_build.items()):
        out(f"    build {number}: {sorted(sizes)} rows (always the whole table)")
    out(f"  now serving build {build.build} ({', '.join(build.physical(t) for t in build.tables)})")


async def report_as_of(
    store: EventStore, shop: Shop, moment: dt.datetime, into: Path, levels: str, out: Any
) -> None:
    out(f"\nTime travel: stock levels as of {moment:%H:%M:%S.%f}, before the pears came in:")
    projection = shop.projections.get("stock_levels")
    async with SQLiteReadModel(into) as report:
        build = await build_as_of(store, projection, shop.projections.codec, report, time=moment)
        result = await query_read_model(report, "stock_levels", levels)
    out(f"  built into {into.name} from {build.handled} events\n{table(result)}")


def main() -> None:
    if len(sys.argv) > 1:
        asyncio.run(story(Path(sys.argv[1])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(story(Path(tmp) / "shop.db"))


if __name__ == "__main__":
    main()
