"""Moving removed events to cold storage, in an order that survives kill -9.

For each batch of streams: read the events to move, write them as one
segment (``eventfold.archive.files``: temporary file, fsync, rename), and
only then truncate each stream with reason ``"archived"`` and the segment's
name (``StreamLifecycle.truncate_stream``: the removal and its cut in one
transaction). A crash before the rename leaves a temporary file (deleted on
the next run); after it, a segment some of whose streams were not truncated
yet. The next run first finishes such segments (truncating each stream whose
archived events are still the stream's oldest), so nothing is lost; a
segment part that no cut names is never read back, so nothing is read twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import msgspec

from eventfold.archive.files import ArchiveRoot
from eventfold.archive.segment import FORMAT, FORMAT_VERSION, ArchivedEvent, Header, StreamRange
from eventfold.archive.segment import archived as to_archived
from eventfold.errors import InvalidArgument
from eventfold.store.api import NO_STREAM_ID, EventStore, RecordedEvent
from eventfold.store.capabilities import Inspector, StreamLifecycle, require
from eventfold.store.chain import GENESIS, link_hash
from eventfold.store.checks import validate_stream_id
from eventfold.store.cuts import Cut

SEGMENT_EVENTS = 50_000
"""A segment is closed once it holds this many events (a stream is never
split: one larger than this gets a segment of its own)."""

_ALL_STREAMS = 1 << 62


class Move(msgspec.Struct, frozen=True):
    """One stream's events ``first..before - 1`` to move (``events`` of them)."""

    stream_id: str
    first: int
    before: int

    @property
    def events(self) -> int:
        return self.before - self.first


class Selection(msgspec.Struct, frozen=True):
    """Which events to move: of the streams named in ``streams``, else of
    every stream (of ``category`` only, if given; not written since
    ``idle_since`` only, if given), every event, or with ``older_than``
    those recorded before then (a prefix of each stream)."""

    streams: tuple[str, ...] = ()
    category: str | None = None
    idle_since: datetime | None = None
    older_than: datetime | None = None

    def check(self) -> Selection:
        for stream_id in self.streams:
            validate_stream_id(stream_id)
        for name in ("idle_since", "older_than"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise InvalidArgument(f"{name} must be an aware time", argument=name)
        if self.idle_since is not None and self.category is None:
            raise InvalidArgument("idle_since needs a category", argument="idle_since")
        if not self.streams and self.idle_since is None and self.older_than is None:
            raise InvalidArgument(
                "name streams, a category with idle_since, or older_than", argument="selection"
            )
        return self


class Outcome(msgspec.Struct):
    """What a run did: segments written, streams truncated into them and
    their events; ``resumed`` streams (``resumed_events`` events) truncated
    into segments a crashed run had written. ``events`` counts both."""

    segments: list[str] = []
    streams: int = 0
    events: int = 0
    resumed: int = 0
    resumed_events: int = 0


Progress = Callable[[int], None]
"""Told how many events this run's own segments moved so far."""


async def floor_of(lifecycle: StreamLifecycle, stream_id: str) -> tuple[int, bytes]:
    """The stream's first remaining version and the hash before it (the
    latest cut's ``before_version`` and ``anchor``; 1 and GENESIS if none)."""
    floor, anchor = 1, GENESIS
    async for cut in lifecycle.read_cuts(stream_id):
        if cut.before_version >= floor:
            floor, anchor = cut.before_version, cut.anchor
    return floor, anchor


class Archiver:
    """Moves events of ``store`` (which must offer ``StreamLifecycle``) to
    segments under ``root``; ``key`` signs the cuts."""

    def __init__(
        self,
        store: EventStore,
        root: ArchiveRoot,
        *,
        key: bytes | None = None,
        segment_events: int = SEGMENT_EVENTS,
    ) -> None:
        if segment_events < 1:
            raise InvalidArgument("segment_events must be >= 1", argument="segment_events")
        self.store = store
        self.lifecycle = require(store, StreamLifecycle)
        self.root = root
        self.key = key
        self.segment_events = segment_events

    # --- what to move -------------------------------------------------------------

    async def _candidates(self, selection: Selection) -> AsyncIterator[tuple[str, int]]:
        """(stream, version now) of each stream the selection may touch."""
        if selection.streams:
            for stream_id in dict.fromkeys(selection.streams):
                yield stream_id, await self.store.stream_version(stream_id)
            return
        inspector = require(self.store, Inspector)
        infos = await inspector.list_streams(category=selection.category, limit=_ALL_STREAMS)
        for info in sorted(infos, key=lambda i: i.stream_id):
            if info.stream_id == NO_STREAM_ID:
                continue
            idle = selection.idle_since
            if idle is not None and info.last_recorded_at > idle:
                continue
            yield info.stream_id, info.version

    async def _before(self, selection: Selection, stream_id: str, version: int, floor: int) -> int:
        """The first version that stays."""
        cutoff = selection.older_than
        if cutoff is None:
            return version + 1
        async for record in self.store.read_stream(stream_id, from_version=floor):
            if record.recorded_at >= cutoff:
                return record.version
        return version + 1

    async def plan(self, selection: Selection) -> list[Move]:
        """The moves ``run`` would make now (a dry run)."""
        selection.check()
        moves: list[Move] = []
        async for stream_id, version in self._candidates(selection):
            floor, _ = await floor_of(self.lifecycle, stream_id)
            before = await self._before(selection, stream_id, version, floor)
            if before > floor:
                moves.append(Move(stream_id, floor, before))
        return moves

    # --- moving -------------------------------------------------------------------

    async def run(self, selection: Selection, progress: Progress | None = None) -> Outcome:
        """Finish what a crashed run left, then move what ``selection`` names now."""
        outcome = Outcome()
        await self.resume(outcome)
        batch: list[tuple[Move, bytes, list[RecordedEvent]]] = []
        size = 0
        for move in await self.plan(selection):
            _, anchor = await floor_of(self.lifecycle, move.stream_id)
            records = [
                record
                async for record in self.store.read_stream(
                    move.stream_id, from_version=move.first, to_version=move.before - 1
                )
            ]
            if len(records) != move.events:  # changed since planned: next run
                continue
            batch.append((move, anchor, records))
            size += len(records)
            if size >= self.segment_events:
                await self._flush(batch, outcome, progress)
                batch, size = [], 0
        if batch:
            await self._flush(batch, outcome, progress)
        return outcome

    async def _flush(
        self,
        batch: list[tuple[Move, bytes, list[RecordedEvent]]],
        outcome: Outcome,
        progress: Progress | None,
    ) -> None:
        ranges: dict[str, StreamRange] = {}
        events: list[ArchivedEvent] = []
        for move, anchor, records in batch:
            prev = anchor
            for record in records:
                digest = link_hash(
                    prev,
                    record.stream_id,
                    record.version,
                    record.event_id,
                    record.type,
                    record.schema_version,
                    record.data,
                    record.metadata,
                    record.tags,
                )
                events.append(to_archived(record, digest))
                prev = digest
            ranges[move.stream_id] = StreamRange(
                move.first, move.before - 1, anchor.hex(), prev.hex()
            )
        events.sort(key=lambda e: e.position)
        header = Header(FORMAT, FORMAT_VERSION, datetime.now(UTC), len(events), ranges)
        location = self.root.new_location(events[0].position)
        self.root.write(location, header, events)
        outcome.segments.append(location)
        async with self.root.locked(exclusive=True):
            for move, anchor, _ in batch:
                if await floor_of(self.lifecycle, move.stream_id) != (move.first, anchor):
                    continue  # cut meanwhile by something else: this part stays unread
                await self._truncate(move.stream_id, move.before, location)
                outcome.streams += 1
                outcome.events += move.events
                if progress is not None:
                    progress(outcome.events - outcome.resumed_events)

    async def _truncate(self, stream_id: str, before: int, location: str) -> Cut | None:
        return await self.lifecycle.truncate_stream(
            stream_id, before, reason="archived", archive=location, key=self.key
        )

    async def resume(self, outcome: Outcome | None = None) -> Outcome:
        """Truncate each stream a written segment holds but no cut names yet,
        if its archived events are still the stream's oldest; delete
        temporary files a crashed write left."""
        outcome = Outcome() if outcome is None else outcome
        self.root.remove_temporary()
        named: set[tuple[str, str]] = set()
        async for cut in self.lifecycle.read_cuts():
            if cut.reason == "archived":
                named.add((cut.stream_id, cut.archive))
        for location in self.root.locations():
            header = self.root.header(location)
            pending = sorted(s for s in header.streams if (s, location) not in named)
            if not pending:
                continue
            async with self.root.locked(exclusive=True):
                for stream_id in pending:
                    part = header.streams[stream_id]
                    floor, anchor = await floor_of(self.lifecycle, stream_id)
                    version = await self.store.stream_version(stream_id)
                    if floor != part.first or anchor.hex() != part.prev or version < part.last:
                        continue  # those events went another way: this part stays unread
                    await self._truncate(stream_id, part.last + 1, location)
                    outcome.resumed += 1
                    outcome.resumed_events += part.last - part.first + 1
                    outcome.events += part.last - part.first + 1
        return outcome
