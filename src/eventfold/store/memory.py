"""The reference backend: everything in one process's memory. Fast, exact, and
the yardstick the conformance suite holds the others to."""

from __future__ import annotations

import asyncio
import bisect
import heapq
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import ClassVar

from eventfold.errors import ConditionFailed, StreamDeleted
from eventfold.store.api import (
    NO_STREAM_ID,
    AppendResult,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
)
from eventfold.store.base import DCBPages, LogReader, LogWriter
from eventfold.store.capabilities import (
    Capabilities,
    CategoryInfo,
    ChainLink,
    ChainReader,
    DCBStore,
    Inspector,
    SnapshotStore,
    StoreStats,
    StreamInfo,
    StreamLifecycle,
)
from eventfold.store.chain import GENESIS, chain
from eventfold.store.checks import (
    category_of,
    check_expected,
    replayed_result,
    validate_snapshot,
    validate_stream_id,
)
from eventfold.store.cuts import (
    Cut,
    CutReason,
    check_key,
    check_truncate,
    cut_time,
    plan_truncate,
)
from eventfold.store.dcb import AppendCondition, Arm, Query, arms, replayed_position
from eventfold.store.paging import Page


class MemoryStore(LogReader, LogWriter, DCBPages):
    """An event store held in memory; ``connect("memory://")`` opens a new, empty one."""

    capabilities: ClassVar[Capabilities] = frozenset(
        {SnapshotStore, ChainReader, Inspector, DCBStore, StreamLifecycle}
    )

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        # a removed event leaves None at its place: positions never move or repeat
        self._log: list[RecordedEvent | None] = []
        self._last_at: datetime | None = None
        # each stream's events still stored, and its (version, last position, last hash)
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._heads: dict[str, tuple[int, int, bytes]] = {}
        self._tombstones: set[str] = set()
        self._cuts: list[Cut] = []
        self._ids: dict[uuid.UUID, RecordedEvent] = {}
        self._snapshots: dict[tuple[str, str], Snapshot] = {}
        self._hashes: dict[int, bytes] = {}
        # DCB indexes: the positions of each type's and each tag's events, ascending
        self._by_type: dict[str, list[int]] = {}
        self._by_tag: dict[str, list[int]] = {}
        self._waiters: list[asyncio.Future[None]] = []

    async def close(self) -> None:
        self.closed = True
        self._wake()

    # --- writing ------------------------------------------------------------------

    async def _write(self, appends: list[StreamAppend]) -> list[AppendResult]:
        # Every check happens before the first write, so a failure writes nothing.
        results: list[AppendResult | None] = []
        for item in appends:
            stored = {
                e.event_id: self._ids[e.event_id] for e in item.events if e.event_id in self._ids
            }
            replay = replayed_result(item, stored)
            if replay is None:
                if item.stream_id in self._tombstones:
                    raise StreamDeleted(item.stream_id)
                version = self._heads.get(item.stream_id, (0, 0, GENESIS))[0]
                check_expected(item.stream_id, item.expected_version, version)
            results.append(replay)
        now = datetime.now(UTC)
        if self._last_at is not None and self._last_at > now:  # the clock was set back
            now = self._last_at
        out: list[AppendResult] = []
        for item, replay in zip(appends, results, strict=True):
            if replay is not None:
                out.append(replay)
                continue
            version, position, prev = self._heads.get(item.stream_id, (0, 0, GENESIS))
            if item.events:
                stream = self._streams.setdefault(item.stream_id, [])
                digests = chain(prev, item.stream_id, version + 1, item.events)
                for event, digest in zip(item.events, digests, strict=True):
                    version += 1
                    record = self._record(item.stream_id, version, event, now, digest)
                    stream.append(record)
                position = record.position
                self._heads[item.stream_id] = (version, position, digests[-1])
            out.append(AppendResult(item.stream_id, version, position))
        self._wake()
        return out

    def _record(
        self, stream_id: str, version: int, event: NewEvent, now: datetime, digest: bytes
    ) -> RecordedEvent:
        """Store one event at the next position, indexed by id, type and tags."""
        position = len(self._log) + 1
        record = RecordedEvent(
            stream_id=stream_id,
            version=version or position,
            position=position,
            event_id=event.event_id,
            type=event.type,
            schema_version=event.schema_version,
            data=bytes(event.data),
            metadata=bytes(event.metadata),
            recorded_at=now,
            tags=tuple(event.tags),
        )
        self._log.append(record)
        self._last_at = now
        self._ids[event.event_id] = record
        self._hashes[position] = digest
        self._by_type.setdefault(event.type, []).append(position)
        for tag in record.tags:
            self._by_tag.setdefault(tag, []).append(position)
        return record

    # --- DCB (DCBStore) -------------------------------------------------------------

    async def _append_events(
        self, events: list[NewEvent], condition: AppendCondition | None
    ) -> int:
        # No await between the checks and the writes: nothing interleaves.
        stored = {e.event_id: self._ids[e.event_id] for e in events if e.event_id in self._ids}
        replay = replayed_position(events, stored)
        if replay is not None:
            return replay
        if condition is not None:
            after = 0 if condition.after is None else condition.after
            first = next(self._matches(condition.query, after + 1, False), None)
            if first is not None:
                raise ConditionFailed(condition.query, condition.after, first)
        now = datetime.now(UTC)
        if self._last_at is not None and self._last_at > now:
            now = self._last_at
        record = None
        for event in events:
            position = len(self._log) + 1
            digest = chain(GENESIS, NO_STREAM_ID, position, [event])[0]
            record = self._record(NO_STREAM_ID, 0, event, now, digest)
        self._wake()
        assert record is not None
        return record.position

    def _arm_positions(self, arm: Arm, start: int, backwards: bool) -> Iterator[int]:
        index = self._by_tag if arm.by == "tag" else self._by_type
        positions = index.get(arm.key, [])
        log = self._log
        if backwards:
            at = bisect.bisect_right(positions, start) - 1
            candidates: Iterator[int] = (positions[i] for i in range(at, -1, -1))
        else:
            at = bisect.bisect_left(positions, start)
            candidates = (positions[i] for i in range(at, len(positions)))
        for position in candidates:
            record = log[position - 1]
            if record is None:
                continue
            if arm.types and record.type not in arm.types:
                continue
            if arm.tags and not set(arm.tags) <= set(record.tags):
                continue
            yield position

    def _matches(self, query: Query, start: int, backwards: bool) -> Iterator[int]:
        """Positions of events matching ``query`` from ``start`` on (down, if
        ``backwards``), each once, in order."""
        if query.match_all:
            top, log = len(self._log), self._log
            if backwards:
                everything = range(min(start, top), 0, -1)
            else:
                everything = range(max(start, 1), top + 1)
            yield from (at for at in everything if log[at - 1] is not None)
            return
        scans = [self._arm_positions(arm, start, backwards) for arm in arms(query)]
        merged = heapq.merge(*scans, reverse=backwards)
        last = None
        for position in merged:
            if position != last:
                yield position
                last = position

    async def _query_page(self, query: Query, position: int, backwards: bool, want: int) -> Page:
        found: list[RecordedEvent] = []
        matches = self._matches(query, position, backwards)
        for at in matches:
            record = self._log[at - 1]
            assert record is not None  # _matches skips removed events
            found.append(record)
            if len(found) == want:
                return found, next(matches, None) is None
        return found, True

    # --- reading ------------------------------------------------------------------

    async def _stream_page(
        self, stream_id: str, low: int, high: int, backwards: bool, want: int
    ) -> Page:
        stream = self._streams.get(stream_id, [])
        if not stream:
            return [], True
        first = stream[0].version  # the versions before it were removed
        low, high = max(low, first) - first, min(high, stream[-1].version) - first + 1
        if backwards:
            start = max(low, high - want)
            return stream[start:high][::-1], start <= low
        stop = min(high, low + want)
        return stream[low:stop], stop >= high

    async def _log_page(
        self,
        position: int,
        categories: tuple[str, ...] | None,
        types: tuple[str, ...] | None,
        want: int,
    ) -> Page:
        log, index = self._log, max(position, 1) - 1
        page: list[RecordedEvent] = []
        while index < len(log) and len(page) < want:
            record = log[index]
            index += 1
            if record is None:
                continue
            if categories is not None and category_of(record.stream_id) not in categories:
                continue
            if types is not None and record.type not in types:
                continue
            page.append(record)
        return page, index >= len(log)

    async def _stream_version(self, stream_id: str) -> int:
        return self._heads.get(stream_id, (0, 0, GENESIS))[0]

    async def _head_position(self) -> int:
        return len(self._log)

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        self.check_open()
        if len(self._log) > after_position:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            pass
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return len(self._log) > after_position

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def read_chain(self) -> AsyncIterator[ChainLink]:
        """Every event with its chain hash, by stream then version (events
        without a stream first, by position)."""
        self.check_open()
        loose = [r for r in self._log if r is not None and r.stream_id == NO_STREAM_ID]
        for records in [loose] + [self._streams[s] for s in sorted(self._streams)]:
            for r in records:
                yield ChainLink(
                    r.stream_id,
                    r.version,
                    r.position,
                    r.event_id,
                    r.type,
                    r.schema_version,
                    r.data,
                    r.metadata,
                    self._hashes[r.position],
                    r.tags,
                )

    # --- inspection (Inspector) ---------------------------------------------------

    async def list_streams(
        self, *, category: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        self.check_open()
        streams = [
            StreamInfo(sid, len(events), events[-1].position, events[-1].recorded_at)
            for sid, events in self._streams.items()
            if category is None or category_of(sid) == category
        ]
        return sorted(streams, key=lambda s: -s.last_position)[:limit]

    async def list_categories(self) -> list[CategoryInfo]:
        self.check_open()
        counts: dict[str, list[int]] = {}
        for sid, events in self._streams.items():
            entry = counts.setdefault(category_of(sid), [0, 0])
            entry[0] += 1
            entry[1] += len(events)
        infos = [CategoryInfo(c, s, e) for c, (s, e) in counts.items()]
        return sorted(infos, key=lambda i: (-i.events, i.category))

    async def stats(self) -> StoreStats:
        self.check_open()
        log = [r for r in self._log if r is not None]
        types = Counter(r.type for r in log)
        return StoreStats(
            events=len(log),
            streams=len(self._streams),
            head_position=len(self._log),
            first_recorded_at=log[0].recorded_at if log else None,
            last_recorded_at=log[-1].recorded_at if log else None,
            types=dict(types.most_common()),
            size_bytes=None,
        )

    # --- snapshots ----------------------------------------------------------------

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        validate_snapshot(snapshot)
        self.check_open()
        self._snapshots[(snapshot.stream_id, snapshot.name)] = snapshot

    async def load_snapshot(self, stream_id: str, name: str) -> Snapshot | None:
        self.check_open()
        return self._snapshots.get((stream_id, name))

    # --- stream lifecycle (StreamLifecycle) -----------------------------------------

    async def truncate_stream(
        self,
        stream_id: str,
        before_version: int,
        *,
        reason: CutReason = "truncated",
        archive: str = "",
        key: bytes | None = None,
    ) -> Cut | None:
        stream_id, before_version, reason, archive = check_truncate(
            stream_id, before_version, reason, archive
        )
        key = check_key(key)
        self.check_open()
        version, floor = self._extent(stream_id)
        tombstoned = stream_id in self._tombstones
        if not plan_truncate(stream_id, before_version, version, floor, tombstoned):
            return None
        return self._remove(stream_id, before_version, reason, archive, key)

    async def delete_stream(
        self, stream_id: str, *, hard: bool = False, key: bytes | None = None
    ) -> Cut | None:
        validate_stream_id(stream_id)
        key = check_key(key)
        self.check_open()
        version, floor = self._extent(stream_id)
        if stream_id in self._tombstones or (not hard and floor > version):
            return None
        return self._remove(stream_id, version + 1, "tombstoned" if hard else "deleted", "", key)

    async def read_cuts(self, stream_id: str | None = None) -> AsyncIterator[Cut]:
        self.check_open()
        if stream_id is not None:
            validate_stream_id(stream_id)
        cuts = [c for c in self._cuts if stream_id is None or c.stream_id == stream_id]
        for cut in sorted(cuts, key=lambda c: c.stream_id):  # stable: in the order made
            yield cut

    def _extent(self, stream_id: str) -> tuple[int, int]:
        """The stream's version and the first version still stored (version
        + 1 if none is)."""
        version = self._heads.get(stream_id, (0, 0, GENESIS))[0]
        return version, version - len(self._streams.get(stream_id, ())) + 1

    def _remove(
        self, stream_id: str, before: int, reason: CutReason, archive: str, key: bytes | None
    ) -> Cut:
        """Remove the stream's events before ``before`` and record the cut:
        no await in here, so nothing interleaves."""
        version, _, head = self._heads.get(stream_id, (0, 0, GENESIS))
        stream = self._streams.get(stream_id, [])
        gone = [r for r in stream if r.version < before]
        anchor = head if before == version + 1 else self._hashes[gone[-1].position]
        for record in gone:
            self._log[record.position - 1] = None
            del self._hashes[record.position]
            del self._ids[record.event_id]
        if len(gone) == len(stream):
            self._streams.pop(stream_id, None)
        else:
            self._streams[stream_id] = stream[len(gone) :]
        if reason == "tombstoned":
            self._tombstones.add(stream_id)
        cut = Cut(stream_id, before, anchor, reason, cut_time(), archive).signed(key)
        self._cuts.append(cut)
        return cut
