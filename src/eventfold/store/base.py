"""What every backend does before it touches storage, written once: the open
check, the checks of every argument (``eventfold.store.checks``), and the
paging walk (``eventfold.store.paging``). The memory, SQLite and PostgreSQL
stores, the bus mirror and ``DelegatingStore`` build on these classes, so
that all of them refuse the same input with the same typed error and page
the same way.

A backend subclasses ``LogReader`` and ``LogWriter`` (a read-only one
``LogReader`` alone) and supplies the storage steps: one page of a stream
(``_stream_page``), one page of the log (``_log_page``), a stream's version,
the head, ``wait_for_events``, the write of checked appends (``_write``) and
``close``. ``StreamDataPages`` adds ``read_stream_data`` the same way.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from typing import Self

from eventfold.errors import StoreClosed
from eventfold.store.api import (
    ANY,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
)
from eventfold.store.capabilities import DataPage, DataRow
from eventfold.store.checks import (
    validate_appends,
    validate_read_all,
    validate_read_stream,
    validate_stream_id,
)
from eventfold.store.dcb import (
    AppendCondition,
    Query,
    validate_append,
    validate_query,
    validate_read,
)
from eventfold.store.paging import Page, data_pages, log_pages, query_pages, stream_pages

PAGE_ROWS = 1000
"""Records per page when a backend pages through a stream or the log."""


class Lifecycle(abc.ABC):
    """Open until ``close()``; every call checks that first."""

    url: str
    closed: bool = False

    @property
    def location(self) -> str:
        """What errors call this store (never a password)."""
        return self.url

    def check_open(self) -> None:
        """Raise StoreClosed once ``close()`` was called."""
        if self.closed:
            raise StoreClosed(f"{self.location} is closed")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def close(self) -> None: ...


class LogReader(Lifecycle):
    """The reading half of the contract (``EventReader``): arguments checked,
    the open check made, streams and the log walked page by page."""

    page_rows: int = PAGE_ROWS

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
        self.check_open()

        async def fetch(low: int, high: int, want: int) -> Page:
            self.check_open()
            return await self._stream_page(stream_id, low, high, backwards, want)

        pages = stream_pages(
            fetch,
            from_version=from_version,
            to_version=to_version,
            backwards=backwards,
            limit=limit,
            page_rows=self.page_rows,
        )
        async for page in pages:
            for record in page:
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
        self.check_open()
        wanted = None if categories is None else tuple(sorted(set(categories)))
        kinds = None if types is None else tuple(sorted(set(types)))
        if wanted == () or kinds == ():
            return
        await self._before_log_read()

        async def fetch(position: int, want: int) -> Page:
            self.check_open()
            return await self._log_page(position, wanted, kinds, want)

        pages = log_pages(fetch, from_position=from_position, limit=limit, page_rows=self.page_rows)
        async for page in pages:
            for record in page:
                yield record

    async def stream_version(self, stream_id: str) -> int:
        validate_stream_id(stream_id)
        self.check_open()
        return await self._stream_version(stream_id)

    async def head_position(self) -> int:
        self.check_open()
        return await self._head_position()

    @abc.abstractmethod
    async def wait_for_events(self, after_position: int, timeout: float) -> bool: ...

    # --- what a backend supplies ------------------------------------------------------

    @abc.abstractmethod
    async def _stream_page(
        self, stream_id: str, low: int, high: int, backwards: bool, want: int
    ) -> Page:
        """Up to ``want`` records of ``stream_id`` with ``low <= version <=
        high``, ascending (from ``high`` down if ``backwards``), and whether
        there are no more."""

    @abc.abstractmethod
    async def _log_page(
        self,
        position: int,
        categories: tuple[str, ...] | None,
        types: tuple[str, ...] | None,
        want: int,
    ) -> Page:
        """Up to ``want`` records at or after ``position`` in global order,
        of the listed categories and types only (None: all; the lists are
        sorted, without repeats, never empty), and whether there are no more."""

    @abc.abstractmethod
    async def _stream_version(self, stream_id: str) -> int: ...

    @abc.abstractmethod
    async def _head_position(self) -> int: ...

    async def _before_log_read(self) -> None:
        """Runs once per ``read_all``, after the checks, before the first page."""
        return None


class LogWriter(Lifecycle):
    """The writing half of the contract (``EventWriter``): the open check
    made and every append validated, then written by ``_write``."""

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        self.check_open()
        checked = validate_appends([StreamAppend(stream_id, events, expected_version)])
        (result,) = await self._write(checked)
        return result

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        self.check_open()
        return await self._write(validate_appends(appends))

    @abc.abstractmethod
    async def _write(self, appends: list[StreamAppend]) -> list[AppendResult]:
        """Write validated appends atomically (all of them or none)."""


class StreamDataPages(Lifecycle):
    """``read_stream_data`` (the ``StreamDataReader`` capability): arguments
    checked, the open check made, the stream walked page by page."""

    async def read_stream_data(
        self, stream_id: str, *, from_version: int = 1, to_version: int | None = None
    ) -> AsyncIterator[DataPage]:
        """Pages of one stream, ascending, with only what folding it needs
        (Repository.load): ``(first_version, [(type, schema_version, data),
        ...])``, the rows' versions being ``first_version, first_version + 1, ...``."""
        validate_read_stream(stream_id, from_version, to_version, None)
        self.check_open()

        async def fetch(low: int, high: int) -> tuple[list[DataRow], bool]:
            self.check_open()
            return await self._stream_data_page(stream_id, low, high)

        async for page in data_pages(fetch, from_version=from_version, to_version=to_version):
            yield page

    @abc.abstractmethod
    async def _stream_data_page(
        self, stream_id: str, low: int, high: int
    ) -> tuple[list[DataRow], bool]:
        """Rows of versions ``low`` to ``high`` (as many as the backend pages
        at once), and whether there are no more."""


class DCBPages(Lifecycle):
    """The ``DCBStore`` capability: arguments checked, the open check made,
    a query's matches walked page by page, appends validated, then written
    by ``_append_events``."""

    page_rows: int = PAGE_ROWS

    async def read(
        self,
        query: Query,
        *,
        from_position: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        checked = validate_query(query)
        validate_read(from_position, backwards, limit)
        self.check_open()
        await self._before_query_read()

        async def fetch(position: int, want: int) -> Page:
            self.check_open()
            return await self._query_page(checked, position, backwards, want)

        pages = query_pages(
            fetch,
            from_position=from_position,
            backwards=backwards,
            limit=limit,
            page_rows=self.page_rows,
        )
        async for page in pages:
            for record in page:
                yield record

    async def append_events(
        self, events: Sequence[NewEvent], condition: AppendCondition | None = None
    ) -> int:
        checked, rule = validate_append(events, condition)
        self.check_open()
        return await self._append_events(checked, rule)

    async def _before_query_read(self) -> None:
        """Runs once per ``read``, after the checks, before the first page."""
        return None

    @abc.abstractmethod
    async def _query_page(self, query: Query, position: int, backwards: bool, want: int) -> Page:
        """Up to ``want`` events matching ``query`` (checked; each event once)
        at or after ``position`` ascending (at or before it, descending, if
        ``backwards``), and whether there are no more."""

    @abc.abstractmethod
    async def _append_events(
        self, events: list[NewEvent], condition: AppendCondition | None
    ) -> int:
        """Append checked events (at least one) without a stream,
        atomically, if ``condition`` holds; the position of the last."""
