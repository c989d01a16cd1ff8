"""The shop's read models: order summaries and stock levels (with the
low-stock report as a query over them). Each is a versioned projection into a
SQL database of its own; handlers use ``{table}`` for their tables and ``?``
for values, so the same code runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from eventfold import Envelope
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
from eventfold.subscriptions import Index, Projection, ProjectionRunner, QueryResult, Tx

LowStockHook = Callable[[Envelope[Any]], Awaitable[None]]


def order_summaries(*, version: int = 1) -> Projection:
    """One row per order: customer, status, line and item counts, total."""
    proj = Projection(
        "order_summaries",
        version=version,
        categories=["order"],
        tables={
            "order_summaries": """
                order_id TEXT PRIMARY KEY,
                customer_id TEXT NOT NULL,
                status TEXT NOT NULL,
                lines INTEGER NOT NULL,
                items BIGINT NOT NULL,
                total_cents BIGINT NOT NULL,
                updated_at_position BIGINT NOT NULL
            """
        },
        indexes={"order_summaries_by_customer": Index("order_summaries", "customer_id")},
        description="orders with their status and totals",
    )

    @proj.on(OrderPlaced)
    def placed(tx: Tx, env: Envelope[OrderPlaced]) -> None:
        tx.execute(
            "INSERT INTO {order_summaries} (order_id, customer_id, status, lines, items, "
            "total_cents, updated_at_position) VALUES (?, ?, 'open', 0, 0, 0, ?)",
            (env.stream_id, env.event.customer_id, env.position),
        )

    @proj.on(LineAdded)
    def line(tx: Tx, env: Envelope[LineAdded]) -> None:
        e = env.event
        tx.execute(
            "UPDATE {order_summaries} SET lines = lines + 1, items = items + ?, "
            "total_cents = total_cents + ?, updated_at_position = ? WHERE order_id = ?",
            (e.quantity, e.quantity * e.unit_price_cents, env.position, env.stream_id),
        )

    def status(name: str) -> Callable[[Tx, Envelope[Any]], None]:
        def set_status(tx: Tx, env: Envelope[Any]) -> None:
            tx.execute(
                "UPDATE {order_summaries} SET status = ?, updated_at_position = ? "
                "WHERE order_id = ?",
                (name, env.position, env.stream_id),
            )

        return set_status

    proj.on(OrderSubmitted)(status("submitted"))
    proj.on(OrderConfirmed)(status("confirmed"))
    proj.on(OrderDeclined)(status("declined"))
    proj.on(OrderCancelled)(status("cancelled"))
    return proj


def stock_levels(*, on_reserved: LowStockHook | None = None) -> Projection:
    """On hand, reserved and available per SKU (the stream is ``stock-<sku>``).
    ``on_reserved`` is an effect run for each reservation seen live (the shop
    uses it for low-stock mail); a rebuild does not run it again."""
    proj = Projection(
        "stock_levels",
        version=1,
        categories=["stock"],
        tables={
            "stock_levels": """
                sku TEXT PRIMARY KEY,
                on_hand BIGINT NOT NULL,
                reserved BIGINT NOT NULL,
                available BIGINT NOT NULL
            """,
            "stock_reservations": """
                sku TEXT NOT NULL,
                order_id TEXT NOT NULL,
                quantity BIGINT NOT NULL,
                PRIMARY KEY (sku, order_id)
            """,
        },
        indexes={"stock_levels_by_available": Index("stock_levels", "available")},
        description="stock per SKU and the reservations holding it",
    )

    def sku_of(env: Envelope[Any]) -> str:
        return env.stream_id.partition("-")[2]

    @proj.on(StockReceived)
    def received(tx: Tx, env: Envelope[StockReceived]) -> None:
        q = env.event.quantity
        tx.execute(
            "INSERT INTO {stock_levels} (sku, on_hand, reserved, available) VALUES (?, ?, 0, ?) "
            "ON CONFLICT (sku) DO UPDATE SET on_hand = {stock_levels}.on_hand + excluded.on_hand, "
            "available = {stock_levels}.available + excluded.on_hand",
            (sku_of(env), q, q),
        )

    @proj.on(StockReserved)
    def reserved(tx: Tx, env: Envelope[StockReserved]) -> None:
        sku, e = sku_of(env), env.event
        tx.execute(
            "INSERT INTO {stock_reservations} (sku, order_id, quantity) VALUES (?, ?, ?)",
            (sku, e.order_id, e.quantity),
        )
        tx.execute(
            "UPDATE {stock_levels} SET reserved = reserved + ?, available = available - ? "
            "WHERE sku = ?",
            (e.quantity, e.quantity, sku),
        )

    @proj.on(StockReleased)
    def released(tx: Tx, env: Envelope[StockReleased]) -> None:
        sku, e = sku_of(env), env.event
        tx.execute(
            "DELETE FROM {stock_reservations} WHERE sku = ? AND order_id = ?", (sku, e.order_id)
        )
        tx.execute(
            "UPDATE {stock_levels} SET reserved = reserved - ?, available = available + ? "
            "WHERE sku = ?",
            (e.quantity, e.quantity, sku),
        )

    if on_reserved is not None:
        proj.effect(StockReserved)(on_reserved)
    return proj


LOW_STOCK_SQL = (
    "SELECT sku, available FROM {stock_levels} WHERE available < ? ORDER BY available, sku"
)


async def low_stock_report(
    runner: ProjectionRunner, threshold: int = 3, *, min_position: int | None = None
) -> QueryResult:
    """SKUs with fewer than ``threshold`` available, scarcest first, with freshness."""
    return await runner.query(
        "stock_levels", LOW_STOCK_SQL, (threshold,), min_position=min_position
    )


async def order_summary(
    runner: ProjectionRunner, order_id: str, *, min_position: int | None = None
) -> QueryResult:
    return await runner.query(
        "order_summaries",
        "SELECT order_id, customer_id, status, lines, items, total_cents "
        "FROM {order_summaries} WHERE order_id = ?",
        (order_id,),
        min_position=min_position,
    )
