"""DCB queries on SQLite: a query is the union of ordered index scans
(``eventfold.store.dcb.arms``), one per tag item over ``event_tags (tag,
position)`` and one per type of an item of types alone over ``events
(type)`` (whose entries end with the position). Each scan stops after a
page of matches; SQLite merges them in position order and drops repeats
(``UNION``), so a page costs about a page of rows per scan however many
events match, and an event matching two items is one row.

Values only travel as ``?`` parameters; the text varies only in how many
scans and checks it has."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from eventfold.store.api import RecordedEvent
from eventfold.store.dcb import Arm, Query, arms
from eventfold.store.sqlite.rows import fetch_records

_COLUMNS = (
    "stream_id, version, position, event_id, type, schema_version, "
    "CAST(data AS BLOB), CAST(metadata AS BLOB), recorded_at, tags"
)
_ALL = {
    False: f"SELECT {_COLUMNS} FROM events WHERE position >= ? ORDER BY position LIMIT ?",
    True: f"SELECT {_COLUMNS} FROM events WHERE position <= ? ORDER BY position DESC LIMIT ?",
}
_OTHER_TAG = " AND EXISTS (SELECT 1 FROM event_tags u WHERE u.tag = ? AND u.position = t.position)"
_TYPE_OF = (
    " AND (SELECT e.type FROM events e WHERE e.position = t.position)"
    " IN (SELECT value FROM json_each(?))"
)


def _arm(arm: Arm, start: int, backwards: bool, want: int) -> tuple[str, list[Any]]:
    op, order = ("<=", "DESC") if backwards else (">=", "ASC")
    if arm.by == "type":
        sql = (
            f"SELECT position AS p FROM events WHERE type = ? AND position {op} ?"
            f" ORDER BY position {order} LIMIT ?"
        )
        return sql, [arm.key, start, want]
    sql = f"SELECT t.position AS p FROM event_tags t WHERE t.tag = ? AND t.position {op} ?"
    params: list[Any] = [arm.key, start]
    for tag in arm.tags:
        sql += _OTHER_TAG
        params.append(tag)
    if arm.types:
        sql += _TYPE_OF
        params.append(msgspec.json.encode(arm.types).decode())
    return sql + f" ORDER BY t.position {order} LIMIT ?", params + [want]


def _matches(query: Query, start: int, backwards: bool, want: int) -> tuple[str, list[Any]]:
    """The positions of up to ``want`` events matching ``query`` from
    ``start`` on (down, if ``backwards``), each once, in order."""
    parts: list[str] = []
    params: list[Any] = []
    for arm in arms(query):
        sql, values = _arm(arm, start, backwards, want)
        parts.append(f"SELECT p FROM ({sql})")
        params += values
    order = "DESC" if backwards else "ASC"
    return " UNION ".join(parts) + f" ORDER BY 1 {order} LIMIT ?", params + [want]


def query_page(
    con: sqlite3.Connection, query: Query, start: int, backwards: bool, want: int
) -> tuple[list[RecordedEvent], bool]:
    """Up to ``want`` events matching ``query`` from ``start`` on (down, if
    ``backwards``), and whether there are no more."""
    if query.match_all:
        return fetch_records(con, _ALL[backwards], (start, want), want)
    hits, params = _matches(query, start, backwards, want)
    order = "DESC" if backwards else "ASC"
    sql = (
        f"WITH hits(p) AS ({hits}) SELECT {_COLUMNS} FROM hits "
        f"JOIN events ON events.position = hits.p ORDER BY hits.p {order}"
    )
    return fetch_records(con, sql, params, want)


def first_match(con: sqlite3.Connection, query: Query, after: int | None) -> int | None:
    """The position of the first event matching ``query`` after ``after``
    (None: anywhere), or None: the check of an append condition."""
    start = 1 if after is None else after + 1
    if query.match_all:
        row = con.execute("SELECT min(position) FROM events WHERE position >= ?", (start,))
        found = row.fetchone()[0]
        return None if found is None else int(found)
    sql, params = _matches(query, start, False, 1)
    hit = con.execute(sql, params).fetchone()
    return None if hit is None else int(hit[0])
