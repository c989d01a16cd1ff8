"""Limits on the JSON a payload or its metadata may hold, checked on the stored
bytes by every backend (``eventfold.store.checks``) and by the codec before a
value is encoded (``eventfold.serialization.codec``).

- Nesting: at most ``MAX_JSON_DEPTH`` levels of arrays and objects (the
  payload's own object is level 1). Deeper JSON is refused with
  ``InvalidPayload``, never a ``RecursionError``.
- Numbers: finite only. JSON has no NaN or Infinity, and a number too large
  for a float (``1e999``) would be read back as one.
"""

from __future__ import annotations

import dataclasses
import math
import re
from decimal import Decimal
from typing import Any

import msgspec

from eventfold.errors import InvalidPayload

MAX_JSON_DEPTH = 100
"""The deepest nesting of arrays and objects in a payload or its metadata."""

# A JSON string (escapes included) or one bracket: strings are skipped whole,
# so brackets inside them are not counted.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_OPEN = frozenset((b"[", b"{"))
_CLOSE = frozenset((b"]", b"}"))
_exact = msgspec.json.Decoder(float_hook=Decimal)


def too_deep(raw: bytes) -> bool:
    """Whether the JSON text ``raw`` nests deeper than ``MAX_JSON_DEPTH``.
    Text with no more brackets than the limit is answered without a scan."""
    if raw.count(b"{") + raw.count(b"[") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if token in _OPEN:
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif token in _CLOSE:
            depth -= 1
    return False


def depth_error(what: str, event_type: str) -> InvalidPayload:
    return InvalidPayload(
        f"{event_type}: {what} nests arrays and objects deeper than {MAX_JSON_DEPTH} levels",
        argument=what,
        event_type=event_type,
        field=what,
    )


def check_depth(raw: bytes, what: str, event_type: str) -> None:
    if too_deep(raw):
        raise depth_error(what, event_type)


def member(path: str, key: object) -> str:
    """``path.key`` for a key that reads as a name, ``path['odd key']`` otherwise."""
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def error_path(error: Exception) -> str | None:
    """The path a msgspec validation error names, without its ``$``
    (``.lines[0].quantity``), or None."""
    found = _ERROR_PATH.search(str(error))
    return found.group(1) if found else None


_ERROR_PATH = re.compile(r" - at `\$(.*)`$")


def nonfinite_path(value: Any, path: str) -> str | None:
    """The path of the first number in ``value`` (decoded JSON, or the
    structs, dataclasses and containers given to the codec) that is NaN or
    infinite as a float, or None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return where
        elif isinstance(item, Decimal):  # from JSON: finite, but maybe not as a float
            if item.is_finite() and math.isinf(float(item)):
                return where
        elif isinstance(item, dict):
            stack.extend((v, member(where, k)) for k, v in reversed(item.items()))
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(item))))
        else:
            fields = fields_of(item)
            if fields is not None:
                stack.extend((v, f"{where}.{name}") for name, v in reversed(fields))
    return None


def fields_of(value: Any) -> list[tuple[str, Any]] | None:
    """A struct's or dataclass's fields and values; None for anything else."""
    if isinstance(value, msgspec.Struct):
        return [(name, getattr(value, name)) for name in value.__struct_fields__]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    return None


def explain_raw(raw: bytes, what: str, event_type: str) -> InvalidPayload | None:
    """For raw JSON that failed to decode: the error naming a number that is
    not finite (a bare ``NaN`` or ``Infinity``, or one too large for a float)
    if that was the reason, None otherwise."""
    where = _bare_nonfinite(raw, what)
    if where is not None:
        reason = "JSON has no NaN or Infinity"
    else:
        try:
            exact = _exact.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return None
        where = nonfinite_path(exact, what)
        if where is None:
            return None
        reason = "too large for a float"
    return InvalidPayload(
        f"{event_type}: {where} is not a finite number ({reason})",
        argument=what,
        event_type=event_type,
        field=where,
    )


# Strings (skipped whole), structure, and the non-JSON literals some encoders
# write for floats that are not finite.
_SCAN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}:,]|-?(?:NaN|Infinity)\b')


def _bare_nonfinite(raw: bytes, what: str) -> str | None:
    """The path of the first bare ``NaN``/``Infinity`` in ``raw`` (text that
    is JSON but for them), or None."""
    # One entry per open container: [is_object, key or index, expecting a key]
    stack: list[list[Any]] = []
    for match in _SCAN.finditer(raw):
        token = match.group()
        if token in _OPEN:
            stack.append([token == b"{", None if token == b"{" else 0, token == b"{"])
        elif token in _CLOSE:
            if stack:
                stack.pop()
        elif token == b",":
            if stack and stack[-1][0]:
                stack[-1][2] = True
            elif stack:
                stack[-1][1] += 1
        elif token.startswith(b'"'):
            if stack and stack[-1][0] and stack[-1][2]:
                try:
                    stack[-1][1] = msgspec.json.decode(token)
                except (msgspec.DecodeError, UnicodeDecodeError):
                    return None
                stack[-1][2] = False
        elif token != b":":  # NaN, Infinity, -Infinity
            path = what
            for is_object, key, _ in stack:
                path = member(path, key) if is_object else f"{path}[{key}]"
            return path
    return None
