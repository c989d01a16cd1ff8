"""Inspection queries for the SQLite store, and read-only SQL: a separate
connection opened read-only, with an authorizer that allows reading and
nothing else (no writes, no ATTACH, no PRAGMA) and a time bound."""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

from eventfold.errors import InvalidArgument, ReadOnlyViolation
from eventfold.store.capabilities import CategoryInfo, SQLResult, StoreStats, StreamInfo
from eventfold.store.sqlite.rows import head_position

_ALLOWED = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
}


def _time(micros: int | None) -> datetime | None:
    return None if micros is None else datetime.fromtimestamp(micros / 1e6, UTC)


def list_streams(con: sqlite3.Connection, category: str | None, limit: int) -> list[StreamInfo]:
    rows = con.execute(
        "SELECT stream_id, max(version), max(position), max(recorded_at) FROM events "
        "WHERE stream_id <> '' AND (? IS NULL OR category = ?) GROUP BY stream_id "
        "ORDER BY max(position) DESC LIMIT ?",
        (category, category, limit),
    ).fetchall()
    return [StreamInfo(r[0], r[1], r[2], _time(r[3]) or datetime.min) for r in rows]


def list_categories(con: sqlite3.Connection) -> list[CategoryInfo]:
    rows = con.execute(
        "SELECT category, count(DISTINCT stream_id), count(*) FROM events "
        "WHERE stream_id <> '' GROUP BY category ORDER BY count(*) DESC, category"
    ).fetchall()
    return [CategoryInfo(*r) for r in rows]


def stats(con: sqlite3.Connection, path: str) -> StoreStats:
    events, first, last = con.execute(
        "SELECT count(*), min(recorded_at), max(recorded_at) FROM events"
    ).fetchone()
    head = head_position(con)
    streams = con.execute(
        "SELECT count(DISTINCT stream_id) FROM events WHERE stream_id <> ''"
    ).fetchone()[0]
    types = dict(con.execute("SELECT type, count(*) FROM events GROUP BY type ORDER BY 2 DESC"))
    size = sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    return StoreStats(events, streams, head, _time(first), _time(last), types, size)


def _authorize(action: int, *args: Any) -> int:
    return sqlite3.SQLITE_OK if action in _ALLOWED else sqlite3.SQLITE_DENY


def run_sql(path: str, query: str, limit: int, timeout: float) -> SQLResult:
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgument("an SQL query is needed", argument="query")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        con.execute("PRAGMA query_only = ON")
        con.set_authorizer(_authorize)
        deadline = time.monotonic() + timeout
        con.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            cursor = con.execute(query)
            columns = [d[0] for d in cursor.description or ()]
            rows = cursor.fetchmany(limit + 1)
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if "not authorized" in text or "readonly" in text or "read-only" in text:
                raise ReadOnlyViolation(f"only reading queries are allowed: {text}") from None
            if "interrupted" in text:
                raise InvalidArgument(
                    f"the query ran longer than {timeout}s", argument="query"
                ) from None
            raise InvalidArgument(f"SQL error: {text}", argument="query") from None
        except sqlite3.Warning as exc:  # more than one statement
            raise InvalidArgument(f"one statement at a time: {exc}", argument="query") from None
        return SQLResult(columns, [tuple(r) for r in rows[:limit]], len(rows) > limit)
    finally:
        con.close()
