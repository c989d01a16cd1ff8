"""The shop's deciders, given / when / then."""

import pytest

from eventfold import CommandRejected
from eventfold.examples.shop.events import (
    LineAdded,
    OrderCancelled,
    OrderConfirmed,
    OrderDeclined,
    OrderPlaced,
    OrderSubmitted,
    StockReceived,
    StockReleased,
    StockReserved,
)
from eventfold.examples.shop.inventory import (
    OutOfStock,
    ReceiveStock,
    ReleaseStock,
    ReserveStock,
    inventory,
)
from eventfold.examples.shop.orders import (
    AddLine,
    CancelOrder,
    ConfirmOrder,
    DeclineOrder,
    OrderRejected,
    PlaceOrder,
    SubmitOrder,
    orders,
)
from eventfold.testing import given

placed = OrderPlaced("o-1", "c-1")
line = LineAdded("apple", 3, 50)


def test_place_an_order() -> None:
    given(orders).when(PlaceOrder("o-1", "c-1")).then(placed)


def test_an_order_is_placed_once() -> None:
    given(orders, placed).when(PlaceOrder("o-1", "c-1")).then_raises(OrderRejected, "exists")


def test_add_a_line() -> None:
    given(orders, placed).when(AddLine("apple", 3, 50)).then(line)


@pytest.mark.parametrize("bad", [AddLine("apple", 0, 50), AddLine("apple", 1, -1)])
def test_bad_lines_are_rejected(bad: AddLine) -> None:
    given(orders, placed).when(bad).then_raises(OrderRejected)


def test_confirm_totals_the_lines() -> None:
    given(orders, placed, line, LineAdded("pear", 1, 80)).when(ConfirmOrder()).then(
        OrderConfirmed(230)
    )


def test_confirm_needs_lines_and_is_idempotent() -> None:
    given(orders, placed).when(ConfirmOrder()).then_raises(OrderRejected)
    given(orders, placed, line, OrderConfirmed(150)).when(ConfirmOrder()).then()


def test_cancel() -> None:
    given(orders, placed).when(CancelOrder("changed mind")).then(OrderCancelled("changed mind"))
    given(orders).when(CancelOrder("x")).then_raises(OrderRejected)
    given(orders, placed, OrderCancelled("x")).when(AddLine("a", 1, 1)).then_raises(OrderRejected)


def test_submit_lists_the_items_and_closes_the_order_to_new_lines() -> None:
    two_apples = LineAdded("apple", 2, 50)
    given(orders, placed, line, LineAdded("pear", 1, 80), two_apples).when(SubmitOrder()).then(
        OrderSubmitted("o-1", {"apple": 5, "pear": 1})
    )
    submitted = OrderSubmitted("o-1", {"apple": 3})
    given(orders, placed).when(SubmitOrder()).then_raises(OrderRejected, "without lines")
    given(orders, placed, line, submitted).when(SubmitOrder()).then()
    given(orders, placed, line, submitted).when(AddLine("pear", 1, 80)).then_raises(OrderRejected)


def test_a_submitted_order_is_confirmed_or_declined_once() -> None:
    submitted = (placed, line, OrderSubmitted("o-1", {"apple": 3}))
    given(orders, *submitted).when(ConfirmOrder()).then(OrderConfirmed(150))
    given(orders, *submitted).when(DeclineOrder("no pears")).then(OrderDeclined("no pears"))
    given(orders, *submitted, OrderDeclined("x")).when(DeclineOrder("x")).then()
    given(orders, *submitted, OrderDeclined("x")).when(ConfirmOrder()).then_raises(OrderRejected)
    given(orders, placed, line).when(DeclineOrder("x")).then_raises(OrderRejected, "submitted")
    state = given(orders, *submitted).when(DeclineOrder("x")).then_state()
    assert state.status == "declined" and state.items == {"apple": 3}


def test_order_state_after_a_command() -> None:
    state = given(orders, placed).when(AddLine("apple", 3, 50)).then_state()
    assert state.status == "open" and state.total_cents == 150


def test_reserve_within_stock() -> None:
    received = StockReceived("apple", 10)
    given(inventory, received).when(ReserveStock("o-1", 4)).then(StockReserved("o-1", 4))
    given(inventory, received, StockReserved("o-1", 8)).when(ReserveStock("o-2", 3)).then_raises(
        OutOfStock, "3 wanted, 2 available"
    )


def test_reserve_is_idempotent_per_order_and_release_frees_stock() -> None:
    history = (StockReceived("apple", 5), StockReserved("o-1", 5))
    given(inventory, *history).when(ReserveStock("o-1", 5)).then()
    given(inventory, *history).when(ReleaseStock("o-1")).then(StockReleased("o-1", 5))
    given(inventory, *history, StockReleased("o-1", 5)).when(ReleaseStock("o-1")).then()
    state = given(inventory, *history).when(ReleaseStock("o-1")).then_state()
    assert state.available == 5


def test_receive_stock() -> None:
    given(inventory).when(ReceiveStock("apple", 10)).then(StockReceived("apple", 10))
    given(inventory).when(ReceiveStock("apple", 0)).then_raises(CommandRejected, "positive")


def test_scenario_failures_are_reported() -> None:
    with pytest.raises(AssertionError):
        given(orders).when(PlaceOrder("o-1", "c-1")).then()
    with pytest.raises(AssertionError):
        given(orders).when(PlaceOrder("o-1", "c-1")).then_raises(OrderRejected)
    with pytest.raises(AssertionError):
        given(orders).then(placed)
