"""How a backend walks a stream or the log, page by page (``eventfold.store.base``
runs these walks for every backend). A backend supplies ``fetch``, which
reads one page and returns it and whether there are no more rows; the walk
here clamps the range, counts the limit and moves on from the last row of
each page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from eventfold.store.api import RecordedEvent

INT64_MAX = 2**63 - 1
"""The largest version or position a backend stores."""

T = TypeVar("T")
Page = tuple[list[RecordedEvent], bool]


async def stream_pages(
    fetch: Callable[[int, int, int], Awaitable[Page]],
    *,
    from_version: int,
    to_version: int | None,
    backwards: bool,
    limit: int | None,
    page_rows: int,
) -> AsyncIterator[list[RecordedEvent]]:
    """Pages of one stream's records with ``from_version <= version <=
    to_version``, in order, at most ``limit`` records in all.
    ``fetch(low, high, want)`` returns up to ``want`` records of versions
    ``low..high`` (from ``high`` down when ``backwards``)."""
    low = max(from_version, 1)
    high = INT64_MAX if to_version is None else min(to_version, INT64_MAX)
    remaining = limit
    while low <= high and (remaining is None or remaining > 0):
        want = page_rows if remaining is None else min(page_rows, remaining)
        page, exhausted = await fetch(low, high, want)
        if page:
            yield page
        if exhausted or not page:
            return
        if remaining is not None:
            remaining -= len(page)
        if backwards:
            high = page[-1].version - 1
        else:
            low = page[-1].version + 1


async def data_pages(
    fetch: Callable[[int, int], Awaitable[tuple[list[T], bool]]],
    *,
    from_version: int,
    to_version: int | None,
) -> AsyncIterator[tuple[int, list[T]]]:
    """``(first_version, rows)`` pages of one stream, ascending, for a
    ``read_stream_data``: ``fetch(low, high)`` returns rows of versions from
    ``low`` on, which are contiguous, so the next page starts after them."""
    low = max(from_version, 1)
    high = INT64_MAX if to_version is None else min(to_version, INT64_MAX)
    while low <= high:
        page, exhausted = await fetch(low, high)
        if page:
            yield low, page
        if exhausted or not page:
            return
        low += len(page)


async def log_pages(
    fetch: Callable[[int, int], Awaitable[Page]],
    *,
    from_position: int,
    limit: int | None,
    page_rows: int,
) -> AsyncIterator[list[RecordedEvent]]:
    """Pages of the log from ``from_position`` on, at most ``limit`` records
    in all: ``fetch(position, want)`` returns up to ``want`` records at or
    after ``position``, in order."""
    position = min(from_position, INT64_MAX)
    remaining = limit
    while position <= INT64_MAX and (remaining is None or remaining > 0):
        want = page_rows if remaining is None else min(page_rows, remaining)
        page, exhausted = await fetch(position, want)
        if page:
            yield page
        if exhausted or not page:
            return
        if remaining is not None:
            remaining -= len(page)
        position = page[-1].position + 1
