"""The contract every backend must pass.

Subclass ``StoreConformance`` in a test module and provide a ``store_url``
fixture that names a fresh, empty store for each test (and optionally
``store_options``). Async tests need ``-p eventfold.testing.plugin``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from eventfold.compliance.chain import verify
from eventfold.domain.decider import Decider
from eventfold.domain.events import EventRegistry
from eventfold.errors import (
    DuplicateEventId,
    EventfoldError,
    InvalidArgument,
    InvalidStreamId,
    SerializationError,
    StoreClosed,
    WrongExpectedVersion,
)
from eventfold.repository import Repository, SnapshotPolicy
from eventfold.serialization.codec import Codec
from eventfold.store.api import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    EventStore,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
)
from eventfold.store.url import connect


def new_event(type: str = "Happened", **data: Any) -> NewEvent:
    return NewEvent(type=type, data=msgspec.json.encode(data or {"n": 0}))


def numbered(n: int, type: str = "Happened", start: int = 0) -> list[NewEvent]:
    return [new_event(type, n=start + i) for i in range(n)]


async def collect(it: AsyncIterator[RecordedEvent]) -> list[RecordedEvent]:
    return [record async for record in it]


def numbers(records: list[RecordedEvent]) -> list[int]:
    return [msgspec.json.decode(r.data)["n"] for r in records]


class StoreConformance:
    """Behaviour shared by every backend."""

    @pytest.fixture
    def store_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def open_store(self, store_url: str, store_options: dict[str, Any]) -> Any:
        def opener() -> Any:
            return connect(store_url, **store_options)

        return opener

    # --- append -------------------------------------------------------------------

    async def test_append_returns_version_and_position(self, open_store: Any) -> None:
        async with open_store() as store:
            first = await store.append("order-1", numbered(3), NO_STREAM)
            assert (first.stream_id, first.version) == ("order-1", 3)
            second = await store.append("order-1", numbered(2, start=3), 3)
            assert second.version == 5
            assert second.position > first.position
            records = await collect(store.read_stream("order-1"))
            assert [r.version for r in records] == [1, 2, 3, 4, 5]
            assert numbers(records) == [0, 1, 2, 3, 4]
            assert records[-1].position == second.position
            assert records[2].position == first.position
            assert await store.stream_version("order-1") == 5
            assert await store.stream_version("order-2") == 0

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

    async def test_unicode_and_punctuated_stream_ids(self, open_store: Any) -> None:
        async with open_store() as store:
            for sid in ["café-1", "user-ana@example.com", "a:b/c.d=e+f", "x" * 200, "订单-7"]:
                await store.append(sid, numbered(1), NO_STREAM)
                assert await store.stream_version(sid) == 1
                assert [r.stream_id for r in await collect(store.read_stream(sid))] == [sid]

    async def test_large_payload_round_trips(self, open_store: Any) -> None:
        async with open_store() as store:
            blob = "z" * 1_000_000
            await store.append("big-1", [new_event(blob=blob)])
            (record,) = await collect(store.read_stream("big-1"))
            assert msgspec.json.decode(record.data)["blob"] == blob

    async def test_empty_append_checks_version_and_writes_nothing(self, open_store: Any) -> None:
        async with open_store() as store:
            empty = await store.append("order-1", [], NO_STREAM)
            assert (empty.version, empty.position) == (0, 0)
            done = await store.append("order-1", numbered(2))
            again = await store.append("order-1", [], 2)
            assert (again.version, again.position) == (2, done.position)
            with pytest.raises(WrongExpectedVersion):
                await store.append("order-1", [], NO_STREAM)
            assert await store.head_position() == done.position

    # --- expected versions ----------------------------------------------------------

    @pytest.mark.parametrize(
        ("existing", "expected", "ok"),
        [
            (0, ANY, True),
            (2, ANY, True),
            (0, NO_STREAM, True),
            (2, NO_STREAM, False),
            (0, STREAM_EXISTS, False),
            (2, STREAM_EXISTS, True),
            (0, 0, True),
            (2, 2, True),
            (2, 1, False),
            (2, 3, False),
            (0, 1, False),
        ],
    )
    async def test_expected_version(
        self, open_store: Any, existing: int, expected: Any, ok: bool
    ) -> None:
        async with open_store() as store:
            if existing:
                await store.append("s-1", numbered(existing))
            head = await store.head_position()
            if ok:
                result = await store.append("s-1", numbered(1), expected)
                assert result.version == existing + 1
            else:
                with pytest.raises(WrongExpectedVersion) as info:
                    await store.append("s-1", numbered(1), expected)
                assert info.value.stream_id == "s-1"
                assert info.value.expected == expected
                assert info.value.actual == existing
                assert isinstance(info.value, EventfoldError)
                assert await store.stream_version("s-1") == existing
                assert await store.head_position() == head

    async def test_concurrent_writers_one_wins_per_version(self, open_store: Any) -> None:
        async with open_store() as store:
            await store.append("race-1", numbered(1), NO_STREAM)
            for version in range(1, 6):
                outcomes = await asyncio.gather(
                    *(store.append("race-1", numbered(1, start=i), version) for i in range(32)),
                    return_exceptions=True,
                )
                wins = [o for o in outcomes if not isinstance(o, BaseException)]
                losses = [o for o in outcomes if isinstance(o, BaseException)]
                assert len(wins) == 1
                assert wins[0].version == version + 1
                assert all(isinstance(o, WrongExpectedVersion) for o in losses)
                assert all(
                    o.actual == version + 1 for o in losses if isinstance(o, WrongExpectedVersion)
                )
            records = await collect(store.read_stream("race-1"))
            assert [r.version for r in records] == list(range(1, 7))

    async def test_concurrent_writers_on_distinct_streams_all_land(self, open_store: Any) -> None:
        async with open_store() as store:
            results = await asyncio.gather(
                *(store.append(f"w-{i}", numbered(3), NO_STREAM) for i in range(50))
            )
            assert all(r.version == 3 for r in results)
            records = await collect(store.read_all())
            assert len(records) == 150
            positions = [r.position for r in records]
            assert positions == sorted(set(positions))
            for result in results:
                mine = [r for r in records if r.stream_id == result.stream_id]
                assert [r.version for r in mine] == [1, 2, 3]
                assert mine[-1].position == result.position

    # --- idempotency ------------------------------------------------------------------

    async def test_retry_with_same_ids_writes_nothing(self, open_store: Any) -> None:
        async with open_store() as store:
            batch = numbered(3)
            first = await store.append("order-9", batch, NO_STREAM)
            await store.append("order-9", numbered(1, start=10))
            head = await store.head_position()
            again = await store.append("order-9", batch, NO_STREAM)
            assert again == first
            assert await store.head_position() == head
            assert await store.stream_version("order-9") == 4
            tail = await store.append("order-9", batch[1:], ANY)
            assert tail == first

    async def test_same_id_with_other_content_is_rejected(self, open_store: Any) -> None:
        async with open_store() as store:
            event = new_event(n=1)
            await store.append("order-9", [event])
            head = await store.head_position()
            changed = NewEvent(type=event.type, data=b'{"n": 2}', event_id=event.event_id)
            with pytest.raises(DuplicateEventId) as info:
                await store.append("order-9", [changed])
            assert info.value.event_id == event.event_id
            renamed = NewEvent(type="Other", data=event.data, event_id=event.event_id)
            with pytest.raises(DuplicateEventId):
                await store.append("order-9", [renamed])
            with pytest.raises(DuplicateEventId):
                await store.append("order-10", [event])
            with pytest.raises(DuplicateEventId):
                await store.append("order-9", [*numbered(1), event])
            with pytest.raises(DuplicateEventId):
                await store.append("order-9", [event, *numbered(1)])
            assert await store.head_position() == head

    async def test_duplicate_ids_within_one_append_are_rejected(self, open_store: Any) -> None:
        async with open_store() as store:
            event = new_event()
            with pytest.raises(InvalidArgument):
                await store.append("order-1", [event, event])
            assert await store.head_position() == 0

    # --- multi-stream appends -----------------------------------------------------------

    async def test_append_many_is_atomic(self, open_store: Any) -> None:
        async with open_store() as store:
            await store.append("stock-1", numbered(1))
            head = await store.head_position()
            with pytest.raises(WrongExpectedVersion) as info:
                await store.append_many(
                    [
                        StreamAppend("order-1", numbered(2), NO_STREAM),
                        StreamAppend("stock-1", numbered(1), 5),
                    ]
                )
            assert info.value.stream_id == "stock-1"
            assert await store.head_position() == head
            assert await store.stream_version("order-1") == 0
            results = await store.append_many(
                [
                    StreamAppend("order-1", numbered(2), NO_STREAM),
                    StreamAppend("stock-1", numbered(1), 1),
                ]
            )
            assert [(r.stream_id, r.version) for r in results] == [("order-1", 2), ("stock-1", 2)]
            assert results[0].position < results[1].position
            again = await store.append_many(
                [StreamAppend("stock-1", numbered(1), 2), StreamAppend("order-1", [], 2)]
            )
            assert [r.version for r in again] == [3, 2]

    async def test_append_many_rejects_a_stream_twice(self, open_store: Any) -> None:
        async with open_store() as store:
            with pytest.raises(InvalidArgument):
                await store.append_many(
                    [StreamAppend("a-1", numbered(1)), StreamAppend("a-1", numbered(1))]
                )
            with pytest.raises(InvalidArgument):
                await store.append_many([])
            assert await store.head_position() == 0

    # --- reading streams ----------------------------------------------------------------

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

    async def test_read_stream_pages_through_long_streams(self, open_store: Any) -> None:
        async with open_store() as store:
            await store.append("long-1", numbered(2500))
            records = await collect(store.read_stream("long-1"))
            assert numbers(records) == list(range(2500))
            backwards = await collect(store.read_stream("long-1", backwards=True))
            assert numbers(backwards) == list(range(2499, -1, -1))

    async def test_repository_load_folds_long_mixed_streams(self, open_store: Any) -> None:
        """Repository.load (a backend's fast fold path, where it has one) gives
        what folding ``read_stream`` gives: across pages, with several types,
        an old shape upcast on the way, from a snapshot and up to a version;
        and a bad payload is reported at its own version."""

        class Added(msgspec.Struct, frozen=True):
            n: int

        class Noted(msgspec.Struct, frozen=True):
            text: str

        class Tally(msgspec.Struct, frozen=True):
            count: int = 0
            total: int = 0
            last: str = ""

        registry = EventRegistry()
        registry.add(Added, "Added", version=2)
        registry.add(Noted, "Noted")
        registry.add_upcaster("Added", 1, lambda old: {"n": old["value"]})
        codec = Codec(registry)

        def evolve(state: Tally, event: Any) -> Tally:
            if isinstance(event, Added):
                return Tally(state.count + 1, state.total + event.n, state.last)
            return Tally(state.count + 1, state.total, event.text)

        tally: Decider[Any, Any, Tally] = Decider(lambda c, s: [], evolve, Tally)

        def event(i: int) -> NewEvent:
            if i % 7 == 3:
                return codec.encode(Noted(f"note {i}"))
            if i % 11 == 5:  # stored in the old shape
                return NewEvent("Added", msgspec.json.encode({"value": i}), schema_version=1)
            return codec.encode(Added(i))

        count = 6100  # more than a page of every backend's fold path
        async with open_store() as store:
            for start in range(0, count, 1000):
                stop = min(start + 1000, count)
                await store.append("tally-1", [event(i) for i in range(start, stop)])

            async def folded(to: int) -> Tally:
                records = await collect(store.read_stream("tally-1", to_version=to))
                return tally.fold(codec.decode_event(r) for r in records)

            repo = Repository(store, tally, codec)
            loaded = await repo.load("tally-1")
            assert (loaded.state, loaded.version) == (await folded(count), count)
            assert (await repo.load("tally-1", version=5003)).state == await folded(5003)
            assert (await repo.load("tally-1", version=5003)).version == 5003

            snapshots = SnapshotPolicy(every=1200, state_type=Tally)
            snapped = Repository(store, tally, codec, snapshots=snapshots)
            await snapped.load("tally-1")  # writes a snapshot at the last version
            await store.append("tally-1", [event(i) for i in range(count, count + 1300)])
            loaded = await snapped.load("tally-1")
            assert (loaded.state, loaded.version) == (await folded(count + 1300), count + 1300)

            await store.append("tally-1", [NewEvent("Added", b'{"n": "x"}', schema_version=2)])
            with pytest.raises(SerializationError, match=f"version {count + 1301}"):
                await repo.load("tally-1")

    # --- reading the log --------------------------------------------------------------

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
            assert await collect(store.read_all(from_position=positions[-1] + 1)) == []

    async def test_read_all_pages_through_a_long_log(self, open_store: Any) -> None:
        async with open_store() as store:
            for i in range(5):
                await store.append(f"p-{i}", numbered(600, start=i * 600))
            records = await collect(store.read_all())
            assert numbers(records) == list(range(3000))

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

    # --- bad input --------------------------------------------------------------------

    @pytest.mark.parametrize(
        "stream_id",
        ["", "x" * 201, "has space", "tab\there", "nl\n", "nul\x00", "$system", None, 42, b"bytes"],
    )
    async def test_invalid_stream_ids_are_rejected(self, open_store: Any, stream_id: Any) -> None:
        async with open_store() as store:
            with pytest.raises(InvalidStreamId):
                await store.append(stream_id, numbered(1))
            with pytest.raises(InvalidStreamId):
                await collect(store.read_stream(stream_id))
            assert await store.head_position() == 0

    @pytest.mark.parametrize(
        "event",
        [
            NewEvent(type="T", data=b"not json"),
            NewEvent(type="T", data=b"[1, 2]"),
            NewEvent(type="T", data=b'{"a": 1'),
            NewEvent(type="T", data=b"{}", metadata=b"nope"),
            NewEvent(type="T", data=b'{"a": "\xc3("}'),  # not UTF-8 inside a string
            NewEvent(type="T", data=b'{"\xff": 1}'),  # ... inside a key
            NewEvent(type="T", data=b'{"a": "\xed\xa0\x80"}'),  # an encoded surrogate
            NewEvent(type="T", data=b"{}", metadata=b'{"actor": "\xc0\xaf"}'),  # overlong
            NewEvent(type="T", data=b'{"a": 1e999}'),
            NewEvent(type="", data=b"{}"),
            NewEvent(type="bad type", data=b"{}"),
            NewEvent(type="Robert'); DROP TABLE events;--", data=b"{}"),
            NewEvent(type="T", data=b"{}", schema_version=0),
            NewEvent(type="T", data="{}"),  # type: ignore[arg-type]
            {"type": "T", "data": b"{}"},
        ],
    )
    async def test_malformed_events_are_rejected(self, open_store: Any, event: Any) -> None:
        async with open_store() as store:
            with pytest.raises(InvalidArgument):
                await store.append("ok-1", [new_event(), event])
            assert await store.head_position() == 0
            assert await store.stream_version("ok-1") == 0

    @pytest.mark.parametrize("expected", [-1, 1.5, "1", True, None])
    async def test_malformed_expected_versions_are_rejected(
        self, open_store: Any, expected: Any
    ) -> None:
        async with open_store() as store:
            with pytest.raises(InvalidArgument):
                await store.append("ok-1", numbered(1), expected)
            assert await store.head_position() == 0

    @pytest.mark.parametrize(
        "kwargs",
        [{"from_version": -1}, {"limit": -5}, {"to_version": "3"}],
    )
    async def test_malformed_stream_reads_are_rejected(
        self, open_store: Any, kwargs: dict[str, Any]
    ) -> None:
        async with open_store() as store:
            with pytest.raises(InvalidArgument):
                await collect(store.read_stream("ok-1", **kwargs))

    @pytest.mark.parametrize(
        "kwargs",
        [{"from_position": -1}, {"limit": -1}, {"types": "Placed"}, {"categories": [1]}],
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
            records = await collect(store.read_all())
            assert len(records) == 2
            assert msgspec.json.decode(records[0].data)["text"] == hostile

    # --- snapshots and lifecycle --------------------------------------------------------

    async def test_snapshots_save_load_replace(self, open_store: Any) -> None:
        async with open_store() as store:
            assert await store.load_snapshot("order-1", "order") is None
            await store.save_snapshot(Snapshot("order-1", "order", 5, 1, b'{"total": 5}'))
            await store.save_snapshot(Snapshot("order-1", "other", 2, 1, b'{"x": 1}'))
            await store.save_snapshot(Snapshot("order-1", "order", 9, 2, b'{"total": 9}'))
            snap = await store.load_snapshot("order-1", "order")
            assert snap == Snapshot("order-1", "order", 9, 2, b'{"total": 9}')
            other = await store.load_snapshot("order-1", "other")
            assert other is not None and other.version == 2

    @pytest.mark.parametrize(
        "snapshot",
        [
            Snapshot("", "state", 1, 1, b"{}"),
            Snapshot("ok-1", "", 1, 1, b"{}"),
            Snapshot("ok-1", "state", -1, 1, b"{}"),
            Snapshot("ok-1", "state", 1, 1, "{}"),  # type: ignore[arg-type]
            {"stream_id": "ok-1"},
        ],
    )
    async def test_malformed_snapshots_are_rejected(self, open_store: Any, snapshot: Any) -> None:
        async with open_store() as store:
            with pytest.raises(InvalidArgument):
                await store.save_snapshot(snapshot)
            assert await store.load_snapshot("ok-1", "state") is None

    async def test_hash_chain_verifies_clean(self, open_store: Any) -> None:
        async with open_store() as store:
            await asyncio.gather(
                *(store.append(f"chain-{i % 7}", numbered(3, start=i)) for i in range(40))
            )
            await store.append_many(
                [StreamAppend("chain-0", numbered(2)), StreamAppend("chain-x", numbered(1))]
            )
            await store.append("chain-u", [new_event(text="ünïcode \u2603")])
            report = await verify(store)
            assert report.clean, report.findings
            assert (report.streams, report.events) == (9, 124)
            links = [link async for link in store.read_chain()]
            assert [(link.stream_id, link.version) for link in links] == sorted(
                (link.stream_id, link.version) for link in links
            )

    async def test_inspection_counts_streams_categories_and_types(self, open_store: Any) -> None:
        async with open_store() as store:
            await store.append("order-1", [new_event("Placed"), new_event("Paid")])
            await store.append("order-2", [new_event("Placed")])
            last = await store.append("stock-1", [new_event("Received")])
            streams = await store.list_streams()
            assert [(s.stream_id, s.version) for s in streams] == [
                ("stock-1", 1),
                ("order-2", 1),
                ("order-1", 2),
            ]
            assert streams[0].last_position == last.position
            assert streams[0].last_recorded_at.tzinfo is not None
            assert [s.stream_id for s in await store.list_streams(category="order", limit=1)] == [
                "order-2"
            ]
            categories = await store.list_categories()
            assert [(c.category, c.streams, c.events) for c in categories] == [
                ("order", 2, 3),
                ("stock", 1, 1),
            ]
            stats = await store.stats()
            assert (stats.events, stats.streams, stats.head_position) == (4, 3, last.position)
            assert stats.types == {"Placed": 2, "Paid": 1, "Received": 1}
            assert stats.first_recorded_at is not None and stats.last_recorded_at is not None

    async def test_closed_store_refuses_work(self, open_store: Any) -> None:
        store: EventStore = await open_store()
        await store.append("c-1", numbered(1))
        await store.close()
        with pytest.raises(StoreClosed):
            await store.append("c-1", numbered(1))
        with pytest.raises(StoreClosed):
            await collect(store.read_all())
