"""Pages rendered on the server with Jinja2 (autoescaping everything), and
the console's two static files (a style sheet, a script for live
progress), served from the package: no CDN, no build step.

Every page is sent with a Content-Security-Policy that allows scripts,
styles and forms from this origin only, so that nothing injected into an
event's data could run in an operator's browser even if it got past the
escaping."""

from __future__ import annotations

import json
from datetime import datetime
from importlib import resources
from typing import Any

import jinja2
from litestar import Response

from eventfold.serialization.crypto import REDACTED

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, str) and len(value) > 19 and value[10] == "T":
        return value[:19].replace("T", " ")
    return "" if value is None else str(value)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("eventfold.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = _pretty
    env.filters["when"] = _when
    env.globals["REDACTED"] = REDACTED
    return env


_env = _environment()


def html(
    template: str, status: int = 200, cookies: list[Any] | None = None, **context: Any
) -> Response[str]:
    """``template`` rendered with ``context``, as an HTML page."""
    body = _env.get_template(template).render(**context)
    return Response(
        body,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers=HEADERS,
        cookies=cookies or [],
    )


def static(name: str) -> tuple[bytes, str] | None:
    """A static file's bytes and media type (None: not one of them)."""
    media = STATIC.get(name)
    if media is None:
        return None
    data = resources.files("eventfold.console").joinpath("static", name).read_bytes()
    return data, media
