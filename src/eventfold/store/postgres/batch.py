"""The wire format of the append function: a group of append requests as the
flat arrays ``append_batch`` takes, and its result rows back as outcomes."""

from __future__ import annotations

import decimal
import json
import uuid
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias

import msgspec

from eventfold.errors import InvalidArgument, StoreError, StreamDeleted, WrongExpectedVersion
from eventfold.store.api import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    ExpectedVersion,
    JsonText,
    NewEvent,
    RecordedEvent,
    StreamAppend,
)
from eventfold.store.checks import check_expected
from eventfold.store.dcb import AppendCondition, arms, lock_keys
from eventfold.store.paging import INT64_MAX
from eventfold.store.postgres.schema import MAX_EVENTS_PER_TRANSACTION

Outcome: TypeAlias = list[AppendResult] | BaseException
"""What one request ends with: its results (one per stream) or its error."""

INT32_MAX = 2**31 - 1
_EXPECTED_CODES = {ANY: -1, NO_STREAM: -2, STREAM_EXISTS: -3}


class Request:
    """One ``append_many`` call on its way through group commit."""

    __slots__ = ("appends", "size")

    def __init__(self, appends: list[StreamAppend]) -> None:
        self.appends = appends
        self.size = sum(len(a.events) for a in appends) or 1  # toward max_batch_events


def expected_code(expected: ExpectedVersion) -> int:
    if isinstance(expected, int):
        return min(expected, INT64_MAX)  # a version that large can never match
    return _EXPECTED_CODES[expected]


def check_limits(appends: list[StreamAppend]) -> None:
    check_event_limits([event for item in appends for event in item.events])


def check_event_limits(events: Sequence[NewEvent]) -> None:
    """What the columns and positions hold beyond the shared checks."""
    total = len(events)
    for event in events:
        if event.schema_version > INT32_MAX:
            raise InvalidArgument(
                f"{event.type}: schema_version must be < 2**31", argument="schema_version"
            )
    if total > MAX_EVENTS_PER_TRANSACTION:
        raise InvalidArgument(
            f"at most {MAX_EVENTS_PER_TRANSACTION} events per append, got {total}",
            argument="events",
        )


def _text(raw: bytes | bytearray | memoryview, what: str, event_type: str) -> str:
    try:
        return bytes(raw).decode()
    except UnicodeDecodeError:
        raise InvalidArgument(f"{event_type}: {what} is not UTF-8", argument=what) from None


def _ints(values: list[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _escape_joined(joined: str) -> str:
    """Elements joined by NUL to a text[] literal: each element quoted, with
    backslashes and quotes escaped, in a few passes over the whole string."""
    if "\\" in joined:
        joined = joined.replace("\\", "\\\\")
    if '"' in joined:
        joined = joined.replace('"', '\\"')
    return '{"' + joined.replace("\x00", '","') + '"}'


def _texts(values: list[str]) -> str:
    """A text[] literal. Elements are joined with NUL, which none holds
    (PostgreSQL text cannot), and escaped at once; if one does hold a NUL,
    element by element."""
    if not values:
        return "{}"
    joined = "\x00".join(values)
    if joined.count("\x00") != len(values) - 1:
        return "{" + ",".join(map(_quoted, values)) + "}"
    return _escape_joined(joined)


def _payloads(events: Sequence[NewEvent], what: str) -> str:
    """The ``data`` or ``metadata`` of ``events`` as a text[] literal, decoded
    from UTF-8 in one step (element by element to name a bad one)."""
    if not events:
        return "{}"
    raws = [getattr(event, what) for event in events]
    try:
        joined: str | None = b"\x00".join(raws).decode()
    except (UnicodeDecodeError, TypeError):
        joined = None
    if joined is None or joined.count("\x00") != len(raws) - 1:
        return _texts([_text(raw, what, e.type) for e, raw in zip(events, raws, strict=True)])
    return _escape_joined(joined)


def _tags(events: Sequence[NewEvent]) -> str | None:
    """Each event's tags joined by spaces ('' for none), as a text[] literal
    (tags hold no whitespace, so the append functions split them back); None
    (SQL NULL) if no event has tags: the functions then take '' for each."""
    if not any(event.tags for event in events):
        return None
    return _texts([" ".join(event.tags) for event in events])


def _key(text: str) -> int:
    """A lock key's second int4: a stable 32-bit hash of its text. Two keys
    with one hash only make their writers wait for each other needlessly."""
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def lock_arguments(events: Iterable[NewEvent], condition: AppendCondition | None) -> list[str]:
    """The DCB lock keys of an append (``eventfold.store.dcb.lock_keys``) as
    the ``lk_keys`` and ``lk_modes`` arguments."""
    return lock_arguments_of([(events, condition)])


def lock_arguments_of(
    appends: Iterable[tuple[Iterable[NewEvent], AppendCondition | None]],
) -> list[str]:
    """The lock keys of several appends made in one transaction: hashed,
    sorted by hash (the one order every append takes them in), each in the
    strongest mode any append needs it in."""
    modes: dict[int, bool] = {}
    for events, condition in appends:
        keys, exclusive = lock_keys(events, condition)
        for key, mode in zip(keys, exclusive, strict=True):
            hashed = _key(key)
            modes[hashed] = modes.get(hashed, False) or mode
    order = sorted(modes)
    return [_ints(order), "{" + ",".join("t" if modes[k] else "f" for k in order) + "}"]


class EventsRequest:
    """One DCB append (``append_events``) on its way through group commit."""

    __slots__ = ("condition", "events", "size")

    def __init__(self, events: list[NewEvent], condition: AppendCondition | None) -> None:
        self.events = events
        self.condition = condition
        self.size = len(events)


def encode_events(requests: Sequence[EventsRequest], channel: str | None) -> list[Any]:
    """The arguments of ``append_events``: a group of DCB appends, their
    conditions as index scans, and the lock keys of them all."""
    rq_count: list[int] = []
    rq_arms: list[int] = []
    rq_check: list[str] = []
    rq_all: list[str] = []
    rq_after: list[int] = []
    events: list[NewEvent] = []
    scans = []
    for request in requests:
        condition = request.condition
        mine = [] if condition is None or condition.query.match_all else arms(condition.query)
        rq_count.append(len(request.events))
        rq_arms.append(len(mine))
        rq_check.append("f" if condition is None else "t")
        rq_all.append("t" if condition is not None and condition.query.match_all else "f")
        after = -1 if condition is None or condition.after is None else condition.after
        rq_after.append(min(after, INT64_MAX))
        events += request.events
        scans += mine
    keys = lock_arguments_of([(request.events, request.condition) for request in requests])
    return [
        _ints(rq_count),
        _ints(rq_arms),
        "{" + ",".join(rq_check) + "}",
        "{" + ",".join(rq_all) + "}",
        _ints(rq_after),
        "{" + ",".join([event.event_id.hex for event in events]) + "}",
        _texts([event.type for event in events]),
        _ints([event.schema_version for event in events]),
        _payloads(events, "data"),
        _payloads(events, "metadata"),
        _tags(events),
        _texts([arm.by for arm in scans]),
        _texts([arm.key for arm in scans]),
        _texts([" ".join(arm.types) for arm in scans]),
        _texts([" ".join(arm.tags) for arm in scans]),
        *keys,
        channel,
    ]


def encode(requests: Sequence[Request], channel: str | None) -> list[Any]:
    """The append function's arguments as array literals: building them here is
    several times cheaper than letting the driver adapt eleven Python lists."""
    slots: dict[str, int] = {}
    it_req: list[int] = []
    it_slot: list[int] = []
    it_expected: list[int] = []
    it_count: list[int] = []
    ev_id: list[str] = []
    ev_type: list[str] = []
    ev_schema: list[int] = []
    ev_all: list[NewEvent] = []
    for number, request in enumerate(requests):
        for item in request.appends:
            it_req.append(number)
            it_slot.append(slots.setdefault(item.stream_id, len(slots) + 1))
            it_expected.append(expected_code(item.expected_version))
            it_count.append(len(item.events))
            for event in item.events:
                ev_id.append(event.event_id.hex)  # uuid_in takes 32 hex digits
                ev_type.append(event.type)
                ev_schema.append(event.schema_version)
            ev_all += item.events
    return [
        _texts(list(slots)),
        _ints(it_req),
        _ints(it_slot),
        _ints(it_expected),
        _ints(it_count),
        "{" + ",".join(ev_id) + "}",
        _texts(ev_type),
        _ints(ev_schema),
        _payloads(ev_all, "data"),
        _payloads(ev_all, "metadata"),
        _tags(ev_all),
        *lock_arguments(ev_all, None),
        channel,
    ]


def encode_one(request: Request, channel: str | None) -> list[str | int | None]:
    """The arguments of ``append_one`` for a request to one stream."""
    (item,) = request.appends
    events = item.events
    return [
        item.stream_id,
        expected_code(item.expected_version),
        "{" + ",".join([event.event_id.hex for event in events]) + "}",
        _texts([event.type for event in events]),
        _ints([event.schema_version for event in events]),
        _payloads(events, "data"),
        _payloads(events, "metadata"),
        _tags(events),
        *lock_arguments(events, None),
        channel,
    ]


def decode(batch: Sequence[Request], rows: list[tuple[Any, ...]]) -> list[Outcome | None]:
    """Per request: its results, the error, or None when some of its event ids
    are already stored (the caller settles that)."""
    items: list[tuple[int, StreamAppend]] = [
        (number, item) for number, request in enumerate(batch) for item in request.appends
    ]
    if len(rows) != len(items):
        error = StoreError(f"append returned {len(rows)} rows for {len(items)} streams")
        return [error for _ in batch]
    results: list[list[AppendResult]] = [[] for _ in batch]
    outcomes: list[Outcome | None] = [None] * len(batch)
    replays: set[int] = set()
    failures: dict[int, BaseException] = {}
    for (number, item), (index, status, version, position) in zip(items, rows, strict=True):
        del index
        if status == 0:
            results[number].append(AppendResult(item.stream_id, int(version), int(position)))
        elif status == 1:
            try:
                check_expected(item.stream_id, item.expected_version, int(version))
            except WrongExpectedVersion as exc:
                failures[number] = exc
            else:  # pragma: no cover - the function and check_expected disagree
                failures[number] = StoreError(
                    f"stream {item.stream_id!r}: version check disagreement at {version}"
                )
        elif status == 2:
            replays.add(number)
        elif status == 4:
            failures[number] = StreamDeleted(item.stream_id)
    for number in range(len(batch)):
        if number in replays:
            continue
        outcomes[number] = failures.get(number, results[number])
    return outcomes


def _json_value(text: JsonText) -> Any:
    return json.loads(text, parse_float=decimal.Decimal, parse_int=decimal.Decimal)


def as_stored(item: StreamAppend, stored: dict[uuid.UUID, RecordedEvent]) -> StreamAppend:
    """``item`` with each payload replaced by its stored text when the two are
    equal as jsonb sees them (numbers compared as exact decimals: jsonb keeps
    6.956079313940438e16 as 69560793139404380, and reads it back so), so that
    a retry is recognised as one."""
    events: list[NewEvent] = []
    changed = False
    for event in item.events:
        record = stored.get(event.event_id)
        if record is not None and record.data != event.data:
            try:
                same = _json_value(record.data) == _json_value(event.data)
            except ValueError:
                same = False
            if same:
                data = record.data.encode() if isinstance(record.data, str) else record.data
                event = msgspec.structs.replace(event, data=data)
                changed = True
        events.append(event)
    return msgspec.structs.replace(item, events=events) if changed else item


def shares_event_ids(requests: Sequence[Request]) -> bool:
    """Two requests of a group carry the same event id (the group then runs one
    request at a time, so that the second one sees the first as stored)."""
    seen: set[uuid.UUID] = set()
    total = 0
    for request in requests:
        for item in request.appends:
            total += len(item.events)
            seen.update(event.event_id for event in item.events)
    return len(seen) != total
