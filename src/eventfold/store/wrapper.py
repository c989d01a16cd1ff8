"""A store that passes every call to another one: the base for behaviour that
wraps a store (encryption, audit rules, and later tracing, metrics, tenancy)
instead of living in every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, ClassVar, TypeVar

from eventfold.store.api import (
    AppendResult,
    EventStore,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
)
from eventfold.store.base import LogWriter
from eventfold.store.capabilities import (
    CAPABILITIES,
    Capabilities,
    CategoryInfo,
    ChainLink,
    ChainReader,
    DataPage,
    DataRow,
    DCBStore,
    Inspector,
    ReplicaReads,
    SnapshotStore,
    SQLReader,
    SQLResult,
    StoreStats,
    StreamDataReader,
    StreamInfo,
    StreamLifecycle,
    require,
)
from eventfold.store.cuts import Cut, CutReason
from eventfold.store.dcb import AppendCondition, Query
from eventfold.store.routing import OnLag, ReplicaHealth, Route, RoutedReader, Served

C = TypeVar("C")


def stream_about(stream_id: str) -> dict[str, Any]:
    """What a ``read_stream`` asked for, as ``read_through`` is told it."""
    return {"eventfold.stream_id": stream_id}


def all_about(
    from_position: int, categories: Sequence[str] | None, types: Sequence[str] | None
) -> dict[str, Any]:
    """What a ``read_all`` asked for, as ``read_through`` is told it."""
    about: dict[str, Any] = {"eventfold.from_position": from_position}
    if categories is not None:
        about["eventfold.category"] = list(categories)
    if types is not None:
        about["eventfold.event.types"] = list(types)
    return about


def query_about(query: Query, from_position: int | None) -> dict[str, Any]:
    """What a DCB ``read`` asked for, as ``read_through`` is told it."""
    about: dict[str, Any] = {"eventfold.query.items": len(query.items)}
    if from_position is not None:
        about["eventfold.from_position"] = from_position
    return about


class DelegatingStore(LogWriter):
    """Forwards the store contract, and each capability its inner store
    declares, to ``inner``; subclasses override what they change.

    ``capabilities`` is what ``inner`` declares, of those this class
    ``passes`` (by default every capability eventfold defines). A subclass
    that checks or changes what is written or read lists in ``passes`` the
    capabilities it handles, so that one added to eventfold later does not
    slip past it unhandled. Appends go through the shared append prologue
    (the open check and ``validate_appends``) to ``_write``; every record
    read goes through ``on_read``, every row of a fast fold read through
    ``on_read_data``.
    """

    passes: ClassVar[Capabilities] = frozenset(CAPABILITIES)

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.capabilities: Capabilities = inner.capabilities & self.passes

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        changes_records = cls.on_read is not DelegatingStore.on_read
        keeps_rows = cls.on_read_data is DelegatingStore.on_read_data
        if changes_records and keeps_rows and StreamDataReader in cls.passes:
            raise TypeError(
                f"{cls.__name__} changes records (on_read) but not fold rows: override "
                "on_read_data too, or leave StreamDataReader out of passes"
            )

    @property
    def location(self) -> str:
        return type(self).__name__

    async def close(self) -> None:
        self.closed = True
        await self.inner.close()

    def _inner(self, kind: Callable[..., C]) -> C:
        """The inner store as ``kind``, if this wrapper passes that capability
        (UnsupportedCapability otherwise)."""
        require(self, kind)
        return require(self.inner, kind)

    # --- the core -------------------------------------------------------------------

    async def _write(self, appends: list[StreamAppend]) -> list[AppendResult]:
        """Write validated appends; here: let the inner store write them."""
        return await self.inner.append_many(appends)

    def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        records = self.inner.read_stream(
            stream_id,
            from_version=from_version,
            to_version=to_version,
            backwards=backwards,
            limit=limit,
        )
        return self.read_through("read_stream", records, stream_about(stream_id))

    def read_all(
        self,
        *,
        from_position: int = 0,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        records = self.inner.read_all(
            from_position=from_position, categories=categories, types=types, limit=limit
        )
        return self.read_through("read_all", records, all_about(from_position, categories, types))

    def read_through(
        self, operation: str, records: AsyncIterator[RecordedEvent], about: dict[str, Any]
    ) -> AsyncIterator[RecordedEvent]:
        """Hook around a whole read (``read_stream``, ``read_all``, DCB's
        ``read``), through this store or a routed view of it (``reads()``):
        ``about`` names what was asked (``eventfold.*`` attributes). Here:
        each record through ``on_read``."""
        if type(self).on_read is DelegatingStore.on_read:
            return records
        return self._each_on_read(records)

    async def _each_on_read(
        self, records: AsyncIterator[RecordedEvent]
    ) -> AsyncIterator[RecordedEvent]:
        async for record in records:
            yield await self.on_read(record)

    async def on_read(self, record: RecordedEvent) -> RecordedEvent:
        """Hook for each record read; returns it unchanged here."""
        return record

    async def stream_version(self, stream_id: str) -> int:
        return await self.inner.stream_version(stream_id)

    async def head_position(self) -> int:
        return await self.inner.head_position()

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        return await self.inner.wait_for_events(after_position, timeout)

    # --- StreamDataReader -------------------------------------------------------------

    def read_stream_data(
        self, stream_id: str, *, from_version: int = 1, to_version: int | None = None
    ) -> AsyncIterator[DataPage]:
        pages = self._inner(StreamDataReader).read_stream_data(
            stream_id, from_version=from_version, to_version=to_version
        )
        return self.pages_through(stream_id, pages)

    async def pages_through(
        self, stream_id: str, pages: AsyncIterator[DataPage]
    ) -> AsyncIterator[DataPage]:
        """Hook around a whole fast fold read, through this store or a routed
        view of it. Here: each page through ``on_read_data``."""
        async for first, rows in pages:
            yield first, await self.on_read_data(stream_id, first, rows)

    async def on_read_data(
        self, stream_id: str, first_version: int, rows: list[DataRow]
    ) -> list[DataRow]:
        """Hook for each page of a fast fold read (rows of versions
        ``first_version``, ``first_version + 1`` ...); returns it unchanged here."""
        return rows

    # --- SnapshotStore ----------------------------------------------------------------

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self._inner(SnapshotStore).save_snapshot(snapshot)

    async def load_snapshot(self, stream_id: str, name: str) -> Snapshot | None:
        return await self._inner(SnapshotStore).load_snapshot(stream_id, name)

    # --- ChainReader ------------------------------------------------------------------

    async def read_chain(self) -> AsyncIterator[ChainLink]:
        """The inner store's hash chain, as stored (nothing decrypted)."""
        async for link in self._inner(ChainReader).read_chain():
            yield link

    # --- Inspector, SQLReader ---------------------------------------------------------

    async def list_streams(
        self, *, category: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        return await self._inner(Inspector).list_streams(category=category, limit=limit)

    async def list_categories(self) -> list[CategoryInfo]:
        return await self._inner(Inspector).list_categories()

    async def stats(self) -> StoreStats:
        return await self._inner(Inspector).stats()

    async def sql(self, query: str, *, limit: int = 1000, timeout: float = 30.0) -> SQLResult:
        """The inner store's read-only SQL, over the data as stored."""
        return await self._inner(SQLReader).sql(query, limit=limit, timeout=timeout)

    # --- DCBStore ---------------------------------------------------------------------

    def read(
        self,
        query: Query,
        *,
        from_position: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        records = self._inner(DCBStore).read(
            query, from_position=from_position, backwards=backwards, limit=limit
        )
        return self.read_through("read", records, query_about(query, from_position))

    async def append_events(
        self, events: Sequence[NewEvent], condition: AppendCondition | None = None
    ) -> int:
        self.check_open()
        return await self._inner(DCBStore).append_events(events, condition)

    # --- StreamLifecycle --------------------------------------------------------------

    async def truncate_stream(
        self,
        stream_id: str,
        before_version: int,
        *,
        reason: CutReason = "truncated",
        archive: str = "",
        key: bytes | None = None,
    ) -> Cut | None:
        self.check_open()
        return await self._inner(StreamLifecycle).truncate_stream(
            stream_id, before_version, reason=reason, archive=archive, key=key
        )

    async def delete_stream(
        self, stream_id: str, *, hard: bool = False, key: bytes | None = None
    ) -> Cut | None:
        self.check_open()
        return await self._inner(StreamLifecycle).delete_stream(stream_id, hard=hard, key=key)

    async def read_cuts(self, stream_id: str | None = None) -> AsyncIterator[Cut]:
        async for cut in self._inner(StreamLifecycle).read_cuts(stream_id):
            yield cut

    # --- ReplicaReads -----------------------------------------------------------------

    def reads(
        self,
        route: Route = "replica",
        *,
        min_position: int | None = None,
        wait: float | None = None,
        on_lag: OnLag | None = None,
    ) -> RoutedReader:
        """The inner store's routed view, its records through this wrapper's
        ``on_read`` and ``on_read_data``."""
        view = self._inner(ReplicaReads).reads(
            route, min_position=min_position, wait=wait, on_lag=on_lag
        )
        return DelegatedReads(self, view)

    async def replica_health(self) -> list[ReplicaHealth]:
        return await self._inner(ReplicaReads).replica_health()


class DelegatedReads:
    """A routed view of a wrapper's inner store, seen through the wrapper:
    records pass ``outer.on_read``, fold rows ``outer.on_read_data``; the
    capabilities are the view's that the wrapper passes."""

    def __init__(self, outer: DelegatingStore, view: RoutedReader) -> None:
        self.outer = outer
        self.view = view
        self.url = outer.url
        self.capabilities: Capabilities = view.capabilities & outer.passes

    @property
    def served(self) -> Served | None:
        return self.view.served

    def _view(self, kind: Callable[..., C]) -> C:
        require(self, kind)
        return require(self.view, kind)

    def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        records = self.view.read_stream(
            stream_id,
            from_version=from_version,
            to_version=to_version,
            backwards=backwards,
            limit=limit,
        )
        return self.outer.read_through("read_stream", records, stream_about(stream_id))

    def read_all(
        self,
        *,
        from_position: int = 0,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        records = self.view.read_all(
            from_position=from_position, categories=categories, types=types, limit=limit
        )
        return self.outer.read_through(
            "read_all", records, all_about(from_position, categories, types)
        )

    async def stream_version(self, stream_id: str) -> int:
        return await self.view.stream_version(stream_id)

    async def head_position(self) -> int:
        return await self.view.head_position()

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        return await self.view.wait_for_events(after_position, timeout)

    def read_stream_data(
        self, stream_id: str, *, from_version: int = 1, to_version: int | None = None
    ) -> AsyncIterator[DataPage]:
        pages = self._view(StreamDataReader).read_stream_data(
            stream_id, from_version=from_version, to_version=to_version
        )
        return self.outer.pages_through(stream_id, pages)

    async def read_chain(self) -> AsyncIterator[ChainLink]:
        async for link in self._view(ChainReader).read_chain():
            yield link

    async def list_streams(
        self, *, category: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        return await self._view(Inspector).list_streams(category=category, limit=limit)

    async def list_categories(self) -> list[CategoryInfo]:
        return await self._view(Inspector).list_categories()

    async def stats(self) -> StoreStats:
        return await self._view(Inspector).stats()

    async def sql(self, query: str, *, limit: int = 1000, timeout: float = 30.0) -> SQLResult:
        return await self._view(SQLReader).sql(query, limit=limit, timeout=timeout)
