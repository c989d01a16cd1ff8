"""Tracing and metrics around a store, and JSON log lines: the trace context
goes into every appended event's metadata (sampled or not), spans carry
the semantic conventions' attributes, counters move, and log lines carry
the trace, correlation and causation ids."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator

import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

import eventfold
from eventfold import NO_STREAM, Codec, EventRegistry, Metadata, WrongExpectedVersion
from eventfold.errors import ConditionFailed, InvalidArgument
from eventfold.observability import tracing
from eventfold.observability.logs import JSONFormatter, logged
from eventfold.observability.metrics import Metrics
from eventfold.observability.store import InstrumentedStore
from eventfold.store.api import NewEvent
from eventfold.store.capabilities import DCBStore, capability
from eventfold.store.dcb import AppendCondition, Query, QueryItem

registry = EventRegistry()


@registry.register("Noted")
class Noted(msgspec.Struct, frozen=True):
    text: str


codec = Codec(registry)
REMOTE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@contextlib.contextmanager
def provider(sampled: bool) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    sdk = TracerProvider(sampler=ALWAYS_ON if sampled else ALWAYS_OFF)
    sdk.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(sdk)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)
        sdk.shutdown()


def traceparent(metadata: bytes | str) -> str | None:
    found = json.loads(metadata).get("traceparent")
    return found if isinstance(found, str) else None


async def test_every_appended_event_carries_the_trace_context_sampled_or_not() -> None:
    metrics = Metrics()
    async with eventfold.connect("memory://") as inner:
        store = InstrumentedStore(inner, metrics=metrics)
        for sampled, flags in ((True, 1), (False, 0)):
            with provider(sampled) as exporter, tracing.span("command Note") as command:
                await store.append(
                    f"note-{flags}",
                    [codec.encode(Noted("a"), Metadata(actor="ana")), codec.encode(Noted("b"))],
                    expected_version=NO_STREAM,
                )
                trace_id = command.get_span_context().trace_id
            records = [r async for r in inner.read_stream(f"note-{flags}")]
            assert len(records) == 2
            for record in records:
                found = traceparent(record.metadata)
                assert found is not None, record.metadata
                assert int(found.split("-")[3], 16) & 1 == flags  # the sampled flag
                assert found.split("-")[1] == f"{trace_id:032x}"
            assert json.loads(records[0].metadata)["actor"] == "ana"
            spans = {s.name: s for s in exporter.get_finished_spans()}
            if not sampled:
                assert spans == {}
                continue
            append = spans["append eventfold.memory"]
            assert append.attributes is not None
            assert append.attributes["db.system.name"] == "eventfold.memory"
            assert append.attributes["db.operation.name"] == "append"
            assert append.attributes["eventfold.stream_id"] == "note-1"
            assert list(append.attributes["eventfold.event.types"]) == ["Noted"]
            assert append.attributes["eventfold.position"] == records[-1].position
            # The context stored is the append's own span, child of the command.
            assert append.parent is not None and append.parent.span_id == (
                command.get_span_context().span_id
            )
            assert traceparent(records[0].metadata).split("-")[2] == (  # type: ignore[union-attr]
                f"{append.context.span_id:016x}"
            )


async def test_without_an_sdk_nothing_is_recorded_but_a_callers_context_travels() -> None:
    metrics = Metrics()
    assert not tracing.recording()
    async with eventfold.connect("memory://") as inner:
        store = InstrumentedStore(inner, metrics=metrics)
        await store.append("note-9", [codec.encode(Noted("plain"))])
        with tracing.continued({"traceparent": REMOTE}):
            await store.append("note-9", [codec.encode(Noted("from a caller"))])
        first, second = [r async for r in inner.read_stream("note-9")]
        assert json.loads(first.metadata) == {}
        assert traceparent(second.metadata) == REMOTE


async def test_a_context_already_in_the_metadata_is_kept_and_bad_input_is_still_refused() -> None:
    async with eventfold.connect("memory://") as inner:
        store = InstrumentedStore(inner, metrics=Metrics())
        given = json.dumps({"traceparent": REMOTE}).encode()
        with provider(sampled=True):
            await store.append("note-2", [NewEvent("Noted", b'{"text": "x"}', given)])
            with pytest.raises(InvalidArgument):
                await store.append("note-2", [NewEvent("Noted", b'{"text": "x"}', b"[1, 2")])
            with pytest.raises(InvalidArgument):
                await store.append("note-2", "not a list of events")  # type: ignore[arg-type]
        (record,) = [r async for r in inner.read_stream("note-2")]
        assert traceparent(record.metadata) == REMOTE


async def test_counters_move_with_appends_conflicts_and_reads() -> None:
    metrics = Metrics()

    def value(name: str, **labels: str) -> float:
        found = metrics.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    async with eventfold.connect("memory://") as inner:
        store = InstrumentedStore(inner, metrics=metrics)
        await store.append("note-3", [codec.encode(Noted(str(n))) for n in range(3)])
        with pytest.raises(WrongExpectedVersion):
            await store.append("note-3", [codec.encode(Noted("late"))], expected_version=1)
        assert len([r async for r in store.read_all()]) == 3
        assert len([r async for r in store.read_stream("note-3", limit=2)]) == 2
        backend = "eventfold.memory"
        assert value("eventfold_events_appended_total", backend=backend, type="Noted") == 3
        assert (
            value(
                "eventfold_conditional_append_failures_total",
                backend=backend,
                condition="expected_version",
            )
            == 1
        )
        assert value("eventfold_events_read_total", backend=backend) == 5
        appends = value(
            "eventfold_db_client_operation_duration_seconds_count",
            db_system_name=backend,
            db_operation_name="append",
        )
        assert appends == 2


def test_json_log_lines_carry_trace_correlation_and_causation_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    log = logging.getLogger("eventfold.test.json")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with provider(sampled=True), tracing.span("command Note") as span:
            with logged(correlation_id="corr-1", causation_id="cmd-1"):
                log.info("handled %s", "Note")
            log.warning("outside")
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        log.removeHandler(handler)
    inside, outside = lines
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert inside["message"] == "handled Note" and inside["level"] == "INFO"
    assert inside["trace_id"] == trace_id and len(inside["span_id"]) == 16
    assert inside["correlation_id"] == "corr-1" and inside["causation_id"] == "cmd-1"
    assert outside["trace_id"] == trace_id and "correlation_id" not in outside


async def test_dcb_appends_and_reads_are_spanned_counted_and_carry_the_trace() -> None:
    metrics = Metrics()

    def value(name: str, **labels: str) -> float:
        found = metrics.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    booked = Query((QueryItem(types=("Noted",), tags=("course:c1",)),))
    async with eventfold.connect("memory://") as inner:
        store = InstrumentedStore(inner, metrics=metrics)
        assert capability(store, DCBStore) is not None
        with provider(sampled=True) as exporter:
            seats = [
                msgspec.structs.replace(codec.encode(Noted(name)), tags=("course:c1",))
                for name in ("ada", "bo")
            ]
            position = await store.append_events(seats[:1], AppendCondition(booked))
            with pytest.raises(ConditionFailed):
                await store.append_events(seats[1:], AppendCondition(booked))
            read = [r async for r in store.read(booked)]
        assert [r.position for r in read] == [position]
        assert traceparent(read[0].metadata) is not None
        spans = [s for s in exporter.get_finished_spans() if s.name.startswith("append_events")]
        assert len(spans) == 2
        assert spans[0].attributes is not None
        assert spans[0].attributes["eventfold.position"] == position
        assert list(spans[0].attributes["eventfold.tags"]) == ["course:c1"]
        assert spans[0].attributes["eventfold.conditional"] is True
        assert {s.name for s in exporter.get_finished_spans()} >= {"read eventfold.memory"}
        backend = "eventfold.memory"
        assert value("eventfold_events_appended_total", backend=backend, type="Noted") == 1
        assert (
            value("eventfold_conditional_append_failures_total", backend=backend, condition="query")
            == 1
        )
        assert value("eventfold_events_read_total", backend=backend) == 1
        latency = "eventfold_db_client_operation_duration_seconds_count"
        assert value(latency, db_system_name=backend, db_operation_name="append_events") == 2
        assert value(latency, db_system_name=backend, db_operation_name="read") == 1
