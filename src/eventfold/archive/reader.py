"""Reading archived events back, on request.

``ArchivedStore(store, root)`` is the store with its archive: its
``read_stream`` and ``read_all`` return the archived events of each stream
before the live ones, merged by position, as if they had never moved, so a
``Repository`` over it loads (and travels in time) through them. The store
itself is not changed: code that does not ask for the archive reads only
the live events and pays nothing for it.

An archived event is read back only if a cut of its stream names its
segment and lies above its version: a segment written by a run that was
killed before its truncation is never read, so no event is read twice. A
read holds the archive root's lock shared (``ArchiveRoot.locked``), so an
archive run does not truncate while it is under way: none is missed.
Fast fold reads, DCB queries, SQL and replica views are not passed through
(they would see only the live events); ``Inspector`` and ``ChainReader``
are, and describe the live store.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import ClassVar

from eventfold.archive.files import ArchiveRoot
from eventfold.archive.segment import ArchivedEvent
from eventfold.store.api import EventStore, RecordedEvent
from eventfold.store.capabilities import (
    Capabilities,
    ChainReader,
    Inspector,
    SnapshotStore,
    StreamLifecycle,
    require,
)
from eventfold.store.checks import category_of
from eventfold.store.wrapper import DelegatingStore


class Archived:
    """Which archived events are readable: per segment, per stream, the
    version below which its cut removed them."""

    def __init__(self, visible: dict[str, dict[str, int]]) -> None:
        self.visible = visible

    @classmethod
    async def load(cls, lifecycle: StreamLifecycle, stream_id: str | None = None) -> Archived:
        """From the cuts recorded (of one stream, or all)."""
        visible: dict[str, dict[str, int]] = {}
        async for cut in lifecycle.read_cuts(stream_id):
            if cut.reason == "archived" and cut.archive:
                streams = visible.setdefault(cut.archive, {})
                streams[cut.stream_id] = max(streams.get(cut.stream_id, 0), cut.before_version)
        return cls(visible)

    def of(self, stream_id: str, from_version: int = 1) -> list[str]:
        """The segments with readable events of the stream at or above ``from_version``."""
        return sorted(
            location
            for location, streams in self.visible.items()
            if streams.get(stream_id, 0) > from_version
        )

    def events(self, root: ArchiveRoot, location: str) -> Iterator[ArchivedEvent]:
        """The segment's readable events, by position."""
        streams = self.visible.get(location, {})
        for event in root.events(location):
            if event.version < streams.get(event.stream_id, 0):
                yield event


class ArchivedStore(DelegatingStore):
    """``inner`` (a store offering ``StreamLifecycle``) with the events it
    moved to ``root`` read back in place."""

    passes: ClassVar[Capabilities] = frozenset(
        {SnapshotStore, ChainReader, Inspector, StreamLifecycle}
    )

    def __init__(self, inner: EventStore, root: ArchiveRoot) -> None:
        super().__init__(inner)
        self.root = root
        self.lifecycle = require(inner, StreamLifecycle)

    async def archived(self, stream_id: str | None = None) -> Archived:
        """Which archived events (of one stream, or all) are readable now."""
        self.check_open()
        return await Archived.load(self.lifecycle, stream_id)

    async def archived_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        """The stream's archived events from ``from_version`` on, by version
        (no segment is opened if none holds any)."""
        index = await self.archived(stream_id)
        found = [
            event.record()
            for location in index.of(stream_id, from_version)
            for event in index.events(self.root, location)
            if event.stream_id == stream_id and event.version >= from_version
        ]
        return sorted(found, key=lambda r: r.version)

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        async with self.root.locked(exclusive=False):
            async for record in self._read_stream(
                stream_id, from_version, to_version, backwards, limit
            ):
                yield record

    async def _read_stream(
        self,
        stream_id: str,
        from_version: int,
        to_version: int | None,
        backwards: bool,
        limit: int | None,
    ) -> AsyncIterator[RecordedEvent]:
        top = to_version if to_version is not None else 1 << 62
        old = [r for r in await self.archived_stream(stream_id, from_version) if r.version <= top]
        left = limit
        if backwards:
            async for record in super().read_stream(
                stream_id,
                from_version=from_version,
                to_version=to_version,
                backwards=True,
                limit=limit,
            ):
                left = None if left is None else left - 1
                yield record
            old.reverse()
        for record in old[:left] if left is not None else old:
            yield await self.on_read(record)
            left = None if left is None else left - 1
        if backwards or left == 0:
            return
        async for record in super().read_stream(
            stream_id, from_version=from_version, to_version=to_version, limit=left
        ):
            yield record

    async def read_all(
        self,
        *,
        from_position: int = 0,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        async with self.root.locked(exclusive=False):
            async for record in self._read_all(from_position, categories, types, limit):
                yield record

    async def _read_all(
        self,
        from_position: int,
        categories: Sequence[str] | None,
        types: Sequence[str] | None,
        limit: int | None,
    ) -> AsyncIterator[RecordedEvent]:
        index = await self.archived()

        def wanted(event: ArchivedEvent) -> bool:
            return (
                event.position >= from_position
                and (categories is None or category_of(event.stream_id) in categories)
                and (types is None or event.type in types)
            )

        segments = [
            (e.record() for e in index.events(self.root, location) if wanted(e))
            for location in sorted(index.visible)
        ]
        old = heapq.merge(*segments, key=lambda r: r.position)
        pending = next(old, None)
        count = 0
        live = super().read_all(
            from_position=from_position, categories=categories, types=types, limit=limit
        )
        async for record in live:
            while pending is not None and pending.position < record.position:
                if limit is not None and count >= limit:
                    return
                yield await self.on_read(pending)
                count += 1
                pending = next(old, None)
            if limit is not None and count >= limit:
                return
            yield record
            count += 1
        while pending is not None and (limit is None or count < limit):
            yield await self.on_read(pending)
            count += 1
            pending = next(old, None)
