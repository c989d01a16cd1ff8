"""How far behind the log a read model is. Positions are not contiguous on
every backend (PostgreSQL's are sparse), so events behind are counted by
reading the log past the read model's position, never computed by subtraction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from eventfold.serialization.codec import Codec
from eventfold.store.api import EventReader
from eventfold.store.routing import Served
from eventfold.subscriptions.projection import Dispatch, Projection

COUNT_LIMIT = 10_000
"""By default at most this many log events are read to count a lag; past it
the count is capped (a runner's queries use its own, smaller ``count_limit``)."""


class Freshness(msgspec.Struct, frozen=True):
    """How stale an answer is: the read model reflects the log up to
    ``position``; the log's head is ``head``; ``events_behind`` events the
    projection handles came after ``position`` (``capped``: at least that
    many); the oldest of them was recorded ``seconds_behind`` seconds ago
    (0 when none are behind)."""

    position: int
    head: int
    events_behind: int
    seconds_behind: float
    capped: bool = False

    @property
    def up_to_date(self) -> bool:
        return self.events_behind == 0


async def measure(
    store: EventReader,
    projection: Projection,
    codec: Codec,
    position: int,
    *,
    count_limit: int = COUNT_LIMIT,
    dispatch: Dispatch | None = None,
) -> Freshness:
    head = await store.head_position()
    behind, scanned = 0, 0
    oldest: datetime | None = None
    dispatch = dispatch if dispatch is not None else Dispatch(projection, codec)
    if head > position:
        async for record in store.read_all(
            from_position=position + 1, categories=projection.categories, limit=count_limit
        ):
            scanned += 1
            if dispatch.relevant(record.type):
                behind += 1
                if oldest is None:
                    oldest = record.recorded_at
    seconds = 0.0
    if oldest is not None:
        seconds = max(0.0, (datetime.now(UTC) - oldest).total_seconds())
    return Freshness(position, max(head, position), behind, seconds, scanned >= count_limit)


class QueryResult(msgspec.Struct, frozen=True):
    """Rows of a read-model query, their column names, the build they came
    from, and (from a runner) how fresh they are and who served them."""

    rows: list[Any]
    columns: list[str]
    projection: str
    build: int
    version: int
    position: int
    freshness: Freshness | None = None
    served: Served | None = None

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class BuildStatus(msgspec.Struct, frozen=True):
    build: int
    version: int
    state: str
    position: int
    handled: int
    tables: list[str]
    as_of: str | None = None
    """For a time-travel build: the position and/or time it was built as of."""


class ProjectionStatus(msgspec.Struct, frozen=True):
    """One projection as the read model holds it: the build queries read
    (``active``, None before the first build caught up), any other builds,
    the active build's lag, and its ``state``: ``failed`` (``failure`` says
    why), ``paused`` (``paused_by``, ``paused_at``), ``building`` (a build
    is catching up: the first one, a new version or a rebuild) or
    ``running``."""

    name: str
    version: int
    active: BuildStatus | None
    others: list[BuildStatus]
    freshness: Freshness | None
    state: str = "running"
    failure: str | None = None
    paused_by: str | None = None
    paused_at: str | None = None
