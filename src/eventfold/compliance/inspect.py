"""Looking into a store: streams and categories with counts, statistics, and
read-only SQL over the event tables. Each backend implements ``Inspector``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import msgspec

from eventfold.errors import EventfoldError


class ReadOnlyViolation(EventfoldError):
    """A query given to ``sql`` tried to change something, or to reach outside
    the store's tables."""


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


class SQLResult(msgspec.Struct, frozen=True):
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


@runtime_checkable
class Inspector(Protocol):
    async def list_streams(
        self, *, category: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        """Streams, most recently written first."""
        ...

    async def list_categories(self) -> list[CategoryInfo]:
        """Categories with their stream and event counts, largest first."""
        ...

    async def stats(self) -> StoreStats: ...

    async def sql(self, query: str, *, limit: int = 1000, timeout: float = 30.0) -> SQLResult:
        """Run one read-only query over the event tables (``events``,
        ``snapshots``); anything that would write raises ``ReadOnlyViolation``."""
        ...
