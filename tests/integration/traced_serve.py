"""``eventfold serve`` with OpenTelemetry's SDK recording every span in
memory; when the process ends, the spans are written as JSON lines to the
file named by ``EVENTFOLD_SPANS`` (name, kind, ids, parent, attributes,
links). Used by test_trace_across_processes.py."""

from __future__ import annotations

import atexit
import json
import os
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)


def _span(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent": None if span.parent is None else f"{span.parent.span_id:016x}",
        "attributes": {
            k: v if isinstance(v, str | int | float | bool) else list(v)
            for k, v in (span.attributes or {}).items()
        },
        "links": [
            {"trace_id": f"{link.context.trace_id:032x}", "span_id": f"{link.context.span_id:016x}"}
            for link in span.links
        ],
    }


def _dump() -> None:
    with open(os.environ["EVENTFOLD_SPANS"], "w") as out:
        for span in exporter.get_finished_spans():
            out.write(json.dumps(_span(span)) + "\n")


atexit.register(_dump)

if __name__ == "__main__":
    from eventfold.cli import main

    main()
