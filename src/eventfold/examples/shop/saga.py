"""The checkout saga: an order is confirmed only once inventory has reserved
every item; if any item is short, the order is declined and whatever was
reserved for it is released (also when a customer cancels).

Every command carries an idempotency key made of the triggering event's id
and the step, so a redelivered event, or a restart halfway through, makes
each command take effect once. Before reserving, the saga checks that the
order is still waiting: a decision once taken (declined, then released) is
never undone by a replay that finds stock has arrived since."""

from __future__ import annotations

import contextlib
from typing import Any

from eventfold import Envelope, Repository
from eventfold.examples.shop.events import OrderCancelled, OrderDeclined, OrderSubmitted
from eventfold.examples.shop.inventory import OutOfStock, ReleaseStock, ReserveStock
from eventfold.examples.shop.orders import ConfirmOrder, DeclineOrder, OrderRejected
from eventfold.subscriptions import ProcessContext, ProcessManager


def checkout_saga(
    orders: Repository[Any, Any, Any], stock: Repository[Any, Any, Any]
) -> ProcessManager:
    checkout = ProcessManager("checkout", categories=["order"])

    @checkout.on(OrderSubmitted)
    async def reserve_everything(ctx: ProcessContext, env: Envelope[OrderSubmitted]) -> None:
        order = (await orders.load(env.stream_id)).state
        if order.status != "submitted":
            return  # already confirmed, declined or cancelled: nothing left to do
        for sku, quantity in sorted(env.event.items.items()):
            try:
                await ctx.handle(
                    stock,
                    f"stock-{sku}",
                    ReserveStock(env.event.order_id, quantity),
                    step=f"reserve:{sku}",
                )
            except OutOfStock as short:
                await _settle(ctx, orders, env.stream_id, DeclineOrder(str(short)), "decline")
                return
        await _settle(ctx, orders, env.stream_id, ConfirmOrder(), "confirm")

    @checkout.on(OrderDeclined, OrderCancelled)
    async def release_reservations(ctx: ProcessContext, env: Envelope[Any]) -> None:
        order = (await orders.load(env.stream_id)).state
        for sku in sorted(order.items):
            await ctx.handle(
                stock, f"stock-{sku}", ReleaseStock(order.order_id), step=f"release:{sku}"
            )

    return checkout


async def _settle(
    ctx: ProcessContext,
    orders: Repository[Any, Any, Any],
    stream_id: str,
    command: ConfirmOrder | DeclineOrder,
    step: str,
) -> None:
    # Cancelled meanwhile: its OrderCancelled releases the reservations.
    with contextlib.suppress(OrderRejected):
        await ctx.handle(orders, stream_id, command, step=step)
