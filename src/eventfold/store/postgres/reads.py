"""The reading half of the PostgreSQL store, written once over "a connection
to read on": the store itself reads its primary (``PostgresStore``), a
routed view reads a replica or falls back (``routed.RoutedReads``).

Readers of the whole log see only rows below the bound (``queries.BOUND``):
rows of transactions older than every transaction still running. On a hot
standby the snapshot's xmin is the oldest transaction the standby has not
seen end in the WAL it replayed (every transaction id it has seen used
counts as running until its commit or abort record is replayed), so the
same rule holds there: see docs/postgres.md, "Reading from replicas"."""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import cached_property
from itertools import starmap
from typing import Any, TypeAlias, TypeVar

import psycopg

from eventfold.store.api import RecordedEvent
from eventfold.store.base import LogReader, StreamDataPages
from eventfold.store.capabilities import (
    CategoryInfo,
    ChainLink,
    DataRow,
    SQLResult,
    StoreStats,
    StreamInfo,
)
from eventfold.store.lazy import StoredEvent
from eventfold.store.paging import Page
from eventfold.store.postgres import inspect
from eventfold.store.postgres.grouped import GROUP_ROWS, GroupedPages, PageRequest
from eventfold.store.postgres.notify import Listener
from eventfold.store.postgres.options import PostgresOptions
from eventfold.store.postgres.queries import Queries
from eventfold.store.postgres.schema import Names

Conn: TypeAlias = psycopg.AsyncConnection[tuple[Any, ...]]
T = TypeVar("T")

PAGE = 1000
_CHUNK = 250  # rows turned into records at a time (see _fetch_records)


class PostgresReads(LogReader, StreamDataPages):
    """Streams, the log, the hash chain and inspection over connections
    that ``_run`` provides. Event rows become lazy records
    (``eventfold.store.lazy.StoredEvent``: the id and time stay in their
    binary wire form until read) whichever server answered."""

    page_rows = PAGE
    options: PostgresOptions
    _names: Names
    _offset: int
    _q: Queries

    @abc.abstractmethod
    async def _run(self, fn: Callable[[Conn], Awaitable[T]], what: str) -> T:
        """``await fn(conn)`` on a connection to read on; driver errors
        become eventfold errors naming ``what``."""

    @abc.abstractmethod
    async def _waker(self) -> Listener | None:
        """The LISTEN connection waiters wake on (None: poll)."""

    # --- reading --------------------------------------------------------------------

    @cached_property
    def _pages(self) -> GroupedPages:
        """Small forward stream pages read at once share statements (see
        grouped.py); they run through ``_run`` like every other read."""
        return GroupedPages(
            self._fetch_rows, one=self._q.stream_forward, many=self._q.stream_pages, flushers=2
        )

    async def _stream_page(
        self, stream_id: str, low: int, high: int, backwards: bool, want: int
    ) -> Page:
        if not backwards and want <= GROUP_ROWS:
            return await self._pages.page(PageRequest(stream_id, low, high, want))
        query = self._q.stream_backward if backwards else self._q.stream_forward
        page = await self._fetch_records(query, [stream_id, low, high, want], "read_stream")
        return page, len(page) < want

    async def _stream_data_page(
        self, stream_id: str, low: int, high: int
    ) -> tuple[list[DataRow], bool]:
        params = [stream_id, low, high, PAGE]
        rows: list[Any] = await self._fetch(self._q.stream_data, params, "read_stream", binary=True)
        return rows, len(rows) < PAGE

    async def _log_page(
        self,
        position: int,
        categories: tuple[str, ...] | None,
        types: tuple[str, ...] | None,
        want: int,
    ) -> Page:
        query = self._q.log(categories is not None, types is not None)
        params: list[Any] = [position, self._offset]
        if categories is not None:
            params.append(list(categories))
        if types is not None:
            params.append(list(types))
        params.append(want)
        page = await self._fetch_records(query, params, "read_all")
        return page, len(page) < want

    async def _stream_version(self, stream_id: str) -> int:
        rows = await self._fetch(self._q.stream_version, [stream_id], "stream_version")
        return int(rows[0][0]) if rows else 0

    async def _head_position(self) -> int:
        rows = await self._fetch(self._q.head, [self._offset], "head_position")
        return int(rows[0][0])

    async def read_chain(self) -> AsyncIterator[ChainLink]:
        """Every stored event as the hash chain sees it (the payload text as
        stored, the digest), by stream then version; see
        eventfold.compliance.chain.verify."""
        self.check_open()
        stream_id, version = "", 0
        while True:
            params = [stream_id, version, PAGE]
            rows = await self._fetch(self._q.chain, params, "read_chain", binary=True)
            for row in rows:
                yield ChainLink(*row)
            if len(rows) < PAGE:
                return
            stream_id, version = rows[-1][0], rows[-1][1]

    async def _fetch(
        self, query: str, params: Sequence[Any], what: str, *, binary: bool = False
    ) -> list[tuple[Any, ...]]:
        """Rows of ``query``. Event rows come in binary: PostgreSQL sends uuid
        and timestamptz as 16 and 8 bytes, payloads as the jsonb's text, and
        psycopg's binary loaders turn them into UUID, datetime and str fastest
        (jsonb itself is never parsed on the client)."""

        async def fetch(conn: Conn) -> list[tuple[Any, ...]]:
            cur = await conn.execute(query, params, binary=binary)
            return await cur.fetchall()

        return await self._run(fetch, what)

    async def _fetch_rows(self, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
        return await self._fetch(query, params, "read_stream", binary=True)

    async def _fetch_records(
        self, query: str, params: Sequence[Any], what: str
    ) -> list[RecordedEvent]:
        """Records of an event query. Rows become records a chunk at a time, so
        that the row tuples (tracked by the garbage collector; records are not)
        die young instead of a page of them surviving into older generations."""

        async def fetch(conn: Conn) -> list[RecordedEvent]:
            records: list[RecordedEvent] = []
            cur = await conn.execute(query, params, binary=True)
            while chunk := await cur.fetchmany(_CHUNK):
                records += starmap(StoredEvent, chunk)
            return records

        return await self._run(fetch, what)

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        self.check_open()
        deadline = time.monotonic() + max(timeout, 0.0)
        listener = await self._waker()
        delay = 0.001
        while True:
            generation = listener.generation if listener is not None else 0
            if await self.head_position() > after_position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return False
            if listener is None:
                await asyncio.sleep(min(self.options.poll_interval, remaining))
            elif listener.notified > after_position:
                # Committed but not visible here yet: an older transaction is
                # still running, or a replica has not replayed the commit. Neither
                # sends a notification: look again shortly.
                await listener.wait(generation, min(delay, remaining))
                delay = min(delay * 2, 0.05)
            else:
                await listener.wait(generation, min(self.options.poll_interval, remaining))

    # --- inspection (Inspector, SQLReader) ------------------------------------------

    async def _inspect(self, fn: Any, *args: Any) -> Any:
        self.check_open()

        async def run(conn: Conn) -> Any:
            return await fn(conn, self._names, *args)

        return await self._run(run, "inspecting the store")

    async def list_streams(
        self, *, category: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        found: list[StreamInfo] = await self._inspect(inspect.list_streams, category, limit)
        return found

    async def list_categories(self) -> list[CategoryInfo]:
        found: list[CategoryInfo] = await self._inspect(inspect.list_categories)
        return found

    async def stats(self) -> StoreStats:
        found: StoreStats = await self._inspect(inspect.stats, await self.head_position())
        return found

    async def sql(self, query: str, *, limit: int = 1000, timeout: float = 30.0) -> SQLResult:
        """One read-only query over the store's tables (see store/postgres/inspect.py)."""
        found: SQLResult = await self._inspect(inspect.run_sql, query, limit, timeout)
        return found
