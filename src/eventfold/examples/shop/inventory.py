"""Inventory as a Decider, one stream per SKU: receive, reserve, release."""

from __future__ import annotations

import msgspec

from eventfold import CommandRejected, Decider
from eventfold.examples.shop.events import StockReceived, StockReleased, StockReserved

StockEvent = StockReceived | StockReserved | StockReleased


class OutOfStock(CommandRejected):
    pass


class Stock(msgspec.Struct, frozen=True):
    sku: str = ""
    on_hand: int = 0
    reservations: dict[str, int] = {}

    @property
    def reserved(self) -> int:
        return sum(self.reservations.values())

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class ReceiveStock(msgspec.Struct, frozen=True):
    sku: str
    quantity: int


class ReserveStock(msgspec.Struct, frozen=True):
    order_id: str
    quantity: int


class ReleaseStock(msgspec.Struct, frozen=True):
    order_id: str


StockCommand = ReceiveStock | ReserveStock | ReleaseStock


def decide(command: StockCommand, state: Stock) -> list[StockEvent]:
    match command:
        case ReceiveStock(sku, quantity):
            if quantity <= 0:
                raise CommandRejected("received quantity must be positive")
            return [StockReceived(sku, quantity)]
        case ReserveStock(order_id, quantity):
            if order_id in state.reservations:
                return []  # already reserved: a retry changes nothing
            if quantity <= 0:
                raise CommandRejected("reserved quantity must be positive")
            if quantity > state.available:
                raise OutOfStock(
                    f"{state.sku or 'sku'}: {quantity} wanted, {state.available} available"
                )
            return [StockReserved(order_id, quantity)]
        case ReleaseStock(order_id):
            held = state.reservations.get(order_id)
            return [StockReleased(order_id, held)] if held else []
    raise CommandRejected(f"unknown command {command!r}")


def evolve(state: Stock, event: StockEvent) -> Stock:
    match event:
        case StockReceived(sku, quantity):
            return msgspec.structs.replace(state, sku=sku, on_hand=state.on_hand + quantity)
        case StockReserved(order_id, quantity):
            return msgspec.structs.replace(
                state, reservations={**state.reservations, order_id: quantity}
            )
        case StockReleased(order_id):
            rest = {k: v for k, v in state.reservations.items() if k != order_id}
            return msgspec.structs.replace(state, reservations=rest)
    return state


inventory: Decider[StockCommand, StockEvent, Stock] = Decider(decide, evolve, Stock)
