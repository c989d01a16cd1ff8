"""The mirror's statements, and its rows made records: each statement written
out in full per dialect (no SQL is assembled from pieces)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from eventfold.store.api import RecordedEvent
from eventfold.subscriptions.readmodel import Connection

ALL = (
    "SELECT stream_id, version, position, event_id, type, schema_version, data, metadata, "
    "recorded_at, tags FROM eventfold_mirror_event WHERE position >= ? ORDER BY position LIMIT ?"
)
ALL_CATEGORIES_SQLITE = (
    "SELECT stream_id, version, position, event_id, type, schema_version, data, metadata, "
    "recorded_at, tags FROM eventfold_mirror_event WHERE position >= ? "
    "AND category IN (SELECT value FROM json_each(?)) ORDER BY position LIMIT ?"
)
ALL_TYPES_SQLITE = (
    "SELECT stream_id, version, position, event_id, type, schema_version, data, metadata, "
    "recorded_at, tags FROM eventfold_mirror_event WHERE position >= ? "
    "AND type IN (SELECT value FROM json_each(?)) ORDER BY position LIMIT ?"
)
ALL_BOTH_SQLITE = (
    "SELECT stream_id, version, position, event_id, type, schema_version, data, metadata, "
    "recorded_at, tags FROM eventfold_mirror_event WHERE position >= ? "
    "AND category IN (SELECT value FROM json_each(?)) "
    "AND type IN (SELECT value FROM json_each(?)) ORDER BY position LIMIT ?"
)
ALL_CATEGORIES_PG = (
    "SELECT stream_id, version, position, event_id, type, schema_version, data, metadata, "
    "recorded_at, tags FROM eventfold_mirror_event WHERE position >= ? AND category = ANY(?) "
    "ORDER BY position LIMIT ?"
)
ALL_TYPES_PG = (
    "SELECT stream_id, version, position, event_id, type, schema_version, data, metadata, "
    "recorded_at, tags FROM eventfold_mirror_event WHERE position >= ? AND type = ANY(?) "
    "ORDER BY position LIMIT ?"
)
ALL_BOTH_PG = (
    "SELECT stream_id, version, position, event_id, type, schema_version, data, metadata, "
    "recorded_at, tags FROM eventfold_mirror_event WHERE position >= ? AND category = ANY(?) "
    "AND type = ANY(?) ORDER BY position LIMIT ?"
)
STREAM = (
    "SELECT stream_id, version, position, event_id, type, schema_version, data, metadata, "
    "recorded_at, tags FROM eventfold_mirror_event WHERE stream_id = ? AND version >= ? "
    "AND version <= ? ORDER BY version LIMIT ?"
)
STREAM_BACK = (
    "SELECT stream_id, version, position, event_id, type, schema_version, data, metadata, "
    "recorded_at, tags FROM eventfold_mirror_event WHERE stream_id = ? AND version >= ? "
    "AND version <= ? ORDER BY version DESC LIMIT ?"
)

HEAD = "SELECT COALESCE(MAX(position), 0) FROM eventfold_mirror_event"
VERSION = "SELECT COALESCE(MAX(version), 0) FROM eventfold_mirror_event WHERE stream_id = ?"


def record(row: Any) -> RecordedEvent:
    return RecordedEvent(
        stream_id=row[0],
        version=int(row[1]),
        position=int(row[2]),
        event_id=uuid.UUID(row[3]),
        type=row[4],
        schema_version=int(row[5]),
        data=row[6],
        metadata=row[7],
        recorded_at=datetime.fromisoformat(row[8]),
        tags=() if row[9] is None else tuple(row[9].split(" ")),
    )


def fetch(sql: str, params: tuple[Any, ...], conn: Connection) -> list[Any]:
    return list(conn.execute(sql, params).fetchall())


# The log's statement by (filtered by category, filtered by type), per dialect.
LOG = {
    "postgresql": {
        (False, False): ALL,
        (True, False): ALL_CATEGORIES_PG,
        (False, True): ALL_TYPES_PG,
        (True, True): ALL_BOTH_PG,
    },
    "sqlite": {
        (False, False): ALL,
        (True, False): ALL_CATEGORIES_SQLITE,
        (False, True): ALL_TYPES_SQLITE,
        (True, True): ALL_BOTH_SQLITE,
    },
}


def log_rows(
    at: int,
    categories: tuple[str, ...] | None,
    types: tuple[str, ...] | None,
    page: int,
    conn: Connection,
) -> list[Any]:
    sql = LOG[conn.dialect][categories is not None, types is not None]
    lists = [n for n in (categories, types) if n is not None]
    if conn.dialect == "postgresql":
        filters: list[Any] = [list(n) for n in lists]
    else:  # SQLite takes a list as a JSON array
        filters = [msgspec.json.encode(n).decode() for n in lists]
    return list(conn.execute(sql, (at, *filters, page)).fetchall())
