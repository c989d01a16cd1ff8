"""The reference backend: everything in one process's memory. Fast, exact, and
the yardstick the conformance suite holds the others to."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import ClassVar

from eventfold.store.api import AppendResult, RecordedEvent, Snapshot, StreamAppend
from eventfold.store.base import LogReader, LogWriter
from eventfold.store.capabilities import (
    Capabilities,
    CategoryInfo,
    ChainLink,
    ChainReader,
    Inspector,
    SnapshotStore,
    StoreStats,
    StreamInfo,
)
from eventfold.store.chain import GENESIS, chain
from eventfold.store.checks import (
    category_of,
    check_expected,
    replayed_result,
    validate_snapshot,
)
from eventfold.store.paging import Page


class MemoryStore(LogReader, LogWriter):
    """An event store held in memory; ``connect("memory://")`` opens a new, empty one."""

    capabilities: ClassVar[Capabilities] = frozenset({SnapshotStore, ChainReader, Inspector})

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._log: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._ids: dict[uuid.UUID, RecordedEvent] = {}
        self._snapshots: dict[tuple[str, str], Snapshot] = {}
        self._hashes: dict[int, bytes] = {}
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
                stream = self._streams.get(item.stream_id, [])
                check_expected(item.stream_id, item.expected_version, len(stream))
            results.append(replay)
        now = datetime.now(UTC)
        if self._log and self._log[-1].recorded_at > now:  # the clock was set back
            now = self._log[-1].recorded_at
        out: list[AppendResult] = []
        for item, replay in zip(appends, results, strict=True):
            if replay is not None:
                out.append(replay)
                continue
            stream = self._streams.setdefault(item.stream_id, [])
            prev = self._hashes[stream[-1].position] if stream else GENESIS
            digests = chain(prev, item.stream_id, len(stream) + 1, item.events)
            for event, digest in zip(item.events, digests, strict=True):
                record = RecordedEvent(
                    stream_id=item.stream_id,
                    version=len(stream) + 1,
                    position=len(self._log) + 1,
                    event_id=event.event_id,
                    type=event.type,
                    schema_version=event.schema_version,
                    data=bytes(event.data),
                    metadata=bytes(event.metadata),
                    recorded_at=now,
                )
                self._hashes[record.position] = digest
                stream.append(record)
                self._log.append(record)
                self._ids[event.event_id] = record
            if not stream:
                del self._streams[item.stream_id]
            out.append(
                AppendResult(item.stream_id, len(stream), stream[-1].position if stream else 0)
            )
        self._wake()
        return out

    # --- reading ------------------------------------------------------------------

    async def _stream_page(
        self, stream_id: str, low: int, high: int, backwards: bool, want: int
    ) -> Page:
        stream = self._streams.get(stream_id, [])
        high = min(high, len(stream))
        if backwards:
            start = max(low - 1, high - want)
            page = stream[start:high][::-1]
            return page, start <= low - 1
        stop = min(high, low - 1 + want)
        return stream[low - 1 : stop], stop >= high

    async def _log_page(
        self,
        position: int,
        categories: tuple[str, ...] | None,
        types: tuple[str, ...] | None,
        want: int,
    ) -> Page:
        log, index = self._log, max(position, 1) - 1
        if categories is None and types is None:
            return log[index : index + want], index + want >= len(log)
        page: list[RecordedEvent] = []
        while index < len(log) and len(page) < want:
            record = log[index]
            index += 1
            if categories is not None and category_of(record.stream_id) not in categories:
                continue
            if types is not None and record.type not in types:
                continue
            page.append(record)
        return page, index >= len(log)

    async def _stream_version(self, stream_id: str) -> int:
        return len(self._streams.get(stream_id, ()))

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
        """Every event with its chain hash, by stream then version."""
        self.check_open()
        for stream_id in sorted(self._streams):
            for r in self._streams[stream_id]:
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
        types = Counter(r.type for r in self._log)
        return StoreStats(
            events=len(self._log),
            streams=len(self._streams),
            head_position=len(self._log),
            first_recorded_at=self._log[0].recorded_at if self._log else None,
            last_recorded_at=self._log[-1].recorded_at if self._log else None,
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
