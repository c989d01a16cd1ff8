"""The optional parts of the store contract.

The core (``eventfold.store.api``) is a reader and a writer. Whatever else a
backend offers is a capability: a small Protocol of its own, listed here.
A backend *declares* the capabilities it has in its ``capabilities``
attribute (a frozenset of these Protocol classes); nothing finds one by
looking for a method. Code that needs one asks for it by its Protocol:

    chain = capability(store, ChainReader)   # the store as a ChainReader, or None
    inspector = require(store, Inspector)    # ... or UnsupportedCapability

A wrapper (``DelegatingStore``) declares what its inner store declares, so a
wrapped store keeps every capability it had. A new capability is a Protocol
here, added to ``CAPABILITIES``, forwarded by ``DelegatingStore`` and checked
by a conformance mixin of its own (``eventfold.testing.conformance``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeAlias, TypeVar, cast, runtime_checkable

import msgspec

from eventfold.errors import UnsupportedCapability
from eventfold.store.api import JsonText, NewEvent, RecordedEvent, Snapshot
from eventfold.store.cuts import Cut, CutReason
from eventfold.store.dcb import AppendCondition, Query
from eventfold.store.routing import OnLag, ReplicaHealth, Route, RoutedReader

C = TypeVar("C")

Capabilities: TypeAlias = frozenset[type]
"""What a store declares: the capability Protocols it implements."""


# --- snapshots --------------------------------------------------------------------


@runtime_checkable
class SnapshotStore(Protocol):
    """Folded states stored beside the events (``Repository`` snapshots)."""

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store ``snapshot``, replacing the one of the same stream and name."""
        ...

    async def load_snapshot(self, stream_id: str, name: str) -> Snapshot | None:
        """The stream's snapshot of that name, or None."""
        ...


# --- fast fold reads --------------------------------------------------------------

DataRow: TypeAlias = tuple[str, int, JsonText]
"""``(type, schema_version, data)`` of one stored event."""
DataPage: TypeAlias = tuple[int, list[DataRow]]
"""``(first_version, rows)``: the rows' versions are ``first_version``,
``first_version + 1``, ... (a stream's versions are contiguous)."""


@runtime_checkable
class StreamDataReader(Protocol):
    """One stream's events with only what folding them needs, in pages and
    building no records (``Repository.load`` folds from it)."""

    def read_stream_data(
        self, stream_id: str, *, from_version: int = 1, to_version: int | None = None
    ) -> AsyncIterator[DataPage]:
        """Pages of the stream's events with ``from_version <= version <=
        to_version``, ascending."""
        ...


# --- the hash chain ---------------------------------------------------------------


class ChainLink(msgspec.Struct, frozen=True):
    """One stored event as the chain sees it: raw stored text and hashes."""

    stream_id: str
    version: int
    position: int
    event_id: uuid.UUID
    type: str
    schema_version: int
    data: JsonText
    metadata: JsonText
    hash: bytes
    tags: tuple[str, ...] = ()


@runtime_checkable
class ChainReader(Protocol):
    """The per-stream hash chain (``eventfold.store.chain``) as stored;
    ``eventfold.compliance.chain.verify`` checks it."""

    def read_chain(self) -> AsyncIterator[ChainLink]:
        """Every stored event, ordered by stream then version, as stored."""
        ...


# --- inspection -------------------------------------------------------------------


class StreamInfo(msgspec.Struct, frozen=True):
    stream_id: str
    version: int
    last_position: int
    last_recorded_at: datetime


class CategoryInfo(msgspec.Struct, frozen=True):
    category: str
    streams: int
    events: int


class StoreStats(msgspec.Struct, frozen=True):
    events: int
    streams: int
    head_position: int
    first_recorded_at: datetime | None
    last_recorded_at: datetime | None
    types: dict[str, int]
    size_bytes: int | None


@runtime_checkable
class Inspector(Protocol):
    """Streams and categories with their counts, and statistics."""

    async def list_streams(
        self, *, category: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        """Streams, most recently written first."""
        ...

    async def list_categories(self) -> list[CategoryInfo]:
        """Categories with their stream and event counts, largest first."""
        ...

    async def stats(self) -> StoreStats: ...


class SQLResult(msgspec.Struct, frozen=True):
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


@runtime_checkable
class SQLReader(Protocol):
    """Read-only SQL over the store's own tables."""

    async def sql(self, query: str, *, limit: int = 1000, timeout: float = 30.0) -> SQLResult:
        """Run one read-only query over the event tables (``events``,
        ``snapshots``); anything that would write raises ``ReadOnlyViolation``."""
        ...


# --- reads on replicas ------------------------------------------------------------


@runtime_checkable
class ReplicaReads(Protocol):
    """Reads routed to the store's replicas, with read-your-writes and
    fallback (``eventfold.store.routing`` has the rule)."""

    def reads(
        self,
        route: Route = "replica",
        *,
        min_position: int | None = None,
        wait: float | None = None,
        on_lag: OnLag | None = None,
    ) -> RoutedReader:
        """A read-only view whose reads go to ``route``. With
        ``min_position``, its first read waits up to ``wait`` seconds (the
        store's setting if None) for a replica that can see that position,
        then reads the primary or answers stale as ``on_lag`` says."""
        ...

    async def replica_health(self) -> list[ReplicaHealth]:
        """Each replica's state and lag as last checked (empty: none)."""


# --- dynamic consistency boundaries ----------------------------------------------------


@runtime_checkable
class DCBStore(Protocol):
    """Dynamic Consistency Boundaries (``eventfold.store.dcb``): reads by
    query over types and tags, and appends without a stream that fail if a
    condition's query matches an event stored after its position. Such
    events share the one log with stream events (``stream_id`` ``""``)."""

    def read(
        self,
        query: Query,
        *,
        from_position: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        """Events matching ``query`` (each once, however many items it
        matches) in position order: ascending from ``from_position``
        (inclusive, default 0), or descending from it (default: the head)
        if ``backwards``; at most ``limit`` events. Pages through indexes,
        so memory stays constant however many events match; sees what a
        reader of the whole log sees (no position ever appears late)."""
        ...

    async def append_events(
        self, events: Sequence[NewEvent], condition: AppendCondition | None = None
    ) -> int:
        """Append ``events`` (no stream) atomically and return the position of
        the last. With a ``condition``, raise ``ConditionFailed`` (writing
        nothing) if an event matching its query is stored after its
        ``after``. Sending the same event ids again returns the first
        append's position and writes nothing."""
        ...


# --- stream lifecycle -------------------------------------------------------------


@runtime_checkable
class StreamLifecycle(Protocol):
    """Removing events: truncation, soft and hard deletion. Each removal
    records a ``Cut`` (``eventfold.store.cuts``) in the same transaction, so
    the hash chain stays verifiable; see docs/lifecycle.md."""

    async def truncate_stream(
        self,
        stream_id: str,
        before_version: int,
        *,
        reason: CutReason = "truncated",
        archive: str = "",
        key: bytes | None = None,
    ) -> Cut | None:
        """Remove the stream's events before ``before_version`` (at most its
        version + 1: every event) and record the cut, signed with ``key``.
        None if they are gone already (a repeated call is a no-op)."""
        ...

    async def delete_stream(
        self, stream_id: str, *, hard: bool = False, key: bytes | None = None
    ) -> Cut | None:
        """Remove every event of the stream. Soft (``hard=False``): it may be
        written again, its versions going on. Hard: every later append to it
        raises ``StreamDeleted``. None if there was nothing left to do."""
        ...

    def read_cuts(self, stream_id: str | None = None) -> AsyncIterator[Cut]:
        """The cuts recorded (of one stream, or all), by stream, then in
        the order they were made."""
        ...


# --- asking for one ---------------------------------------------------------------

CAPABILITIES: tuple[type, ...] = (
    SnapshotStore,
    StreamDataReader,
    ChainReader,
    Inspector,
    SQLReader,
    ReplicaReads,
    DCBStore,
    StreamLifecycle,
)
"""Every capability eventfold defines, in the order the docs list them."""


class Capable(Protocol):
    """Anything that declares capabilities (every ``EventStore``)."""

    @property
    def capabilities(self) -> Capabilities: ...


def capability(store: Capable, kind: Callable[..., C]) -> C | None:
    """``store`` as a ``kind`` (a capability Protocol class) if it declares
    that capability, else None."""
    return cast(C, store) if kind in store.capabilities else None


def require(store: Capable, kind: Callable[..., C]) -> C:
    """``store`` as a ``kind`` (a capability Protocol class);
    ``UnsupportedCapability`` if it does not declare that capability."""
    if kind not in store.capabilities:
        name = kind.__name__ if isinstance(kind, type) else repr(kind)
        raise UnsupportedCapability(type(store).__name__, name)
    return cast(C, store)
