"""Concurrent small stream reads share one statement.

A page of a stream alone costs a round trip and, on the client, the asyncio
machinery of a query (a pooled connection, the wait for the socket, the
result), which weighs more than its rows. When reads are already in flight,
each new small forward read queues instead; the next free flusher sends
every queued read as one statement (a lateral join over the requests), so
that many readers pay for one round trip. A lone read runs at once on its
own, adding no wait.

Every reader of ``reads.PostgresReads`` has its own: the store's shared
statements go to its primary, a routed view's to the server that view reads
(each statement routed, and checked against the view's floor, like any
other read of that view).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from itertools import starmap
from typing import Any

import msgspec

from eventfold.store.api import RecordedEvent
from eventfold.store.lazy import StoredEvent
from eventfold.store.paging import Page
from eventfold.store.postgres.groupcommit import GroupCommitter

GROUP_ROWS = 100
"""Forward reads of at most this many rows may share a statement."""
MAX_GROUP = 64
"""Reads in one statement at most."""

Rows = list[tuple[Any, ...]]
Fetch = Callable[[str, list[Any]], Awaitable[Rows]]


class PageRequest(msgspec.Struct, frozen=True):
    stream_id: str
    low: int
    high: int
    want: int


class GroupedPages:
    """Forward pages of streams: ``page(request)`` runs alone when no other
    read is in flight, else joins the next shared statement. ``one`` is the
    statement for a single page, ``many`` the lateral join over arrays of
    requests; ``fetch(statement, params)`` runs either and returns its rows."""

    def __init__(self, fetch: Fetch, *, one: str, many: str, flushers: int) -> None:
        self._fetch = fetch
        self._one = one
        self._many = many
        self._in_flight = 0
        self._group: GroupCommitter[PageRequest, Page] = GroupCommitter(
            self._run, size_of=lambda _: 1, max_batch=MAX_GROUP, flushers=flushers
        )

    @property
    def statements(self) -> int:
        """Shared statements sent so far."""
        return self._group.batches

    async def page(self, request: PageRequest) -> Page:
        self._in_flight += 1
        try:
            if self._in_flight == 1:  # alone: no one to share a statement with
                params = [request.stream_id, request.low, request.high, request.want]
                records = _records(await self._fetch(self._one, params))
                return records, len(records) < request.want
            return await self._group.submit(request)
        finally:
            self._in_flight -= 1

    async def _run(self, requests: list[PageRequest]) -> list[Page]:
        if len(requests) == 1:
            (request,) = requests
            params = [request.stream_id, request.low, request.high, request.want]
            records = _records(await self._fetch(self._one, params))
            return [(records, len(records) < request.want)]
        params = [
            [r.stream_id for r in requests],
            [r.low for r in requests],
            [r.high for r in requests],
            [r.want for r in requests],
        ]
        rows = await self._fetch(self._many, params)
        found: list[list[RecordedEvent]] = [[] for _ in requests]
        for row in rows:  # ordered by request, then version
            found[row[0] - 1].append(StoredEvent(*row[1:]))
        return [(page, len(page) < r.want) for page, r in zip(found, requests, strict=True)]


def _records(rows: Rows) -> list[RecordedEvent]:
    return list(starmap(StoredEvent, rows))
