"""Typed events <-> store records, with msgspec on both sides."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import msgspec

from eventfold.domain.clocks import check_not_ahead
from eventfold.domain.events import Envelope, EventRegistry, Metadata
from eventfold.errors import SerializationError, UnknownEventType
from eventfold.serialization.envelopes import (
    EMPTY_METADATA,
    NO_METADATA,
    LazyEnvelope,
    metadata_of,
)
from eventfold.serialization.roundtrip import check_round_trip
from eventfold.serialization.upcasting import upcast
from eventfold.store.api import JsonText, NewEvent, RecordedEvent
from eventfold.store.checks import NOT_JSON
from eventfold.store.ids import new_event_id
from eventfold.store.payloads import depth_error

_encoder = msgspec.json.Encoder()
_astuple = msgspec.structs.astuple
_metadata_decoder = msgspec.json.Decoder(Metadata)


class RawEvent(msgspec.Struct, frozen=True):
    """What ``decode(..., unknown="raw")`` puts in an envelope for a type name
    that is not registered: the stored record itself."""

    record: RecordedEvent


class Codec:
    """Encodes registered event objects into ``NewEvent`` and decodes
    ``RecordedEvent`` back into them, upcasting older shapes."""

    def __init__(self, registry: EventRegistry) -> None:
        self.registry = registry
        self._entry = registry.entries.get
        # A subclass that overrides decode_fields decodes its own way.
        self._plain = type(self).decode_fields is Codec.decode_fields

    def encode(
        self,
        event: Any,
        metadata: Metadata | None = None,
        *,
        event_id: uuid.UUID | None = None,
    ) -> NewEvent:
        """``event`` as a ``NewEvent``. Raises InvalidPayload for a value that
        would not read back as given (NaN or Infinity, bytes under a field
        typed ``Any`` …) or that nests deeper than ``MAX_JSON_DEPTH``, and
        SerializationError for one msgspec cannot encode at all."""
        entry = self.registry.of_class(type(event))
        data = _encode(event, "data", entry.name)
        if not data.startswith(b"{"):
            raise SerializationError(
                f"{entry.name}: an event must encode to a JSON object, not {data[:20]!r}",
                event_type=entry.name,
            )
        check_round_trip(event, data, entry.decoder, "data", entry.name)
        if metadata is None:
            meta = b"{}"
        else:
            if metadata.occurred_at is not None:
                check_not_ahead(metadata.occurred_at)
            meta = _encode(metadata, "metadata", entry.name)
            if meta != b"{}":
                check_round_trip(metadata, meta, _metadata_decoder, "metadata", entry.name)
        return NewEvent(
            type=entry.name,
            data=data,
            metadata=meta,
            event_id=event_id or new_event_id(),
            schema_version=entry.version,
            tags=() if entry.tags is None else tuple(entry.tags(event)),
        )

    def decode_event(self, record: RecordedEvent) -> Any:
        """Only the event object: the fast path for folding a stream."""
        return self.decode_fields(
            record.stream_id, record.version, record.type, record.schema_version, record.data
        )

    def decode_fields(
        self, stream_id: str, version: int, type_name: str, schema_version: int, data: JsonText
    ) -> Any:
        """``decode_event`` from the fields it uses, without a record."""
        entry = self.registry.of_name(type_name)
        if entry is None:
            raise UnknownEventType(type_name, stream_id=stream_id, version=version)
        if schema_version == entry.version:
            try:
                return entry.decoder.decode(data)
            except NOT_JSON as exc:
                raise SerializationError(
                    f"{type_name} at {stream_id!r} version {version}: {exc}",
                    event_type=type_name,
                ) from None
        return upcast(self.registry, entry, schema_version, data)

    def plain_decoder(
        self, type_name: str, schema_version: int
    ) -> Callable[[JsonText], Any] | None:
        """The decoder of a registered type stored in its current shape (no
        upcasting needed), or None. It raises msgspec.DecodeError on bad data:
        ``decode_fields`` then gives the typed error."""
        if not self._plain:
            return None  # a subclass decodes its own way
        entry = self.registry.of_name(type_name)
        if entry is None or entry.version != schema_version:
            return None
        return entry.decoder.decode

    def decode(
        self, record: RecordedEvent, *, unknown: Literal["raise", "raw"] = "raise"
    ) -> Envelope[Any]:
        """The event with its envelope: a ``LazyEnvelope``, whose metadata,
        id and time are decoded when first read. With ``unknown="raw"`` an
        unregistered type gives a ``RawEvent`` instead of raising
        ``UnknownEventType``."""
        # The common case inline (a registered type in its current shape):
        # reading the log spends most of its Python time here. The fields
        # come as stored (astuple reads the slots), so nothing is decoded
        # that the envelope does not need yet.
        (
            stream_id,
            version,
            position,
            event_id,
            type_name,
            schema_version,
            data,
            metadata,
            at,
            tags,
        ) = _astuple(record)
        entry = self._entry(type_name)
        if entry is None:
            if unknown != "raw":
                raise UnknownEventType(type_name, stream_id=stream_id, version=version)
            event: Any = RawEvent(record)
        elif schema_version == entry.version and self._plain:
            try:
                event = entry.decoder.decode(data)
            except NOT_JSON:
                event = self.decode_event(record)  # raises the typed error
        else:
            event = self.decode_event(record)
        return LazyEnvelope(
            event,
            stream_id,
            version,
            position,
            event_id,
            type_name,
            schema_version,
            EMPTY_METADATA if metadata in NO_METADATA else metadata,
            at,
            tuple(tags),
        )


def _encode(value: Any, what: str, event_type: str) -> bytes:
    try:
        return _encoder.encode(value)
    except RecursionError:
        raise depth_error(what, event_type) from None
    except (TypeError, msgspec.EncodeError, OverflowError) as exc:
        label = "cannot encode" if what == "data" else f"cannot encode {what}"
        raise SerializationError(f"{event_type}: {label}: {exc}", event_type=event_type) from None


def decode_metadata(record: RecordedEvent) -> Metadata:
    """A record's metadata as ``Metadata`` (``SerializationError`` if it is
    not a JSON object of that shape)."""
    return metadata_of(record.metadata, record.type)


def occurred_at(record: RecordedEvent) -> datetime:
    """When a stored event happened: its metadata's ``occurred_at`` if the
    application gave one, else when it was recorded."""
    return decode_metadata(record).occurred_at or record.recorded_at
