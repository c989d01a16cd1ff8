"""Payloads that would not read back as written are refused before anything
is stored: numbers that are not finite, values whose type JSON would change,
nesting past MAX_JSON_DEPTH. On every backend, through the codec and as raw
JSON appends."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import msgspec
import pytest

from eventfold import Codec, EventRegistry, Metadata, NewEvent, connect
from eventfold.errors import InvalidArgument, InvalidPayload
from eventfold.store.payloads import MAX_JSON_DEPTH


class Priced(msgspec.Struct, frozen=True):
    sku: str
    price: float
    discount: float | None = None
    history: list[float] = []
    by_region: dict[str, float] = {}


class Loose(msgspec.Struct, frozen=True):
    anything: Any = None
    extra: dict[str, Any] = {}


class Counted(msgspec.Struct, frozen=True):
    quantity: int


@dataclasses.dataclass(frozen=True)
class Noted:
    note: Any


registry = EventRegistry()
registry.add(Priced)
registry.add(Loose)
registry.add(Counted)
registry.add(Noted)
codec = Codec(registry)


def nested(depth: int) -> Any:
    """A value whose JSON nests ``depth`` levels under the payload's object."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (Priced("a", float("nan")), "data.price"),
        (Priced("a", float("inf")), "data.price"),
        (Priced("a", -float("inf")), "data.price"),
        (Priced("a", 1.0, discount=float("nan")), "data.discount"),
        (Priced("a", 1.0, history=[1.0, float("inf")]), "data.history[1]"),
        (Priced("a", 1.0, by_region={"eu": float("-inf")}), "data.by_region.eu"),
        (Loose(anything={"x": [float("nan")]}), "data.anything.x[0]"),
        (Noted(float("nan")), "data.note"),
    ],
)
def test_numbers_that_are_not_finite_are_refused_naming_the_field(event: Any, field: str) -> None:
    with pytest.raises(InvalidPayload) as info:
        codec.encode(event)
    assert info.value.field == field
    assert field in str(info.value)
    assert "finite" in str(info.value)
    assert isinstance(info.value, InvalidArgument)


def test_metadata_that_is_not_finite_is_refused() -> None:
    with pytest.raises(InvalidPayload) as info:
        codec.encode(Counted(1), Metadata(extra={"score": float("nan")}))
    assert info.value.field == "metadata.extra.score"
    assert info.value.argument == "metadata"


@pytest.mark.parametrize(
    ("event", "field", "words"),
    [
        (Loose(anything=b"\x00\x01"), "data.anything", "bytes would be read back as str"),
        (Loose(extra={"blob": b"abc"}), "data.extra.blob", "bytes would be read back as str"),
        (Loose(extra={"at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}), "data.extra.at", "str"),
        (Loose(anything=uuid.UUID(int=5)), "data.anything", "UUID would be read back as str"),
        (Loose(anything=(1, 2)), "data.anything", "tuple would be read back as list"),
        (Loose(anything={1: "one"}), "data.anything[1]", "would be read back as str"),
        (Loose(anything=Counted(1)), "data.anything", "Counted would be read back as dict"),
        (Noted(bytearray(b"x")), "data.note", "bytearray would be read back as str"),
        (Counted("10"), "data.quantity", "Expected `int`, got `str`"),  # type: ignore[arg-type]
    ],
)
def test_values_that_would_read_back_as_something_else_are_refused(
    event: Any, field: str, words: str
) -> None:
    with pytest.raises(InvalidPayload) as info:
        codec.encode(event)
    assert info.value.field == field
    assert words in str(info.value)


def test_values_that_read_back_as_given_pass() -> None:
    for event in (
        Loose(anything={"a": [1, 2.5, None, True, "x", {"b": []}]}, extra={"n": 10**30}),
        Priced("a", 1, history=[0.0, -0.0, 1e308]),
        Noted(None),
    ):
        new = codec.encode(event)
        assert codec.decode_fields("s-1", 1, new.type, 1, new.data) == event


def test_nesting_deeper_than_the_limit_is_refused_by_the_codec() -> None:
    codec.encode(Loose(anything=nested(MAX_JSON_DEPTH - 1)))  # the object itself is level 1
    for depth in (MAX_JSON_DEPTH, 10_000):
        with pytest.raises(InvalidPayload) as info:
            codec.encode(Loose(anything=nested(depth)))
        assert str(MAX_JSON_DEPTH) in str(info.value)
        assert info.value.field == "data"
    with pytest.raises(InvalidPayload) as info:
        codec.encode(Counted(1), Metadata(extra={"deep": nested(10_000)}))
    assert info.value.field == "metadata"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = '"[{' * 500 + '\\"' + "}]" * 500
    new = codec.encode(Loose(anything=[text] * 3))
    assert codec.decode_fields("s-1", 1, new.type, 1, new.data).anything == [text] * 3


BACKENDS = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    return str(request.getfixturevalue("pg_url"))


def raw(data: bytes, metadata: bytes = b"{}") -> NewEvent:
    return NewEvent(type="Raw", data=data, metadata=metadata, event_id=uuid.uuid4())


def deep_json(depth: int) -> bytes:
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize(
    ("data", "metadata", "argument", "field"),
    [
        (b'{"price": NaN}', b"{}", "data", "data.price"),
        (b'{"lines": [1, {"price": -Infinity}]}', b"{}", "data", "data.lines[1].price"),
        (b'{"a": "NaN"}', b'{"score": Infinity}', "metadata", "metadata.score"),
        (b'{"price": 1e999}', b"{}", "data", "data.price"),
        (b'{"lines": [{"price": -1e400}]}', b"{}", "data", "data.lines[0].price"),
        (b'{"a": 1}', b'{"odd key": 2e308}', "metadata", "metadata['odd key']"),
        (deep_json(MAX_JSON_DEPTH + 1), b"{}", "data", "data"),
        (deep_json(10_000), b"{}", "data", "data"),
        (b'{"a": 1}', deep_json(10_000), "metadata", "metadata"),
    ],
)
async def test_raw_appends_past_the_limits_are_refused_and_write_nothing(
    url: str, data: bytes, metadata: bytes, argument: str, field: str
) -> None:
    async with connect(url) as store:
        with pytest.raises(InvalidPayload) as info:
            await store.append("raw-1", [raw(b'{"ok": 1}'), raw(data, metadata)])
        assert info.value.argument == argument
        assert info.value.field == field
        assert [r async for r in store.read_stream("raw-1")] == []
        assert await store.head_position() == 0


async def test_raw_json_at_the_limit_is_stored(url: str) -> None:
    async with connect(url) as store:
        await store.append("raw-1", [raw(deep_json(MAX_JSON_DEPTH))])
        (record,) = [r async for r in store.read_stream("raw-1")]
    assert msgspec.json.decode(record.data) == msgspec.json.decode(deep_json(MAX_JSON_DEPTH))
