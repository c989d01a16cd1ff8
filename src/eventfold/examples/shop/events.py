"""The shop's events: orders and inventory. Names are stable, not Python paths."""

from __future__ import annotations

import msgspec

from eventfold import EventRegistry

registry = EventRegistry()


@registry.register("OrderPlaced")
class OrderPlaced(msgspec.Struct, frozen=True):
    order_id: str
    customer_id: str


@registry.register("OrderLineAdded")
class LineAdded(msgspec.Struct, frozen=True):
    sku: str
    quantity: int
    unit_price_cents: int


@registry.register("OrderConfirmed")
class OrderConfirmed(msgspec.Struct, frozen=True):
    total_cents: int


@registry.register("OrderSubmitted")
class OrderSubmitted(msgspec.Struct, frozen=True):
    """The customer checked out: inventory must now reserve every item."""

    order_id: str
    items: dict[str, int]  # sku -> quantity


@registry.register("OrderDeclined")
class OrderDeclined(msgspec.Struct, frozen=True):
    """A submitted order could not be fulfilled (not enough stock)."""

    reason: str


@registry.register("OrderCancelled")
class OrderCancelled(msgspec.Struct, frozen=True):
    reason: str


@registry.register("StockReceived")
class StockReceived(msgspec.Struct, frozen=True):
    sku: str
    quantity: int


@registry.register("StockReserved")
class StockReserved(msgspec.Struct, frozen=True):
    order_id: str
    quantity: int


@registry.register("StockReleased")
class StockReleased(msgspec.Struct, frozen=True):
    order_id: str
    quantity: int


@registry.register("CustomerRegistered", personal=("name", "email"), subject="customer_id")
class CustomerRegistered(msgspec.Struct, frozen=True):
    """Name and email are personal data: stored encrypted with the customer's
    key, and unreadable for good once the customer is forgotten."""

    customer_id: str
    name: str
    email: str
