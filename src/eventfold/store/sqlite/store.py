"""``SQLiteStore``: the event store in one SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import msgspec

from eventfold.compliance.chain import ChainLink
from eventfold.compliance.inspect import CategoryInfo, SQLResult, StoreStats, StreamInfo
from eventfold.errors import InvalidArgument, StoreClosed
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
    validate_appends,
    validate_read_all,
    validate_read_stream,
    validate_snapshot,
)
from eventfold.store.paging import data_pages, log_pages, stream_pages
from eventfold.store.sqlite import inspect, rows
from eventfold.store.sqlite.options import SQLiteOptions, parse_sqlite_url
from eventfold.store.sqlite.readers import ReadPool
from eventfold.store.sqlite.schema import open_writer
from eventfold.store.sqlite.writer import (
    PRAGMAS,
    AppendRequest,
    GroupWriter,
    PragmaRequest,
    Request,
    SnapshotRequest,
)

_DATA_PAGE_ROWS = 5000  # narrow rows: fewer, larger pages for read_stream_data
POLL_INTERVAL = 0.05
"""How often ``wait_for_events`` looks for appends made by other processes."""


class SQLiteStore:
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

    def __init__(self, url: str, options: SQLiteOptions, connection: sqlite3.Connection) -> None:
        self.url = url
        self.path = options.path
        self.options = options
        self._closed = False
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

    async def __aenter__(self) -> SQLiteStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Finish the appends already queued, close every connection. Later calls
        raise StoreClosed."""
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        self._writer.stop()
        try:
            await asyncio.to_thread(self._readers.close)
            await asyncio.to_thread(self._writer.join)
        finally:
            self._wake()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"{self.url} is closed")

    # --- writing ------------------------------------------------------------------

    async def _submit(self, make: Callable[[asyncio.Future[Any]], Request]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._writer.submit(make(future))
        return await future

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        self._check_open()
        checked = validate_appends([StreamAppend(stream_id, events, expected_version)])
        future: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
        self._writer.submit(AppendRequest(future, checked))
        return (await future)[0]

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        self._check_open()
        checked = validate_appends(appends)
        future: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
        self._writer.submit(AppendRequest(future, checked))
        return await future

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        self._check_open()
        validate_snapshot(snapshot)
        await self._submit(lambda future: SnapshotRequest(future, snapshot))

    async def pragma(self, name: str) -> object:
        """The value of a setting of the write connection, e.g. ``synchronous``
        (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA) or ``journal_mode``."""
        self._check_open()
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

        async def fetch(low: int, high: int, want: int) -> tuple[list[RecordedEvent], bool]:
            self._check_open()
            return await self._readers.run(rows.stream_page, stream_id, low, high, backwards, want)

        pages = stream_pages(
            fetch,
            from_version=from_version,
            to_version=to_version,
            backwards=backwards,
            limit=limit,
            page_rows=rows.PAGE_ROWS,
        )
        async for page in pages:
            for record in page:
                yield record

    async def read_stream_data(
        self, stream_id: str, *, from_version: int = 1, to_version: int | None = None
    ) -> AsyncIterator[tuple[int, list[tuple[str, int, bytes]]]]:
        """Pages of one stream, ascending, with only what folding it needs
        (Repository.load): ``(first_version, [(type, schema_version, data),
        ...])``, the rows' versions being ``first_version, first_version + 1, ...``."""
        validate_read_stream(stream_id, from_version, to_version, None)
        self._check_open()

        async def fetch(low: int, high: int) -> tuple[list[tuple[str, int, bytes]], bool]:
            self._check_open()
            return await self._readers.run(
                rows.stream_data_page, stream_id, low, high, _DATA_PAGE_ROWS
            )

        async for page in data_pages(fetch, from_version=from_version, to_version=to_version):
            yield page

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
        wanted = None if categories is None else tuple(sorted(set(categories)))
        kinds = None if types is None else sorted(set(types))
        if wanted == () or kinds == []:
            return
        kinds_json = None if kinds is None else msgspec.json.encode(kinds).decode()

        async def fetch(position: int, want: int) -> tuple[list[RecordedEvent], bool]:
            self._check_open()
            return await self._readers.run(rows.log_page, position, wanted, kinds_json, want)

        pages = log_pages(fetch, from_position=from_position, limit=limit, page_rows=rows.PAGE_ROWS)
        async for page in pages:
            for record in page:
                yield record

    async def stream_version(self, stream_id: str) -> int:
        validate_read_stream(stream_id, 1, None, None)
        self._check_open()
        return await self._readers.run(rows.stream_version, stream_id)

    async def head_position(self) -> int:
        self._check_open()
        head = await self._readers.run(rows.head_position)
        self._known_head = max(self._known_head, head)
        return head

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        """Appends through this store object wake waiters at once; appends by
        other processes (or other store objects) are seen by polling the head
        every POLL_INTERVAL seconds."""
        self._check_open()
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
            if self._closed:
                return False

    async def load_snapshot(self, stream_id: str, name: str) -> Snapshot | None:
        self._check_open()
        return await self._readers.run(rows.load_snapshot, stream_id, name)

    async def read_chain(self) -> AsyncIterator[ChainLink]:
        """Every stored event as the hash chain sees it, by stream then version
        (see eventfold.compliance.chain.verify)."""
        self._check_open()
        after: tuple[str, int] = ("", 0)
        while True:
            page = await self._readers.run(rows.chain_page, after[0], after[1], rows.PAGE_ROWS)
            for link in page:
                yield link
            if len(page) < rows.PAGE_ROWS:
                return
            after = (page[-1].stream_id, page[-1].version)

    # --- inspection (eventfold.compliance.inspect.Inspector) ----------------------

    async def list_streams(
        self, *, category: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        self._check_open()
        return await self._readers.run(inspect.list_streams, category, limit)

    async def list_categories(self) -> list[CategoryInfo]:
        self._check_open()
        return await self._readers.run(inspect.list_categories)

    async def stats(self) -> StoreStats:
        self._check_open()
        return await self._readers.run(inspect.stats, self.options.path)

    async def sql(self, query: str, *, limit: int = 1000, timeout: float = 30.0) -> SQLResult:
        """One read-only query over ``events`` and ``snapshots``, on a connection
        of its own that is opened read-only and may only read."""
        self._check_open()
        return await asyncio.to_thread(inspect.run_sql, self.options.path, query, limit, timeout)
