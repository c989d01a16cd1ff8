"""Records that decode their event id and time only when they are read.

A reader of the log that needs only the type, payload and position of each
event (a projection, a fold, a count) should not pay for turning every
stored id into a ``uuid.UUID`` and every stored time into a ``datetime``.
``StoredEvent`` is the ``RecordedEvent`` the SQL stores return: it keeps
those two fields as the backend returns them (the id's 16 bytes, the time
as an int or PostgreSQL's 8 binary bytes) and decodes each the first time
it is read, once.

It is a ``RecordedEvent`` in every way code can see through its attributes:
``isinstance``, each field's value and type, ``==`` and ``hash`` (with any
``RecordedEvent`` of the same values), ``repr``, ``copy``, pickling and
``msgspec.structs.replace``. What reads a struct's slots directly instead
of its attributes (``msgspec`` encoding, ``msgspec.structs.asdict``) may see
a field not yet decoded: pass such code ``materialized(record)``.
"""

from __future__ import annotations

import operator
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from eventfold.errors import StoreError
from eventfold.store.api import RecordedEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_new_uuid = uuid.UUID.__new__
_set_uuid = object.__setattr__

# The slots of the two lazy fields: read and written here without the
# properties below (and past the frozen check, to remember a decoded value).
EVENT_ID: Any = RecordedEvent.__dict__["event_id"]
RECORDED_AT: Any = RecordedEvent.__dict__["recorded_at"]


def uuid_of(stored: object, where: str = "") -> uuid.UUID:
    """An event id as stored (16 bytes, or already a UUID) as a UUID;
    ``StoreError`` for anything else (a row this code did not write), its
    message starting with ``where``."""
    if type(stored) is bytes and len(stored) == 16:
        value = _new_uuid(uuid.UUID)
        _set_uuid(value, "int", int.from_bytes(stored, "big"))
        _set_uuid(value, "is_safe", uuid.SafeUUID.unknown)
        return value
    if isinstance(stored, uuid.UUID):
        return stored
    raise StoreError(f"{where}a stored event id cannot be read: {stored!r} is not a UUID")


def time_of(stored: object, where: str = "") -> datetime:
    """A time as stored (SQLite: microseconds since 1970 as an int;
    PostgreSQL: a ``timestamptz`` in its binary form, microseconds since
    2000 in 8 bytes; or already a datetime) as an aware UTC datetime, exact
    to the microsecond; ``StoreError`` for anything else."""
    try:
        if type(stored) is int:
            return _EPOCH + timedelta(microseconds=stored)
        if type(stored) is bytes and len(stored) == 8:
            return _PG_EPOCH + timedelta(microseconds=int.from_bytes(stored, "big", signed=True))
    except OverflowError:
        pass
    if isinstance(stored, datetime):
        return stored
    raise StoreError(f"{where}a stored event time cannot be read: {stored!r}")


def _where(record: RecordedEvent) -> str:
    return f"{record.stream_id!r} version {record.version}: "


class StoredEvent(RecordedEvent, frozen=True, gc=False):
    """A ``RecordedEvent`` whose ``event_id`` and ``recorded_at`` are decoded
    from their stored form when first read. Built by the SQL stores with
    ``StoredEvent(stream_id, version, position, id_bytes, type,
    schema_version, data, metadata, recorded_micros, tags)``."""

    @property  # type: ignore[misc]
    def event_id(self) -> uuid.UUID:
        """The id, decoded on first read: ``StoreError`` if the stored value
        is not one (a row this code did not write)."""
        stored = EVENT_ID.__get__(self)
        if type(stored) is not uuid.UUID:
            stored = uuid_of(stored, _where(self))
            EVENT_ID.__set__(self, stored)
        return stored

    @property  # type: ignore[misc]
    def recorded_at(self) -> datetime:
        """The time, decoded on first read (``StoreError`` as for the id)."""
        stored = RECORDED_AT.__get__(self)
        if type(stored) is not datetime:
            stored = time_of(stored, _where(self))
            RECORDED_AT.__set__(self, stored)
        return stored

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordedEvent):
            return NotImplemented
        return fields_of(self) == fields_of(other)

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, RecordedEvent):
            return NotImplemented
        return fields_of(self) != fields_of(other)

    def __hash__(self) -> int:
        return hash(materialized(self))

    def __repr__(self) -> str:
        return repr(materialized(self))

    def __rich_repr__(self) -> Any:
        return materialized(self).__rich_repr__()


_ATTRIBUTES = operator.attrgetter(*RecordedEvent.__struct_fields__)


def fields_of(record: RecordedEvent) -> tuple[Any, ...]:
    """Every field of ``record`` as its attributes give it, in order (read
    through the attributes, so the lazy ones are decoded)."""
    fields: tuple[Any, ...] = _ATTRIBUTES(record)
    return fields


def materialized(record: RecordedEvent) -> RecordedEvent:
    """``record`` as a plain ``RecordedEvent``, every field decoded: for code
    that reads a struct's slots rather than its attributes (``msgspec``
    encoding)."""
    if type(record) is RecordedEvent:
        return record
    return RecordedEvent(*fields_of(record))
