"""Load a stream's state (from a snapshot plus the events after it), handle a
command, and save its events with the loaded version as the expected version,
retrying on a concurrent write. Any earlier state is one call away."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec

from eventfold.domain.clocks import Clock, check_aware, check_clock
from eventfold.domain.decider import Decider
from eventfold.domain.events import Metadata
from eventfold.errors import InvalidArgument, SerializationError, WrongExpectedVersion
from eventfold.serialization.codec import Codec, occurred_at
from eventfold.store.api import EventStore, ExpectedVersion, RecordedEvent, Snapshot
from eventfold.store.capabilities import SnapshotStore, StreamDataReader, capability, require
from eventfold.store.checks import NOT_JSON, validate_expected, validate_stream_id

C = TypeVar("C")
E = TypeVar("E")
S = TypeVar("S")

_encoder = msgspec.json.Encoder()


def derived_event_id(stream_id: str, key: str, index: int) -> uuid.UUID:
    """The id ``handle(..., idempotency_key=key)`` gives the ``index``-th event
    it appends to ``stream_id``: where a keyed command's events landed can be
    found by these ids."""
    return uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{stream_id}\x00{key}\x00{index}")


def _derived_id(stream_id: str, key: str | None, index: int) -> uuid.UUID | None:
    return None if key is None else derived_event_id(stream_id, key, index)


_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c5e2a-9d0b-4f7e-8a43-5b2d7c9e1f30")


class SnapshotPolicy(msgspec.Struct, frozen=True):
    """Store the folded state every ``every`` events. ``state_type`` must be
    encodable by msgspec (a Struct or dataclass); ``schema_version`` tags its
    shape, and a snapshot with another tag is ignored. ``name`` tells apart
    several folds of one stream."""

    every: int
    state_type: type[Any]
    schema_version: int = 1
    name: str = "state"

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise InvalidArgument("SnapshotPolicy.every must be an int >= 1", argument="every")


class Loaded(msgspec.Struct, Generic[S], frozen=True):
    """A folded state and the stream version it reflects (0: no events)."""

    state: S
    version: int


class Handled(msgspec.Struct, Generic[E], frozen=True):
    """The outcome of a command: the events it produced, the stream's version
    after them, and the global position of the last one (0 if none), the token
    a reader can wait for."""

    events: list[E]
    version: int
    position: int


class Repository(Generic[C, E, S]):
    def __init__(
        self,
        store: EventStore,
        decider: Decider[C, E, S],
        codec: Codec,
        *,
        snapshots: SnapshotPolicy | None = None,
        max_retries: int = 3,
    ) -> None:
        if max_retries < 0:
            raise InvalidArgument("max_retries must be >= 0", argument="max_retries")
        self.store = store
        # A snapshot policy needs a store that keeps snapshots; loads fold from
        # the store's fast fold reads where it declares them.
        self._snapshot_store = None if snapshots is None else require(store, SnapshotStore)
        self._stream_data = capability(store, StreamDataReader)
        self.decider = decider
        self.codec = codec
        self.snapshots = snapshots
        self.max_retries = max_retries
        self._snapshot_decoder: msgspec.json.Decoder[Any] | None = (
            msgspec.json.Decoder(snapshots.state_type) if snapshots else None
        )

    async def load(
        self,
        stream_id: str,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
        by: Clock = "recorded",
    ) -> Loaded[S]:
        """The state now, or as of a stream ``version``, or as it was at time
        ``as_of``: by default from the events recorded at or before it (what
        was known then); with ``by="occurred"`` from the events that had
        happened by then (``Metadata.occurred_at``, else the recording
        time), folded in the order they happened, however late they were
        recorded. ``Loaded.version`` is then the highest version among them."""
        validate_stream_id(stream_id)
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or version < 0
        ):
            raise InvalidArgument(
                f"version must be an int >= 0, not {version!r}", argument="version"
            )
        check_clock(by)  # without as_of both clocks give the state now
        if as_of is not None:
            check_aware(as_of, "as_of")
            if by == "occurred":
                return await self._load_as_occurred(stream_id, version, as_of)
        snapshot = await self._usable_snapshot(stream_id, version) if as_of is None else None
        state = None if snapshot is None else snapshot[0]
        current = 0 if snapshot is None else snapshot[1]
        decider, decode = self.decider, self.codec.decode_event
        state = decider.initial_state() if state is None else state
        evolve = decider.evolve
        read_data = self._stream_data if as_of is None else None
        if read_data is not None and type(self.codec).decode_event is Codec.decode_event:
            state, current = await self._fold_data(read_data, stream_id, current, version, state)
        else:
            async for record in self.store.read_stream(
                stream_id, from_version=current + 1, to_version=version
            ):
                if as_of is not None and record.recorded_at > as_of:
                    break
                state = evolve(state, decode(record))
                current = record.version
        if current == 0 and version is None and as_of is None:
            # No event stored: a new stream, or one whose events were all
            # removed (a soft delete): it goes on from its version.
            current = await self.store.stream_version(stream_id)
        if (
            self.snapshots is not None
            and version is None
            and as_of is None
            and current - (0 if snapshot is None else snapshot[1]) >= self.snapshots.every
        ):
            await self._save_snapshot(stream_id, state, current)
        return Loaded(state, current)

    async def _load_as_occurred(
        self, stream_id: str, version: int | None, as_of: datetime
    ) -> Loaded[S]:
        """Fold the events that had happened by ``as_of``, in the order they
        happened (events of the same moment in stream order)."""
        happened: list[tuple[datetime, int, RecordedEvent]] = []
        async for record in self.store.read_stream(stream_id, to_version=version):
            occurred = occurred_at(record)
            if occurred <= as_of:
                happened.append((occurred, record.version, record))
        happened.sort(key=lambda item: (item[0], item[1]))
        decider, decode = self.decider, self.codec.decode_event
        state = decider.initial_state()
        for _, _, record in happened:
            state = decider.evolve(state, decode(record))
        return Loaded(state, max((v for _, v, _ in happened), default=0))

    async def _fold_data(
        self,
        read_data: StreamDataReader,
        stream_id: str,
        current: int,
        version: int | None,
        state: S,
    ) -> tuple[S, int]:
        """Fold from a store's ``read_stream_data``: pages of (type,
        schema_version, data) from a first version on (a stream's versions are
        contiguous), no records built; each (type, schema version)
        looks up its decoder once. Anything unusual (an unknown type, an old
        shape to upcast, bad data) goes through ``Codec.decode_fields`` for the
        same result or the same error as the record-by-record path."""
        codec, evolve = self.codec, self.decider.evolve
        decoders: dict[tuple[str, int], Callable[[Any], Any] | None] = {}
        last: tuple[str, int] | None = None
        fast: Callable[[Any], Any] | None = None
        pages = read_data.read_stream_data(stream_id, from_version=current + 1, to_version=version)
        async for first, page in pages:
            for at, (type_name, schema_version, data) in enumerate(page, first):
                if last is None or type_name != last[0] or schema_version != last[1]:
                    last = (type_name, schema_version)
                    if last not in decoders:
                        decoders[last] = codec.plain_decoder(type_name, schema_version)
                    fast = decoders[last]
                if fast is None:
                    event = codec.decode_fields(stream_id, at, type_name, schema_version, data)
                else:
                    try:
                        event = fast(data)
                    except NOT_JSON:
                        event = codec.decode_fields(stream_id, at, type_name, schema_version, data)
                state = evolve(state, event)
            current = first + len(page) - 1
        return state, current

    async def handle(
        self,
        stream_id: str,
        command: C,
        *,
        metadata: Metadata | None = None,
        expected_version: ExpectedVersion | None = None,
        idempotency_key: str | None = None,
    ) -> Handled[E]:
        """Decide ``command`` against the current state and append the result.
        Without ``expected_version`` the loaded version is expected and a
        concurrent write makes it reload and decide again, up to
        ``max_retries`` times; with one, a mismatch raises at once.

        With an ``idempotency_key`` the events get ids derived from the stream
        and the key, so handling the same command again after it landed (a
        retry after a lost reply, a redelivered message) writes nothing and
        returns the first outcome's version and position."""
        if expected_version is not None:
            validate_expected(expected_version)
        attempts = 0
        while True:
            loaded = await self.load(stream_id)
            events = self.decider.events(command, loaded.state)
            if not events:
                return Handled([], loaded.version, 0)
            new = [
                self.codec.encode(
                    event, metadata, event_id=_derived_id(stream_id, idempotency_key, i)
                )
                for i, event in enumerate(events)
            ]
            expect = loaded.version if expected_version is None else expected_version
            try:
                result = await self.store.append(stream_id, new, expect)
            except WrongExpectedVersion:
                attempts += 1
                if expected_version is not None or attempts > self.max_retries:
                    raise
                continue
            return Handled(events, result.version, result.position)

    async def _usable_snapshot(
        self, stream_id: str, max_version: int | None
    ) -> tuple[S, int] | None:
        policy, decoder, snapshots = self.snapshots, self._snapshot_decoder, self._snapshot_store
        if policy is None or decoder is None or snapshots is None:
            return None
        snap = await snapshots.load_snapshot(stream_id, policy.name)
        if snap is None or snap.schema_version != policy.schema_version:
            return None
        if max_version is not None and snap.version > max_version:
            return None
        try:
            return decoder.decode(snap.state), snap.version
        except NOT_JSON:
            # A snapshot that no longer fits the state type is only a cache miss.
            return None

    async def _save_snapshot(self, stream_id: str, state: S, version: int) -> None:
        assert self.snapshots is not None and self._snapshot_store is not None
        try:
            data = _encoder.encode(state)
        except (TypeError, msgspec.EncodeError) as exc:
            raise SerializationError(f"cannot snapshot {type(state).__name__}: {exc}") from None
        await self._snapshot_store.save_snapshot(
            Snapshot(stream_id, self.snapshots.name, version, self.snapshots.schema_version, data)
        )

    async def snapshot(self, stream_id: str) -> Loaded[S]:
        """Fold the stream now and store a snapshot of it, whatever the policy's count."""
        loaded = await self.load(stream_id)
        if self.snapshots is None:
            raise InvalidArgument("this repository has no SnapshotPolicy", argument="snapshots")
        if loaded.version:
            await self._save_snapshot(stream_id, loaded.state, loaded.version)
        return loaded
