"""What the codec checks before it hands encoded bytes to a store: that they
nest no deeper than the limit, and that decoding them gives back the value
that was encoded. A value that would come back as something else (NaN stored
as null, bytes under a field typed ``Any`` read back as a base64 string, a
string in a field typed ``int``) is refused with ``InvalidPayload`` naming
it, so no stream ever holds an event that cannot be read as it was written."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from eventfold.errors import InvalidPayload
from eventfold.store.checks import NOT_JSON
from eventfold.store.payloads import (
    check_depth,
    error_path,
    fields_of,
    member,
    nonfinite_path,
)


def check_round_trip(
    value: Any, data: bytes, decoder: msgspec.json.Decoder[Any], what: str, event_type: str
) -> None:
    """Refuse ``data`` (``value`` encoded) unless ``decoder`` reads it back as
    ``value``. Raises InvalidPayload naming the first value that differs."""
    check_depth(data, what, event_type)
    try:
        back = decoder.decode(data)
    except NOT_JSON as exc:
        where = nonfinite_path(value, what)
        if where is not None:
            raise _not_finite(where, what, event_type) from None
        raise InvalidPayload(
            f"{event_type}: {what} would not read back: {exc}",
            argument=what,
            event_type=event_type,
            field=what + (error_path(exc) or ""),
        ) from None
    if back == value:
        return
    problem = difference(value, back, what)
    if problem is None:
        return  # equal field by field (a type whose == is identity)
    where, reason = problem
    if reason is None:
        raise _not_finite(where, what, event_type)
    raise InvalidPayload(
        f"{event_type}: {where}: {reason}", argument=what, event_type=event_type, field=where
    )


def _not_finite(where: str, what: str, event_type: str) -> InvalidPayload:
    return InvalidPayload(
        f"{event_type}: {where} is not a finite number (JSON has no NaN or Infinity)",
        argument=what,
        event_type=event_type,
        field=where,
    )


def difference(given: Any, back: Any, path: str) -> tuple[str, str | None] | None:
    """Where ``back`` (decoded) first differs from ``given``, and how (None
    for a number that is not finite); None if they agree."""
    if isinstance(given, float) and not math.isfinite(given):
        return path, None
    given_fields = fields_of(given)
    if given_fields is not None and type(back) is type(given):
        for name, item in given_fields:
            found = difference(item, getattr(back, name), f"{path}.{name}")
            if found is not None:
                return found
        return None
    if isinstance(given, dict) and isinstance(back, dict):
        for key, item in given.items():
            if key not in back:
                return member(path, key), (
                    f"the key {key!r} would be read back as {_name(next(iter(back), None))}"
                )
            found = difference(item, back[key], member(path, key))
            if found is not None:
                return found
        return None
    if isinstance(given, list | tuple) and type(back) is type(given) and len(given) == len(back):
        for i, (item, other) in enumerate(zip(given, back, strict=True)):
            found = difference(item, other, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if type(given) is not type(back) and not (
        type(given) in (int, float) and type(back) in (int, float) and given == back
    ):
        return path, (
            f"a {_name(given)} would be read back as {_name(back)}; "
            "store a JSON value here or give the field a precise type"
        )
    if given != back and repr(given) != repr(back):  # Decimal('NaN') reads back as itself
        return path, f"{given!r} would be read back as {back!r}"
    return None


def _name(value: Any) -> str:
    return type(value).__name__
