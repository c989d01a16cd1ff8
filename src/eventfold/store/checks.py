"""Input checks and idempotency rules shared by every backend, so that all of
them reject the same input with the same typed error before touching storage."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import msgspec

from eventfold.errors import (
    DuplicateEventId,
    InvalidArgument,
    InvalidStreamId,
    WrongExpectedVersion,
)
from eventfold.store.api import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    ExpectedVersion,
    JsonText,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
    StreamState,
)
from eventfold.store.payloads import check_depth, explain_raw, too_deep

MAX_STREAM_ID = 200
MAX_TYPE_NAME = 200
MAX_TAG_LENGTH = 200
"""A tag is 1 to this many characters, with no whitespace or control characters."""
MAX_TAGS = 32
"""An event carries at most this many tags (and a query item names at most as many)."""
# No whitespace, no control characters; "$" first is reserved for system streams.
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")
_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]*")
_json_object = msgspec.json.Decoder(dict[str, Any])
NOT_JSON = (msgspec.DecodeError, UnicodeDecodeError)
"""What decoding bytes that are not JSON raises: msgspec reports bytes that
are not UTF-8 inside a string or key as UnicodeDecodeError, not DecodeError."""


def validate_stream_id(stream_id: object) -> str:
    if not isinstance(stream_id, str):
        raise InvalidStreamId(stream_id, "must be a string")
    if not stream_id:
        raise InvalidStreamId(stream_id, "must not be empty")
    if len(stream_id) > MAX_STREAM_ID:
        raise InvalidStreamId(stream_id[:40] + "...", f"longer than {MAX_STREAM_ID} characters")
    if _FORBIDDEN.search(stream_id):
        raise InvalidStreamId(stream_id, "contains whitespace or control characters")
    if stream_id.startswith("$"):
        raise InvalidStreamId(stream_id, "names starting with '$' are reserved")
    return stream_id


def category_of(stream_id: str) -> str:
    """``order-42`` -> ``order``; a stream id without a dash is its own category."""
    return stream_id.partition("-")[0]


def validate_type_name(name: object) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_TYPE_NAME:
        raise InvalidArgument(f"invalid event type name {name!r}", argument="type")
    if not _TYPE_NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid event type name {name!r}: letters, digits, '_', '.', ':', '-'",
            argument="type",
        )
    return name


def validate_tag(tag: object, argument: str = "tags") -> str:
    """``tag`` if it is a valid tag, else ``InvalidArgument`` naming why."""
    if not isinstance(tag, str):
        raise InvalidArgument(
            f"a tag must be a string, not {type(tag).__name__}", argument=argument
        )
    if not tag:
        raise InvalidArgument("a tag must not be empty", argument=argument)
    if len(tag) > MAX_TAG_LENGTH:
        raise InvalidArgument(
            f"tag {tag[:40]!r}... is longer than {MAX_TAG_LENGTH} characters", argument=argument
        )
    if _FORBIDDEN.search(tag):
        raise InvalidArgument(
            f"tag {tag!r} contains whitespace or control characters", argument=argument
        )
    return tag


def validate_tags(tags: object, argument: str = "tags") -> tuple[str, ...]:
    """An event's (or a query item's) tags: a tuple or list of at most
    ``MAX_TAGS`` valid tags, none twice; returned as a tuple."""
    if isinstance(tags, str | bytes) or not isinstance(tags, tuple | list):
        raise InvalidArgument("tags must be a tuple or list of strings", argument=argument)
    if len(tags) > MAX_TAGS:
        raise InvalidArgument(f"at most {MAX_TAGS} tags, got {len(tags)}", argument=argument)
    for tag in tags:
        validate_tag(tag, argument)
    if len(set(tags)) != len(tags):
        raise InvalidArgument(f"a tag appears twice in {list(tags)!r}", argument=argument)
    return tuple(tags)


def validate_expected(expected: object) -> ExpectedVersion:
    if isinstance(expected, StreamState):
        return expected
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise InvalidArgument(
            f"expected version must be ANY, NO_STREAM, STREAM_EXISTS or an int >= 0, "
            f"not {expected!r}",
            argument="expected_version",
        )
    return expected


def check_expected(stream_id: str, expected: ExpectedVersion, actual: int) -> None:
    """Raise WrongExpectedVersion unless ``actual`` (0 = no stream) satisfies ``expected``."""
    if expected is ANY:
        return
    if expected is NO_STREAM:
        ok = actual == 0
    elif expected is STREAM_EXISTS:
        ok = actual > 0
    else:
        ok = actual == expected
    if not ok:
        raise WrongExpectedVersion(stream_id, expected, actual)


def _check_json_object(raw: object, what: str, event_type: str) -> None:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise InvalidArgument(f"{event_type}: {what} must be JSON bytes", argument=what)
    if raw == b"{}":
        return
    text = raw if isinstance(raw, bytes) else bytes(raw)
    check_depth(text, what, event_type)
    try:
        _json_object.decode(text)
    except NOT_JSON as exc:
        out_of_range = explain_raw(text, what, event_type)
        if out_of_range is not None:
            raise out_of_range from None
        raise InvalidArgument(
            f"{event_type}: {what} is not a JSON object: {exc}", argument=what
        ) from None


_known_types: set[str] = set()


def _check_type_name(name: object) -> None:
    # Type names repeat endlessly; remember the valid ones (bounded).
    if name in _known_types:
        return
    validate_type_name(name)
    if len(_known_types) < 10_000:
        _known_types.add(name)  # type: ignore[arg-type]


def validate_new_event(event: object) -> NewEvent:
    if type(event) is not NewEvent:
        raise InvalidArgument(f"expected a NewEvent, got {type(event).__name__}", argument="events")
    _check_type_name(event.type)
    if type(event.event_id) is not uuid.UUID:
        raise InvalidArgument(f"{event.type}: event_id must be a UUID", argument="event_id")
    sv = event.schema_version
    if type(sv) is not int or sv < 1:
        raise InvalidArgument(
            f"{event.type}: schema_version must be >= 1", argument="schema_version"
        )
    _check_json_object(event.data, "data", event.type)
    _check_json_object(event.metadata, "metadata", event.type)
    if event.tags:
        validate_tags(event.tags)
    return event


def validate_events(events: object) -> list[NewEvent]:
    """A sequence of valid ``NewEvent`` with distinct ids (one stream's part
    of an append, or a DCB append)."""
    if isinstance(events, str | bytes) or not isinstance(events, Sequence):
        raise InvalidArgument("events must be a sequence of NewEvent", argument="events")
    ids: set[uuid.UUID] = set()
    for event in events:
        validate_new_event(event)
        if event.event_id in ids:
            raise InvalidArgument(
                f"event id {event.event_id} appears twice in one append", argument="event_id"
            )
        ids.add(event.event_id)
    return list(events)


def validate_appends(appends: Iterable[object]) -> list[StreamAppend]:
    """Validate a multi-stream append: ids, expected versions, events, and that no
    stream and no event id appears twice."""
    checked: list[StreamAppend] = []
    streams: set[str] = set()
    ids: set[uuid.UUID] = set()
    count = 0
    for item in appends:
        if not isinstance(item, StreamAppend):
            raise InvalidArgument("append_many takes StreamAppend items", argument="appends")
        validate_stream_id(item.stream_id)
        validate_expected(item.expected_version)
        if item.stream_id in streams:
            raise InvalidArgument(
                f"stream {item.stream_id!r} appears twice in one append", argument="appends"
            )
        streams.add(item.stream_id)
        events = item.events
        if isinstance(events, str | bytes) or not isinstance(events, Sequence):
            raise InvalidArgument("events must be a sequence of NewEvent", argument="events")
        known, decode = _known_types, _json_object.decode
        for event in events:
            # The common case inline (this loop runs once per appended event);
            # anything unusual goes through validate_new_event for its error.
            if (
                type(event) is not NewEvent
                or event.type not in known
                or type(event.event_id) is not uuid.UUID
                or type(event.schema_version) is not int
                or event.schema_version < 1
                or type(event.data) is not bytes
                or type(event.metadata) is not bytes
                or event.tags
            ):
                validate_new_event(event)
            else:
                try:
                    if too_deep(event.data) or too_deep(event.metadata):
                        validate_new_event(event)  # raises the typed error
                    decode(event.data)
                    if event.metadata != b"{}":
                        decode(event.metadata)
                except NOT_JSON:
                    validate_new_event(event)
            ids.add(event.event_id)
        count += len(events)
        checked.append(item)
    if not checked:
        raise InvalidArgument("append_many needs at least one StreamAppend", argument="appends")
    if len(ids) != count:
        seen: set[uuid.UUID] = set()
        for item in checked:
            for event in item.events:
                if event.event_id in seen:
                    raise InvalidArgument(
                        f"event id {event.event_id} appears twice in one append",
                        argument="event_id",
                    )
                seen.add(event.event_id)
    return checked


def validate_snapshot(snapshot: object) -> Snapshot:
    if not isinstance(snapshot, Snapshot):
        raise InvalidArgument("expected a Snapshot", argument="snapshot")
    validate_stream_id(snapshot.stream_id)
    if not isinstance(snapshot.name, str) or not 0 < len(snapshot.name) <= MAX_TYPE_NAME:
        raise InvalidArgument(f"invalid snapshot name {snapshot.name!r}", argument="name")
    for name, value in (("version", snapshot.version), ("schema_version", snapshot.schema_version)):
        if type(value) is not int or value < 0:
            raise InvalidArgument(f"snapshot {name} must be an int >= 0", argument=name)
    if not isinstance(snapshot.state, bytes):
        raise InvalidArgument("snapshot state must be bytes", argument="state")
    return snapshot


def validate_read_stream(
    stream_id: str, from_version: int, to_version: int | None, limit: int | None
) -> None:
    validate_stream_id(stream_id)
    for name, value in (
        ("from_version", from_version),
        ("to_version", to_version),
        ("limit", limit),
    ):
        if value is None and name != "from_version":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgument(f"{name} must be an int >= 0, not {value!r}", argument=name)


def validate_read_all(
    from_position: int,
    categories: Sequence[str] | None,
    types: Sequence[str] | None,
    limit: int | None,
) -> None:
    for name, value in (("from_position", from_position), ("limit", limit)):
        if value is None and name == "limit":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgument(f"{name} must be an int >= 0, not {value!r}", argument=name)
    for name, seq in (("categories", categories), ("types", types)):
        if seq is None:
            continue
        if not isinstance(seq, Sequence) or isinstance(seq, str | bytes):
            raise InvalidArgument(f"{name} must be a sequence of strings", argument=name)
        if not all(isinstance(s, str) for s in seq):
            raise InvalidArgument(f"{name} must be a sequence of strings", argument=name)


_exact_numbers = msgspec.json.Decoder(float_hook=Decimal)


def same_json(a: JsonText, b: JsonText) -> bool:
    """Equal as JSON values, numbers compared exactly (a backend that
    normalises ``6.95e16`` to ``69500000000000000`` stores the same value)."""
    if a == b:
        return True
    try:
        return bool(_exact_numbers.decode(a) == _exact_numbers.decode(b))
    except NOT_JSON:
        return False


def replayed_result(
    append: StreamAppend, stored: dict[uuid.UUID, RecordedEvent]
) -> AppendResult | None:
    """Decide what a batch whose ids may already be stored means.

    ``stored`` maps the batch's event ids that already exist to their records.
    None of them stored: a new append (returns None). All of them stored in this
    stream, contiguous, in order, with the same type and data: a retry of an
    append that succeeded (returns its original result). Anything else raises
    DuplicateEventId naming the first offending id.
    """
    events = append.events
    if not stored or not events:
        return None
    first = stored.get(events[0].event_id)
    for i, event in enumerate(events):
        record = stored.get(event.event_id)
        if record is None:
            raise DuplicateEventId(
                next(iter(stored)),
                append.stream_id,
                "some events of this append are already stored and others are not",
            )
        if record.stream_id != append.stream_id:
            raise DuplicateEventId(
                event.event_id, append.stream_id, f"already stored in stream {record.stream_id!r}"
            )
        assert first is not None
        if record.version != first.version + i:
            raise DuplicateEventId(
                event.event_id, append.stream_id, "already stored at another version"
            )
        if (
            record.type != event.type
            or tuple(record.tags) != tuple(event.tags)
            or not same_json(record.data, event.data)
        ):
            raise DuplicateEventId(
                event.event_id, append.stream_id, "already stored with different content"
            )
    last = stored[events[-1].event_id]
    return AppendResult(append.stream_id, last.version, last.position)
