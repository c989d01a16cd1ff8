"""Crypto-shredding (over the memory store unless a test says otherwise):
encryption, forget, tampering, retries, snapshots, fast fold reads."""

from pathlib import Path

import msgspec
import pytest

import eventfold
from eventfold import (
    ANY,
    NO_STREAM,
    Codec,
    Decider,
    EventRegistry,
    Repository,
    SnapshotPolicy,
)
from eventfold.errors import RegistrationError
from eventfold.serialization.crypto import REDACTED, DecryptionError, EncryptingStore
from eventfold.serialization.keys import MemoryKeyStore
from eventfold.store import MemoryStore, NewEvent, StreamDataReader

registry = EventRegistry()


@registry.register("CustomerRegistered", personal=("name", "email"), subject="customer_id")
class CustomerRegistered(msgspec.Struct, frozen=True):
    customer_id: str
    name: str
    email: str | None
    tier: str


@registry.register("TierChanged")
class TierChanged(msgspec.Struct, frozen=True):
    tier: str


codec = Codec(registry)


def open_store() -> tuple[MemoryStore, EncryptingStore]:
    inner = MemoryStore()
    return inner, EncryptingStore(inner, registry, MemoryKeyStore())


async def read(store: object, stream: str) -> list[object]:
    return [codec.decode_event(r) async for r in store.read_stream(stream)]  # type: ignore[attr-defined]


async def test_personal_fields_are_encrypted_at_rest_and_readable_through_the_store() -> None:
    inner, store = open_store()
    ada = CustomerRegistered("c-1", "Ada Lovelace", "ada@example.com", "gold")
    await store.append("customer-1", [codec.encode(ada), codec.encode(TierChanged("silver"))])
    raw = [r async for r in inner.read_all()]
    assert b"Ada Lovelace" not in raw[0].data and b"ada@example.com" not in raw[0].data
    stored = msgspec.json.decode(raw[0].data)
    assert stored["tier"] == "gold" and stored["customer_id"] == "c-1"
    assert stored["name"].startswith("ef1:")
    assert await read(store, "customer-1") == [ada, TierChanged("silver")]
    assert [codec.decode_event(r) async for r in store.read_all()] == [ada, TierChanged("silver")]


async def test_forget_redacts_only_that_subject() -> None:
    _, store = open_store()
    await store.append(
        "customer-1", [codec.encode(CustomerRegistered("c-1", "Ada", "a@x", "gold"))]
    )
    await store.append("customer-2", [codec.encode(CustomerRegistered("c-2", "Bo", None, "free"))])
    assert await store.forget("c-1") == 1
    (ada,) = await read(store, "customer-1")
    assert ada == CustomerRegistered("c-1", REDACTED, REDACTED, "gold")
    assert await read(store, "customer-2") == [CustomerRegistered("c-2", "Bo", None, "free")]
    # A forgotten subject may come back: new data gets a new key.
    await store.append(
        "customer-1", [codec.encode(CustomerRegistered("c-1", "Ada 2", "n@x", "gold"))]
    )
    first, second = await read(store, "customer-1")
    assert first.name == REDACTED and second.name == "Ada 2"  # type: ignore[attr-defined]


async def test_a_ciphertext_moved_to_another_event_fails_to_decrypt() -> None:
    inner, store = open_store()
    await store.append("customer-1", [codec.encode(CustomerRegistered("c-1", "Ada", "a@x", "g"))])
    (record,) = [r async for r in inner.read_stream("customer-1")]
    stolen = msgspec.json.decode(record.data)
    # Same subject, same key, but another stream and version: the tag must not match.
    forged = dict(stolen, tier="forged")
    await inner.append("customer-9", [NewEvent(record.type, msgspec.json.encode(forged))])
    with pytest.raises(DecryptionError) as info:
        await read(store, "customer-9")
    assert (info.value.stream_id, info.value.version, info.value.field) == ("customer-9", 1, "name")
    swapped = dict(stolen, name=stolen["email"])
    await inner.append("customer-1", [NewEvent(record.type, msgspec.json.encode(swapped))])
    with pytest.raises(DecryptionError):
        await read(store, "customer-1")


async def test_a_retried_append_writes_nothing() -> None:
    inner, store = open_store()
    batch = [codec.encode(CustomerRegistered("c-1", "Ada", "a@x", "g"))]
    first = await store.append("customer-1", batch, ANY)
    await store.append("customer-1", [codec.encode(TierChanged("x"))])
    assert await store.append("customer-1", batch, ANY) == first
    assert await store.append("customer-1", batch, NO_STREAM) == first
    assert await inner.head_position() == 2


class Profile(msgspec.Struct, frozen=True):
    name: str = ""
    tier: str = ""


def evolve(state: Profile, event: object) -> Profile:
    if isinstance(event, CustomerRegistered):
        return Profile(event.name, event.tier)
    if isinstance(event, TierChanged):
        return Profile(state.name, event.tier)
    return state


profiles: Decider[object, object, Profile] = Decider(
    decide=lambda command, state: [command], evolve=evolve, initial_state=Profile
)


async def test_snapshots_of_personal_streams_are_encrypted_and_shredded() -> None:
    inner, store = open_store()
    repo = Repository(store, profiles, codec, snapshots=SnapshotPolicy(every=1, state_type=Profile))
    await repo.handle("customer-1", CustomerRegistered("c-1", "Ada", "a@x", "g"))
    await repo.handle("customer-1", TierChanged("x"))
    assert (await repo.load("customer-1")).state == Profile("Ada", "x")
    raw = await inner.load_snapshot("customer-1", "state")
    assert raw is not None and raw.version == 2 and b"Ada" not in raw.state
    assert await store.load_snapshot("customer-1", "state") is not None
    await store.forget("c-1")
    assert await store.load_snapshot("customer-1", "state") is None
    assert (await repo.load("customer-1")).state == Profile(REDACTED, "x")


async def test_fast_fold_reads_through_the_store_are_decrypted_and_shredded(
    tmp_path: Path,
) -> None:
    """Over SQLite the store passes on its fast fold reads (StreamDataReader):
    Repository.load folds from their rows, decrypted like records, and
    redacted after forget; a ciphertext moved elsewhere fails there too."""
    inner = await eventfold.connect(f"sqlite:///{tmp_path / 'events.db'}")
    store = EncryptingStore(inner, registry, MemoryKeyStore())
    async with store:
        assert StreamDataReader in store.capabilities
        repo = Repository(store, profiles, codec)
        events = [CustomerRegistered(f"c-{i % 3}", f"Name {i}", None, "t") for i in range(6000)]
        await store.append("customer-1", [codec.encode(e) for e in events])
        await store.append("customer-1", [codec.encode(TierChanged("gold"))])
        rows = [row async for _, page in store.read_stream_data("customer-1") for row in page]
        assert len(rows) == 6001 and b"Name 5999" in rows[5999][2]
        assert (await repo.load("customer-1")).state == Profile("Name 5999", "gold")
        await store.forget("c-2")  # the subject of event 5999
        assert (await repo.load("customer-1")).state == Profile(REDACTED, "gold")
        assert (await repo.load("customer-1", version=5999)).state == Profile("Name 5998", "t")


def test_personal_fields_must_be_strings_with_a_subject() -> None:
    class Bad(msgspec.Struct):
        subject: str
        age: int

    reg = EventRegistry()
    with pytest.raises(RegistrationError):
        reg.add(Bad, personal=("age",), subject="subject")
    with pytest.raises(RegistrationError):
        reg.add(Bad, personal=("nope",), subject="subject")
    with pytest.raises(RegistrationError):
        reg.add(Bad, personal=("subject",), subject=None)
