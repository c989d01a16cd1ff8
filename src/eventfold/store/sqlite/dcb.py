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

_ALL = {
    False: (
        "SELECT stream_id, version, position, event_id, type, schema_version, "
        "CAST(data AS BLOB), CAST(metadata AS BLOB), recorded_at, tags FROM events "
        "WHERE position >= ? ORDER BY position LIMIT ?"
    ),
    True: (
        "SELECT stream_id, version, position, event_id, type, schema_version, "
        "CAST(data AS BLOB), CAST(metadata AS BLOB), recorded_at, tags FROM events "
        "WHERE position <= ? ORDER BY position DESC LIMIT ?"
    ),
}
_BY_TYPE = {
    False: (
        "SELECT p FROM (SELECT position AS p FROM events WHERE type = ? AND position >= ? "
        "ORDER BY position LIMIT ?)"
    ),
    True: (
        "SELECT p FROM (SELECT position AS p FROM events WHERE type = ? AND position <= ? "
        "ORDER BY position DESC LIMIT ?)"
    ),
}
_BY_TAG = {
    False: (
        "SELECT p FROM (SELECT t.position AS p FROM event_tags t "
        "WHERE t.tag = ? AND t.position >= ?"
    ),
    True: (
        "SELECT p FROM (SELECT t.position AS p FROM event_tags t "
        "WHERE t.tag = ? AND t.position <= ?"
    ),
}
_OTHER_TAG = " AND EXISTS (SELECT 1 FROM event_tags u WHERE u.tag = ? AND u.position = t.position)"
_TYPE_OF = " AND t.type IN (SELECT value FROM json_each(?))"
_BY_TAG_END = {False: " ORDER BY t.position LIMIT ?)", True: " ORDER BY t.position DESC LIMIT ?)"}
_UNION = " UNION "
_MERGED = {False: " ORDER BY 1 LIMIT ?", True: " ORDER BY 1 DESC LIMIT ?"}
_PAGE_START = "WITH hits(p) AS ("
_PAGE_END = {
    False: (
        ") SELECT stream_id, version, position, event_id, type, schema_version, "
        "CAST(data AS BLOB), CAST(metadata AS BLOB), recorded_at, tags FROM hits "
        "JOIN events ON events.position = hits.p ORDER BY hits.p"
    ),
    True: (
        ") SELECT stream_id, version, position, event_id, type, schema_version, "
        "CAST(data AS BLOB), CAST(metadata AS BLOB), recorded_at, tags FROM hits "
        "JOIN events ON events.position = hits.p ORDER BY hits.p DESC"
    ),
}
_FIRST_OF_ALL = "SELECT min(position) FROM events WHERE position >= ?"


def _arm(arm: Arm, start: int, backwards: bool, want: int) -> tuple[str, list[Any]]:
    if arm.by == "type":
        return _BY_TYPE[backwards], [arm.key, start, want]
    parts = [_BY_TAG[backwards]]
    params: list[Any] = [arm.key, start]
    for tag in arm.tags:
        parts.append(_OTHER_TAG)
        params.append(tag)
    if arm.types:
        parts.append(_TYPE_OF)
        params.append(msgspec.json.encode(arm.types).decode())
    parts.append(_BY_TAG_END[backwards])
    return "".join(parts), [*params, want]


def _matches(query: Query, start: int, backwards: bool, want: int) -> tuple[str, list[Any]]:
    """The positions of up to ``want`` events matching ``query`` from
    ``start`` on (down, if ``backwards``), each once, in order."""
    parts: list[str] = []
    params: list[Any] = []
    for arm in arms(query):
        sql, values = _arm(arm, start, backwards, want)
        parts.append(sql)
        params += values
    return _UNION.join(parts) + _MERGED[backwards], [*params, want]


def query_page(
    con: sqlite3.Connection, query: Query, start: int, backwards: bool, want: int
) -> tuple[list[RecordedEvent], bool]:
    """Up to ``want`` events matching ``query`` from ``start`` on (down, if
    ``backwards``), and whether there are no more."""
    if query.match_all:
        return fetch_records(con, _ALL[backwards], (start, want), want)
    hits, params = _matches(query, start, backwards, want)
    return fetch_records(con, _PAGE_START + hits + _PAGE_END[backwards], params, want)


def first_match(con: sqlite3.Connection, query: Query, after: int | None) -> int | None:
    """The position of the first event matching ``query`` after ``after``
    (None: anywhere), or None: the check of an append condition."""
    start = 1 if after is None else after + 1
    if query.match_all:
        row = con.execute(_FIRST_OF_ALL, (start,))
        found = row.fetchone()[0]
        return None if found is None else int(found)
    sql, params = _matches(query, start, False, 1)
    hit = con.execute(sql, params).fetchone()
    return None if hit is None else int(hit[0])
