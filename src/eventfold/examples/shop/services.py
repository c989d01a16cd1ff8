"""The shop as services: its commands and queries over HTTP.

    eventfold serve --app eventfold.examples.shop.services:service

Commands name the order or SKU they are about, so that each finds its
stream (``order-…`` for orders, ``stock-<sku>`` for stock); checks that need
no state (positive quantities, well-formed ids) refuse a command with 422
before anything is loaded. The checkout saga runs beside the commands: a
submitted order is confirmed once every item is reserved, or declined."""

from __future__ import annotations

from typing import Annotated

import msgspec

from eventfold import EventStore, InvalidArgument
from eventfold.examples.shop import inventory as stock
from eventfold.examples.shop import orders
from eventfold.examples.shop.app import Shop, codec, projections
from eventfold.examples.shop.read_models import LOW_STOCK_SQL
from eventfold.services import Commands, Queries, ServiceDefinition
from eventfold.subscriptions import ProcessManager

OrderId = Annotated[str, msgspec.Meta(pattern=r"^order-[A-Za-z0-9_.:-]{1,64}$")]
Sku = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Positive = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Cents = Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class PlaceOrder(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Open an order for a customer."""

    order_id: OrderId
    customer_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class AddLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Add a line to an open order."""

    order_id: OrderId
    sku: Sku
    quantity: Positive
    unit_price_cents: Cents


class SubmitOrder(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Check out: the saga reserves every item, then confirms or declines."""

    order_id: OrderId


class ConfirmOrder(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Confirm an order by hand (without the saga)."""

    order_id: OrderId


class CancelOrder(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Cancel an order; the saga releases whatever was reserved for it."""

    order_id: OrderId
    reason: Reason


class ReceiveStock(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Stock arrives for a SKU."""

    sku: Sku
    quantity: Positive


def _order(command: PlaceOrder | AddLine | SubmitOrder | ConfirmOrder | CancelOrder) -> str:
    return command.order_id


def _no_self_orders(command: PlaceOrder) -> None:
    if command.customer_id == command.order_id:
        raise InvalidArgument("customer_id must not be the order id", argument="customer_id")


commands = Commands(codec)
commands.register(
    PlaceOrder,
    orders.orders,
    stream=_order,
    translate=lambda c: orders.PlaceOrder(c.order_id, c.customer_id),
    validate=_no_self_orders,
)
commands.register(
    AddLine,
    orders.orders,
    stream=_order,
    translate=lambda c: orders.AddLine(c.sku, c.quantity, c.unit_price_cents),
)
commands.register(
    SubmitOrder, orders.orders, stream=_order, translate=lambda c: orders.SubmitOrder()
)
commands.register(
    ConfirmOrder, orders.orders, stream=_order, translate=lambda c: orders.ConfirmOrder()
)
commands.register(
    CancelOrder, orders.orders, stream=_order, translate=lambda c: orders.CancelOrder(c.reason)
)
commands.register(
    ReceiveStock,
    stock.inventory,
    stream=lambda c: f"stock-{c.sku}",
    translate=lambda c: stock.ReceiveStock(c.sku, c.quantity),
)

queries = Queries()
queries.add(
    "order",
    "order_summaries",
    "SELECT order_id, customer_id, status, lines, items, total_cents "
    "FROM {order_summaries} WHERE order_id = ?",
    params={"order_id": str},
    description="One order: status, lines, items and total",
)
queries.add(
    "orders_by_customer",
    "order_summaries",
    "SELECT order_id, status, items, total_cents FROM {order_summaries} "
    "WHERE customer_id = ? ORDER BY order_id",
    params={"customer_id": str},
    description="A customer's orders",
)
queries.add(
    "stock",
    "stock_levels",
    "SELECT sku, on_hand, reserved, available FROM {stock_levels} ORDER BY sku",
    description="Stock per SKU",
)
queries.add(
    "low_stock",
    "stock_levels",
    LOW_STOCK_SQL,
    params={"threshold": int},
    defaults={"threshold": 3},
    description="SKUs with fewer than `threshold` available, scarcest first",
)
queries.state("order", orders.orders)
queries.state("stock", stock.inventory)


def _sagas(store: EventStore) -> list[ProcessManager]:
    return [Shop(store).checkout]


service = ServiceDefinition(
    codec,
    commands=commands,
    projections=projections,
    queries=queries,
    process_managers=_sagas,
    title="shop",
)
"""What ``eventfold serve --app eventfold.examples.shop.services:service`` serves."""
