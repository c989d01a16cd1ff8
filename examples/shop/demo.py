"""A short scripted story of the shop on an embedded SQLite file.

    python -m examples.shop.demo [path/to/shop.db]

Prints each command, the events it produced and the state it led to, then an
order as it was at an earlier moment.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import Any

import eventfold
from eventfold import Codec, CommandRejected, Metadata, Repository, SnapshotPolicy
from examples.shop.events import registry
from examples.shop.inventory import ReceiveStock, ReleaseStock, ReserveStock, Stock, inventory
from examples.shop.orders import AddLine, CancelOrder, ConfirmOrder, Order, PlaceOrder, orders


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
        snap = await store.load_snapshot("order-1001", "state")
        if snap is not None:
            out(f"  (a snapshot of order-1001 is stored at version {snap.version})")

        out("\nThe whole log, in global order:")
        async for record in store.read_all():
            env = codec.decode(record)
            out(
                f"  @{record.position:<3} {record.stream_id:<13} v{record.version:<2} "
                f"{record.type:<15} by {env.metadata.actor}"
            )


def main() -> None:
    if len(sys.argv) > 1:
        asyncio.run(story(Path(sys.argv[1])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(story(Path(tmp) / "shop.db"))


if __name__ == "__main__":
    main()
