"""Envelopes that decode their metadata, event id and time only when read.

``Codec.decode`` builds a ``LazyEnvelope``: the event is decoded at once,
while ``metadata`` (a JSON object as stored), ``event_id`` and
``recorded_at`` (as the store keeps them, see ``eventfold.store.lazy``)
are decoded the first time they are read, once. A projection handler that
looks only at the event and its stream pays for nothing else.

Like ``StoredEvent`` it is an ``Envelope`` to everything that reads its
attributes (``==``, ``hash`` and ``repr`` included); code that reads a
struct's slots directly (``msgspec`` encoding) gets ``materialized(envelope)``.
A malformed metadata object raises ``SerializationError`` when read.
"""

from __future__ import annotations

import operator
import uuid
from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec

from eventfold.domain.events import Envelope, Metadata
from eventfold.errors import SerializationError
from eventfold.store.checks import NOT_JSON
from eventfold.store.lazy import time_of, uuid_of

E = TypeVar("E")

EMPTY_METADATA = Metadata()
NO_METADATA = (b"{}", "{}")
_KNOWN_KEYS = ("correlation_id", "causation_id", "actor", "occurred_at")

_ID: Any = Envelope.__dict__["event_id"]
_METADATA: Any = Envelope.__dict__["metadata"]
_AT: Any = Envelope.__dict__["recorded_at"]


def metadata_of(raw: bytes | str, type_name: str) -> Metadata:
    """Stored metadata (a JSON object) as ``Metadata``; keys it does not
    know go to ``extra``. ``SerializationError`` if it is not one."""
    if raw in NO_METADATA:
        return EMPTY_METADATA
    try:
        data = msgspec.json.decode(raw, type=dict[str, Any])
    except NOT_JSON as exc:
        raise SerializationError(f"metadata of {type_name}: {exc}", event_type=type_name) from None
    known: dict[str, Any] = {k: data.pop(k) for k in _KNOWN_KEYS if k in data}
    nested = data.pop("extra", {})
    extra: dict[str, Any] = nested if isinstance(nested, dict) else {"extra": nested}
    extra.update(data)
    try:
        known["extra"] = extra
        return msgspec.convert(known, Metadata)
    except msgspec.ValidationError as exc:
        raise SerializationError(f"metadata of {type_name}: {exc}", event_type=type_name) from None


class LazyEnvelope(Envelope[E], Generic[E], frozen=True):
    """An ``Envelope`` whose ``metadata``, ``event_id`` and ``recorded_at``
    are decoded from their stored form when first read."""

    @property  # type: ignore[misc]
    def metadata(self) -> Metadata:
        stored = _METADATA.__get__(self)
        if type(stored) is not Metadata:
            stored = metadata_of(stored, self.type)
            _METADATA.__set__(self, stored)
        return stored

    @property  # type: ignore[misc]
    def event_id(self) -> uuid.UUID:
        stored = _ID.__get__(self)
        if type(stored) is not uuid.UUID:
            stored = uuid_of(stored)
            _ID.__set__(self, stored)
        return stored

    @property  # type: ignore[misc]
    def recorded_at(self) -> datetime:
        stored = _AT.__get__(self)
        if type(stored) is not datetime:
            stored = time_of(stored)
            _AT.__set__(self, stored)
        return stored

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return _fields(self) == _fields(other)

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return _fields(self) != _fields(other)

    def __hash__(self) -> int:
        return hash(materialized(self))

    def __repr__(self) -> str:
        return repr(materialized(self))

    def __rich_repr__(self) -> Any:
        return materialized(self).__rich_repr__()


_ATTRIBUTES = operator.attrgetter(*Envelope.__struct_fields__)


def _fields(envelope: Envelope[Any]) -> tuple[Any, ...]:
    """Every field of ``envelope`` as its attributes give it, in order."""
    fields: tuple[Any, ...] = _ATTRIBUTES(envelope)
    return fields


def materialized(envelope: Envelope[E]) -> Envelope[E]:
    """``envelope`` as a plain ``Envelope``, every field decoded: for code
    that reads a struct's slots rather than its attributes (``msgspec``
    encoding)."""
    if type(envelope) is Envelope:
        return envelope
    return Envelope(*_fields(envelope))
