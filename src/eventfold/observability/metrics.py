"""Prometheus metrics (prometheus-client), named by Prometheus conventions
with an ``eventfold_`` prefix.

Counters and histograms move as the work happens (appends, reads,
commands, HTTP requests). What describes state (a projection's position and
lag, messages waiting on the bus, parked messages, the relay's lag, the
command queue), and the running totals the relay and the consumer keep, are
measured when ``/metrics`` is scraped: each running service ``watch`` es
with a source returning ``Sample`` s, and ``exposition()`` measures every
live source, then renders the registry. One registry per process: the two APIs of one process expose
the same metrics."""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("eventfold.observability")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Sample(msgspec.Struct, frozen=True):
    """One measured value: its family's name (after ``eventfold_``), its labels."""

    name: str
    value: float
    labels: dict[str, str] = {}


MEASURED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "projection_position": (
        "gauge",
        "The log position a projection's serving build has reached",
        ("tenant", "projection"),
    ),
    "projection_lag_events": (
        "gauge",
        "Events a projection handles that it has not applied yet (capped at 10,000)",
        ("tenant", "projection"),
    ),
    "projection_lag_seconds": (
        "gauge",
        "Age of the oldest event a projection has not applied yet (0 when none)",
        ("tenant", "projection"),
    ),
    "projection_state": (
        "gauge",
        "1 for a projection's current state: running, paused, building, failed",
        ("tenant", "projection", "state"),
    ),
    "bus_pending_messages": (
        "gauge",
        "Messages waiting on the bus for the query side's consumer",
        ("tenant",),
    ),
    "parked_messages": ("gauge", "Bus messages parked and not yet retried or skipped", ("tenant",)),
    "relay_position": ("gauge", "The last log position the relay has published", ("tenant",)),
    "relay_lag_events": (
        "gauge",
        "Events in the store the relay has not published yet (capped at 10,000)",
        ("tenant",),
    ),
    "replica_up": (
        "gauge",
        "1 while a PostgreSQL replica takes reads (up), else 0 (lagging, down, not checked)",
        ("tenant", "side", "replica"),
    ),
    "replica_lag_seconds": (
        "gauge",
        "How long ago the primary wrote the oldest WAL a replica has not replayed (0: none)",
        ("tenant", "side", "replica"),
    ),
    "replica_lag_bytes": (
        "gauge",
        "WAL the primary has written that a replica has not replayed",
        ("tenant", "side", "replica"),
    ),
    "store_head_position": (
        "gauge",
        "The log's head position, as this service sees it",
        ("tenant",),
    ),
    "command_queue_depth": (
        "gauge",
        "Queued commands not yet acknowledged by a worker",
        ("tenant",),
    ),
    "bus_messages_published": (
        "counter",
        "Events the relay of this process has published to the bus",
        ("tenant",),
    ),
    "bus_messages_received": (
        "counter",
        "Bus messages the consumer of this process took in, by verdict (applied, parked)",
        ("tenant", "verdict"),
    ),
}
"""What sources measure at each scrape: name after ``eventfold_``, kind
(``gauge`` or ``counter``, a running total kept by the service), help, labels."""

Source = Callable[[], Awaitable[Iterable[Sample]]]


class _Measured(Collector):
    """The families sources measured at the last scrape."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def collect(self) -> Iterator[Metric]:
        for name, (kind, text, labels) in MEASURED.items():
            family: Metric
            if kind == "counter":
                family = CounterMetricFamily(f"eventfold_{name}", text, labels=list(labels))
            else:
                family = GaugeMetricFamily(f"eventfold_{name}", text, labels=list(labels))
            for sample in self.samples:
                if sample.name == name:
                    family.add_metric([sample.labels.get(k, "") for k in labels], sample.value)
            yield family


class Metrics:
    """The process's metrics (``METRICS``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_appended = Counter(
            "eventfold_events_appended",
            "Events appended to the store, by backend and event type",
            ["backend", "type"],
            registry=r,
        )
        self.operation_duration = Histogram(
            "eventfold_db_client_operation_duration_seconds",
            "Duration of store operations (OpenTelemetry's db.client.operation.duration): "
            "append latency is db_operation_name=append",
            ["db_system_name", "db_operation_name"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.conditional_failures = Counter(
            "eventfold_conditional_append_failures",
            "Appends refused because their condition did not hold (expected version, query)",
            ["backend", "condition"],
            registry=r,
        )
        self.events_read = Counter(
            "eventfold_events_read", "Events read from the store", ["backend"], registry=r
        )
        self.commands = Counter(
            "eventfold_commands",
            "Commands handled, by command and outcome status",
            ["command", "status"],
            registry=r,
        )
        self.command_duration = Histogram(
            "eventfold_command_duration_seconds",
            "Time to handle a command (load, decide, append)",
            ["command"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.http_duration = Histogram(
            "eventfold_http_request_duration_seconds",
            "HTTP request latency by service, method, route and status",
            ["service", "method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._measured = _Measured()
        r.register(self._measured)
        self._sources: weakref.WeakKeyDictionary[object, Source] = weakref.WeakKeyDictionary()

    def watch(self, owner: object, source: Source) -> None:
        """Measure ``source()`` at each scrape while ``owner`` lives (or until ``forget``)."""
        self._sources[owner] = source

    def forget(self, owner: object) -> None:
        self._sources.pop(owner, None)

    async def measure(self) -> None:
        """Measure every watched source now (a failing one is logged and left out)."""
        samples: list[Sample] = []
        for source in list(self._sources.values()):
            try:
                samples.extend(await source())
            except Exception as exc:
                log.warning("metrics: a source failed: %s", exc)
        self._measured.samples = samples

    async def exposition(self) -> bytes:
        """The text format Prometheus scrapes, gauges measured now."""
        await self.measure()
        return generate_latest(self.registry)


METRICS = Metrics()
"""The process's metrics."""


@contextlib.contextmanager
def timed(histogram: Any) -> Iterator[None]:
    """Observe the block's duration in ``histogram`` (a labelled child)."""
    import time

    start = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - start)
