"""Looking into the mirror (``eventfold_mirror_event``): its streams,
categories and statistics (the ``Inspector`` capability, so the query side
can be browsed like the store), events per minute, and the events that
share a correlation id. Each function reads inside a transaction the
caller opened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from eventfold.store.capabilities import CategoryInfo, StoreStats, StreamInfo
from eventfold.subscriptions.readmodel import Connection

_STREAMS = (
    "SELECT stream_id, MAX(version), MAX(position), MAX(recorded_at) "
    "FROM eventfold_mirror_event GROUP BY stream_id ORDER BY MAX(position) DESC LIMIT ?"
)
_STREAMS_OF = (
    "SELECT stream_id, MAX(version), MAX(position), MAX(recorded_at) "
    "FROM eventfold_mirror_event WHERE category = ? "
    "GROUP BY stream_id ORDER BY MAX(position) DESC LIMIT ?"
)
_CATEGORIES = (
    "SELECT category, COUNT(DISTINCT stream_id), COUNT(*) FROM eventfold_mirror_event "
    "GROUP BY category ORDER BY COUNT(*) DESC, category"
)
_CORRELATED = {
    "sqlite": (
        "SELECT position FROM eventfold_mirror_event "
        "WHERE json_extract(metadata, '$.correlation_id') = ? ORDER BY position LIMIT ?"
    ),
    "postgresql": (
        "SELECT position FROM eventfold_mirror_event "
        "WHERE (metadata::jsonb ->> 'correlation_id') = ? ORDER BY position LIMIT ?"
    ),
}
_INDEXES = {
    "sqlite": (
        "CREATE INDEX IF NOT EXISTS eventfold_mirror_event_by_correlation "
        "ON eventfold_mirror_event (json_extract(metadata, '$.correlation_id'))",
        "CREATE INDEX IF NOT EXISTS eventfold_mirror_event_by_time "
        "ON eventfold_mirror_event (recorded_at)",
    ),
    "postgresql": (
        "CREATE INDEX IF NOT EXISTS eventfold_mirror_event_by_correlation "
        "ON eventfold_mirror_event ((metadata::jsonb ->> 'correlation_id'))",
        "CREATE INDEX IF NOT EXISTS eventfold_mirror_event_by_time "
        "ON eventfold_mirror_event (recorded_at)",
    ),
}


def ensure_indexes(conn: Connection) -> None:
    for statement in _INDEXES[conn.dialect]:
        conn.execute(statement)


def _time(text: Any) -> datetime:
    return datetime.fromisoformat(str(text))


def list_streams(conn: Connection, category: str | None, limit: int) -> list[StreamInfo]:
    rows = (
        conn.execute(_STREAMS, (limit,))
        if category is None
        else conn.execute(_STREAMS_OF, (category, limit))
    ).fetchall()
    return [StreamInfo(r[0], int(r[1]), int(r[2]), _time(r[3])) for r in rows]


def list_categories(conn: Connection) -> list[CategoryInfo]:
    rows = conn.execute(_CATEGORIES).fetchall()
    return [CategoryInfo(r[0], int(r[1]), int(r[2])) for r in rows]


def stats(conn: Connection) -> StoreStats:
    row = conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT stream_id), COALESCE(MAX(position), 0), "
        "MIN(recorded_at), MAX(recorded_at) FROM eventfold_mirror_event"
    ).fetchone()
    types = conn.execute(
        "SELECT type, COUNT(*) FROM eventfold_mirror_event GROUP BY type ORDER BY type"
    ).fetchall()
    return StoreStats(
        events=int(row[0]),
        streams=int(row[1]),
        head_position=int(row[2]),
        first_recorded_at=None if row[3] is None else _time(row[3]),
        last_recorded_at=None if row[4] is None else _time(row[4]),
        types={t: int(n) for t, n in types},
        size_bytes=None,
    )


def per_minute(conn: Connection, minutes: int, now: datetime | None = None) -> list[int]:
    """Events recorded in each of the last ``minutes`` minutes, oldest first
    (the last entry is the minute in progress). Times are kept in UTC, so a
    minute is the first 16 characters of their ISO text."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    rows = conn.execute(
        "SELECT substr(recorded_at, 1, 16), COUNT(*) FROM eventfold_mirror_event "
        "WHERE recorded_at >= ? GROUP BY substr(recorded_at, 1, 16)",
        (start.isoformat(),),
    ).fetchall()
    slots = {(start + timedelta(minutes=n)).isoformat()[:16]: n for n in range(minutes)}
    counts = [0] * minutes
    for minute, count in rows:
        index = slots.get(str(minute))
        if index is not None:
            counts[index] = int(count)
    return counts


def correlated(conn: Connection, correlation_id: str, limit: int) -> list[int]:
    """Positions of the events whose metadata names ``correlation_id``."""
    rows = conn.execute(_CORRELATED[conn.dialect], (correlation_id, limit)).fetchall()
    return [int(r[0]) for r in rows]
