"""What the partitioned events table costs an append, measured on the
server: ``append_one`` called directly (no pool, no client-side work), one
call per transaction, alternating between stores of the same server so that
whatever else the machine does weighs on each alike. With
``track_functions = 'pl'`` the server reports each function's own time.

    python -m bench.partition_cost URL SCHEMA [SCHEMA...] [--calls N]

Each schema is a store of eventfold (any schema version whose append_one
takes these arguments: 7 and later). Prints per schema the median and p99
of a call seen by the client and the server's mean time in append_one, and
(schema 9) in its triggers and ensure_partitions."""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid

import psycopg
from psycopg import sql

CALL = (
    "SELECT r_status FROM {}(%s::text, -1, %s::uuid[], ARRAY['Deposited'], ARRAY[1],"
    ' ARRAY[\'{{"amount": 1, "note": "benchmark event with a short note"}}\'],'
    " ARRAY['{{}}'], NULL, NULL, NULL, NULL)"
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.partition_cost")
    parser.add_argument("url")
    parser.add_argument("schemas", nargs="+")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=10_000)
    args = parser.parse_args()
    rng = random.Random(1)
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute("SET track_functions = 'pl'")
        conn.execute("SELECT pg_stat_reset()")
        calls = {s: sql.SQL(CALL).format(sql.Identifier(s, "append_one")) for s in args.schemas}
        seen: dict[str, list[float]] = {s: [] for s in args.schemas}
        for _ in range(args.calls):
            for schema in args.schemas:
                stream = f"account-{rng.randrange(args.streams)}"
                t0 = time.perf_counter()
                row = conn.execute(calls[schema], [stream, [uuid.uuid4()]], prepare=True).fetchone()
                seen[schema].append(time.perf_counter() - t0)
                assert row is not None and row[0] == 0, row
        time.sleep(1)  # the statistics collector publishes at transaction end; let it settle
        for schema in args.schemas:
            rows = conn.execute(
                "SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions"
                " WHERE schemaname = %s ORDER BY funcname",
                [schema],
            ).fetchall()
            ordered = sorted(seen[schema])
            p99 = ordered[int(0.99 * (len(ordered) - 1))]
            print(
                f"{schema}: client median {statistics.median(ordered) * 1000:.3f} ms,"
                f" p99 {p99 * 1000:.3f} ms"
            )
            for name, n, total, own in rows:
                print(f"    {name}: {n} calls, mean {total / n:.3f} ms (own {own / n:.3f} ms)")


if __name__ == "__main__":
    main()
