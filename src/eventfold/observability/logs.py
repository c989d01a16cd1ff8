"""JSON log lines (optional: ``eventfold serve --log-format json``), one
object per line, each carrying the trace and span ids of the current span
and the correlation and causation ids of the work in progress (a command,
a saga step, a projection's batch)::

    {"time": "2024-05-01T12:00:00.123456+00:00", "level": "INFO",
     "logger": "eventfold.services", "message": "…", "trace_id": "4bf9…",
     "span_id": "00f0…", "correlation_id": "…", "causation_id": "…"}

``logged(correlation_id=…, causation_id=…)`` sets the ids for the code
inside it (a context variable, so it follows asyncio tasks)."""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec

from eventfold.observability import tracing

_ids: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "eventfold_log_ids", default=None
)
_encoder = msgspec.json.Encoder()


@contextlib.contextmanager
def logged(*, correlation_id: str | None, causation_id: str | None) -> Iterator[None]:
    """Log lines written inside the block carry these ids."""
    ids = {
        k: v
        for k, v in (("correlation_id", correlation_id), ("causation_id", causation_id))
        if v is not None
    }
    token = _ids.set(ids)
    try:
        yield
    finally:
        _ids.reset(token)


def current_ids() -> dict[str, str]:
    """The trace, span, correlation and causation ids in effect here."""
    out = dict(_ids.get() or {})
    found = tracing.trace_ids()
    if found is not None:
        out["trace_id"], out["span_id"] = found
    return out


class JSONFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(current_ids())
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


def configure(level: str = "warning", *, json: bool = False) -> None:
    """Log to stderr at ``level``, as JSON lines or as plain text."""
    handler = logging.StreamHandler()
    if json:
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
