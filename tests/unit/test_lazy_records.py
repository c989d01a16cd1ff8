"""Lazy records and envelopes: the SQL stores' records keep the event id and
time as stored until read, and envelopes their metadata too; each is decoded
once, on first read, and a record or envelope is equal to (and hashes like)
the plain one with the same values, tags included, prints like it, pickles,
copies and replaces like it. A damaged stored value is a typed error when it
is read."""

from __future__ import annotations

import asyncio
import copy
import pickle
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

import eventfold
from eventfold import Codec, Envelope, EventRegistry, Metadata
from eventfold.errors import SerializationError, StoreError
from eventfold.serialization.envelopes import LazyEnvelope
from eventfold.serialization.envelopes import materialized as plain_envelope
from eventfold.store.api import RecordedEvent
from eventfold.store.dcb import Query, QueryItem
from eventfold.store.lazy import EVENT_ID, RECORDED_AT, StoredEvent, materialized, time_of

registry = EventRegistry()


@registry.register("Rang")
class Rang(msgspec.Struct, frozen=True):
    n: int


codec = Codec(registry)
ID = uuid.UUID("0192a6a4-5b1c-7d2e-8f30-4a5b6c7d8e9f")
MICROS = 1_764_770_000_123_456  # 2025-12-03 13:53:20.123456 UTC
WHEN = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=MICROS)
TAGS = ("bell:1", "tower:north")


def stored(**overrides: Any) -> StoredEvent:
    fields: dict[str, Any] = {
        "stream_id": "bell-1",
        "version": 3,
        "position": 9,
        "event_id": ID.bytes,
        "type": "Rang",
        "schema_version": 1,
        "data": b'{"n":3}',
        "metadata": b'{"actor":"ana","correlation_id":"c-1"}',
        "recorded_at": MICROS,
        "tags": TAGS,
    }
    return StoredEvent(**(fields | overrides))


def plain() -> RecordedEvent:
    return RecordedEvent(
        "bell-1",
        3,
        9,
        ID,
        "Rang",
        1,
        b'{"n":3}',
        b'{"actor":"ana","correlation_id":"c-1"}',
        WHEN,
        TAGS,
    )


def test_fields_are_decoded_on_first_read_and_once() -> None:
    record = stored()
    assert type(EVENT_ID.__get__(record)) is bytes and type(RECORDED_AT.__get__(record)) is int
    assert record.event_id == ID and record.recorded_at == WHEN
    assert record.recorded_at.tzinfo is UTC
    assert record.event_id is record.event_id  # remembered, not decoded again
    assert EVENT_ID.__get__(record) is record.event_id


def test_a_stored_record_is_a_recorded_event_to_everything_that_reads_attributes() -> None:
    record, same = stored(), plain()
    assert isinstance(record, RecordedEvent)
    assert record == same and same == record
    assert (record != same) is False
    assert hash(record) == hash(same) and len({record, same}) == 1
    assert repr(stored()) == repr(same)
    assert pickle.loads(pickle.dumps(stored())) == same
    assert copy.copy(stored()) == same and copy.deepcopy(stored()) == same
    assert msgspec.structs.replace(stored(), version=4) == msgspec.structs.replace(same, version=4)
    assert stored() != stored(version=4) and stored() != "bell-1"
    # The tags are a field like any other: compared, hashed, printed, kept.
    untagged = msgspec.structs.replace(same, tags=())
    assert stored() != untagged and untagged != stored()
    assert stored(tags=()) == untagged and hash(stored(tags=())) == hash(untagged)
    assert hash(stored()) != hash(untagged) and len({stored(), untagged}) == 2
    assert repr(stored()) != repr(untagged) and "tower:north" in repr(stored())
    assert materialized(stored()).tags == TAGS
    assert pickle.loads(pickle.dumps(stored())).tags == TAGS
    # What reads slots (msgspec encoding) gets the plain record from materialized().
    assert msgspec.json.encode(materialized(stored())) == msgspec.json.encode(same)
    assert materialized(same) is same


def test_times_from_either_backend_are_exact() -> None:
    pg_form = ((WHEN - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)).to_bytes(
        8, "big", signed=True
    )
    assert time_of(pg_form) == WHEN == time_of(MICROS) == time_of(WHEN)
    assert stored(recorded_at=pg_form).recorded_at == WHEN


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("event_id", b"\x01\x02", "a stored event id cannot be read"),
        ("event_id", "not an id", "a stored event id cannot be read"),
        ("recorded_at", "noon", "a stored event time cannot be read"),
        ("recorded_at", 10**30, "a stored event time cannot be read"),
    ],
)
def test_a_damaged_stored_value_is_a_store_error_when_read(
    field: str, value: Any, error: str
) -> None:
    record = stored(**{field: value})
    assert record.type == "Rang" and record.data == b'{"n":3}'  # the rest reads fine
    with pytest.raises(StoreError, match=f"'bell-1' version 3: {error}"):
        getattr(record, field)


def test_envelopes_decode_metadata_id_and_time_when_read() -> None:
    envelope = codec.decode(stored())
    assert isinstance(envelope, LazyEnvelope) and isinstance(envelope, Envelope)
    assert envelope.event == Rang(3)
    # Nothing but the event was decoded yet.
    assert type(Envelope.__dict__["metadata"].__get__(envelope)) is bytes
    assert type(Envelope.__dict__["event_id"].__get__(envelope)) is bytes
    assert envelope.metadata == Metadata(correlation_id="c-1", actor="ana")
    assert envelope.metadata is envelope.metadata
    assert envelope.event_id == ID and envelope.recorded_at == WHEN
    same = codec.decode(plain())
    assert envelope == same and repr(envelope) == repr(same)
    assert envelope.tags == TAGS and "tower:north" in repr(envelope)
    assert envelope != codec.decode(stored(tags=("bell:1",)))
    assert codec.decode(stored(tags=())) == codec.decode(msgspec.structs.replace(plain(), tags=()))
    assert plain_envelope(envelope).tags == TAGS
    for unhashable in (envelope, same):  # Metadata holds a dict: neither hashes
        with pytest.raises(TypeError):
            hash(unhashable)
    assert codec.decode(stored()) == plain_envelope(codec.decode(plain()))
    assert msgspec.json.encode(plain_envelope(codec.decode(stored()))) == msgspec.json.encode(
        plain_envelope(same)
    )


def test_bad_metadata_is_a_serialization_error_when_read() -> None:
    envelope = codec.decode(stored(metadata=b'{"actor": 5}'))
    assert envelope.event == Rang(3)
    with pytest.raises(SerializationError, match="metadata of Rang"):
        envelope.metadata  # noqa: B018


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_the_sql_stores_read_records_that_decode_nothing_until_asked(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'e.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    async with eventfold.connect(url) as store:
        written = [codec.encode(Rang(n), Metadata(actor="ana")) for n in range(3)]
        await store.append("bell-1", written)
        for records in (
            [r async for r in store.read_stream("bell-1")],
            [r async for r in store.read_all()],
        ):
            assert [type(r) for r in records] == [StoredEvent] * 3
            assert all(type(EVENT_ID.__get__(r)) is bytes for r in records)
            assert [r.event_id for r in records] == [e.event_id for e in written]
            assert all(
                abs(r.recorded_at - datetime.now(UTC)) < timedelta(minutes=5) for r in records
            )
            envelopes = [codec.decode(r) for r in records]
            assert [e.metadata.actor for e in envelopes] == ["ana"] * 3


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_the_sql_stores_lazy_records_and_envelopes_carry_their_tags(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'e.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    async with eventfold.connect(url) as store:
        written = [
            msgspec.structs.replace(codec.encode(Rang(n)), tags=tags)
            for n, tags in enumerate([TAGS, (), ("bell:1",)])
        ]
        await store.append("bell-1", written)
        expected = [TAGS, (), ("bell:1",)]

        def check(records: list[RecordedEvent], tags: list[tuple[str, ...]]) -> None:
            assert [type(r) for r in records] == [StoredEvent] * len(tags)
            assert [r.tags for r in records] == tags
            assert [materialized(r).tags for r in records] == tags
            envelopes = [codec.decode(r) for r in records]
            assert all(type(e) is LazyEnvelope for e in envelopes)
            assert [e.tags for e in envelopes] == tags
            assert [plain_envelope(e).tags for e in envelopes] == tags

        check([r async for r in store.read_stream("bell-1")], expected)
        check([r async for r in store.read_stream("bell-1", backwards=True)], expected[::-1])
        check([r async for r in store.read_all()], expected)
        check([r async for r in store.read(Query.all())], expected)
        by_tag = Query.of(QueryItem(tags=("bell:1",)))
        check([r async for r in store.read(by_tag)], [TAGS, ("bell:1",)])
        check([r async for r in store.read(by_tag, backwards=True)], [("bell:1",), TAGS])

        # Small reads at once (on PostgreSQL they share statements): the same tags.
        async def read() -> list[RecordedEvent]:
            return [r async for r in store.read_stream("bell-1", limit=10)]

        for _ in range(20):
            for records in await asyncio.gather(*(read() for _ in range(14))):
                check(records, expected)
            if backend == "sqlite" or store._pages.statements > 0:  # type: ignore[attr-defined]
                break
        if backend == "postgres":
            assert store._pages.statements > 0  # type: ignore[attr-defined]
