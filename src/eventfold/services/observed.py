"""How a ``Runtime`` is observed: its stores wrapped in spans and metrics,
its commands counted, and what it measures at each scrape of ``/metrics``
(projections' positions, lag and state, the bus, parked messages, the relay,
the command queue, each replica's state and lag). Metrics need
prometheus-client (the ``http`` extra); without it the runtime runs
unobserved."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from eventfold.services.records import CommandOutcome
from eventfold.store.api import EventStore
from eventfold.store.routing import replica_health

if TYPE_CHECKING:
    from eventfold.observability.metrics import Sample
    from eventfold.services.runtime import Runtime

log = logging.getLogger("eventfold.services")

LAG_LIMIT = 10_000
"""Lag measured for metrics reads at most this many log events."""

STATES = ("running", "paused", "building", "failed")


def _metrics() -> Any:
    try:
        from eventfold.observability.metrics import METRICS
    except ImportError:  # pragma: no cover - prometheus-client is in the http extra
        return None
    return METRICS


def instrumented(store: EventStore) -> EventStore:
    """``store`` with spans and metrics (as it is, without prometheus-client)."""
    if _metrics() is None:  # pragma: no cover - depends on installed extras
        return store
    from eventfold.observability.store import InstrumentedStore

    return InstrumentedStore(store)


def observe_command(outcome: CommandOutcome, seconds: float) -> None:
    """Count a command's outcome and time it."""
    metrics = _metrics()
    if metrics is None:  # pragma: no cover - depends on installed extras
        return
    metrics.commands.labels(outcome.command, outcome.status).inc()
    metrics.command_duration.labels(outcome.command).observe(seconds)


def watch(runtime: Runtime, source: Callable[[], Awaitable[Iterable[Sample]]]) -> None:
    metrics = _metrics()
    if metrics is not None:
        metrics.watch(runtime, source)


def forget(runtime: Runtime) -> None:
    metrics = _metrics()
    if metrics is not None:
        metrics.forget(runtime)


async def measure(runtime: Runtime) -> list[Sample]:
    """What ``runtime`` shows at a scrape (see ``eventfold.observability.metrics``)."""
    from eventfold.observability.metrics import Sample

    tenant = {"tenant": runtime.config.tenant or ""}
    out: list[Sample] = []
    if runtime.runner is not None:
        for status in await runtime.runner.status():
            labels = {**tenant, "projection": status.name}
            if status.active is not None:
                out.append(Sample("projection_position", status.active.position, labels))
            if status.freshness is not None:
                fresh = status.freshness
                out.append(Sample("projection_lag_events", fresh.events_behind, labels))
                out.append(Sample("projection_lag_seconds", fresh.seconds_behind, labels))
            for state in STATES:
                value = 1.0 if status.state == state else 0.0
                out.append(Sample("projection_state", value, {**labels, "state": state}))
    if runtime.query is not None:
        out.append(Sample("store_head_position", await runtime.query.store.head_position(), tenant))
    if runtime.consumer is not None and runtime.mirror is not None:
        consumer = runtime.consumer
        out.append(Sample("bus_pending_messages", consumer.bus_pending, tenant))
        source = await runtime.mirror.source(consumer.stream)
        out.append(Sample("parked_messages", 0 if source is None else source.parked, tenant))
        for verdict, count in (("applied", consumer.applied), ("parked", consumer.parked)):
            out.append(Sample("bus_messages_received", count, {**tenant, "verdict": verdict}))
    if runtime.relay is not None and runtime.store is not None:
        relay = runtime.relay
        out.append(Sample("relay_position", relay.position, tenant))
        out.append(Sample("relay_lag_events", await _behind(runtime.store, relay.position), tenant))
        out.append(Sample("bus_messages_published", relay.published, tenant))
        if runtime.bus is not None and runtime.queue is not None:
            info = await runtime.bus.stream_info(runtime.topology.commands_stream)
            out.append(Sample("command_queue_depth", info.messages, tenant))
    out += await _replicas(runtime, tenant)
    return out


async def _replicas(runtime: Runtime, tenant: dict[str, str]) -> list[Sample]:
    """Each replica's state and lag, as ``/status`` shows them: ``side`` is
    ``store`` for the event store's, ``query`` for the query side's."""
    from eventfold.observability.metrics import Sample

    sides: dict[str, Any] = {}
    if runtime.store is not None:
        sides["store"] = runtime.store
    if runtime.query is not None and runtime.query.store is not runtime.store:
        sides["query"] = runtime.query.store
    out: list[Sample] = []
    for side, store in sides.items():
        for replica in await replica_health(store):
            labels = {**tenant, "side": side, "replica": replica.name}
            out.append(Sample("replica_up", 1.0 if replica.state == "up" else 0.0, labels))
            if replica.lag_seconds is not None:
                out.append(Sample("replica_lag_seconds", replica.lag_seconds, labels))
            if replica.lag_bytes is not None:
                out.append(Sample("replica_lag_bytes", replica.lag_bytes, labels))
    return out


async def _behind(store: EventStore, position: int) -> int:
    """Events after ``position`` (counted, not subtracted: positions may be sparse)."""
    if await store.head_position() <= position:
        return 0
    count = 0
    async for _ in store.read_all(from_position=position + 1, limit=LAG_LIMIT):
        count += 1
    return count
