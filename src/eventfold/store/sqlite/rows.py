"""Queries and row decoding. Every function here runs on a worker thread with
a connection it is given; values only ever travel as ``?`` parameters."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any, TypeVar

import msgspec

from eventfold.errors import StreamDeleted
from eventfold.store.api import RecordedEvent, Snapshot
from eventfold.store.capabilities import ChainLink, DataRow
from eventfold.store.chain import GENESIS
from eventfold.store.lazy import StoredEvent

T = TypeVar("T")

PAGE_ROWS = 1000
"""Rows per query when paging through a stream or the log."""
PAGE_BYTES = 8 << 20
"""A page stops early once its payloads pass this size, so large events never
pile up in memory."""
_CHUNK = 250
MAX_CATEGORY_ARMS = 32
"""Up to this many categories are read as a merge of per-category index scans."""

# A stream's rows leave out the stream id: the caller has it.
_STREAM_FORWARD = (
    "SELECT version, position, event_id, type, schema_version, "
    "CAST(data AS BLOB), CAST(metadata AS BLOB), recorded_at, tags FROM events "
    "WHERE stream_id = ? AND version >= ? AND version <= ? ORDER BY version LIMIT ?"
)
_STREAM_BACKWARD = (
    "SELECT version, position, event_id, type, schema_version, "
    "CAST(data AS BLOB), CAST(metadata AS BLOB), recorded_at, tags FROM events "
    "WHERE stream_id = ? AND version >= ? AND version <= ? ORDER BY version DESC LIMIT ?"
)
_STREAM_DATA = (
    "SELECT type, schema_version, CAST(data AS BLOB) FROM events "
    "WHERE stream_id = ? AND version >= ? AND version <= ? ORDER BY version LIMIT ?"
)
_LOG = (
    "SELECT stream_id, version, position, event_id, type, schema_version, "
    "CAST(data AS BLOB), CAST(metadata AS BLOB), recorded_at, tags FROM events "
    "WHERE position >= ? ORDER BY position LIMIT ?"
)
_LOG_TYPES = (
    "SELECT stream_id, version, position, event_id, type, schema_version, "
    "CAST(data AS BLOB), CAST(metadata AS BLOB), recorded_at, tags FROM events "
    "WHERE position >= ? AND type IN (SELECT value FROM json_each(?)) "
    "ORDER BY position LIMIT ?"
)
# Many categories: scan the log in position order (``+category`` keeps the
# planner off the category index, which would need a sort of every match).
_LOG_CATEGORIES = (
    "SELECT stream_id, version, position, event_id, type, schema_version, "
    "CAST(data AS BLOB), CAST(metadata AS BLOB), recorded_at, tags FROM events "
    "WHERE position >= ? AND +category IN (SELECT value FROM json_each(?)) "
    "AND (? IS NULL OR type IN (SELECT value FROM json_each(?))) "
    "ORDER BY position LIMIT ?"
)
# A few categories: one ordered index scan per category, merged by SQLite's
# compound ORDER BY, so a page costs about a page of rows however rare they are.
_CATEGORY_ARM = (
    "SELECT * FROM (SELECT stream_id, version, position, event_id, type, schema_version, "
    "CAST(data AS BLOB), CAST(metadata AS BLOB), recorded_at, tags FROM events "
    "WHERE category = ? AND position >= ? "
    "AND (? IS NULL OR type IN (SELECT value FROM json_each(?))) "
    "ORDER BY position LIMIT ?)"
)
_UNION_ALL = " UNION ALL "
_MERGE_TAIL = " ORDER BY position LIMIT ?"

VERSION_SQL = (
    "SELECT version, position FROM events WHERE stream_id = ? ORDER BY version DESC LIMIT 1"
)
LAST_SQL = (
    "SELECT version, position, hash FROM events WHERE stream_id = ? ORDER BY version DESC LIMIT 1"
)
_CHAIN = (
    "SELECT stream_id, version, position, event_id, type, schema_version, "
    "CAST(data AS BLOB), CAST(metadata AS BLOB), hash, tags FROM events "
    "WHERE (stream_id, version) > (?, ?) ORDER BY stream_id, version LIMIT ?"
)
LATEST_CUT_SQL = (
    "SELECT before_version, anchor, reason FROM stream_cuts WHERE stream_id = ? "
    "ORDER BY before_version DESC, seq DESC LIMIT 1"
)
# The log's head: its last event, or the head it had when its last cut was
# made if that is higher (the events at the end were removed): positions
# are never given twice.
CUT_HEAD_SQL = "SELECT coalesce((SELECT log_head FROM stream_cuts ORDER BY seq DESC LIMIT 1), 0)"
HEAD_SQL = (
    "SELECT max(coalesce((SELECT max(position) FROM events), 0), "
    "coalesce((SELECT log_head FROM stream_cuts ORDER BY seq DESC LIMIT 1), 0))"
)
_BY_EVENT_ID = (
    "SELECT stream_id, version, position, event_id, type, schema_version, "
    "CAST(data AS BLOB), CAST(metadata AS BLOB), recorded_at, tags FROM events WHERE event_id = ?"
)
_SNAPSHOT = (
    "SELECT stream_id, name, version, schema_version, state FROM snapshots "
    "WHERE stream_id = ? AND name = ?"
)


def decode(rows: Sequence[Any]) -> list[RecordedEvent]:
    """Rows (columns as the queries here select them) to records, column by
    column in C: the id and time stay as stored until read
    (``eventfold.store.lazy``); the tags column becomes tuples."""
    if not rows:
        return []
    *columns, tags = zip(*rows, strict=True)
    return list(map(StoredEvent, *columns, split_tags(tags)))


_NO_TAGS: tuple[str, ...] = ()


def split_tags(column: Sequence[str | None]) -> list[tuple[str, ...]]:
    """The ``tags`` column (tags joined by spaces, NULL for none) as tuples."""
    if column.count(None) == len(column):
        return [_NO_TAGS] * len(column)
    return [_NO_TAGS if t is None else tuple(t.split(" ")) for t in column]


def join_tags(tags: Sequence[str]) -> str | None:
    """The ``tags`` column of an event: None for none."""
    return " ".join(tags) if tags else None


def _page(
    con: sqlite3.Connection,
    sql: str,
    params: Sequence[Any],
    limit: int,
    chunk_rows: int,
    build: Callable[[list[Any]], list[T]],
    payload_bytes: Callable[[list[Any]], int],
    max_bytes: int = PAGE_BYTES,
) -> tuple[list[T], bool]:
    """Up to ``limit`` rows, fetched ``chunk_rows`` at a time and each chunk
    turned into items by ``build``; fewer once the chunks' ``payload_bytes``
    pass ``max_bytes``. Returns (items, exhausted): exhausted means the query
    ran out of rows."""
    cursor = con.execute(sql, params)
    items: list[T] = []
    size = 0
    try:
        while len(items) < limit:
            want = min(limit - len(items), chunk_rows)
            chunk = cursor.fetchmany(want)
            items += build(chunk)
            if len(chunk) < want:
                return items, True
            if len(items) >= limit:
                break
            size += payload_bytes(chunk)
            if size >= max_bytes:
                break
    finally:
        cursor.close()
    return items, False


def _record_bytes(chunk: list[Any]) -> int:
    return sum(len(row[6]) + len(row[7]) for row in chunk)


def _stream_record_bytes(chunk: list[Any]) -> int:
    return sum(len(row[5]) + len(row[6]) for row in chunk)


def fetch_records(
    con: sqlite3.Connection,
    sql: str,
    params: Sequence[Any],
    limit: int,
    max_bytes: int = PAGE_BYTES,
) -> tuple[list[RecordedEvent], bool]:
    """A page of records. Rows are turned into records a chunk at a time, so
    that the row tuples (which the garbage collector tracks; records are not
    tracked) die young."""
    return _page(con, sql, params, limit, _CHUNK, decode, _record_bytes, max_bytes)


def stream_page(
    con: sqlite3.Connection,
    stream_id: str,
    low: int,
    high: int,
    backwards: bool,
    limit: int,
    max_bytes: int = PAGE_BYTES,
) -> tuple[list[RecordedEvent], bool]:
    sql = _STREAM_BACKWARD if backwards else _STREAM_FORWARD

    def build(chunk: list[Any]) -> list[RecordedEvent]:
        if not chunk:
            return []
        *columns, tags = zip(*chunk, strict=True)
        return list(map(StoredEvent, repeat(stream_id), *columns, split_tags(tags)))

    params = (stream_id, low, high, limit)
    return _page(con, sql, params, limit, _CHUNK, build, _stream_record_bytes, max_bytes)


def _as_is(chunk: list[Any]) -> list[Any]:
    return chunk


def _data_bytes(chunk: list[Any]) -> int:
    return sum(len(row[2]) for row in chunk)


def stream_data_page(
    con: sqlite3.Connection,
    stream_id: str,
    low: int,
    high: int,
    limit: int,
    max_bytes: int = PAGE_BYTES,
) -> tuple[list[DataRow], bool]:
    """``(type, schema_version, data)`` rows of one stream from version ``low``
    up: up to ``limit``, fewer once their payloads pass ``max_bytes``. A
    stream's versions are contiguous, so row ``i`` is version ``low + i``.
    Returns (rows, exhausted)."""
    params = (stream_id, low, high, limit)
    return _page(con, _STREAM_DATA, params, limit, _CHUNK * 4, _as_is, _data_bytes, max_bytes)


def category_sql(arms: int) -> str:
    """The merge of ``arms`` per-category scans; only placeholders vary."""
    return _UNION_ALL.join([_CATEGORY_ARM] * arms) + _MERGE_TAIL


def log_page(
    con: sqlite3.Connection,
    from_position: int,
    categories: tuple[str, ...] | None,
    types: str | None,
    limit: int,
    max_bytes: int = PAGE_BYTES,
) -> tuple[list[RecordedEvent], bool]:
    """A page of the log; ``types`` is a JSON array of type names or None."""
    sql: str
    params: list[Any]
    if categories is None:
        if types is None:
            sql, params = _LOG, [from_position, limit]
        else:
            sql, params = _LOG_TYPES, [from_position, types, limit]
    elif len(categories) > MAX_CATEGORY_ARMS:
        names = msgspec.json.encode(categories).decode()
        sql, params = _LOG_CATEGORIES, [from_position, names, types, types, limit]
    else:
        sql, params = category_sql(len(categories)), []
        for category in categories:
            params += (category, from_position, types, types, limit)
        params.append(limit)
    return fetch_records(con, sql, params, limit, max_bytes)


def head_position(con: sqlite3.Connection) -> int:
    head: int = con.execute(HEAD_SQL).fetchone()[0]
    return head


def stream_version(con: sqlite3.Connection, stream_id: str) -> int:
    row = con.execute(VERSION_SQL, (stream_id,)).fetchone()
    if row is not None:
        return int(row[0])
    cut = con.execute(LATEST_CUT_SQL, (stream_id,)).fetchone()
    return 0 if cut is None else int(cut[0]) - 1


def after_cut(con: sqlite3.Connection, stream_id: str) -> tuple[int, bytes]:
    """The version and chain head of a stream that has no event stored:
    where its latest cut left it (``(0, GENESIS)`` if it has none).
    ``StreamDeleted`` if it was deleted for good."""
    row = con.execute(LATEST_CUT_SQL, (stream_id,)).fetchone()
    if row is None:
        return 0, GENESIS
    if row[2] == "tombstoned":
        raise StreamDeleted(stream_id)
    return row[0] - 1, bytes(row[1])


def stored_events(
    con: sqlite3.Connection, event_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, RecordedEvent]:
    """The records of those ids that are already stored."""
    rows = []
    for event_id in event_ids:
        row = con.execute(_BY_EVENT_ID, (event_id.bytes,)).fetchone()
        if row is not None:
            rows.append(row)
    return {record.event_id: record for record in decode(rows)}


def chain_page(
    con: sqlite3.Connection, after_stream: str, after_version: int, limit: int
) -> list[ChainLink]:
    """Stored events as the hash chain sees them, by stream then version."""
    return [
        ChainLink(
            r[0],
            r[1],
            r[2],
            uuid.UUID(bytes=r[3]),
            r[4],
            r[5],
            r[6],
            r[7],
            bytes(r[8]),
            _NO_TAGS if r[9] is None else tuple(r[9].split(" ")),
        )
        for r in con.execute(_CHAIN, (after_stream, after_version, limit))
    ]


def load_snapshot(con: sqlite3.Connection, stream_id: str, name: str) -> Snapshot | None:
    row = con.execute(_SNAPSHOT, (stream_id, name)).fetchone()
    if row is None:
        return None
    return Snapshot(row[0], row[1], row[2], row[3], bytes(row[4]))
