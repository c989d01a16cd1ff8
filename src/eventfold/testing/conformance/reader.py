"""The reading half of the contract (``EventReader``), for anything that reads
like the log: a store, or a copy of its log such as the bus mirror.

``open_store()`` must give an object with the reader's methods that can be
filled with ``append`` and ``append_many`` (a store is both; a read-only
copy is filled through whatever feeds it, see tests/conformance/test_mirror.py).
The tests only arrange events with those two, and check everything with the
reader's methods.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from eventfold.errors import EventfoldError, InvalidArgument, InvalidStreamId, StoreClosed
from eventfold.store.api import NewEvent
from eventfold.testing.conformance.support import (
    Conformance,
    collect,
    new_event,
    numbered,
    numbers,
)


class ReaderConformance(Conformance):
    """Reading streams and the log: order, ranges, paging, filters, waiting,
    every field round-tripping, and bad arguments refused."""

    async def test_record_fields_round_trip(self, open_store: Any) -> None:
        async with open_store() as store:
            event_id = uuid.uuid4()
            meta = {"correlation_id": "c-1", "actor": "ana", "nested": {"a": [1, 2]}}
            data = {"text": 'héllo \u2603 "quoted"', "amount": 12.5, "flag": True, "none": None}
            before = datetime.now(UTC)
            await store.append(
                "cart-x",
                [
                    NewEvent(
                        type="Item.Added:v-2",
                        data=msgspec.json.encode(data),
                        metadata=msgspec.json.encode(meta),
                        event_id=event_id,
                        schema_version=3,
                    )
                ],
            )
            (record,) = await collect(store.read_stream("cart-x"))
            assert record.event_id == event_id
            assert record.type == "Item.Added:v-2"
            assert record.schema_version == 3
            assert msgspec.json.decode(record.data) == data
            assert msgspec.json.decode(record.metadata) == meta
            assert record.recorded_at.tzinfo is not None
            assert record.recorded_at.utcoffset() == UTC.utcoffset(None)
            assert abs((record.recorded_at - before).total_seconds()) < 60
            (logged,) = await collect(store.read_all())
            assert logged == record

    async def test_unicode_and_punctuated_stream_ids(self, open_store: Any) -> None:
        async with open_store() as store:
            for sid in ["café-1", "user-ana@example.com", "a:b/c.d=e+f", "x" * 200, "订单-7"]:
                await store.append(sid, numbered(1))
                assert await store.stream_version(sid) == 1
                assert [r.stream_id for r in await collect(store.read_stream(sid))] == [sid]

    async def test_large_payload_round_trips(self, open_store: Any) -> None:
        async with open_store() as store:
            blob = "z" * 1_000_000
            await store.append("big-1", [new_event(blob=blob)])
            (record,) = await collect(store.read_stream("big-1"))
            assert msgspec.json.decode(record.data)["blob"] == blob

    # --- streams --------------------------------------------------------------------

    async def test_read_stream_ranges_and_directions(self, open_store: Any) -> None:
        async with open_store() as store:
            await store.append("r-1", numbered(10))
            await store.append("r-2", numbered(3, start=100))

            async def versions(**kw: Any) -> list[int]:
                return [r.version for r in await collect(store.read_stream("r-1", **kw))]

            assert await versions() == list(range(1, 11))
            assert await versions(from_version=4) == list(range(4, 11))
            assert await versions(from_version=4, to_version=6) == [4, 5, 6]
            assert await versions(to_version=3) == [1, 2, 3]
            assert await versions(limit=2) == [1, 2]
            assert await versions(backwards=True) == list(range(10, 0, -1))
            assert await versions(backwards=True, limit=3) == [10, 9, 8]
            assert await versions(backwards=True, from_version=2, to_version=5) == [5, 4, 3, 2]
            assert await versions(from_version=11) == []
            assert await versions(from_version=0) == list(range(1, 11))
            assert await versions(to_version=0) == []
            assert await versions(limit=0) == []
            assert await versions(from_version=7, to_version=3) == []
            assert await collect(store.read_stream("missing-1")) == []
            assert numbers(await collect(store.read_stream("r-2"))) == [100, 101, 102]
            assert await store.stream_version("r-1") == 10
            assert await store.stream_version("missing-1") == 0

    async def test_read_stream_pages_through_long_streams(self, open_store: Any) -> None:
        async with open_store() as store:
            await store.append("long-1", numbered(2500))
            records = await collect(store.read_stream("long-1"))
            assert numbers(records) == list(range(2500))
            backwards = await collect(store.read_stream("long-1", backwards=True))
            assert numbers(backwards) == list(range(2499, -1, -1))
            middle = await collect(store.read_stream("long-1", from_version=900, limit=1300))
            assert [r.version for r in middle] == list(range(900, 2200))

    # --- the log --------------------------------------------------------------------

    async def test_read_all_in_global_order_with_filters(self, open_store: Any) -> None:
        async with open_store() as store:
            await store.append("order-1", [new_event("Placed", n=1), new_event("Confirmed", n=2)])
            await store.append("stock-1", [new_event("Received", n=3)])
            await store.append("order-2", [new_event("Placed", n=4)])
            await store.append("orderly-1", [new_event("Placed", n=5)])
            everything = await collect(store.read_all())
            assert numbers(everything) == [1, 2, 3, 4, 5]
            positions = [r.position for r in everything]
            assert positions == sorted(set(positions))
            assert await store.head_position() == positions[-1]
            assert numbers(await collect(store.read_all(categories=["order"]))) == [1, 2, 4]
            assert numbers(await collect(store.read_all(types=["Placed"]))) == [1, 4, 5]
            both = store.read_all(categories=["order", "stock"], types=["Placed", "Received"])
            assert numbers(await collect(both)) == [1, 3, 4]
            assert numbers(await collect(store.read_all(from_position=positions[2]))) == [3, 4, 5]
            assert numbers(await collect(store.read_all(from_position=positions[2] + 1))) == [4, 5]
            assert numbers(await collect(store.read_all(limit=2))) == [1, 2]
            assert numbers(await collect(store.read_all(types=["Placed"], limit=2))) == [1, 4]
            assert await collect(store.read_all(categories=[])) == []
            assert await collect(store.read_all(types=[])) == []
            assert await collect(store.read_all(from_position=positions[-1] + 1)) == []

    async def test_read_all_pages_through_a_long_log(self, open_store: Any) -> None:
        async with open_store() as store:
            for i in range(5):
                await store.append(f"p-{i}", numbered(600, start=i * 600))
            records = await collect(store.read_all())
            assert numbers(records) == list(range(3000))
            some = await collect(store.read_all(categories=["p"], limit=1100))
            assert numbers(some) == list(range(1100))

    async def test_read_all_from_the_middle_of_a_batch(self, open_store: Any) -> None:
        async with open_store() as store:
            await store.append("m-1", numbered(5))
            records = await collect(store.read_all())
            tail = await collect(store.read_all(from_position=records[2].position))
            assert numbers(tail) == [2, 3, 4]

    async def test_wait_for_events(self, open_store: Any) -> None:
        async with open_store() as store:
            assert await store.wait_for_events(0, 0.05) is False

            async def later() -> None:
                await asyncio.sleep(0.05)
                await store.append("w-1", numbered(1))

            task = asyncio.create_task(later())
            assert await store.wait_for_events(0, 10.0) is True
            await task
            head = await store.head_position()
            assert await store.wait_for_events(head - 1, 0.01) is True
            assert await store.wait_for_events(head, 0.05) is False

    # --- bad input ------------------------------------------------------------------

    @pytest.mark.parametrize(
        "stream_id",
        ["", "x" * 201, "has space", "tab\there", "nl\n", "nul\x00", "$system", None, 42, b"bytes"],
    )
    async def test_invalid_stream_ids_are_rejected_on_read(
        self, open_store: Any, stream_id: Any
    ) -> None:
        async with open_store() as store:
            with pytest.raises(InvalidStreamId):
                await collect(store.read_stream(stream_id))
            with pytest.raises(InvalidStreamId):
                await store.stream_version(stream_id)

    @pytest.mark.parametrize(
        "kwargs",
        [{"from_version": -1}, {"limit": -5}, {"to_version": "3"}, {"from_version": True}],
    )
    async def test_malformed_stream_reads_are_rejected(
        self, open_store: Any, kwargs: dict[str, Any]
    ) -> None:
        async with open_store() as store:
            with pytest.raises(InvalidArgument):
                await collect(store.read_stream("ok-1", **kwargs))

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"from_position": -1},
            {"limit": -1},
            {"types": "Placed"},
            {"categories": [1]},
            {"categories": b"order"},
            {"categories": 5},
            {"types": object()},
        ],
    )
    async def test_malformed_log_reads_are_rejected(
        self, open_store: Any, kwargs: dict[str, Any]
    ) -> None:
        async with open_store() as store:
            with pytest.raises(InvalidArgument):
                await collect(store.read_all(**kwargs))

    async def test_hostile_strings_are_data_not_sql(self, open_store: Any) -> None:
        async with open_store() as store:
            hostile = "x'); DROP TABLE events; --"
            await store.append("evil-" + hostile.replace(" ", "_"), [new_event(text=hostile)])
            await store.append("ok-1", numbered(1))
            assert await collect(store.read_all(categories=[hostile], types=[hostile])) == []
            assert await collect(store.read_all(types=[hostile])) == []
            records = await collect(store.read_all())
            assert len(records) == 2
            assert msgspec.json.decode(records[0].data)["text"] == hostile

    async def test_closed_reader_refuses_reads(self, open_store: Any) -> None:
        store = await open_store()
        await store.append("c-1", numbered(1))
        await store.close()
        with pytest.raises(StoreClosed) as info:
            await collect(store.read_all())
        assert isinstance(info.value, EventfoldError)
        with pytest.raises(StoreClosed):
            await collect(store.read_stream("c-1"))
        with pytest.raises(StoreClosed):
            await store.head_position()
