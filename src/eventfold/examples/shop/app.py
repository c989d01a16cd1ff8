"""Wiring: the shop's codec, repositories, read models and checkout saga.

``projections`` is what the CLI loads:

    eventfold projections list --app eventfold.examples.shop.app:projections \\
        --store sqlite:///shop.db --read-model sqlite:///shop-reads.db
"""

from __future__ import annotations

from typing import Any

from eventfold import Codec, Envelope, EventStore, Repository, SnapshotPolicy
from eventfold.examples.shop.events import StockReserved, registry
from eventfold.examples.shop.inventory import Stock, inventory
from eventfold.examples.shop.orders import Order, orders
from eventfold.examples.shop.read_models import order_summaries, stock_levels
from eventfold.examples.shop.saga import checkout_saga
from eventfold.subscriptions import ProcessManager, ProjectionSet

codec = Codec(registry)

projections = ProjectionSet(codec, [order_summaries(), stock_levels()])
"""The read models, without side effects: for the CLI and reports."""


class LowStockMail:
    """An effect: "mail" the buyer when a reservation leaves a SKU with fewer
    than ``threshold`` available. Sent mail is kept in ``sent``."""

    def __init__(self, stock: Repository[Any, Any, Stock], threshold: int = 3) -> None:
        self.stock = stock
        self.threshold = threshold
        self.sent: list[str] = []

    async def __call__(self, env: Envelope[Any]) -> None:
        assert isinstance(env.event, StockReserved)
        # The state right after this reservation, whatever happened since.
        then = await self.stock.load(env.stream_id, version=env.version)
        if then.state.available < self.threshold:
            self.sent.append(
                f"to buyer@shop: {then.state.sku} down to {then.state.available} "
                f"after order {env.event.order_id} (event {env.position})"
            )


class Shop:
    """Everything the shop runs on one store."""

    def __init__(self, store: EventStore, *, low_stock_threshold: int = 3) -> None:
        self.store = store
        self.orders: Repository[Any, Any, Order] = Repository(
            store, orders, codec, snapshots=SnapshotPolicy(every=3, state_type=Order)
        )
        self.stock: Repository[Any, Any, Stock] = Repository(store, inventory, codec)
        self.mail = LowStockMail(self.stock, low_stock_threshold)
        self.projections = ProjectionSet(
            codec, [order_summaries(), stock_levels(on_reserved=self.mail)]
        )
        self.checkout: ProcessManager = checkout_saga(self.orders, self.stock)
