"""Orders as a Decider: place, add a line, submit, confirm or decline, cancel.

Confirming straight from ``open`` is the manual path; ``SubmitOrder`` hands
the order to the checkout saga, which confirms it once inventory has reserved
every item, or declines it."""

from __future__ import annotations

from typing import Literal

import msgspec

from eventfold import CommandRejected, Decider
from eventfold.examples.shop.events import (
    LineAdded,
    OrderCancelled,
    OrderConfirmed,
    OrderDeclined,
    OrderPlaced,
    OrderSubmitted,
)

OrderEvent = (
    OrderPlaced | LineAdded | OrderSubmitted | OrderConfirmed | OrderDeclined | OrderCancelled
)
Status = Literal["none", "open", "submitted", "confirmed", "declined", "cancelled"]


class OrderRejected(CommandRejected):
    pass


class Line(msgspec.Struct, frozen=True):
    sku: str
    quantity: int
    unit_price_cents: int


class Order(msgspec.Struct, frozen=True):
    status: Status = "none"
    order_id: str = ""
    customer_id: str = ""
    lines: tuple[Line, ...] = ()

    @property
    def total_cents(self) -> int:
        return sum(line.quantity * line.unit_price_cents for line in self.lines)

    @property
    def items(self) -> dict[str, int]:
        """Quantity per SKU over all lines."""
        items: dict[str, int] = {}
        for line in self.lines:
            items[line.sku] = items.get(line.sku, 0) + line.quantity
        return items


class PlaceOrder(msgspec.Struct, frozen=True):
    order_id: str
    customer_id: str


class AddLine(msgspec.Struct, frozen=True):
    sku: str
    quantity: int
    unit_price_cents: int


class SubmitOrder(msgspec.Struct, frozen=True):
    pass


class ConfirmOrder(msgspec.Struct, frozen=True):
    pass


class DeclineOrder(msgspec.Struct, frozen=True):
    reason: str


class CancelOrder(msgspec.Struct, frozen=True):
    reason: str


OrderCommand = PlaceOrder | AddLine | SubmitOrder | ConfirmOrder | DeclineOrder | CancelOrder


def decide(command: OrderCommand, state: Order) -> list[OrderEvent]:
    match command:
        case PlaceOrder(order_id, customer_id):
            if state.status != "none":
                raise OrderRejected(f"order {state.order_id} already exists")
            return [OrderPlaced(order_id, customer_id)]
        case AddLine(sku, quantity, price):
            if state.status != "open":
                raise OrderRejected(f"cannot add lines to a {state.status} order")
            if quantity <= 0 or price < 0:
                raise OrderRejected("quantity must be positive and price not negative")
            return [LineAdded(sku, quantity, price)]
        case SubmitOrder():
            if state.status == "submitted":
                return []
            if state.status != "open" or not state.lines:
                raise OrderRejected(f"cannot submit a {state.status} order without lines")
            return [OrderSubmitted(state.order_id, state.items)]
        case ConfirmOrder():
            if state.status == "confirmed":
                return []
            if state.status not in ("open", "submitted") or not state.lines:
                raise OrderRejected(f"cannot confirm a {state.status} order without lines")
            return [OrderConfirmed(state.total_cents)]
        case DeclineOrder(reason):
            if state.status == "declined":
                return []
            if state.status != "submitted":
                raise OrderRejected(
                    f"only a submitted order can be declined, not a {state.status} one"
                )
            return [OrderDeclined(reason)]
        case CancelOrder(reason):
            if state.status == "cancelled":
                return []
            if state.status == "none":
                raise OrderRejected("no such order")
            return [OrderCancelled(reason)]
    raise OrderRejected(f"unknown command {command!r}")


def evolve(state: Order, event: OrderEvent) -> Order:
    match event:
        case OrderPlaced(order_id, customer_id):
            return Order("open", order_id, customer_id)
        case LineAdded(sku, quantity, price):
            return msgspec.structs.replace(state, lines=(*state.lines, Line(sku, quantity, price)))
        case OrderSubmitted():
            return msgspec.structs.replace(state, status="submitted")
        case OrderConfirmed():
            return msgspec.structs.replace(state, status="confirmed")
        case OrderDeclined():
            return msgspec.structs.replace(state, status="declined")
        case OrderCancelled():
            return msgspec.structs.replace(state, status="cancelled")
    return state


orders: Decider[OrderCommand, OrderEvent, Order] = Decider(decide, evolve, Order)
