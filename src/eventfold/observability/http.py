"""HTTP requests observed: a server span per request (continuing the
caller's ``traceparent``), and its latency by service, method, route
template and status (``eventfold_http_request_duration_seconds``).

``observed(app, service)`` wraps an ASGI app (``Observed``); the route is the template the
app matched (``/streams/{stream_id:str}/events``, read from the ASGI scope
after the app ran), ``unmatched`` for a request that matched none, so a
scan of random paths cannot grow the metric's labels."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from eventfold.observability import tracing
from eventfold.observability.metrics import METRICS, Metrics

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _headers(scope: Scope) -> dict[str, str]:
    out = {}
    for name, value in scope.get("headers", ()):
        key = name.decode("latin-1").lower()
        if key in tracing.TRACE_KEYS:
            out[key] = value.decode("latin-1")
    return out


class Observed:
    """An ASGI app with a span and a latency sample per HTTP request; any
    other attribute is the wrapped app's (``routes``, ``openapi_schema`` …)."""

    def __init__(self, app: Any, service: str, *, metrics: Metrics = METRICS) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        method = str(scope.get("method", "GET"))

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 500))
            await send(message)

        attributes = {
            "http.request.method": method,
            "url.path": str(scope.get("path", "")),
            "url.scheme": str(scope.get("scheme", "http")),
            "eventfold.service": self.service,
        }
        with (
            tracing.continued(_headers(scope)),
            tracing.span(f"{method} {self.service}", kind="server", attributes=attributes) as span,
        ):
            try:
                await self.app(scope, receive, sending)
            finally:
                route = str(scope.get("path_template") or "unmatched")
                if span is not None:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
                self.metrics.http_duration.labels(self.service, method, route, str(status)).observe(
                    time.perf_counter() - start
                )


def observed(app: Any, service: str, *, metrics: Metrics = METRICS) -> Observed:
    """``app`` with a span and a latency sample per HTTP request."""
    return Observed(app, service, metrics=metrics)
