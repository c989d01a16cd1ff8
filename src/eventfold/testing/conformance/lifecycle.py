"""``StreamLifecycle``: truncation, soft and hard deletion, each leaving a
cut marker that keeps the hash chain verifiable."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from eventfold.compliance.chain import verify
from eventfold.errors import InvalidArgument, StreamDeleted, WrongExpectedVersion
from eventfold.store.api import NO_STREAM, StreamAppend
from eventfold.store.capabilities import ChainReader, Inspector, StreamLifecycle
from eventfold.store.chain import GENESIS
from eventfold.testing.conformance.support import Conformance, collect, numbered, numbers

KEY = b"conformance chain key"


async def _hashes(store: Any, stream_id: str) -> dict[int, bytes]:
    if ChainReader not in store.capabilities:
        return {}
    return {
        link.version: link.hash async for link in store.read_chain() if link.stream_id == stream_id
    }


async def _clean(store: Any, key: bytes | None = KEY) -> None:
    if ChainReader in store.capabilities:
        report = await verify(store, key=key)
        assert report.clean, report.findings


class LifecycleConformance(Conformance):
    """``StreamLifecycle``: what a removal leaves, and what it never lets back."""

    capability: ClassVar[type | None] = StreamLifecycle

    async def test_truncate_removes_the_versions_before_and_keeps_the_rest(
        self, open_store: Any
    ) -> None:
        async with open_store() as store:
            await store.append("order-1", numbered(5))
            await store.append("order-2", numbered(2, start=100))
            kept = await collect(store.read_stream("order-1", from_version=3))
            hashes = await _hashes(store, "order-1")
            cut = await store.truncate_stream("order-1", 3, key=KEY)
            assert cut is not None
            assert (cut.stream_id, cut.before_version, cut.reason, cut.archive) == (
                "order-1",
                3,
                "truncated",
                "",
            )
            if hashes:
                assert cut.anchor == hashes[2]
            assert cut.check_signature(KEY) and not cut.check_signature(b"another key")
            assert await collect(store.read_stream("order-1")) == kept
            assert [r.version for r in kept] == [3, 4, 5]
            log = await collect(store.read_all())
            assert [(r.stream_id, r.version) for r in log if r.stream_id == "order-1"] == [
                ("order-1", 3),
                ("order-1", 4),
                ("order-1", 5),
            ]
            assert numbers([r for r in log if r.stream_id == "order-2"]) == [100, 101]
            assert await store.stream_version("order-1") == 5
            assert await collect(store.read_cuts()) == [cut]
            assert await collect(store.read_cuts("order-2")) == []
            # a repeated truncation (a resumed one) is a no-op
            assert await store.truncate_stream("order-1", 3, key=KEY) is None
            assert await store.truncate_stream("order-1", 2) is None
            result = await store.append("order-1", numbered(1, start=5), expected_version=5)
            assert result.version == 6
            assert numbers(await collect(store.read_stream("order-1"))) == [2, 3, 4, 5]
            assert len(await collect(store.read_stream("order-1", backwards=True, limit=2))) == 2
            await _clean(store)

    async def test_truncate_checks_its_arguments_first(self, open_store: Any) -> None:
        async with open_store() as store:
            await store.append("order-1", numbered(3))
            with pytest.raises(InvalidArgument):
                await store.truncate_stream("order-1", 5)  # past the end + 1
            with pytest.raises(InvalidArgument):
                await store.truncate_stream("order-1", 0)
            with pytest.raises(InvalidArgument):
                await store.truncate_stream("order-1", 2, reason="tombstoned")
            with pytest.raises(InvalidArgument):
                await store.truncate_stream("order-1", 2, archive="a\x00b")
            with pytest.raises(InvalidArgument):
                await store.truncate_stream("", 2)
            with pytest.raises(InvalidArgument):
                await store.delete_stream("order-1", key="text")
            assert len(await collect(store.read_stream("order-1"))) == 3
            assert await collect(store.read_cuts()) == []

    async def test_truncate_records_the_archive_it_names(self, open_store: Any) -> None:
        async with open_store() as store:
            await store.append("order-1", numbered(4))
            cut = await store.truncate_stream(
                "order-1", 4, reason="archived", archive="file:///cold/order-1.jsonl.zst"
            )
            assert cut is not None and cut.reason == "archived"
            assert [c.archive for c in await collect(store.read_cuts("order-1"))] == [
                "file:///cold/order-1.jsonl.zst"
            ]
            assert numbers(await collect(store.read_stream("order-1"))) == [3]

    async def test_soft_delete_hides_the_stream_and_lets_it_go_on(self, open_store: Any) -> None:
        async with open_store() as store:
            await store.append("order-1", numbered(3))
            await store.append("order-2", numbered(1, start=10))
            hashes = await _hashes(store, "order-1")
            cut = await store.delete_stream("order-1", key=KEY)
            assert cut is not None and (cut.reason, cut.before_version) == ("deleted", 4)
            if hashes:
                assert cut.anchor == hashes[3]
            assert await collect(store.read_stream("order-1")) == []
            assert [r.stream_id for r in await collect(store.read_all())] == ["order-2"]
            assert await store.stream_version("order-1") == 3
            if Inspector in store.capabilities:
                assert [s.stream_id for s in await store.list_streams()] == ["order-2"]
                assert (await store.stats()).events == 1
            assert await store.delete_stream("order-1") is None  # nothing left to delete
            with pytest.raises(WrongExpectedVersion):
                await store.append("order-1", numbered(1), expected_version=NO_STREAM)
            result = await store.append("order-1", numbered(2, start=3), expected_version=3)
            assert result.version == 5
            again = await collect(store.read_stream("order-1"))
            assert [(r.version, n) for r, n in zip(again, numbers(again), strict=True)] == [
                (4, 3),
                (5, 4),
            ]
            await _clean(store)

    async def test_hard_delete_refuses_every_later_append(self, open_store: Any) -> None:
        async with open_store() as store:
            await store.append("order-1", numbered(2))
            await store.append("order-2", numbered(1))
            cut = await store.delete_stream("order-1", hard=True, key=KEY)
            assert cut is not None and cut.tombstone and cut.before_version == 3
            assert await collect(store.read_stream("order-1")) == []
            for expected in (None, 2, NO_STREAM):
                with pytest.raises(StreamDeleted) as caught:
                    if expected is None:
                        await store.append("order-1", numbered(1))
                    else:
                        await store.append("order-1", numbered(1), expected_version=expected)
                assert caught.value.stream_id == "order-1"
            with pytest.raises(StreamDeleted):
                await store.append("order-1", [])
            head = await store.head_position()
            with pytest.raises(StreamDeleted):  # the whole batch, nothing written
                await store.append_many(
                    [
                        StreamAppend("order-2", numbered(1, start=50)),
                        StreamAppend("order-1", numbered(1, start=60)),
                    ]
                )
            assert await store.head_position() == head
            assert len(await collect(store.read_stream("order-2"))) == 1
            assert await store.delete_stream("order-1", hard=True) is None
            assert await store.delete_stream("order-1") is None
            assert await store.truncate_stream("order-1", 3) is None
            await _clean(store)

    async def test_hard_delete_of_a_stream_never_written(self, open_store: Any) -> None:
        async with open_store() as store:
            cut = await store.delete_stream("order-9", hard=True)
            assert cut is not None and (cut.before_version, cut.anchor) == (1, GENESIS)
            assert cut.signature == ""
            with pytest.raises(StreamDeleted):
                await store.append("order-9", numbered(1), expected_version=NO_STREAM)
            assert await store.stream_version("order-9") == 0

    async def test_a_removed_last_event_never_gives_its_position_again(
        self, open_store: Any
    ) -> None:
        """A reader that saw a removed event resumes after its position: a
        later event must never take that position (or anything before it)."""
        async with open_store() as store:
            await store.append("order-1", numbered(1))
            last = await store.append("order-2", numbered(2))
            await store.delete_stream("order-2")
            after = await store.append("order-3", numbered(1))
            assert after.position > last.position
            seen = await collect(store.read_all(from_position=last.position + 1))
            assert [r.stream_id for r in seen] == ["order-3"]
            assert await store.head_position() >= after.position

    async def test_cuts_are_listed_by_stream_in_the_order_made(self, open_store: Any) -> None:
        async with open_store() as store:
            await store.append("b-1", numbered(4))
            await store.append("a-1", numbered(2))
            await store.truncate_stream("b-1", 2)
            await store.delete_stream("a-1")
            await store.truncate_stream("b-1", 4, reason="scavenged")
            cuts = await collect(store.read_cuts())
            assert [(c.stream_id, c.before_version, c.reason) for c in cuts] == [
                ("a-1", 3, "deleted"),
                ("b-1", 2, "truncated"),
                ("b-1", 4, "scavenged"),
            ]
            assert [c.before_version for c in await collect(store.read_cuts("b-1"))] == [2, 4]
            await _clean(store, key=None)
