"""The core every store passes: the reader and the writer together, and a
``Repository`` folding what they store."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from eventfold.domain.decider import Decider
from eventfold.domain.events import EventRegistry
from eventfold.errors import SerializationError
from eventfold.repository import Repository
from eventfold.serialization.codec import Codec
from eventfold.store.api import EventStore, NewEvent
from eventfold.testing.conformance.reader import ReaderConformance
from eventfold.testing.conformance.support import collect
from eventfold.testing.conformance.writer import WriterConformance


class Added(msgspec.Struct, frozen=True):
    n: int


class Noted(msgspec.Struct, frozen=True):
    text: str


class Tally(msgspec.Struct, frozen=True):
    count: int = 0
    total: int = 0
    last: str = ""


def _evolve(state: Tally, event: Any) -> Tally:
    if isinstance(event, Added):
        return Tally(state.count + 1, state.total + event.n, state.last)
    return Tally(state.count + 1, state.total, event.text)


tally: Decider[Any, Any, Tally] = Decider(lambda c, s: [], _evolve, Tally)
"""A fold over two event types, one of them with an older shape to upcast."""


def tally_codec() -> Codec:
    registry = EventRegistry()
    registry.add(Added, "Added", version=2)
    registry.add(Noted, "Noted")
    registry.add_upcaster("Added", 1, lambda old: {"n": old["value"]})
    return Codec(registry)


def tally_event(codec: Codec, i: int) -> NewEvent:
    """The ``i``-th event of a tally stream: mostly ``Added``, some ``Noted``,
    some ``Added`` stored in its old shape."""
    if i % 7 == 3:
        return codec.encode(Noted(f"note {i}"))
    if i % 11 == 5:  # stored in the old shape
        return NewEvent("Added", msgspec.json.encode({"value": i}), schema_version=1)
    return codec.encode(Added(i))


async def folded(store: EventStore, codec: Codec, stream_id: str, to: int) -> Tally:
    """The tally of ``stream_id`` up to version ``to``, folded from ``read_stream``."""
    records = await collect(store.read_stream(stream_id, to_version=to))
    return tally.fold(codec.decode_event(r) for r in records)


class StoreConformance(ReaderConformance, WriterConformance):
    """The core contract every backend passes. A backend's test class adds
    the mixin of each capability it declares (``SnapshotConformance``,
    ``StreamDataConformance``, ``ChainConformance``, ``InspectorConformance``,
    ``SQLConformance``, ``ReplicaReadsConformance``);
    ``test_declared_capabilities_match_the_mixins`` checks that the two agree."""

    async def test_repository_load_folds_long_mixed_streams(self, open_store: Any) -> None:
        """Repository.load (a backend's fast fold path, where it declares
        one) gives what folding ``read_stream`` gives: across pages, with
        several types, an old shape upcast on the way, up to a version; and a
        bad payload is reported at its own version."""
        codec = tally_codec()
        count = 6100  # more than a page of every backend's fold path
        async with open_store() as store:
            for start in range(0, count, 1000):
                stop = min(start + 1000, count)
                await store.append("tally-1", [tally_event(codec, i) for i in range(start, stop)])
            repo = Repository(store, tally, codec)
            loaded = await repo.load("tally-1")
            assert (loaded.state, loaded.version) == (
                await folded(store, codec, "tally-1", count),
                count,
            )
            midway = await repo.load("tally-1", version=5003)
            assert midway.state == await folded(store, codec, "tally-1", 5003)
            assert midway.version == 5003

            await store.append("tally-1", [NewEvent("Added", b'{"n": "x"}', schema_version=2)])
            with pytest.raises(SerializationError, match=f"version {count + 1}"):
                await repo.load("tally-1")
