"""The standard workloads: the workload shapes of the store-neutral
event-store-benchmark suite (its YAML definitions: baseline reads and
writes, Zipf reads, mixed reads and writes, and its four scenarios), run for
eventfold, the peer and the raw driver in one run, on SQLite and PostgreSQL,
plus the bank-transfer process manager in 1 and 8 lanes.

    python -m bench.run --scenarios workloads [--quick] [--docs]

Each shape runs its workers for a fixed time (after a warm-up that is not
counted), the sides one after another. Reported: events/s (events read plus
events written, per second of the measured time) and the latency of each
operation (a page read or an append) at p50, p95, p99 and p99.9, from an HDR
histogram (``hdrhistogram``, 3 significant digits).

Where this runner departs from the suite's runner, it says so in
``docs/benchmarks.md`` (pages hold 50 events; mixed writers append to
streams of their own; the Zipf stream choice is drawn here).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

STREAMS = 1_000
"""Streams written before the read and mixed shapes..."""
PER_STREAM = 50
"""...with this many events each: a page of 50 holds 50 events."""
ZIPF_S = 0.99
"""The Zipf exponent (YCSB's)."""
PICKS = 20_000
"""Stream choices drawn per worker before a run (reused in a cycle)."""


@dataclass(frozen=True)
class Shape:
    """One workload: ``readers`` read pages of ``page`` events from streams
    chosen uniformly (or by Zipf); ``writers`` append single events of
    ``event_bytes`` to streams of their own, 10 events each, and (in a mixed
    shape) read instead with probability ``1 - write_probability``."""

    name: str
    readers: int = 0
    writers: int = 0
    write_probability: float = 1.0
    event_bytes: int = 256
    page: int = 50
    zipf: bool = False

    @property
    def reads(self) -> bool:
        return self.readers > 0 or self.write_probability < 1.0

    def describe(self) -> str:
        parts = []
        if self.readers:
            parts.append(f"{self.readers} readers")
        if self.writers:
            mixed = f" ({self.write_probability:.0%} writes)" if self.write_probability < 1 else ""
            parts.append(f"{self.writers} writers{mixed}")
        what = ", ".join(parts)
        return f"{what}, {self.event_bytes} B events" + (", Zipf streams" if self.zipf else "")


SHAPES: tuple[Shape, ...] = (
    Shape("baseline-reads-r4", readers=4),
    Shape("baseline-reads-r16", readers=16),
    Shape("heavy-reads-zipf-r16", readers=16, zipf=True),
    Shape("baseline-writes-w1", writers=1),
    Shape("baseline-writes-w4", writers=4),
    Shape("baseline-writes-w16", writers=16),
    Shape("mixed-balanced-50-50", writers=8, readers=8, write_probability=0.5),
    Shape("mixed-read-heavy-70-30", writers=4, readers=12, write_probability=0.3),
    Shape("mixed-write-heavy-30-70", writers=12, readers=4, write_probability=0.7),
    Shape("scenario-high-throughput-ingestion", writers=32, event_bytes=128),
    Shape("scenario-audit-log", writers=16, event_bytes=256),
    Shape(
        "scenario-cqrs-read-model", writers=4, readers=24, write_probability=0.15, event_bytes=384
    ),
    Shape("scenario-microservices-aggregate", writers=8, event_bytes=512),
)


def picks(shape: Shape, worker: int, seed: int) -> list[int]:
    """The streams worker ``worker`` reads, in order (drawn before the run)."""
    rng = random.Random(seed * 1_000 + worker)
    if not shape.zipf:
        return [rng.randrange(STREAMS) for _ in range(PICKS)]
    weights = [1 / (k + 1) ** ZIPF_S for k in range(STREAMS)]
    cdf = list(itertools.accumulate(weights))
    # Rank 0 is the hottest stream; scatter ranks over the streams.
    order = list(range(STREAMS))
    random.Random(seed).shuffle(order)
    return [order[bisect.bisect(cdf, rng.random() * cdf[-1])] for _ in range(PICKS)]


def coin(shape: Shape, worker: int, seed: int) -> list[bool]:
    """For a writer of a mixed shape, whether each operation is a write."""
    rng = random.Random(seed * 7_919 + worker)
    return [rng.random() < shape.write_probability for _ in range(PICKS)]


def note(event_bytes: int) -> str:
    """A note that makes ``{"amount": n, "note": ...}`` about ``event_bytes``."""
    return "x" * max(1, event_bytes - 40)


@dataclass
class Run:
    """One side's run of one shape: events read and written in ``seconds``,
    and every operation's latency in nanoseconds."""

    read: int = 0
    written: int = 0
    seconds: float = 0.0
    latencies: list[int] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        histogram = HdrHistogram(1, 600_000_000_000, 3)
        for value in self.latencies:
            histogram.record_value(max(1, value))
        events = self.read + self.written
        out: dict[str, Any] = {
            "events_per_s": events / self.seconds if self.seconds else 0.0,
            "events_read": self.read,
            "events_written": self.written,
            "seconds": self.seconds,
            "operations": len(self.latencies),
        }
        for name, q in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("p999", 99.9)):
            out[f"{name}_us"] = histogram.get_value_at_percentile(q) / 1000
        return out | self.checks


# --- the report ------------------------------------------------------------------------

SIDE_NAMES = ("eventfold", "eventsourcing", "raw")


def _latency(cell: dict[str, Any]) -> str:
    return " / ".join(f"{cell[f'{q}_us'] / 1000:,.2f}" for q in ("p50", "p95", "p99", "p999"))


def markdown(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The workload table: per shape and backend, each side's events/s and
    latency percentiles, and eventfold's ratio to the peer and to raw."""
    lines = [
        "| workload | backend | eventfold ev/s | p50 / p95 / p99 / p99.9 ms "
        "| eventsourcing ev/s | p50 / p95 / p99 / p99.9 ms | raw ev/s "
        "| p50 / p95 / p99 / p99.9 ms | / peer | / raw |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for shape in SHAPES:
        for backend in ("sqlite", "postgres"):
            cells = results.get(backend, {}).get(shape.name)
            if not cells:
                continue
            row = [f"{shape.name} ({shape.describe()})", backend]
            for side in SIDE_NAMES:
                cell = cells.get(side)
                row += [f"{cell['events_per_s']:,.0f}", _latency(cell)] if cell else ["-", "-"]
            ef = cells.get("eventfold")
            for other in ("eventsourcing", "raw"):
                cell = cells.get(other)
                ok = ef and cell and cell["events_per_s"]
                row.append(f"{ef['events_per_s'] / cell['events_per_s']:,.2f}x" if ok else "-")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def transfers_markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| backend | lanes | transfers/s | completed | failed | steps exactly once "
        "| speed-up over 1 lane |",
        "|---|---|---|---|---|---|---|",
    ]
    for backend in ("sqlite", "postgres"):
        cells = results.get(backend, {})
        one = cells.get("1")
        for lanes, cell in sorted(cells.items(), key=lambda kv: int(kv[0])):
            speed = cell["transfers_per_s"] / one["transfers_per_s"] if one else None
            lines.append(
                f"| {backend} | {lanes} | {cell['transfers_per_s']:,.1f} | {cell['completed']} | "
                f"{cell['failed']} | {'yes' if cell['exactly_once'] else '**no**'} | "
                f"{'-' if speed is None else f'{speed:,.2f}x'} |"
            )
    return "\n".join(lines) + "\n"


# (shape, compared side, minimum eventfold/other ratio, what it says)
TARGETS: list[tuple[str, str, float, str]] = [
    ("baseline-reads-r4", "raw", 0.5, "4 readers, pages of 50 >= 0.5x raw"),
    ("baseline-reads-r4", "eventsourcing", 2.0, "4 readers, pages of 50 >= 2x the peer"),
    ("baseline-reads-r16", "raw", 0.5, "16 readers >= 0.5x raw"),
    ("baseline-reads-r16", "eventsourcing", 2.0, "16 readers >= 2x the peer"),
    ("heavy-reads-zipf-r16", "raw", 0.5, "16 readers, Zipf >= 0.5x raw"),
    ("heavy-reads-zipf-r16", "eventsourcing", 2.0, "16 readers, Zipf >= 2x the peer"),
]


def check_targets(results: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for shape, other, target, what in TARGETS:
        for backend in ("sqlite", "postgres"):
            cells = results.get(backend, {}).get(shape, {})
            ef, cell = cells.get("eventfold"), cells.get(other)
            if not ef or not cell or not cell["events_per_s"]:
                continue
            ratio = ef["events_per_s"] / cell["events_per_s"]
            out.append(
                {
                    "what": what,
                    "backend": backend,
                    "versus": other,
                    "ratio": ratio,
                    "target": target,
                    "met": ratio >= target,
                }
            )
        if shape == "baseline-reads-r4" and other == "raw":
            cell = results.get("sqlite", {}).get(shape, {}).get("eventfold")
            if cell:
                out.append(
                    {
                        "what": "SQLite p50 of a 50-event page <= 0.2 ms (4 readers)",
                        "backend": "sqlite",
                        "versus": "ms",
                        "ratio": cell["p50_us"] / 1000,
                        "target": 0.2,
                        "met": cell["p50_us"] / 1000 <= 0.2,
                    }
                )
    return out


def targets_markdown(checks: Sequence[dict[str, Any]]) -> str:
    lines = ["| target | backend | measured | met |", "|---|---|---|---|"]
    for c in checks:
        measured = (
            f"{c['ratio']:,.3f} ms"
            if c["versus"] == "ms"
            else f"{c['ratio']:,.2f}x of {c['versus']}"
        )
        lines.append(
            f"| {c['what']} | {c['backend']} | {measured} | {'yes' if c['met'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"
