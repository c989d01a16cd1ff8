"""Guarantee: re-sending an acknowledged append (same event ids, same expected
version) writes nothing new and reports the original result, also when the
retries race each other from several processes; the same ids with other
content are rejected and change nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg import sql

from eventfold.errors import DuplicateEventId
from eventfold.store.api import ANY, NO_STREAM, ExpectedVersion, NewEvent, StreamAppend
from eventfold.store.postgres import PostgresStore
from eventfold.store.url import connect
from eventfold.testing.conformance import collect, numbered


async def row_count(url: str, schema: str) -> int:
    async with await psycopg.AsyncConnection.connect(url.split("?")[0]) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "events"))
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def open_store(url: str, **options: Any) -> PostgresStore:
    store = await connect(url, **options)
    assert isinstance(store, PostgresStore)
    return store


async def test_resent_append_reports_the_original_result(pg_url: str, pg_schema: str) -> None:
    async with await open_store(pg_url) as store:
        batch = numbered(3)
        first = await store.append("order-1", batch, NO_STREAM)
        await store.append("order-1", numbered(2, start=3), 3)
        rows = await row_count(pg_url, pg_schema)
        for expected in (NO_STREAM, ANY, 0):
            assert await store.append("order-1", batch, expected) == first
        many = await store.append_many(
            [StreamAppend("order-1", batch, NO_STREAM), StreamAppend("other-1", numbered(1))]
        )
        assert many[0] == first and many[1].version == 1
        assert await row_count(pg_url, pg_schema) == rows + 1
        assert await store.stream_version("order-1") == 5


async def test_same_ids_with_other_content_change_nothing(pg_url: str, pg_schema: str) -> None:
    async with await open_store(pg_url) as store:
        batch = numbered(2)
        await store.append("order-1", batch)
        rows = await row_count(pg_url, pg_schema)
        head = await store.head_position()
        changed = [batch[0], NewEvent(batch[1].type, b'{"n": 99}', event_id=batch[1].event_id)]
        with pytest.raises(DuplicateEventId):
            await store.append("order-1", changed, NO_STREAM)
        with pytest.raises(DuplicateEventId):
            await store.append_many(
                [StreamAppend("fresh-1", numbered(1)), StreamAppend("fresh-2", batch)]
            )
        assert await row_count(pg_url, pg_schema) == rows
        assert await store.head_position() == head
        assert await store.stream_version("fresh-1") == 0


async def test_racing_retries_from_many_stores_store_one_copy(pg_url: str, pg_schema: str) -> None:
    stores = [await open_store(pg_url, pool_max_size=2) for _ in range(8)]
    try:
        await stores[0].append("order-1", numbered(2))
        for expected in (2, ANY):
            batch = numbered(2, start=10)
            start = asyncio.Event()

            async def send(
                store: PostgresStore,
                batch: list[NewEvent],
                expected: ExpectedVersion,
                start: asyncio.Event,
            ) -> Any:
                await start.wait()
                return await store.append("order-1", batch, expected)

            tasks = [asyncio.create_task(send(s, batch, expected, start)) for s in stores]
            await asyncio.sleep(0.01)
            start.set()
            results = await asyncio.gather(*tasks)
            assert len(set(results)) == 1, results
        # fresh streams: the retries also race to create the stream
        batch = numbered(1)
        results = await asyncio.gather(*(s.append("new-1", batch, NO_STREAM) for s in stores))
        assert len(set(results)) == 1
        assert await row_count(pg_url, pg_schema) == 2 + 2 + 2 + 1
        records = await collect(stores[0].read_stream("order-1"))
        assert [r.version for r in records] == [1, 2, 3, 4, 5, 6]
    finally:
        for store in stores:
            await store.close()


async def test_identical_requests_in_one_group(pg_url: str, pg_schema: str) -> None:
    async with await open_store(pg_url) as store:
        batch = numbered(2)
        results = await asyncio.gather(*(store.append("order-1", batch) for _ in range(5)))
        assert len(set(results)) == 1
        assert await row_count(pg_url, pg_schema) == 2


async def test_retry_after_an_unknown_outcome(pg_url: str) -> None:
    """The writer lost the connection after its commit: its retry is a replay."""
    async with await open_store(pg_url) as store:
        batch = numbered(2)
        async with await psycopg.AsyncConnection.connect(pg_url.split("?")[0]) as conn:
            (committed,) = await store.append_within(
                conn, [StreamAppend("order-1", batch, NO_STREAM)]
            )
            await conn.commit()
        assert await store.append("order-1", batch, NO_STREAM) == committed
        assert await store.stream_version("order-1") == 2
