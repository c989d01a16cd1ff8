"""One mixin per optional capability (``eventfold.store.capabilities``). A
backend's test class adds the mixin of each capability it declares; each
mixin names its Protocol in ``capability``."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, ClassVar

import msgspec
import pytest

from eventfold.compliance.chain import verify
from eventfold.errors import InvalidArgument, InvalidStreamId, ReadOnlyViolation
from eventfold.repository import Repository, SnapshotPolicy
from eventfold.store.api import NewEvent, Snapshot, StreamAppend
from eventfold.store.capabilities import (
    ChainReader,
    Inspector,
    SnapshotStore,
    SQLReader,
    StreamDataReader,
)
from eventfold.store.chain import GENESIS, link_hash
from eventfold.testing.conformance.core import Tally, folded, tally, tally_codec, tally_event
from eventfold.testing.conformance.support import Conformance, collect, new_event, numbered


class SnapshotConformance(Conformance):
    """``SnapshotStore``: folded states stored beside the events."""

    capability: ClassVar[type | None] = SnapshotStore

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

    async def test_repository_loads_from_a_snapshot(self, open_store: Any) -> None:
        """A Repository with a snapshot policy stores a snapshot and folds
        only the events after it, to the state folding the whole stream gives."""
        codec = tally_codec()
        count = 2500
        async with open_store() as store:
            await store.append("tally-1", [tally_event(codec, i) for i in range(count)])
            snapped = Repository(
                store, tally, codec, snapshots=SnapshotPolicy(every=1200, state_type=Tally)
            )
            await snapped.load("tally-1")  # writes a snapshot at the last version
            stored = await store.load_snapshot("tally-1", "state")
            assert stored is not None and stored.version == count
            await store.append(
                "tally-1", [tally_event(codec, i) for i in range(count, count + 1300)]
            )
            loaded = await snapped.load("tally-1")
            whole = await folded(store, codec, "tally-1", count + 1300)
            assert (loaded.state, loaded.version) == (whole, count + 1300)


class StreamDataConformance(Conformance):
    """``StreamDataReader``: a stream's (type, schema version, data) in pages
    of contiguous versions, the rows ``read_stream`` gives, as stored."""

    capability: ClassVar[type | None] = StreamDataReader

    async def test_stream_data_pages_hold_what_read_stream_holds(self, open_store: Any) -> None:
        async with open_store() as store:
            for start in range(0, 12_000, 1000):
                events = [
                    new_event("Even" if i % 2 == 0 else "Odd", n=i, text="ü" * (i % 5))
                    for i in range(start, start + 1000)
                ]
                await store.append("data-1", events)
            await store.append("data-2", numbered(3))
            for from_version, to_version in [
                (1, None),
                (0, None),
                (4_999, 10_001),
                (11_999, None),
                (12_000, 12_000),
                (12_001, None),
                (7, 3),
                (1, 0),
            ]:
                pages = await collect(
                    store.read_stream_data(
                        "data-1", from_version=from_version, to_version=to_version
                    )
                )
                rows = [row for _, page in pages for row in page]
                expected = await collect(
                    store.read_stream("data-1", from_version=from_version, to_version=to_version)
                )
                assert rows == [(r.type, r.schema_version, r.data) for r in expected]
                if expected:
                    assert pages[0][0] == expected[0].version
                for (first, page), (after, _) in itertools.pairwise(pages):
                    assert page and after == first + len(page)
            assert await collect(store.read_stream_data("missing-1")) == []
            (only,) = await collect(store.read_stream_data("data-2"))
            assert only[0] == 1 and len(only[1]) == 3

    @pytest.mark.parametrize(
        ("stream_id", "kwargs", "error"),
        [
            ("", {}, InvalidStreamId),
            ("$all", {}, InvalidStreamId),
            ("ok-1", {"from_version": -1}, InvalidArgument),
            ("ok-1", {"to_version": "3"}, InvalidArgument),
        ],
    )
    async def test_malformed_stream_data_reads_are_rejected(
        self, open_store: Any, stream_id: str, kwargs: dict[str, Any], error: type[Exception]
    ) -> None:
        async with open_store() as store:
            with pytest.raises(error):
                await collect(store.read_stream_data(stream_id, **kwargs))


class ChainConformance(Conformance):
    """``ChainReader``: the per-stream hash chain, in the one format of
    ``eventfold.store.chain``, over the data as stored."""

    capability: ClassVar[type | None] = ChainReader

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

    async def test_stored_digests_follow_the_one_chain_format(self, open_store: Any) -> None:
        """Every stored digest is ``eventfold.store.chain.link_hash`` of the
        previous one and the event as the store holds it (its data text as
        read back, its tags), however it was appended (alone, several streams at
        once, concurrent appends grouped in one commit) and whatever a
        database makes of the payload (number forms, spacing, escapes)."""
        payloads = [
            b'{"n": 1}',
            b'{"b":  2.50, "a": [1, 2 ,3], "e": 6.95e16}',
            '{"t": "\u00fcn\u00ef \u2603 \\" \\\\ \\n \\u0041"}'.encode(),
            b'{"nested": {"z": null, "y": true, "x": -0.0}}',
            b"{}",
        ]

        def events(start: int) -> list[NewEvent]:
            return [
                NewEvent(
                    "Typed.Name:v-1",
                    payload,
                    metadata='{"actor": "ana",  "extra": {"k": "\u00e9"}}'.encode()
                    if i % 2
                    else b"{}",
                    schema_version=1 + i % 3,
                    tags=() if i % 3 == 0 else tuple(f"tag:{i}-{k}" for k in range(i % 3)),
                )
                for i, payload in enumerate(payloads, start)
            ]

        async with open_store() as store:
            await store.append("lone-1", events(0))
            await store.append("lone-1", events(5))
            await store.append_many(
                [StreamAppend("many-1", events(0)), StreamAppend("many-2", events(1))]
            )
            await asyncio.gather(*(store.append(f"group-{i}", events(i)) for i in range(12)))
            links = [link async for link in store.read_chain()]
            assert len(links) == 80
            prev, stream = GENESIS, ""
            for link in links:
                if link.stream_id != stream:
                    prev, stream = GENESIS, link.stream_id
                expected = link_hash(
                    prev,
                    link.stream_id,
                    link.version,
                    link.event_id,
                    link.type,
                    link.schema_version,
                    link.data,
                    link.metadata,
                    link.tags,
                )
                assert link.hash == expected, (link.stream_id, link.version)
                prev = link.hash
            stored = {
                (r.stream_id, r.version): (r.position, r.data, r.metadata)
                async for r in store.read_all()
            }
            for link in links:
                assert stored[link.stream_id, link.version] == (
                    link.position,
                    link.data,
                    link.metadata,
                )


class InspectorConformance(Conformance):
    """``Inspector``: streams, categories and statistics."""

    capability: ClassVar[type | None] = Inspector

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


class SQLConformance(Conformance):
    """``SQLReader``: one read-only query at a time over the store's tables
    (``events``, ``snapshots``); anything that would write is refused."""

    capability: ClassVar[type | None] = SQLReader

    async def test_sql_reads_the_store_and_refuses_writes(self, open_store: Any) -> None:
        async with open_store() as store:
            for i in range(5):
                await store.append(f"order-{i}", [new_event("Placed", n=i)])
            head = await store.head_position()
            result = await store.sql(
                "SELECT stream_id, version, type FROM events ORDER BY position"
            )
            assert result.columns == ["stream_id", "version", "type"]
            assert [tuple(row) for row in result.rows] == [
                (f"order-{i}", 1, "Placed") for i in range(5)
            ]
            assert not result.truncated
            capped = await store.sql("SELECT position FROM events ORDER BY position", limit=2)
            assert len(capped.rows) == 2 and capped.truncated
            for query in [
                "DELETE FROM events",
                "UPDATE events SET type = 'Changed'",
                "DROP TABLE events",
                "SELECT 1; DELETE FROM events",
                "",
            ]:
                with pytest.raises((ReadOnlyViolation, InvalidArgument)):
                    await store.sql(query)
            assert await store.head_position() == head
            after = [msgspec.json.decode(r.data)["n"] async for r in store.read_all()]
            assert after == list(range(5))
            count = await store.sql("SELECT count(*) FROM events WHERE type = 'Placed'")
            assert [tuple(row) for row in count.rows] == [(5,)]
