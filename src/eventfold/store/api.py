"""The store contract's core: records, expected versions, and the two small
Protocols every backend implements, a reader and a writer. Everything else a
backend may offer is an optional capability it declares
(``eventfold.store.capabilities``). Payloads cross this boundary as JSON text;
typed events live one layer up (eventfold.serialization)."""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Protocol, TypeAlias, runtime_checkable

import msgspec

from eventfold.store.ids import new_event_id

JsonText: TypeAlias = bytes | str
"""Raw JSON (an object) as stored: what the codec produces and decodes."""


class StreamState(enum.Enum):
    """Symbolic expected versions."""

    ANY = "any"
    NO_STREAM = "no_stream"
    STREAM_EXISTS = "stream_exists"

    def __repr__(self) -> str:
        return self.name


ANY = StreamState.ANY
NO_STREAM = StreamState.NO_STREAM
STREAM_EXISTS = StreamState.STREAM_EXISTS

ExpectedVersion: TypeAlias = int | StreamState
"""ANY, NO_STREAM, STREAM_EXISTS, or the exact current version (0 = no stream)."""


Tags: TypeAlias = tuple[str, ...]
"""An event's tags: the strings DCB queries and append conditions match on
(``eventfold.store.dcb``). A set: no tag twice; kept in the order given."""


class NewEvent(msgspec.Struct, frozen=True):
    """An event to append. ``data`` and ``metadata`` are JSON objects as bytes;
    ``tags`` are what DCB queries match on (limits: ``eventfold.store.checks``)."""

    type: str
    data: bytes
    metadata: bytes = b"{}"
    event_id: uuid.UUID = msgspec.field(default_factory=new_event_id)
    schema_version: int = 1
    tags: Tags = ()


class RecordedEvent(msgspec.Struct, frozen=True, gc=False):
    """An event as stored. ``position`` is global and strictly increasing in
    the order readers see; ``version`` is 1 for a stream's first event. An
    event appended without a stream (``DCBStore.append_events``) has
    ``stream_id`` ``""`` (``NO_STREAM_ID``) and its position as its version."""

    stream_id: str
    version: int
    position: int
    event_id: uuid.UUID
    type: str
    schema_version: int
    data: JsonText
    metadata: JsonText
    recorded_at: datetime
    tags: Tags = ()


NO_STREAM_ID = ""
"""The ``stream_id`` of an event appended without a stream (a DCB append);
no stream can have it, since a stream id is never empty."""


class StreamAppend(msgspec.Struct, frozen=True):
    """One stream's part of an atomic multi-stream append."""

    stream_id: str
    events: Sequence[NewEvent]
    expected_version: ExpectedVersion = ANY


class AppendResult(msgspec.Struct, frozen=True):
    """``version`` is the stream's version after the append; ``position`` the
    global position of its last event (for an empty append, of the stream's
    last event, or 0)."""

    stream_id: str
    version: int
    position: int


class Snapshot(msgspec.Struct, frozen=True):
    """A folded state stored beside the events. ``name`` tells apart several
    folds of one stream; ``schema_version`` tags the state's shape, so that a
    changed state type ignores stale snapshots."""

    stream_id: str
    name: str
    version: int
    schema_version: int
    state: bytes


@runtime_checkable
class EventReader(Protocol):
    def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        """Events of one stream with ``from_version <= version <= to_version``,
        ascending (or descending if ``backwards``), at most ``limit`` of them.
        A stream that does not exist yields nothing."""
        ...

    def read_all(
        self,
        *,
        from_position: int = 0,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        """Events of every stream with ``position >= from_position`` in global
        order, optionally only those whose category or type is listed."""
        ...

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version: its event count, 0 if it does not exist."""
        ...

    async def head_position(self) -> int:
        """The highest position a reader of the whole log can see now (0 if empty)."""
        ...

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        """Return True as soon as a reader can see an event past ``after_position``,
        False if ``timeout`` seconds pass first."""
        ...


@runtime_checkable
class EventWriter(Protocol):
    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append atomically, checking the expected version. Appending events
        whose ids are already stored, with the same content in the same place,
        returns the original result and writes nothing."""
        ...

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams in one atomic step: all or nothing."""
        ...


@runtime_checkable
class EventStore(EventReader, EventWriter, Protocol):
    """A backend: the reader and the writer over one database, and the
    optional capabilities it declares (``eventfold.store.capabilities``:
    snapshots, fast fold reads, the hash chain, inspection, SQL)."""

    url: str

    @property
    def capabilities(self) -> frozenset[type]:
        """The capability Protocols this store implements; ask for one with
        ``eventfold.store.capability(store, Protocol)``."""
        ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> EventStore: ...

    async def __aexit__(self, *exc: object) -> None: ...
