"""What observing a store costs: appends and reads, in memory (where the
store's own work is least, so the cost added shows most) and on SQLite,
with the store as it is (off), wrapped in ``InstrumentedStore`` with the OpenTelemetry API
but no SDK (metrics counted, no span made), and with the SDK recording
every span and exporting it (a batch processor and an exporter that drops
what it is given, so the SDK's own work is what is measured).

    python -m bench.tracing              # prints the table
    python -m bench.tracing --docs       # and writes it into docs/benchmarks.md

Sides alternate run by run; a cell is the median of ``--repeat`` runs."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import eventfold
from eventfold import Codec, EventRegistry, EventStore
from eventfold.observability import tracing
from eventfold.observability.store import InstrumentedStore

ROOT = Path(__file__).resolve().parent.parent
MARK_START = "<!-- bench:tracing:start -->"
MARK_END = "<!-- bench:tracing:end -->"

registry = EventRegistry()


@registry.register("Deposited")
class Deposited(msgspec.Struct, frozen=True):
    amount: int
    note: str


codec = Codec(registry)
SIDES = ("off", "API only", "SDK exporting")
BACKENDS = ("memory", "sqlite")


class Dropping(SpanExporter):
    """Takes every span and keeps none."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _wrap(side: str, store: EventStore) -> EventStore:
    return store if side == "off" else InstrumentedStore(store)


async def _appends(side: str, url: str, count: int) -> float:
    """Seconds per single-event append, one writer, into a new store at ``url``."""
    async with eventfold.connect(url) as raw:
        store = _wrap(side, raw)
        events = [codec.encode(Deposited(n, "note")) for n in range(count)]
        start = time.perf_counter()
        for n, event in enumerate(events):
            await store.append("account-1", [event], expected_version=n)
        return (time.perf_counter() - start) / count


async def _reads(side: str, raw: EventStore) -> float:
    """Events per second reading the whole log."""
    if True:
        store = _wrap(side, raw)
        start = time.perf_counter()
        count = 0
        async for _ in store.read_all():
            count += 1
        return count / (time.perf_counter() - start)


async def measure(appends: int, events: int, repeat: int) -> dict[str, dict[str, float]]:
    sdk = TracerProvider()
    sdk.add_span_processor(BatchSpanProcessor(Dropping(), max_queue_size=65536))
    kinds = [f"{op} {backend}" for backend in BACKENDS for op in ("append", "read")]
    results: dict[str, dict[str, list[float]]] = {s: {k: [] for k in kinds} for s in SIDES}
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        logs = {"memory": "memory://", "sqlite": f"sqlite:///{directory / 'log.db'}"}
        async with (
            eventfold.connect(logs["memory"]) as memory,
            eventfold.connect(logs["sqlite"]) as sqlite,
        ):
            for store in (memory, sqlite):
                for first in range(0, events, 1000):
                    batch = [codec.encode(Deposited(n, "note")) for n in range(first, first + 1000)]
                    await store.append(f"account-{first // 1000}", batch)
            stores = {"memory": memory, "sqlite": sqlite}
            for run in range(repeat):
                for side in SIDES:
                    tracing.use_provider(sdk if side == "SDK exporting" else None)
                    try:
                        for backend in BACKENDS:
                            appends_db = directory / f"appends-{run}-{SIDES.index(side)}.db"
                            url = (
                                logs[backend] if backend == "memory" else f"sqlite:///{appends_db}"
                            )
                            count = appends if backend == "memory" else appends // 10
                            results[side][f"append {backend}"].append(
                                await _appends(
                                    side, "memory://" if backend == "memory" else url, count
                                )
                            )
                            sdk.force_flush()
                            results[side][f"read {backend}"].append(
                                await _reads(side, stores[backend])
                            )
                    finally:
                        tracing.use_provider(None)
    sdk.shutdown()
    return {
        side: {kind: statistics.median(values) for kind, values in found.items()}
        for side, found in results.items()
    }


def markdown(table: dict[str, dict[str, Any]], appends: int, events: int, repeat: int) -> str:
    base = table["off"]
    lines = [
        f"One writer appending single events ({appends:,} in memory, {appends // 10:,} on "
        f"SQLite; µs per append), and one read of the whole log of {events:,} events "
        f"(events/s); median of {repeat} interleaved runs, `python -m bench.tracing`:",
        "",
        "| tracing | append, memory | append, SQLite | read, memory | read, SQLite |",
        "| --- | --- | --- | --- | --- |",
    ]
    for side in SIDES:
        row = table[side]
        cells = []
        for kind in ("append memory", "append sqlite"):
            cells.append(f"{row[kind] * 1e6:,.0f} µs ({row[kind] / base[kind]:.2f}x)")
        for kind in ("read memory", "read sqlite"):
            cells.append(f"{row[kind]:,.0f}/s ({row[kind] / base[kind]:.2f}x)")
        lines.append(f"| {side} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=5000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--docs", action="store_true", help="write the table into the docs")
    args = parser.parse_args()
    table = asyncio.run(measure(args.appends, args.events, args.repeat))
    text = markdown(table, args.appends, args.events, args.repeat)
    print(text)
    if args.docs:
        path = ROOT / "docs" / "benchmarks.md"
        doc = path.read_text()
        head, rest = doc.split(MARK_START, 1)
        _, tail = rest.split(MARK_END, 1)
        path.write_text(f"{head}{MARK_START}\n{text}{MARK_END}{tail}")


if __name__ == "__main__":
    main()
