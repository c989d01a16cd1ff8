"""The reference backend: everything in one process's memory. Fast, exact, and
the yardstick the conformance suite holds the others to."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from eventfold.compliance.chain import GENESIS, ChainLink, link_hash
from eventfold.compliance.inspect import CategoryInfo, SQLResult, StoreStats, StreamInfo
from eventfold.errors import ConfigurationError, StoreClosed
from eventfold.store.api import (
    ANY,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
)
from eventfold.store.checks import (
    category_of,
    check_expected,
    replayed_result,
    validate_appends,
    validate_read_all,
    validate_read_stream,
    validate_snapshot,
)


class MemoryStore:
    """An event store held in memory; ``connect("memory://")`` opens a new, empty one."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._log: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._ids: dict[uuid.UUID, RecordedEvent] = {}
        self._snapshots: dict[tuple[str, str], Snapshot] = {}
        self._hashes: dict[int, bytes] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        self._wake()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"{self.url} is closed")

    # --- writing ------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        (result,) = await self.append_many([StreamAppend(stream_id, events, expected_version)])
        return result

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        self._check_open()
        checked = validate_appends(appends)
        # Every check happens before the first write, so a failure writes nothing.
        results: list[AppendResult | None] = []
        for item in checked:
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
        for item, replay in zip(checked, results, strict=True):
            if replay is not None:
                out.append(replay)
                continue
            stream = self._streams.setdefault(item.stream_id, [])
            for event in item.events:
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
                prev = self._hashes[stream[-1].position] if stream else GENESIS
                self._hashes[record.position] = link_hash(
                    prev,
                    record.stream_id,
                    record.version,
                    record.event_id,
                    record.type,
                    record.schema_version,
                    event.data,
                    event.metadata,
                )
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

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        validate_read_stream(stream_id, from_version, to_version, limit)
        self._check_open()
        stream = self._streams.get(stream_id, [])
        hi = len(stream) if to_version is None else min(to_version, len(stream))
        selected = stream[max(from_version, 1) - 1 : hi]
        if backwards:
            selected = selected[::-1]
        if limit is not None:
            selected = selected[:limit]
        for record in selected:
            yield record

    async def read_all(
        self,
        *,
        from_position: int = 0,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        validate_read_all(from_position, categories, types, limit)
        self._check_open()
        cats = set(categories) if categories is not None else None
        kinds = set(types) if types is not None else None
        count = 0
        index = max(from_position, 1) - 1
        while index < len(self._log) and (limit is None or count < limit):
            record = self._log[index]
            index += 1
            if cats is not None and category_of(record.stream_id) not in cats:
                continue
            if kinds is not None and record.type not in kinds:
                continue
            count += 1
            yield record

    async def stream_version(self, stream_id: str) -> int:
        validate_read_stream(stream_id, 1, None, None)
        self._check_open()
        return len(self._streams.get(stream_id, ()))

    async def head_position(self) -> int:
        self._check_open()
        return len(self._log)

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        self._check_open()
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
        self._check_open()
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

    # --- inspection (eventfold.compliance.inspect.Inspector) ----------------------

    async def list_streams(
        self, *, category: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        self._check_open()
        streams = [
            StreamInfo(sid, len(events), events[-1].position, events[-1].recorded_at)
            for sid, events in self._streams.items()
            if category is None or category_of(sid) == category
        ]
        return sorted(streams, key=lambda s: -s.last_position)[:limit]

    async def list_categories(self) -> list[CategoryInfo]:
        self._check_open()
        counts: dict[str, list[int]] = {}
        for sid, events in self._streams.items():
            entry = counts.setdefault(category_of(sid), [0, 0])
            entry[0] += 1
            entry[1] += len(events)
        infos = [CategoryInfo(c, s, e) for c, (s, e) in counts.items()]
        return sorted(infos, key=lambda i: (-i.events, i.category))

    async def stats(self) -> StoreStats:
        self._check_open()
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

    async def sql(self, query: str, *, limit: int = 1000, timeout: float = 30.0) -> SQLResult:
        raise ConfigurationError("a memory:// store has no SQL; use sqlite:// or postgresql://")

    # --- snapshots ----------------------------------------------------------------

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        validate_snapshot(snapshot)
        self._check_open()
        self._snapshots[(snapshot.stream_id, snapshot.name)] = snapshot

    async def load_snapshot(self, stream_id: str, name: str) -> Snapshot | None:
        self._check_open()
        return self._snapshots.get((stream_id, name))
