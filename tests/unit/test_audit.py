"""Required audit metadata is enforced on append; a rejected append writes nothing."""

import msgspec
import pytest

from eventfold import Codec, EventRegistry, Metadata, StreamAppend
from eventfold.audit import AuditingStore, MissingAuditMetadata
from eventfold.errors import InvalidArgument
from eventfold.store import MemoryStore

registry = EventRegistry()


@registry.register("PriceChanged")
class PriceChanged(msgspec.Struct, frozen=True):
    cents: int


codec = Codec(registry)
full = Metadata(actor="ana", correlation_id="c-1", extra={"reason": "sale"})


async def test_events_with_the_required_metadata_are_appended() -> None:
    store = AuditingStore(MemoryStore(), required=("actor", "reason", "correlation_id"))
    result = await store.append("item-1", [codec.encode(PriceChanged(5), full)])
    assert result.version == 1


@pytest.mark.parametrize(
    ("metadata", "missing"),
    [
        (None, ["actor", "reason"]),
        (Metadata(actor="ana"), ["reason"]),
        (Metadata(actor="", extra={"reason": "x"}), ["actor"]),
        (Metadata(extra={"reason": "x", "actor": None}), ["actor"]),
    ],
)
async def test_missing_metadata_is_rejected_and_nothing_written(
    metadata: Metadata | None, missing: list[str]
) -> None:
    inner = MemoryStore()
    store = AuditingStore(inner, required=("actor", "reason"))
    good = codec.encode(PriceChanged(1), full)
    with pytest.raises(MissingAuditMetadata) as info:
        await store.append_many(
            [
                StreamAppend("item-1", [good]),
                StreamAppend("item-2", [codec.encode(PriceChanged(2), metadata)]),
            ]
        )
    assert info.value.missing == missing
    assert (info.value.stream_id, info.value.event_type) == ("item-2", "PriceChanged")
    assert await inner.head_position() == 0


def test_required_keys_are_validated() -> None:
    with pytest.raises(InvalidArgument):
        AuditingStore(MemoryStore(), required="actor")
