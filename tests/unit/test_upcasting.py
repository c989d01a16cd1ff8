"""Events written by older code stay readable through registered upcasters."""

from typing import Any

import msgspec
import pytest

from eventfold import Codec, EventRegistry, SerializationError
from eventfold.errors import RegistrationError
from eventfold.store import MemoryStore

# --- what the old code registered and wrote ---------------------------------------

old = EventRegistry()


@old.register("CustomerRegistered")
class CustomerRegisteredV1(msgspec.Struct, frozen=True):
    name: str


@old.register("ItemPriced", version=1)
class ItemPricedV1(msgspec.Struct, frozen=True):
    sku: str
    price: float  # euros


# --- what the current code registers --------------------------------------------------

new = EventRegistry()


@new.register("CustomerSignedUp", version=3, aliases=("CustomerRegistered",))
class CustomerSignedUp(msgspec.Struct, frozen=True):
    first_name: str
    last_name: str
    channel: str


@new.upcaster("CustomerSignedUp", from_version=1)
def split_name(data: dict[str, Any]) -> dict[str, Any]:
    first, _, last = data.pop("name").partition(" ")
    return {**data, "first_name": first, "last_name": last}


@new.upcaster("CustomerSignedUp", from_version=2)
def add_channel(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "channel": "web"}


@new.register("ItemPriced", version=2)
class ItemPriced(msgspec.Struct, frozen=True):
    sku: str
    price_cents: int


async def test_old_events_are_read_as_the_current_types() -> None:
    store = MemoryStore()
    old_codec = Codec(old)
    await store.append("customer-1", [old_codec.encode(CustomerRegisteredV1("Ada Lovelace"))])
    current = Codec(new)
    await store.append(
        "customer-1",
        [current.encode(CustomerSignedUp("Grace", "Hopper", "shop"))],
    )
    events = [current.decode(r) async for r in store.read_stream("customer-1")]
    assert [e.event for e in events] == [
        CustomerSignedUp("Ada", "Lovelace", "web"),
        CustomerSignedUp("Grace", "Hopper", "shop"),
    ]
    assert [e.schema_version for e in events] == [1, 3]
    assert events[0].type == "CustomerRegistered"


async def test_a_missing_upcaster_is_a_clear_error() -> None:
    store = MemoryStore()
    await store.append("item-1", [Codec(old).encode(ItemPricedV1("apple", 1.5))])
    (record,) = [r async for r in store.read_stream("item-1")]
    with pytest.raises(SerializationError, match="no upcaster from schema version 1") as info:
        Codec(new).decode(record)
    assert info.value.event_type == "ItemPriced"


async def test_an_upcaster_whose_output_does_not_fit_is_a_clear_error() -> None:
    reg = EventRegistry()
    reg.add(ItemPriced, "ItemPriced", version=2)
    reg.add_upcaster("ItemPriced", 1, lambda d: {**d, "price_cents": "a lot"})
    store = MemoryStore()
    await store.append("item-1", [Codec(old).encode(ItemPricedV1("apple", 1.5))])
    (record,) = [r async for r in store.read_stream("item-1")]
    with pytest.raises(SerializationError, match="does not fit"):
        Codec(reg).decode(record)
    reg2 = EventRegistry()
    reg2.add(ItemPriced, "ItemPriced", version=2)
    reg2.add_upcaster(
        "ItemPriced", 1, lambda d: {"sku": d["sku"], "price_cents": round(d["price"] * 100)}
    )
    assert Codec(reg2).decode(record).event == ItemPriced("apple", 150)


async def test_events_from_newer_code_are_refused() -> None:
    store = MemoryStore()
    await store.append("customer-1", [Codec(new).encode(CustomerSignedUp("a", "b", "c"))])
    (record,) = [r async for r in store.read_stream("customer-1")]
    downgraded = EventRegistry()
    downgraded.add(CustomerSignedUp, "CustomerSignedUp", version=2)
    with pytest.raises(SerializationError, match="newer"):
        Codec(downgraded).decode(record)


def test_an_upcaster_is_registered_once() -> None:
    with pytest.raises(RegistrationError):
        new.add_upcaster("CustomerSignedUp", 1, split_name)
