"""The projection machinery on each pair of backends: memory or SQLite store
with a SQLite read model, PostgreSQL store with a PostgreSQL read model
(positions there are sparse)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

import eventfold
from eventfold import Envelope
from eventfold.examples.shop.app import Shop, codec
from eventfold.examples.shop.inventory import ReceiveStock
from eventfold.examples.shop.orders import AddLine, PlaceOrder, SubmitOrder
from eventfold.examples.shop.read_models import low_stock_report, order_summary
from eventfold.subscriptions import (
    MemoryCheckpointStore,
    Projection,
    ProjectionFailed,
    ProjectionRunner,
    RetryPolicy,
    SQLCheckpointStore,
    Tx,
    build_as_of,
    open_read_model,
    query_read_model,
)
from tests.unit.test_projection import TALLY_SQL, Added, add, tallies
from tests.unit.test_projection import codec as tally_codec


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param != "postgres":
        store = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'ev.db'}"
        return {
            "store": store,
            "reads": f"sqlite:///{tmp_path / 'reads.db'}",
            "other": f"sqlite:///{tmp_path / 'other.db'}",
        }
    server: str = request.getfixturevalue("postgres_url")
    schema = request.getfixturevalue("pg_schema")
    sep = "&" if "?" in server else "?"
    return {
        "store": request.getfixturevalue("pg_url"),
        "reads": f"{server}{sep}schema={schema}_reads",
        "other": f"{server}{sep}schema={schema}_other",
    }


def runner(store: Any, reads: Any, *projections: Any, **kw: Any) -> ProjectionRunner:
    kw.setdefault("batch_size", 3)
    kw.setdefault("poll_interval", 0.05)
    kw.setdefault("retry", RetryPolicy(attempts=1))
    return ProjectionRunner(store, reads, list(projections), tally_codec, **kw)


async def test_a_failure_keeps_exactly_the_events_before_it(urls: dict[str, str]) -> None:
    async with eventfold.connect(urls["store"]) as store, open_read_model(urls["reads"]) as reads:
        await add(store, "acct-1", 1, 2)
        await add(store, "acct-2", 3, 4, 5)
        with pytest.raises(ProjectionFailed) as caught:
            await runner(store, reads, tallies(fail={4: 9}), batch_size=10).catch_up()
        log = [r async for r in store.read_all()]
        assert caught.value.position == log[3].position and caught.value.version == 2

        def inspect(conn: Any) -> Any:
            rows = conn.execute("SELECT stream, events, total FROM tallies_v1 ORDER BY 1")
            position = conn.execute("SELECT position FROM eventfold_build").fetchone()[0]
            return rows.fetchall(), position

        rows, position = await reads.read(inspect)
        assert [tuple(r) for r in rows] == [("acct-1", 2, 3), ("acct-2", 1, 3)]
        assert position == log[2].position
        await runner(store, reads, tallies()).catch_up()
        result = await query_read_model(reads, "tallies", TALLY_SQL)
        assert result.rows == [("acct-1", 2, 3), ("acct-2", 3, 12)]
        assert result.position == log[-1].position


async def test_versions_switch_and_lag_is_counted(urls: dict[str, str]) -> None:
    async with eventfold.connect(urls["store"]) as store, open_read_model(urls["reads"]) as reads:
        await add(store, "acct-1", 1, 2, 3)
        v1 = runner(store, reads, tallies(1))
        await v1.catch_up()
        await add(store, "acct-1", 4)
        await add(store, "acct-2", 5)
        stale = await v1.query("tallies", TALLY_SQL)
        assert stale.rows == [("acct-1", 3, 6)]
        assert stale.freshness is not None and stale.freshness.events_behind == 2
        assert stale.freshness.head == await store.head_position()
        v2 = runner(store, reads, tallies(2))
        await v2.catch_up()
        fresh = await v2.query("tallies", TALLY_SQL)
        assert (fresh.version, fresh.rows) == (2, [("acct-1", 4, 20), ("acct-2", 1, 10)])
        assert fresh.freshness is not None and fresh.freshness.up_to_date


async def test_time_travel_into_a_separate_database(urls: dict[str, str]) -> None:
    async with (
        eventfold.connect(urls["store"]) as store,
        open_read_model(urls["other"]) as by_time,
        open_read_model(urls["reads"]) as by_position,
    ):
        await add(store, "acct-1", 1, 2)
        await asyncio.sleep(0.02)
        moment = dt.datetime.now(dt.UTC)
        await asyncio.sleep(0.02)
        third = await add(store, "acct-1", 30)
        await add(store, "acct-2", 40)
        build = await build_as_of(store, tallies(), tally_codec, by_time, time=moment)
        assert build.handled == 2 and build.as_of_time == moment.isoformat()
        result = await query_read_model(by_time, "tallies", TALLY_SQL)
        assert result.rows == [("acct-1", 2, 3)]
        await build_as_of(store, tallies(), tally_codec, by_position, position=third)
        result = await query_read_model(by_position, "tallies", TALLY_SQL)
        assert result.rows == [("acct-1", 3, 33)]


async def test_checkpoints_in_the_read_model_database(urls: dict[str, str]) -> None:
    async with open_read_model(urls["reads"]) as reads:
        checkpoints = SQLCheckpointStore(reads)
        assert await checkpoints.load("sub") == 0
        await checkpoints.save("sub", 42)
        await checkpoints.save("sub", 43)
        await checkpoints.save("other", 7)
        assert (await checkpoints.load("sub"), await checkpoints.load("other")) == (43, 7)


async def test_the_shop_reads_its_own_writes_while_the_saga_runs(urls: dict[str, str]) -> None:
    async with eventfold.connect(urls["store"]) as store, open_read_model(urls["reads"]) as reads:
        shop = Shop(store)
        await shop.stock.handle("stock-apple", ReceiveStock("apple", 5))
        saga = shop.checkout.subscribe(store, codec, MemoryCheckpointStore(), poll_interval=0.05)
        saga_task = asyncio.create_task(saga.run())
        async with ProjectionRunner(store, reads, shop.projections, poll_interval=0.05) as r:
            await shop.orders.handle("order-1", PlaceOrder("order-1", "ada"))
            await shop.orders.handle("order-1", AddLine("apple", 4, 250))
            submitted = await shop.orders.handle("order-1", SubmitOrder())
            summary = await order_summary(r, "order-1", min_position=submitted.position)
            assert summary.dicts()[0]["total_cents"] == 1000
            assert summary.dicts()[0]["status"] in ("submitted", "confirmed")
            for _ in range(3000):  # the saga runs in its own time: up to 30 s
                summary = await order_summary(r, "order-1")
                if summary.dicts()[0]["status"] == "confirmed":
                    break
                await asyncio.sleep(0.01)
            assert summary.dicts()[0]["status"] == "confirmed"
            await r.wait_for(await store.head_position())
            low = await low_stock_report(r, threshold=3)
            assert low.dicts() == [{"sku": "apple", "available": 1}]
        saga.stop()
        await saga_task
        assert shop.mail.sent and "apple down to 1" in shop.mail.sent[0]


def unique_amounts() -> Projection:
    """Fails on an amount seen before (a primary key); counts per stream with
    UPDATE-then-INSERT on the row count."""
    proj = Projection(
        "uniques",
        tables={
            "amounts": "amount BIGINT PRIMARY KEY, stream TEXT NOT NULL",
            "per_stream": "stream TEXT PRIMARY KEY, n BIGINT NOT NULL",
        },
    )

    @proj.on(Added)
    def added(tx: Tx, env: Envelope[Added]) -> None:
        cur = tx.execute("UPDATE {per_stream} SET n = n + 1 WHERE stream = ?", (env.stream_id,))
        if cur.rowcount == 0:
            tx.execute("INSERT INTO {per_stream} (stream, n) VALUES (?, 1)", (env.stream_id,))
        tx.execute(
            "INSERT INTO {amounts} (amount, stream) VALUES (?, ?)",
            (env.event.amount, env.stream_id),
        )

    return proj


async def test_a_database_error_names_its_event(urls: dict[str, str]) -> None:
    async with eventfold.connect(urls["store"]) as store, open_read_model(urls["reads"]) as reads:
        await add(store, "acct-1", 1, 2, 3)
        await add(store, "acct-2", 4, 2, 5)  # 2 again: a primary key violation
        with pytest.raises(ProjectionFailed) as caught:
            await runner(store, reads, unique_amounts(), batch_size=10).catch_up()
        log = [r async for r in store.read_all()]
        failed = caught.value
        assert (failed.stream_id, failed.version, failed.position) == ("acct-2", 2, log[4].position)
        assert "amount" in str(failed.cause).lower() or "unique" in str(failed.cause).lower()

        def counts(conn: Any) -> Any:
            return conn.execute("SELECT stream, n FROM per_stream_v1 ORDER BY 1").fetchall()

        assert [tuple(r) for r in await reads.read(counts)] == [("acct-1", 3), ("acct-2", 1)]
