"""The writing half of the contract (``EventWriter``): atomic appends,
expected versions, concurrent writers, idempotency, multi-stream appends and
bad input, each checked through the store's own reads."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from eventfold.errors import (
    DuplicateEventId,
    EventfoldError,
    InvalidArgument,
    InvalidStreamId,
    StoreClosed,
    WrongExpectedVersion,
)
from eventfold.store.api import ANY, NO_STREAM, STREAM_EXISTS, EventStore, NewEvent, StreamAppend
from eventfold.testing.conformance.support import (
    Conformance,
    collect,
    new_event,
    numbered,
    numbers,
)


class WriterConformance(Conformance):
    """Appending: all or nothing, in order, checked, idempotent."""

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
                await store.append_many(
                    [StreamAppend("ok-1", numbered(1)), StreamAppend(stream_id, [])]
                )
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

    async def test_closed_store_refuses_work(self, open_store: Any) -> None:
        store: EventStore = await open_store()
        await store.append("c-1", numbered(1))
        await store.close()
        with pytest.raises(StoreClosed):
            await store.append("c-1", numbered(1))
        with pytest.raises(StoreClosed):
            await store.append_many([StreamAppend("c-2", numbered(1))])
        with pytest.raises(StoreClosed):
            await collect(store.read_all())
