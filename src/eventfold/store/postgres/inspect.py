"""Inspection queries for the PostgreSQL store, and read-only SQL.

A user's query runs as one statement (the extended protocol refuses several)
inside a READ ONLY transaction, with ``search_path`` set to the store's
schema and a statement timeout. For untrusted users, also connect as a role
that can only read: a READ ONLY transaction still lets a query call functions
with side effects outside the database's tables.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from eventfold.errors import InvalidArgument, ReadOnlyViolation
from eventfold.store.capabilities import CategoryInfo, SQLResult, StoreStats, StreamInfo
from eventfold.store.postgres.schema import Names

Conn = psycopg.AsyncConnection[Any]


async def list_streams(
    conn: Conn, names: Names, category: str | None, limit: int
) -> list[StreamInfo]:
    cur = await conn.execute(
        names.format(
            "SELECT s.stream_id, s.version, s.position, e.recorded_at "
            "FROM {streams} s JOIN {events} e ON e.position = s.position "
            "WHERE %s::text IS NULL OR split_part(s.stream_id, '-', 1) = %s::text "
            "ORDER BY s.position DESC LIMIT %s"
        ),
        [category, category, limit],
    )
    return [StreamInfo(*row) for row in await cur.fetchall()]


async def list_categories(conn: Conn, names: Names) -> list[CategoryInfo]:
    cur = await conn.execute(
        names.format(
            "SELECT split_part(stream_id, '-', 1) AS category, count(*), "
            "sum(version - first_version + 1) "
            "FROM {streams} WHERE version >= first_version GROUP BY 1 ORDER BY 3 DESC, 1"
        )
    )
    return [CategoryInfo(r[0], int(r[1]), int(r[2])) for r in await cur.fetchall()]


async def stats(conn: Conn, names: Names, head: int) -> StoreStats:
    cur = await conn.execute(
        names.format(
            "SELECT count(*), min(recorded_at), max(recorded_at), "
            "(SELECT count(*) FROM {streams} WHERE version >= first_version), "
            "(SELECT coalesce(sum(pg_total_relation_size(relid)), 0)"
            " FROM pg_partition_tree('{schema}.events'::regclass)) "
            "+ pg_total_relation_size('{schema}.event_ids'::regclass) "
            "+ pg_total_relation_size('{schema}.streams'::regclass) "
            "+ pg_total_relation_size('{schema}.snapshots'::regclass) "
            "+ pg_total_relation_size('{schema}.event_tags'::regclass) FROM {events}"
        )
    )
    row = await cur.fetchone()
    assert row is not None
    events, first, last, streams, size = row
    cur = await conn.execute(
        names.format("SELECT type, count(*) FROM {events} GROUP BY type ORDER BY 2 DESC, 1")
    )
    types = {name: int(count) for name, count in await cur.fetchall()}
    return StoreStats(int(events), int(streams), head, first, last, types, size)


async def run_sql(conn: Conn, names: Names, query: str, limit: int, timeout: float) -> SQLResult:
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgument("an SQL query is needed", argument="query")
    try:
        async with conn.transaction():
            await conn.execute("SET TRANSACTION READ ONLY")
            await conn.execute(
                "SELECT set_config('search_path', %s, true), "
                "set_config('statement_timeout', %s, true)",
                [names.schema_name, str(max(1, round(timeout * 1000)))],
            )
            # prepare=True: parsed on its own, so a second statement is an error.
            cur = await conn.execute(sql.SQL(query), prepare=True)
            columns = [d.name for d in cur.description or ()]
            rows = await cur.fetchmany(limit + 1) if cur.description else []
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise ReadOnlyViolation(f"only reading queries are allowed: {exc}") from None
    except psycopg.errors.QueryCanceled:
        raise InvalidArgument(f"the query ran longer than {timeout}s", argument="query") from None
    except (psycopg.OperationalError, psycopg.InterfaceError):
        raise  # the connection, not the query: the caller's to handle
    except psycopg.Error as exc:
        raise InvalidArgument(f"SQL error: {exc}", argument="query") from None
    return SQLResult(columns, [tuple(r) for r in rows[:limit]], len(rows) > limit)
