"""How a recorded event travels on the bus.

The body is one JSON object with every field of the ``RecordedEvent``; its
``data`` and ``metadata`` are embedded as they are stored (JSON objects, not
strings), ``tags`` only when the event has some. An event appended without
a stream (DCB) travels with ``stream_id`` ``""`` and its position as version.
Headers: ``Nats-Msg-Id`` is the event id (so the bus drops a re-publish),
``Eventfold-Position`` the event's global position (so a relay can tell
from the stream's last message how far it got)."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from eventfold.errors import InvalidArgument, PoisonMessage
from eventfold.messaging.api import MSG_ID, Message
from eventfold.messaging.topology import Topology
from eventfold.store.api import NO_STREAM_ID, RecordedEvent
from eventfold.store.checks import NOT_JSON, validate_stream_id, validate_tags

POSITION = "Eventfold-Position"


class _Wire(msgspec.Struct, frozen=True, omit_defaults=True):
    stream_id: str
    version: int
    position: int
    event_id: uuid.UUID
    type: str
    schema_version: int
    recorded_at: datetime
    data: msgspec.Raw
    metadata: msgspec.Raw
    tags: tuple[str, ...] = ()


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Wire)


def _raw(text: bytes | str) -> msgspec.Raw:
    return msgspec.Raw(text.encode() if isinstance(text, str) else text)


def event_message(topology: Topology, record: RecordedEvent) -> Message:
    """The message carrying ``record``."""
    body = _encoder.encode(
        _Wire(
            record.stream_id,
            record.version,
            record.position,
            record.event_id,
            record.type,
            record.schema_version,
            record.recorded_at,
            _raw(record.data),
            _raw(record.metadata),
            tuple(record.tags),
        )
    )
    event_id = str(record.event_id)
    return Message(
        subject=topology.event_subject(record.stream_id, record.type),
        data=body,
        headers={POSITION: str(record.position)},
        msg_id=event_id,
    )


def _is_object(raw: msgspec.Raw) -> bool:
    return bytes(raw).lstrip()[:1] == b"{"


def decode_event(data: bytes, headers: dict[str, str] | None = None) -> RecordedEvent:
    """The event a message carries; ``PoisonMessage`` with the reason if it
    carries none (not JSON, missing or mistyped fields, an id that disagrees
    with its ``Nats-Msg-Id`` …)."""
    try:
        wire = _decoder.decode(data)
    except NOT_JSON as exc:
        raise PoisonMessage(f"not an event: {exc}") from None
    try:
        if wire.stream_id != NO_STREAM_ID:
            validate_stream_id(wire.stream_id)
        validate_tags(wire.tags)
    except InvalidArgument as exc:
        raise PoisonMessage(str(exc)) from None
    if wire.stream_id == NO_STREAM_ID and wire.version != wire.position:
        raise PoisonMessage("an event without a stream has its position as its version")
    if wire.version < 1 or wire.position < 1 or wire.schema_version < 1:
        raise PoisonMessage("version, position and schema_version must be >= 1")
    if wire.recorded_at.tzinfo is None:
        raise PoisonMessage("recorded_at has no time zone")
    if not (_is_object(wire.data) and _is_object(wire.metadata)):
        raise PoisonMessage("data and metadata must be JSON objects")
    if headers is not None:
        msg_id = headers.get(MSG_ID)
        if msg_id is not None and msg_id != str(wire.event_id):
            raise PoisonMessage(f"{MSG_ID} {msg_id!r} is not the event id {wire.event_id}")
    return RecordedEvent(
        stream_id=wire.stream_id,
        version=wire.version,
        position=wire.position,
        event_id=wire.event_id,
        type=wire.type,
        schema_version=wire.schema_version,
        data=bytes(wire.data),
        metadata=bytes(wire.metadata),
        recorded_at=wire.recorded_at,
        tags=wire.tags,
    )


def position_of(headers: dict[str, str]) -> int | None:
    """The ``Eventfold-Position`` header as an int (None if absent or malformed)."""
    value = headers.get(POSITION)
    if value is None or not value.isdigit():
        return None
    return int(value)
