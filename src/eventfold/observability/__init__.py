"""Observability: OpenTelemetry spans that follow each event across
processes (``tracing``; the ``otel`` extra), Prometheus metrics
(``metrics``, served at ``/metrics``), a store wrapped in both
(``InstrumentedStore``), HTTP requests observed (``observed``), and JSON log
lines carrying trace, correlation and causation ids (``logs``). See
docs/observability.md for every span, attribute and metric."""

from eventfold.observability.logs import JSONFormatter, logged
from eventfold.observability.tracing import TRACEPARENT, TRACESTATE, export_otlp

__all__ = ["TRACEPARENT", "TRACESTATE", "JSONFormatter", "export_otlp", "logged"]
