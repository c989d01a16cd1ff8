"""Tracing through the OpenTelemetry API (the ``otel`` extra), and the W3C
trace context that follows an event.

Without ``opentelemetry-api`` installed every function here does nothing.
With the API but no SDK (no tracer provider set up), no span is ever
created: ``span`` yields None after one check, and only the trace context
already current (a caller's ``traceparent`` header) travels on. With an SDK,
spans are recorded and exported as it is configured.

The trace context travels as W3C headers (``traceparent``, ``tracestate``):
in each event's metadata (written at append, sampled or not), in the
headers of every bus message, and in HTTP requests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import msgspec

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - depends on installed extras
    otel_context = None  # type: ignore[assignment]
    otel_trace = None  # type: ignore[assignment]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_KEYS = (TRACEPARENT, TRACESTATE)
"""The metadata keys and message headers carrying the W3C trace context."""

Kind = Literal["internal", "server", "client", "producer", "consumer"]

_object = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()
_propagator = TraceContextTextMapPropagator() if otel_trace is not None else None
_tracer: tuple[object, Any] | None = None
_provider: Any = None


def use_provider(provider: Any) -> None:
    """Record eventfold's spans with ``provider`` rather than the global
    tracer provider (None: the global one again). The trace context still
    travels through OpenTelemetry's current context, whichever provider
    records."""
    global _provider
    _provider = provider


def _current_provider() -> Any:
    assert otel_trace is not None
    if _provider is not None:
        return _provider
    # get_tracer_provider() looks in os.environ on every call until a provider
    # is set; the module's global says the same without that (falling back to
    # the public call should a later API version name it otherwise).
    found = getattr(otel_trace, "_TRACER_PROVIDER", _UNKNOWN)
    if found is _UNKNOWN:  # pragma: no cover - depends on the API's version
        return otel_trace.get_tracer_provider()
    return found


_UNKNOWN = object()


def available() -> bool:
    """Whether the OpenTelemetry API is installed."""
    return otel_trace is not None


def recording() -> bool:
    """Whether spans are recorded: the API is installed and a tracer
    provider other than the API's default (an SDK) is set up, globally or
    with ``use_provider``."""
    if otel_trace is None:
        return False
    provider = _current_provider()
    return provider is not None and not isinstance(
        provider, otel_trace.ProxyTracerProvider | otel_trace.NoOpTracerProvider
    )


def tracer() -> Any:
    """eventfold's tracer from the current provider (cached per provider)."""
    global _tracer
    from eventfold import __version__

    assert otel_trace is not None
    provider = _current_provider() or otel_trace.get_tracer_provider()
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, provider.get_tracer("eventfold", __version__))
    return _tracer[1]


def _kind(kind: Kind) -> Any:
    assert otel_trace is not None
    return {
        "internal": otel_trace.SpanKind.INTERNAL,
        "server": otel_trace.SpanKind.SERVER,
        "client": otel_trace.SpanKind.CLIENT,
        "producer": otel_trace.SpanKind.PRODUCER,
        "consumer": otel_trace.SpanKind.CONSUMER,
    }[kind]


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: Kind = "internal",
    attributes: Mapping[str, Any] | None = None,
    parent: Mapping[str, str] | None = None,
    links: Sequence[Mapping[str, str]] = (),
) -> Iterator[Any]:
    """A span, current inside the block (None when nothing records).
    ``parent``: a W3C carrier (headers, metadata) to continue that trace
    instead of the current one; ``links``: carriers of the traces this span
    follows from. An exception leaving the block is recorded on the span."""
    if not recording():
        yield None
        return
    context = context_of(parent) if parent is not None else None
    with tracer().start_as_current_span(
        name,
        context=context,
        kind=_kind(kind),
        attributes=dict(attributes) if attributes else None,
        links=links_to(links),
    ) as current:
        yield current


def start_span(
    name: str,
    *,
    kind: Kind = "internal",
    attributes: Mapping[str, Any] | None = None,
    parent: Mapping[str, str] | None = None,
    links: Sequence[Mapping[str, str]] = (),
    start_time: int | None = None,
) -> Any:
    """A span that is not made current (for work that yields, such as a
    read): call ``end()`` on it. None when nothing records. ``start_time``:
    nanoseconds since the epoch, for a span that began before it was known
    to be worth one."""
    if not recording():
        return None
    context = context_of(parent) if parent is not None else None
    return tracer().start_span(
        name,
        context=context,
        kind=_kind(kind),
        attributes=dict(attributes) if attributes else None,
        links=links_to(links),
        start_time=start_time,
    )


def set_attributes(current: Any, attributes: Mapping[str, Any]) -> None:
    """Set attributes on ``current`` (a span, or None: nothing)."""
    if current is not None:
        current.set_attributes(dict(attributes))


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent`` and, if
    there is one, ``tracestate``); empty when there is none. A span that is
    not sampled has a context too: it is carried all the same."""
    if _propagator is None:
        return {}
    out: dict[str, str] = {}
    _propagator.inject(out)
    return out


def context_of(found: Mapping[str, Any] | None) -> Any:
    """The OpenTelemetry context of a W3C carrier (None without the API or
    without a valid ``traceparent``)."""
    if _propagator is None or not found or not isinstance(found.get(TRACEPARENT), str):
        return None
    headers = {k: found[k] for k in TRACE_KEYS if isinstance(found.get(k), str)}
    return _propagator.extract(headers)


def links_to(carriers: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Span links to the span contexts the carriers name (invalid ones left out)."""
    if otel_trace is None or not carriers:
        return []
    out = []
    for found in carriers:
        context = context_of(found)
        if context is None:
            continue
        span_context = otel_trace.get_current_span(context).get_span_context()
        if span_context.is_valid:
            out.append(otel_trace.Link(span_context))
    return out


@contextlib.contextmanager
def continued(found: Mapping[str, str] | None) -> Iterator[None]:
    """Make the trace context of a carrier current inside the block (without
    starting a span): what is written there carries it on."""
    context = context_of(found)
    if context is None or otel_context is None:
        yield
        return
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def trace_ids() -> tuple[str, str] | None:
    """The current trace and span ids in hex, or None."""
    if otel_trace is None:
        return None
    span_context = otel_trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"


def export_otlp(default_service: str) -> Any:
    """Set up the OpenTelemetry SDK to export spans over OTLP/HTTP (the
    ``otlp`` extra), configured by the standard variables:
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``),
    ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME`` (default
    ``default_service``), ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``.
    Returns the tracer provider (``shutdown()`` flushes what is left)."""
    import os

    from eventfold.errors import ConfigurationError

    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigurationError(
            "exporting spans needs the 'otlp' extra: pip install 'eventfold[otlp]'",
            setting="otlp",
        ) from None
    assert otel_trace is not None
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": default_service}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    otel_trace.set_tracer_provider(provider)
    return provider


def carrier_of(current: Any) -> dict[str, str]:
    """The W3C headers of a given span (not necessarily the current one)."""
    if _propagator is None or otel_trace is None or current is None:
        return {}
    out: dict[str, str] = {}
    _propagator.inject(out, context=otel_trace.set_span_in_context(current))
    return out


def with_trace(metadata: bytes, context: dict[str, str]) -> bytes:
    """``metadata`` (a JSON object) with the trace context added, unless it
    already carries one. Anything that is not a JSON object is left as it
    is, for the store's own checks to refuse."""
    if not context or not isinstance(metadata, bytes):
        return metadata
    if metadata == b"{}":
        return _encoder.encode(context)
    try:
        found = _object.decode(metadata)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return metadata
    if TRACEPARENT in found:
        return metadata
    found.update(context)
    return _encoder.encode(found)


def trace_of(metadata: bytes | str) -> dict[str, str]:
    """The W3C trace context an event's metadata carries (empty if none)."""
    marker: bytes | str = b"traceparent" if isinstance(metadata, bytes) else "traceparent"
    if marker not in metadata:  # type: ignore[operator]
        return {}
    try:
        found = _object.decode(metadata)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return {}
    return {k: v for k in TRACE_KEYS if isinstance(v := found.get(k), str)}
