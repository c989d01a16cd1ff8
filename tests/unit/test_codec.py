"""Codec round trips (hypothesis), registration rules and decoding errors."""

import dataclasses
import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any, Literal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventfold import (
    Codec,
    EventRegistry,
    Metadata,
    RawEvent,
    RecordedEvent,
    SerializationError,
    UnknownEventType,
)
from eventfold.errors import RegistrationError


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Line(msgspec.Struct, frozen=True):
    sku: str
    qty: int


class Everything(msgspec.Struct, frozen=True):
    i: int
    f: float
    s: str
    b: bool
    none: None
    raw: bytes
    when: dt.datetime
    day: dt.date
    clock: dt.time
    span: dt.timedelta
    ident: uuid.UUID
    money: Decimal
    colour: Colour
    mode: Literal["fast", "safe"]
    items: list[int]
    pair: tuple[str, int]
    tags: frozenset[str]
    lookup: dict[str, float]
    nested: Line
    maybe: Line | None = None


@dataclasses.dataclass(frozen=True)
class Shipped:
    order_id: str
    at: dt.datetime
    lines: list[Line]


registry = EventRegistry()
registry.add(Everything, "Everything")
registry.add(Shipped, "OrderShipped", version=1)
codec = Codec(registry)

finite = st.floats(allow_nan=False, allow_infinity=False)
text = st.text(max_size=50)
aware = st.datetimes(timezones=st.just(dt.UTC))

everything = st.builds(
    Everything,
    i=st.integers(min_value=-(2**63), max_value=2**64 - 1),
    f=finite,
    s=text,
    b=st.booleans(),
    none=st.none(),
    raw=st.binary(max_size=50),
    when=aware,
    day=st.dates(),
    clock=st.times(),
    span=st.timedeltas(),
    ident=st.uuids(),
    money=st.decimals(allow_nan=False, allow_infinity=False),
    colour=st.sampled_from(Colour),
    mode=st.sampled_from(["fast", "safe"]),
    items=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=10),
    pair=st.tuples(text, st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    tags=st.frozensets(text, max_size=5),
    lookup=st.dictionaries(text, finite, max_size=5),
    nested=st.builds(Line, sku=text, qty=st.integers(min_value=0, max_value=10**9)),
    maybe=st.none() | st.builds(Line, sku=text, qty=st.integers(min_value=0, max_value=10)),
)


def as_record(new: Any, *, stream: str = "x-1", version: int = 1) -> RecordedEvent:
    return RecordedEvent(
        stream_id=stream,
        version=version,
        position=version,
        event_id=new.event_id,
        type=new.type,
        schema_version=new.schema_version,
        data=new.data,
        metadata=new.metadata,
        recorded_at=dt.datetime.now(dt.UTC),
    )


@given(everything)
def test_every_supported_field_type_round_trips(event: Everything) -> None:
    new = codec.encode(event)
    assert new.type == "Everything"
    assert codec.decode_event(as_record(new)) == event


@given(
    st.builds(
        Shipped,
        order_id=text,
        at=aware,
        lines=st.lists(st.builds(Line, sku=text, qty=st.integers(0, 100)), max_size=5),
    )
)
def test_dataclass_events_round_trip(event: Shipped) -> None:
    new = codec.encode(event)
    assert new.type == "OrderShipped"
    assert codec.decode_event(as_record(new)) == event


@given(
    st.builds(
        Metadata,
        correlation_id=st.none() | text,
        causation_id=st.none() | text,
        actor=st.none() | text,
        extra=st.dictionaries(text.filter(lambda k: k not in {"extra"}), st.integers() | text),
    )
)
def test_metadata_round_trips(meta: Metadata) -> None:
    line = Line("a", 1)
    reg = EventRegistry()
    reg.add(Line)
    new = Codec(reg).encode(line, meta)
    assert Codec(reg).decode(as_record(new)).metadata == meta


def test_metadata_keys_from_other_writers_land_in_extra() -> None:
    reg = EventRegistry()
    reg.add(Line)
    new = Codec(reg).encode(Line("a", 1))
    record = msgspec.structs.replace(
        as_record(new), metadata=b'{"actor": "ana", "tenant": "t1", "extra": {"reason": "r"}}'
    )
    meta = Codec(reg).decode(record).metadata
    assert meta.actor == "ana"
    assert meta.extra == {"tenant": "t1", "reason": "r"}


def test_envelope_carries_the_record_fields() -> None:
    new = codec.encode(Shipped("o-1", dt.datetime.now(dt.UTC), []), Metadata(actor="bo"))
    record = as_record(new, stream="order-1", version=7)
    env = codec.decode(record)
    assert (env.stream_id, env.version, env.position, env.type) == ("order-1", 7, 7, "OrderShipped")
    assert env.event_id == new.event_id
    assert env.metadata.actor == "bo"
    assert env.recorded_at == record.recorded_at


def test_unknown_type_names_the_type_or_returns_the_raw_record() -> None:
    record = RecordedEvent(
        "order-1", 3, 9, uuid.uuid4(), "Vanished", 1, b'{"a": 1}', b"{}", dt.datetime.now(dt.UTC)
    )
    with pytest.raises(UnknownEventType) as info:
        codec.decode(record)
    assert info.value.event_type == "Vanished"
    assert (info.value.stream_id, info.value.version) == ("order-1", 3)
    assert "Vanished" in str(info.value)
    env = codec.decode(record, unknown="raw")
    assert env.event == RawEvent(record)


def test_unencodable_data_is_a_serialization_error() -> None:
    @dataclasses.dataclass
    class Holder:
        thing: Any

    reg = EventRegistry()
    reg.add(Holder)
    with pytest.raises(SerializationError) as info:
        Codec(reg).encode(Holder(object()))
    assert info.value.event_type == "Holder"
    with pytest.raises(SerializationError):
        Codec(reg).encode(Holder({1, object()}))
    with pytest.raises(SerializationError):
        Codec(reg).encode(Holder(1), Metadata(extra={"bad": object()}))


def test_unregistered_class_cannot_be_encoded() -> None:
    with pytest.raises(UnknownEventType):
        codec.encode(Line("a", 1))


def test_array_like_structs_are_refused() -> None:
    class Packed(msgspec.Struct, array_like=True):
        a: int

    reg = EventRegistry()
    reg.add(Packed)
    with pytest.raises(SerializationError):
        Codec(reg).encode(Packed(1))


def test_stored_payload_that_does_not_fit_is_a_serialization_error() -> None:
    record = RecordedEvent(
        "o-1",
        1,
        1,
        uuid.uuid4(),
        "OrderShipped",
        1,
        b'{"order_id": 5}',
        b"{}",
        dt.datetime.now(dt.UTC),
    )
    for decode in (codec.decode_event, codec.decode):
        with pytest.raises(SerializationError) as info:
            decode(record)
        assert info.value.event_type == "OrderShipped"
        assert "'o-1' version 1" in str(info.value)


def test_stored_bytes_that_are_not_utf8_are_a_serialization_error() -> None:
    def record(data: bytes, metadata: bytes = b"{}", schema_version: int = 1) -> RecordedEvent:
        now = dt.datetime.now(dt.UTC)
        return RecordedEvent(
            "o-1", 1, 1, uuid.uuid4(), "OrderShipped", schema_version, data, metadata, now
        )

    bad = b'{"order_id": "\xc3("}'
    for decode in (codec.decode_event, codec.decode):
        with pytest.raises(SerializationError):
            decode(record(bad))
    with pytest.raises(SerializationError):
        codec.decode(record(b'{"order_id": "o-1"}', metadata=b'{"actor": "\xff"}'))


def test_registration_rules() -> None:
    reg = EventRegistry()
    reg.add(Line, "LineAdded")
    with pytest.raises(RegistrationError):
        reg.add(Line, "Again")

    class Other(msgspec.Struct):
        x: int

    with pytest.raises(RegistrationError):
        reg.add(Other, "LineAdded")
    with pytest.raises(RegistrationError):
        reg.add(dict)
    with pytest.raises(RegistrationError):
        reg.add(Other, version=0)
    with pytest.raises(Exception, match="invalid event type name"):
        reg.add(Other, "has space")
    assert reg.names == ["LineAdded"]
    assert Line in reg and "LineAdded" in reg
