"""``InstrumentedStore``: a store seen through spans and metrics, wrapped
around any backend instead of living inside each one.

- a span per operation (``append``, ``append_many``, ``read_stream``,
  ``read_all``, and DCB's ``append_events`` and ``read``), kind client,
  with OpenTelemetry's database attributes (``db.system.name``,
  ``db.operation.name``) and eventfold's own (``eventfold.stream_id``,
  ``eventfold.event.types``, ``eventfold.position`` …);
- every appended event gets the current trace context in its metadata
  (``traceparent``, ``tracestate``), sampled or not, unless it has one: the
  trace follows the event through the bus to the read side;
- metrics: events appended by backend and type, operation latency, appends
  refused by their condition, events read.

A read's span is not made current (the caller runs between records); it
ends when the read does."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec

from eventfold.errors import ConditionFailed, WrongExpectedVersion
from eventfold.observability import tracing
from eventfold.observability.metrics import METRICS, Metrics
from eventfold.observability.tracing import with_trace
from eventfold.store.api import (
    ANY,
    AppendResult,
    EventStore,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
)
from eventfold.store.capabilities import DataPage, DCBStore
from eventfold.store.checks import category_of
from eventfold.store.dcb import AppendCondition
from eventfold.store.wrapper import DelegatingStore

_OPERATIONS = (
    "append",
    "append_many",
    "append_events",
    "read_stream",
    "read_all",
    "read_stream_data",
    "read",
)
_SYSTEMS = {"postgresql": "postgresql", "postgres": "postgresql", "sqlite": "sqlite"}


def backend_of(url: str) -> str:
    """``db.system.name`` of a store URL: ``postgresql``, ``sqlite``, or
    ``eventfold.<scheme>`` for eventfold's own (``memory``, ``mirror``)."""
    scheme = url.split(":", 1)[0].lower()
    return _SYSTEMS.get(scheme, f"eventfold.{scheme}")


class InstrumentedStore(DelegatingStore):
    """``inner`` with spans and metrics (see the module docstring); every
    capability of ``inner`` passes through, fast fold reads counted and
    timed too. ``metrics``: the process's by default."""

    def __init__(self, inner: EventStore, *, metrics: Metrics = METRICS) -> None:
        super().__init__(inner)
        self.backend = backend_of(inner.url)
        self.metrics = metrics
        self._read = metrics.events_read.labels(self.backend)
        self._latency = {
            op: metrics.operation_duration.labels(self.backend, op) for op in _OPERATIONS
        }
        self._appended: dict[str, Any] = {}

    def _attributes(self, operation: str, **more: Any) -> dict[str, Any]:
        return {"db.system.name": self.backend, "db.operation.name": operation, **more}

    # --- writing ----------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        return (await self._append("append", [StreamAppend(stream_id, events, expected_version)]))[
            0
        ]

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        return await self._append("append_many", list(appends))

    async def _append(self, operation: str, appends: list[StreamAppend]) -> list[AppendResult]:
        if not appends or not all(_well_formed(a) for a in appends):
            # Not a well-formed request: the inner store refuses it with its typed error.
            return await self._call(operation, appends)
        if not tracing.recording():
            # No span to make: carry a caller's trace context on, count, time.
            context = tracing.carrier()
            if context:
                appends = [_traced(a, context) for a in appends]
            return await self._measured(operation, appends)
        streams = [a.stream_id for a in appends]
        attributes = self._attributes(
            operation,
            **{
                "eventfold.stream_id": streams[0] if len(streams) == 1 else streams,
                "eventfold.category": sorted({category_of(s) for s in streams}),
                "eventfold.event.types": sorted({e.type for a in appends for e in a.events}),
                "eventfold.event.count": sum(len(a.events) for a in appends),
            },
        )
        name = f"{operation} {self.backend}"
        with tracing.span(name, kind="client", attributes=attributes) as span:
            appends = [_traced(a, tracing.carrier()) for a in appends]
            results = await self._measured(operation, appends)
            versions = [r.version for r in results]
            tracing.set_attributes(
                span,
                {
                    "eventfold.position": results[-1].position,
                    "eventfold.version": versions if len(versions) > 1 else versions[0],
                },
            )
        return results

    async def _measured(self, operation: str, appends: list[StreamAppend]) -> list[AppendResult]:
        """The append, timed; its events counted, a refusal by its expected version too."""
        start = time.perf_counter()
        try:
            results = await self._call(operation, appends)
        except WrongExpectedVersion:
            self.metrics.conditional_failures.labels(self.backend, "expected_version").inc()
            raise
        finally:
            self._latency[operation].observe(time.perf_counter() - start)
        for append in appends:
            self._count_appended(append.events)
        return results

    def _count_appended(self, events: Sequence[NewEvent]) -> None:
        for event in events:
            counter = self._appended.get(event.type)
            if counter is None:
                counter = self._appended[event.type] = self.metrics.events_appended.labels(
                    self.backend, event.type
                )
            counter.inc()

    async def _call(self, operation: str, appends: list[StreamAppend]) -> list[AppendResult]:
        if operation == "append":
            (one,) = appends
            return [await self.inner.append(one.stream_id, one.events, one.expected_version)]
        return await self.inner.append_many(appends)

    async def append_events(
        self, events: Sequence[NewEvent], condition: AppendCondition | None = None
    ) -> int:
        """DCB's append without a stream: spanned, timed and counted like a
        stream append; a refusal by its condition counted as ``query``."""
        inner = self._inner(DCBStore)
        if not _events(events):
            # Not a well-formed request: the inner store refuses it with its typed error.
            return await inner.append_events(events, condition)
        if not tracing.recording():
            return await self._measured_events(inner, events, condition)
        tags = sorted({tag for event in events for tag in event.tags})
        attributes = self._attributes(
            "append_events",
            **{
                "eventfold.event.types": sorted({e.type for e in events}),
                "eventfold.event.count": len(events),
                "eventfold.tags": tags,
                "eventfold.conditional": condition is not None,
            },
        )
        with tracing.span(
            f"append_events {self.backend}", kind="client", attributes=attributes
        ) as span:
            position = await self._measured_events(inner, events, condition)
            tracing.set_attributes(span, {"eventfold.position": position})
        return position

    async def _measured_events(
        self, inner: DCBStore, events: Sequence[NewEvent], condition: AppendCondition | None
    ) -> int:
        events = _with_context(events, tracing.carrier())
        start = time.perf_counter()
        try:
            position = await inner.append_events(events, condition)
        except ConditionFailed:
            self.metrics.conditional_failures.labels(self.backend, "query").inc()
            raise
        finally:
            self._latency["append_events"].observe(time.perf_counter() - start)
        self._count_appended(events)
        return position

    # --- reading ----------------------------------------------------------------------

    def read_through(
        self, operation: str, records: AsyncIterator[RecordedEvent], about: dict[str, Any]
    ) -> AsyncIterator[RecordedEvent]:
        """Every whole read, through this store or a routed view of it
        (``reads()``), spanned, timed and counted."""
        records = super().read_through(operation, records, about)
        return self._counted(operation, records, self._attributes(operation, **about))

    async def _counted(
        self,
        operation: str,
        records: AsyncIterator[RecordedEvent],
        attributes: dict[str, Any],
    ) -> AsyncIterator[RecordedEvent]:
        span = tracing.start_span(
            f"{operation} {self.backend}", kind="client", attributes=attributes
        )
        start = time.perf_counter()
        count = 0
        try:
            async for record in records:
                count += 1
                yield record
        except BaseException as exc:
            if span is not None:
                span.record_exception(exc)
            raise
        finally:
            self._latency[operation].observe(time.perf_counter() - start)
            if count:
                self._read.inc(count)
            if span is not None:
                span.set_attribute("eventfold.event.count", count)
                span.end()

    async def pages_through(
        self, stream_id: str, pages: AsyncIterator[DataPage]
    ) -> AsyncIterator[DataPage]:
        """Every fast fold read, through this store or a routed view of it,
        spanned, timed and counted."""
        pages = super().pages_through(stream_id, pages)
        attributes = self._attributes("read_stream_data", **{"eventfold.stream_id": stream_id})
        span = tracing.start_span(
            f"read_stream_data {self.backend}", kind="client", attributes=attributes
        )
        start = time.perf_counter()
        count = 0
        try:
            async for first, rows in pages:
                count += len(rows)
                yield first, rows
        finally:
            self._latency["read_stream_data"].observe(time.perf_counter() - start)
            if count:
                self._read.inc(count)
            if span is not None:
                span.set_attribute("eventfold.event.count", count)
                span.end()


def _well_formed(append: object) -> bool:
    return (
        isinstance(append, StreamAppend)
        and isinstance(append.events, list | tuple)
        and all(isinstance(e, NewEvent) for e in append.events)
    )


def _events(events: object) -> bool:
    return (
        isinstance(events, list | tuple)
        and bool(events)
        and all(isinstance(e, NewEvent) for e in events)
    )


def _with_context(events: Sequence[NewEvent], context: dict[str, str]) -> Sequence[NewEvent]:
    if not context:
        return events
    return [
        msgspec.structs.replace(event, metadata=with_trace(event.metadata, context))
        for event in events
    ]


def _traced(append: StreamAppend, context: dict[str, str]) -> StreamAppend:
    if not context:
        return append
    return StreamAppend(
        append.stream_id, _with_context(append.events, context), append.expected_version
    )
