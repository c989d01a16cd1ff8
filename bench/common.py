"""What every side of the benchmark shares: the sizes, the domain (one event
type, the same payload everywhere), timing and the result records."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

NOTE = "benchmark event with a short note"


class Deposited(msgspec.Struct, frozen=True):
    """The one event type every side writes: ``{"amount": n, "note": "..."}``."""

    amount: int
    note: str


encode_json = msgspec.json.Encoder().encode
decode_deposited = msgspec.json.Decoder(Deposited).decode


def payload(n: int) -> bytes:
    return encode_json(Deposited(n, NOTE))


@dataclass
class Sizes:
    single: int  # scenario 1: sequential one-event appends
    writers: tuple[int, ...]  # scenario 2: concurrent writers
    per_writer: int  # appends per writer
    batch: int  # scenario 3: events in one append
    aggregate: int  # scenario 4: events in the loaded aggregate
    tail: int  # scenario 4: events after the snapshot
    loads: int  # scenario 4: loads timed (for p50/p99)
    log: int  # scenarios 5 and 6: events in the log
    log_streams: int  # ... spread over this many streams
    repeat: int  # runs per cell; the median is reported
    workload_seconds: float  # workloads: measured time per shape and side
    workload_warmup: float  # ... after this much warm-up
    transfers: int  # the transfer workload: transfers requested
    dcb_fill: int = 1_000_000  # scenarios 7 and 8: events stored first (PostgreSQL)
    dcb_appends: int = 1_600  # scenario 7: conditional appends per run, over all writers
    dcb_reads: int = 100  # scenario 8: query reads timed
    batch_log: int = 1_000_000  # batches: events in the log when the last batch is timed


FULL = Sizes(
    single=10_000,
    writers=(1, 8, 64),
    per_writer=100,
    batch=10_000,
    aggregate=10_000,
    tail=100,
    loads=9,
    log=100_000,
    log_streams=1_000,
    repeat=3,
    workload_seconds=5.0,
    workload_warmup=1.0,
    transfers=1_000,
)
QUICK = Sizes(
    single=500,
    writers=(1, 8, 64),
    per_writer=15,
    batch=10_000,
    aggregate=2_000,
    tail=100,
    loads=5,
    log=10_000,
    log_streams=100,
    repeat=1,
    workload_seconds=1.0,
    workload_warmup=0.3,
    transfers=200,
    dcb_fill=20_000,
    dcb_appends=320,
    dcb_reads=40,
    batch_log=50_000,
)


@dataclass
class Measure:
    """One run of one scenario on one side: ``events`` done in ``seconds``,
    with per-operation latencies in seconds where the scenario has them."""

    events: int
    seconds: float
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summarise(runs: list[Measure]) -> dict[str, Any]:
    """The median run (by rate) with its spread, and p50/p99 over all runs."""
    rates = [m.rate for m in runs]
    median_rate = statistics.median(rates)
    seconds = statistics.median([m.seconds for m in runs])
    latencies = [x for m in runs for x in m.latencies]
    out: dict[str, Any] = {
        "events": runs[0].events,
        "events_per_s": median_rate,
        "ms": seconds * 1000,
        "runs": len(runs),
        "rates": rates,
        "spread": (max(rates) - min(rates)) / median_rate if median_rate else 0.0,
    }
    if latencies:
        out["p50_us"] = percentile(latencies, 50) * 1e6
        out["p99_us"] = percentile(latencies, 99) * 1e6
    return out


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def new_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"
