"""``SQLiteStore``: the event store in one SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import msgspec

from eventfold.errors import InvalidArgument
from eventfold.store.api import AppendResult, NewEvent, Snapshot, StreamAppend
from eventfold.store.base import DCBPages, LogReader, LogWriter, StreamDataPages
from eventfold.store.capabilities import (
    Capabilities,
    CategoryInfo,
    ChainLink,
    ChainReader,
    DataRow,
    DCBStore,
    Inspector,
    SnapshotStore,
    SQLReader,
    SQLResult,
    StoreStats,
    StreamDataReader,
    StreamInfo,
    StreamLifecycle,
)
from eventfold.store.checks import validate_snapshot, validate_stream_id
from eventfold.store.cuts import Cut, CutReason, check_key, check_truncate
from eventfold.store.dcb import AppendCondition, Query
from eventfold.store.paging import Page
from eventfold.store.sqlite import dcb, inspect, lifecycle, rows
from eventfold.store.sqlite.options import SQLiteOptions, parse_sqlite_url
from eventfold.store.sqlite.readers import INLINE_BYTES, INLINE_ROWS, ReadPool
from eventfold.store.sqlite.schema import open_writer
from eventfold.store.sqlite.writer import (
    PRAGMAS,
    AppendRequest,
    EventsRequest,
    GroupWriter,
    PragmaRequest,
    Request,
    SnapshotRequest,
)

_DATA_PAGE_ROWS = 4 * INLINE_ROWS  # narrow rows: larger pages for read_stream_data
POLL_INTERVAL = 0.05
"""How often ``wait_for_events`` looks for appends made by other processes."""


class SQLiteStore(LogReader, LogWriter, StreamDataPages, DCBPages):
    """An event store in one SQLite file (WAL mode): ``sqlite:///relative.db`` or
    ``sqlite:////absolute/path.db``.

    Options, as keywords or URL query parameters: ``synchronous`` (``FULL``, the
    default: an acknowledged append survives power loss; ``NORMAL``: survives a
    crash of the process, not of the machine), ``busy_timeout`` (milliseconds a
    writer waits for another process's write lock, default 5000), ``readers``
    (read connections, default 4).

    Concurrent appends are group-committed: see ``eventfold.store.sqlite.writer``.
    Open with ``await SQLiteStore.open(url)`` or ``eventfold.connect(url)``.
    """

    capabilities: ClassVar[Capabilities] = frozenset(
        {
            SnapshotStore,
            StreamDataReader,
            ChainReader,
            Inspector,
            SQLReader,
            DCBStore,
            StreamLifecycle,
        }
    )
    page_rows = INLINE_ROWS

    def __init__(self, url: str, options: SQLiteOptions, connection: sqlite3.Connection) -> None:
        self.url = url
        self.path = options.path
        self.options = options
        self._closing: asyncio.Future[None] | None = None
        self._known_head = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._readers = ReadPool(options)
        ref = weakref.ref(self)

        def on_commit(head: int) -> None:
            store = ref()
            if store is not None:
                store._committed(head)

        self._writer = GroupWriter(connection, options.path, on_commit)
        # A store dropped without close() still lets its writer thread finish.
        weakref.finalize(self, self._writer.stop)

    @classmethod
    async def open(cls, url: str, **options: Any) -> SQLiteStore:
        """Open the store at ``url``, creating the file and schema if new.
        Raises ConfigurationError, NotAnEventStore or SchemaVersionError."""
        settings = parse_sqlite_url(url, options)
        connection = await asyncio.to_thread(open_writer, settings)
        return cls(url, settings, connection)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"

    @property
    def commit_count(self) -> int:
        """Write transactions committed so far by this store object (one per
        group of concurrent requests)."""
        return self._writer.commit_count

    async def close(self) -> None:
        """Finish the appends already queued, close every connection. Later calls
        raise StoreClosed."""
        if self._closing is None:
            self.closed = True
            self._closing = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        self._writer.stop()
        try:
            await asyncio.to_thread(self._readers.close)
            await asyncio.to_thread(self._writer.join)
        finally:
            self._wake()

    # --- writing ------------------------------------------------------------------

    async def _submit(self, make: Callable[[asyncio.Future[Any]], Request]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._writer.submit(make(future))
        return await future

    async def _write(self, appends: list[StreamAppend]) -> list[AppendResult]:
        future: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
        self._writer.submit(AppendRequest(future, appends))
        return await future

    async def _append_events(
        self, events: list[NewEvent], condition: AppendCondition | None
    ) -> int:
        position: int = await self._submit(lambda future: EventsRequest(future, events, condition))
        return position

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        self.check_open()
        validate_snapshot(snapshot)
        await self._submit(lambda future: SnapshotRequest(future, snapshot))

    # --- stream lifecycle (StreamLifecycle) -------------------------------------------

    async def truncate_stream(
        self,
        stream_id: str,
        before_version: int,
        *,
        reason: CutReason = "truncated",
        archive: str = "",
        key: bytes | None = None,
    ) -> Cut | None:
        stream_id, before, reason, archive = check_truncate(
            stream_id, before_version, reason, archive
        )
        key = check_key(key)
        self.check_open()
        cut: Cut | None = await self._submit(
            lambda future: lifecycle.CutRequest(future, stream_id, before, reason, archive, key)
        )
        return cut

    async def delete_stream(
        self, stream_id: str, *, hard: bool = False, key: bytes | None = None
    ) -> Cut | None:
        validate_stream_id(stream_id)
        key = check_key(key)
        self.check_open()
        reason: CutReason = "tombstoned" if hard else "deleted"
        cut: Cut | None = await self._submit(
            lambda future: lifecycle.CutRequest(future, stream_id, None, reason, "", key)
        )
        return cut

    async def read_cuts(self, stream_id: str | None = None) -> AsyncIterator[Cut]:
        self.check_open()
        if stream_id is not None:
            validate_stream_id(stream_id)
        for cut in await self._readers.run(lifecycle.list_cuts, stream_id):
            yield cut

    async def pragma(self, name: str) -> object:
        """The value of a setting of the write connection, e.g. ``synchronous``
        (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA) or ``journal_mode``."""
        self.check_open()
        if name not in PRAGMAS:
            raise InvalidArgument(
                f"pragma {name!r} is not one of {', '.join(sorted(PRAGMAS))}", argument="name"
            )
        return await self._submit(lambda future: PragmaRequest(future, name))

    def _committed(self, head: int) -> None:
        if head > self._known_head:
            self._known_head = head
            self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # --- reading ------------------------------------------------------------------

    # Pages of records are small by construction (page_rows, INLINE_BYTES):
    # they are read on the caller's thread, each after giving other tasks a
    # turn (ReadPool.small).

    async def _stream_page(
        self, stream_id: str, low: int, high: int, backwards: bool, want: int
    ) -> Page:
        return await self._readers.small(
            rows.stream_page, stream_id, low, high, backwards, want, INLINE_BYTES
        )

    async def _stream_data_page(
        self, stream_id: str, low: int, high: int
    ) -> tuple[list[DataRow], bool]:
        return await self._readers.small(
            rows.stream_data_page, stream_id, low, high, _DATA_PAGE_ROWS, INLINE_BYTES
        )

    async def _log_page(
        self,
        position: int,
        categories: tuple[str, ...] | None,
        types: tuple[str, ...] | None,
        want: int,
    ) -> Page:
        kinds = None if types is None else msgspec.json.encode(types).decode()
        if types is None and (categories is None or len(categories) <= rows.MAX_CATEGORY_ARMS):
            # An index walk: the page costs about its own rows.
            return await self._readers.small(
                rows.log_page, position, categories, kinds, want, INLINE_BYTES
            )
        # A filter SQLite checks row by row may pass over much of the log
        # to fill one page: on a read thread, never the caller's.
        return await self._readers.run(rows.log_page, position, categories, kinds, want)

    async def _query_page(self, query: Query, position: int, backwards: bool, want: int) -> Page:
        return await self._readers.run(dcb.query_page, query, position, backwards, want)

    async def _stream_version(self, stream_id: str) -> int:
        return await self._readers.small(rows.stream_version, stream_id)

    async def _head_position(self) -> int:
        head = await self._readers.small(rows.head_position)
        self._known_head = max(self._known_head, head)
        return head

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        """Appends through this store object wake waiters at once; appends by
        other processes (or other store objects) are seen by polling the head
        every POLL_INTERVAL seconds."""
        self.check_open()
        if self._known_head > after_position:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while True:
            if await self.head_position() > after_position:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, min(remaining, POLL_INTERVAL))
            except TimeoutError:
                pass
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if self._known_head > after_position:
                return True
            if self.closed:
                return False

    async def load_snapshot(self, stream_id: str, name: str) -> Snapshot | None:
        self.check_open()
        return await self._readers.small(rows.load_snapshot, stream_id, name)

    async def read_chain(self) -> AsyncIterator[ChainLink]:
        """Every stored event as the hash chain sees it, by stream then version
        (see eventfold.compliance.chain.verify)."""
        self.check_open()
        after: tuple[str, int] = ("", 0)
        while True:
            page = await self._readers.run(rows.chain_page, after[0], after[1], rows.PAGE_ROWS)
            for link in page:
                yield link
            if len(page) < rows.PAGE_ROWS:
                return
            after = (page[-1].stream_id, page[-1].version)

    # --- inspection (Inspector, SQLReader) ----------------------------------------

    async def list_streams(
        self, *, category: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        self.check_open()
        return await self._readers.run(inspect.list_streams, category, limit)

    async def list_categories(self) -> list[CategoryInfo]:
        self.check_open()
        return await self._readers.run(inspect.list_categories)

    async def stats(self) -> StoreStats:
        self.check_open()
        return await self._readers.run(inspect.stats, self.options.path)

    async def sql(self, query: str, *, limit: int = 1000, timeout: float = 30.0) -> SQLResult:
        """One read-only query over ``events`` and ``snapshots``, on a connection
        of its own that is opened read-only and may only read."""
        self.check_open()
        return await asyncio.to_thread(inspect.run_sql, self.options.path, query, limit, timeout)
