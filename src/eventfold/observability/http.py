"""HTTP requests observed: a server span per request (continuing the
caller's ``traceparent``), and its latency by service, method, route
template and status (``eventfold_http_request_duration_seconds``).

``observed(app, service)`` wraps an ASGI app; the route is the template the
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


def observed(app: Any, service: str, *, metrics: Metrics = METRICS) -> ASGIApp:
    """``app`` with a span and a latency sample per HTTP request."""

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        method = str(scope.get("method", "GET"))

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 500))
            await send(message)

        caller = _headers(scope)
        attributes = {
            "http.request.method": method,
            "url.path": str(scope.get("path", "")),
            "url.scheme": str(scope.get("scheme", "http")),
            "eventfold.service": service,
        }
        with (
            tracing.continued(caller),
            tracing.span(f"{method} {service}", kind="server", attributes=attributes) as span,
        ):
            try:
                await app(scope, receive, sending)
            finally:
                route = str(scope.get("path_template") or "unmatched")
                if span is not None:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
                metrics.http_duration.labels(service, method, route, str(status)).observe(
                    time.perf_counter() - start
                )

    return handle
