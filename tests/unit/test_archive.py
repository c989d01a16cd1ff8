"""Archiving over the memory store: events move to segment files and read
back in place (read_stream, read_all, time travel) exactly as before; the
hash chain verifies across the boundary and catches an archived event
edited, missing or moved; an interrupted run resumes without losing or
repeating anything; forget still works on archived events."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zstandard

from eventfold import Codec, Decider, EventRegistry, Repository
from eventfold.archive import ArchivedStore, Archiver, ArchiveRoot, Selection, verify_archive
from eventfold.compliance.chain import verify
from eventfold.errors import InvalidArgument, UnsafeArchivePath
from eventfold.serialization.crypto import REDACTED, EncryptingStore
from eventfold.serialization.keys import MemoryKeyStore
from eventfold.store import MemoryStore, NewEvent, RecordedEvent
from eventfold.store.api import EventStore
from eventfold.store.chain import link_hash


def _event(n: int, tags: tuple[str, ...] = ()) -> NewEvent:
    kind = "Even" if n % 2 == 0 else "Odd"
    return NewEvent(kind, msgspec.json.encode({"n": n}), b'{"actor": "t"}', tags=tags)


def _as_tuple(r: RecordedEvent) -> tuple[Any, ...]:
    data = r.data.decode() if isinstance(r.data, bytes) else r.data
    meta = r.metadata.decode() if isinstance(r.metadata, bytes) else r.metadata
    return (
        r.stream_id,
        r.version,
        r.position,
        r.event_id,
        r.type,
        r.schema_version,
        data,
        meta,
        r.recorded_at,
        r.tags,
    )


async def _fill(store: EventStore) -> None:
    """Interleaved streams of two categories, so positions of one stream are
    never contiguous."""
    n = 0
    for round_ in range(6):
        for stream in ("order-1", "order-2", "cart-1", "order-3"):
            n += 1
            tags = ("t",) if round_ % 3 == 0 else ()
            await store.append(stream, [_event(n, tags), _event(n + 100)])


QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("all", {}),
    ("all", {"from_position": 7}),
    ("all", {"limit": 5}),
    ("all", {"from_position": 3, "limit": 9}),
    ("all", {"categories": ["order"]}),
    ("all", {"types": ["Even"], "from_position": 4}),
    ("all", {"categories": ["cart"], "types": ["Odd"], "limit": 2}),
    ("stream", {"stream_id": "order-1"}),
    ("stream", {"stream_id": "order-1", "from_version": 3, "to_version": 9}),
    ("stream", {"stream_id": "order-1", "backwards": True}),
    ("stream", {"stream_id": "order-1", "backwards": True, "limit": 3}),
    ("stream", {"stream_id": "order-1", "backwards": True, "limit": 11}),
    ("stream", {"stream_id": "order-2", "limit": 4}),
    ("stream", {"stream_id": "order-2", "from_version": 2, "limit": 9}),
    ("stream", {"stream_id": "cart-1", "to_version": 3, "backwards": True}),
    ("stream", {"stream_id": "missing-1"}),
]


async def _answers(store: EventStore) -> list[list[tuple[Any, ...]]]:
    out = []
    for kind, args in QUERIES:
        if kind == "all":
            out.append([_as_tuple(r) async for r in store.read_all(**args)])
        else:
            args = dict(args)
            stream = args.pop("stream_id")
            out.append([_as_tuple(r) async for r in store.read_stream(stream, **args)])
    return out


@pytest.fixture
def root(tmp_path: Path) -> ArchiveRoot:
    return ArchiveRoot(tmp_path / "archive")


async def _archived(
    root: ArchiveRoot, selection: Selection, **options: Any
) -> tuple[MemoryStore, list[list[tuple[Any, ...]]]]:
    store = MemoryStore()
    await _fill(store)
    before = await _answers(store)
    await Archiver(store, root, **options).run(selection)
    return store, before


@pytest.mark.parametrize("segment_events", [1, 7, 1000])
async def test_archived_events_read_back_exactly_as_before(
    root: ArchiveRoot, segment_events: int
) -> None:
    selection = Selection(streams=("order-1", "cart-1", "order-2"))
    store, before = await _archived(root, selection, segment_events=segment_events)
    assert [r async for r in store.read_stream("order-1")] == []  # gone from the store
    assert await store.stream_version("order-1") == 12  # versions go on
    assert await _answers(ArchivedStore(store, root)) == before
    if segment_events == 1:
        assert len(root.locations()) == 3  # a stream is never split


async def test_events_older_than_a_cutoff_move_and_the_rest_stays(root: ArchiveRoot) -> None:
    store = MemoryStore()
    await _fill(store)
    cutoff = datetime.now(UTC)
    await store.append("order-1", [_event(1000)])
    await store.append("order-9", [_event(1001)])
    before = await _answers(store)
    outcome = await Archiver(store, root).run(Selection(older_than=cutoff))
    assert outcome.events == 48 and outcome.streams == 4
    assert [r.version async for r in store.read_stream("order-1")] == [13]
    assert [r.stream_id async for r in store.read_all()] == ["order-1", "order-9"]
    assert await _answers(ArchivedStore(store, root)) == before
    # Nothing older is left: a second run moves nothing and writes no segment.
    again = await Archiver(store, root).run(Selection(older_than=cutoff))
    assert (again.events, again.segments) == (0, [])


async def test_a_category_idle_since_a_time_is_archived_whole(root: ArchiveRoot) -> None:
    store = MemoryStore()
    await _fill(store)
    idle = datetime.now(UTC)
    await store.append("order-2", [_event(500)])
    archiver = Archiver(store, root)
    selection = Selection(category="order", idle_since=idle)
    plan = await archiver.plan(selection)
    assert [(m.stream_id, m.first, m.before) for m in plan] == [
        ("order-1", 1, 13),
        ("order-3", 1, 13),
    ]
    assert root.locations() == []  # planning moves nothing
    await archiver.run(selection)
    assert await store.stream_version("order-1") == 12
    assert [r.version async for r in store.read_stream("order-2")][-1] == 13
    assert [r async for r in store.read_stream("order-3")] == []


async def test_archiving_twice_chains_the_parts(root: ArchiveRoot) -> None:
    store = MemoryStore()
    await store.append("order-1", [_event(n) for n in range(5)])
    await Archiver(store, root).run(Selection(streams=("order-1",)))
    await store.append("order-1", [_event(n) for n in range(5, 8)], expected_version=5)
    await Archiver(store, root).run(Selection(streams=("order-1",)))
    await store.append("order-1", [_event(9)])
    archived = ArchivedStore(store, root)
    assert [r.version async for r in archived.read_stream("order-1")] == list(range(1, 10))
    assert len(root.locations()) == 2
    assert (await verify_archive(store, root)).clean
    assert (await verify(store)).clean


async def test_time_travel_loads_through_the_archive(root: ArchiveRoot) -> None:
    registry = EventRegistry()

    @registry.register("Added")
    class Added(msgspec.Struct, frozen=True):
        n: int

    codec = Codec(registry)
    decider: Decider[Any, Added, int] = Decider(
        initial_state=lambda: 0, evolve=lambda s, e: s + e.n, decide=lambda c, s: []
    )
    store = MemoryStore()
    for n in range(1, 6):
        await store.append("sum-1", [codec.encode(Added(n))])
    middle = datetime.now(UTC)
    for n in range(6, 9):
        await store.append("sum-1", [codec.encode(Added(n))])
    await Archiver(store, root).run(Selection(older_than=datetime.now(UTC)))
    repo = Repository(ArchivedStore(store, root), decider, codec)
    assert (await repo.load("sum-1")).state == sum(range(1, 9))
    assert (await repo.load("sum-1", version=3)).state == 6
    assert (await repo.load("sum-1", as_of=middle)).state == 15
    assert (await repo.load("sum-1", as_of=middle, by="occurred")).state == 15


async def test_the_chain_verifies_across_the_boundary(root: ArchiveRoot) -> None:
    store = MemoryStore()
    await _fill(store)
    key = b"chain key"
    await Archiver(store, root, key=key, segment_events=10).run(
        Selection(older_than=datetime.now(UTC), streams=())
    )
    await store.append("order-1", [_event(77)])
    assert (await verify(store, key=key)).clean
    report = await verify_archive(store, root, key=key)
    assert report.clean and report.events == 48
    assert not (await verify_archive(store, root, key=b"another key")).clean


def _rewrite(
    root: ArchiveRoot, location: str, change: Callable[[list[bytes]], list[bytes]]
) -> None:
    """Decompress a segment, change its lines, recompress it (a valid file)."""
    path = root.path / location
    lines = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
    changed = change(lines.split(b"\n")[:-1])
    header = msgspec.json.decode(changed[0])
    header["events"] = len(changed) - 1
    changed[0] = msgspec.json.encode(header)
    out = io.BytesIO()
    with zstandard.ZstdCompressor(write_checksum=True).stream_writer(out, closefd=False) as w:
        w.write(b"\n".join(changed) + b"\n")
    path.write_bytes(out.getvalue())


def _edit(index: int, **fields: Any) -> Callable[[list[bytes]], list[bytes]]:
    def change(lines: list[bytes]) -> list[bytes]:
        record = msgspec.json.decode(lines[index])
        record.update(fields)
        lines[index] = msgspec.json.encode(record)
        return lines

    return change


def _swap(a: int, b: int) -> Callable[[list[bytes]], list[bytes]]:
    def change(lines: list[bytes]) -> list[bytes]:
        lines[a], lines[b] = lines[b], lines[a]
        return lines

    return change


def _drop(index: int) -> Callable[[list[bytes]], list[bytes]]:
    return lambda lines: lines[:index] + lines[index + 1 :]


@pytest.mark.parametrize(
    ("change", "problems"),
    [
        (_edit(3, data='{"n": 999}'), {"altered"}),
        (_edit(1, metadata='{"actor": "mallory"}'), {"altered"}),
        (_edit(5, type="Forged"), {"altered"}),
        (_edit(2, tags=["x"]), {"altered"}),
        (_drop(4), {"missing"}),
        (_drop(12), {"missing"}),
        (_swap(1, 5), {"reordered"}),
        (_swap(2, 3), {"reordered"}),
        (lambda lines: [*lines, lines[3]], {"reordered", "duplicate"}),
    ],
)
async def test_verify_finds_an_archived_event_edited_missing_or_moved(
    root: ArchiveRoot, change: Callable[[list[bytes]], list[bytes]], problems: set[str]
) -> None:
    store = MemoryStore()
    await _fill(store)
    await Archiver(store, root).run(Selection(streams=("order-1", "order-2")))
    assert (await verify_archive(store, root)).clean
    (location,) = root.locations()
    _rewrite(root, location, change)
    found = {f.problem for f in (await verify_archive(store, root)).findings}
    assert found and found <= problems | {"missing", "altered", "duplicate", "rewritten"}
    assert found & problems


async def test_an_edit_that_recomputes_the_hash_still_breaks_the_chain(root: ArchiveRoot) -> None:
    store = MemoryStore()
    await store.append("order-1", [_event(n) for n in range(4)])
    await Archiver(store, root).run(Selection(streams=("order-1",)))
    (location,) = root.locations()
    events = list(root.events(location))
    forged = msgspec.structs.replace(events[-1], data='{"n": 5}')
    digest = link_hash(
        bytes.fromhex(events[-2].hash),
        "order-1",
        4,
        forged.event_id,
        forged.type,
        1,
        forged.data,
        forged.metadata,
        forged.tags,
    )
    _rewrite(root, location, _edit(4, data=forged.data, hash=digest.hex()))
    findings = (await verify_archive(store, root)).findings
    assert [(f.version, f.problem) for f in findings] == [(4, "rewritten")]


async def test_a_missing_or_unreadable_segment_is_a_finding(root: ArchiveRoot) -> None:
    store = MemoryStore()
    await _fill(store)
    await Archiver(store, root).run(Selection(streams=("order-1",)))
    (location,) = root.locations()
    (root.path / location).write_bytes(b"garbage")
    assert [f.problem for f in (await verify_archive(store, root)).findings] == ["missing"]
    (root.path / location).unlink()
    assert [f.problem for f in (await verify_archive(store, root)).findings] == ["missing"]


async def test_a_cut_naming_a_path_outside_the_root_is_refused(
    root: ArchiveRoot, tmp_path: Path
) -> None:
    store = MemoryStore()
    await store.append("order-1", [_event(1)])
    (tmp_path / "outside.jsonl.zst").write_bytes(b"secret")
    await store.truncate_stream("order-1", 2, reason="archived", archive="../outside.jsonl.zst")
    with pytest.raises(UnsafeArchivePath):
        [r async for r in ArchivedStore(store, root).read_stream("order-1")]
    with pytest.raises(UnsafeArchivePath):
        [r async for r in ArchivedStore(store, root).read_all()]
    (finding,) = (await verify_archive(store, root)).findings
    assert finding.problem == "missing" and "segment" in finding.detail


class _Crash(Exception):
    pass


class _CrashingArchiver(Archiver):
    """Stops (as a crash would) before its ``after``-th truncation."""

    def __init__(self, *args: Any, after: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.left = after

    async def _truncate(self, stream_id: str, before: int, location: str) -> Any:
        if self.left == 0:
            raise _Crash
        self.left -= 1
        return await super()._truncate(stream_id, before, location)


@pytest.mark.parametrize(("after", "resumed"), [(0, 2), (1, 1), (2, 2), (3, 1)])
async def test_a_run_stopped_between_write_and_truncate_resumes(
    root: ArchiveRoot, after: int, resumed: int
) -> None:
    """Two segments of two streams each; the run stops before its
    ``after``-th truncation, leaving ``resumed`` streams of a written
    segment to the next run."""
    store = MemoryStore()
    await _fill(store)
    before = await _answers(store)
    selection = Selection(streams=("order-1", "order-2", "cart-1", "order-3"))
    with pytest.raises(_Crash):
        await _CrashingArchiver(store, root, segment_events=20, after=after).run(selection)
    # In between, readers of the store with its archive see each event once.
    assert await _answers(ArchivedStore(store, root)) == before
    told: list[int] = []
    outcome = await Archiver(store, root, segment_events=20).run(selection, told.append)
    assert outcome.resumed == resumed
    assert outcome.resumed_events == 12 * resumed
    # progress counts what this run's own segments move, stream by stream
    assert told == [12 * n for n in range(1, outcome.streams + 1)]
    assert outcome.streams == (2 if after < 2 else 0)
    assert await _answers(ArchivedStore(store, root)) == before
    assert [r async for r in store.read_all()] == []
    assert (await verify_archive(store, root)).clean and (await verify(store)).clean
    segments = len(root.locations())
    again = await Archiver(store, root).run(selection)
    assert (again.events, again.resumed, len(root.locations())) == (0, 0, segments)


async def test_a_segment_no_cut_names_is_never_read(root: ArchiveRoot, tmp_path: Path) -> None:
    store = MemoryStore()
    await _fill(store)
    before = await _answers(store)
    other = ArchiveRoot(tmp_path / "other")
    scratch = MemoryStore()
    await _fill(scratch)
    await Archiver(scratch, other).run(Selection(streams=("order-1",)))
    (location,) = other.locations()
    (root.path / location).write_bytes((other.path / location).read_bytes())
    assert await _answers(ArchivedStore(store, root)) == before


async def test_forget_works_on_archived_events(root: ArchiveRoot) -> None:
    registry = EventRegistry()

    @registry.register("Registered", personal=("name",), subject="customer_id")
    class Registered(msgspec.Struct, frozen=True):
        customer_id: str
        name: str

    codec = Codec(registry)
    keys = MemoryKeyStore()
    inner = MemoryStore()
    writer = EncryptingStore(inner, registry, keys)
    await writer.append("customer-1", [codec.encode(Registered("c-1", "Ada"))])
    await writer.append("customer-2", [codec.encode(Registered("c-2", "Bo"))])
    await Archiver(inner, root).run(Selection(streams=("customer-1", "customer-2")))
    (location,) = root.locations()
    assert all("Ada" not in e.data for e in root.events(location))  # still ciphertext
    reader = EncryptingStore(ArchivedStore(inner, root), registry, keys)
    assert [codec.decode_event(r) async for r in reader.read_all()] == [
        Registered("c-1", "Ada"),
        Registered("c-2", "Bo"),
    ]
    assert await reader.forget("c-1") == 1
    assert [codec.decode_event(r) async for r in reader.read_all()] == [
        Registered("c-1", REDACTED),
        Registered("c-2", "Bo"),
    ]
    assert (await verify_archive(inner, root)).clean  # the chain covers ciphertext


@pytest.mark.parametrize(
    "selection",
    [
        Selection(),
        Selection(streams=("",)),
        Selection(category="order"),
        Selection(idle_since=datetime.now(UTC)),
        Selection(category="order", idle_since=datetime(2020, 1, 1)),
        Selection(older_than=datetime(2020, 1, 1)),
    ],
)
async def test_a_bad_selection_is_refused_before_anything_moves(
    root: ArchiveRoot, selection: Selection
) -> None:
    store = MemoryStore()
    await _fill(store)
    with pytest.raises(InvalidArgument):
        await Archiver(store, root).run(selection)
    assert root.locations() == [] and await store.head_position() == 48


class _WatchedRoot(ArchiveRoot):
    """An archive root that says when a segment has been written."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.written = asyncio.Event()

    def write(self, location: str, header: Any, events: Any) -> None:
        super().write(location, header, events)
        self.written.set()


@pytest.mark.parametrize("read", ["all", "stream"])
async def test_a_read_under_way_misses_nothing_an_archive_run_moves(
    tmp_path: Path, read: str
) -> None:
    root = _WatchedRoot(tmp_path / "archive")
    store = MemoryStore()
    await _fill(store)
    answers = await _answers(store)
    archived = ArchivedStore(store, root)
    if read == "all":
        reader = archived.read_all()
        before = [_as_tuple(r) async for r in store.read_all()]
    else:
        reader = archived.read_stream("order-1")
        before = [_as_tuple(r) async for r in store.read_stream("order-1")]
    seen = [_as_tuple(await anext(reader))]
    # The run writes its segment, then waits for the read to end before truncating.
    run = asyncio.create_task(Archiver(store, root).run(Selection(streams=("order-1", "cart-1"))))
    await asyncio.wait_for(root.written.wait(), 60)
    assert [c async for c in store.read_cuts()] == []
    seen += [_as_tuple(r) async for r in reader]
    assert seen == before
    outcome = await asyncio.wait_for(run, 60)
    assert outcome.events == 24
    assert await _answers(archived) == answers


async def test_a_stream_cut_by_something_else_meanwhile_is_left_alone(tmp_path: Path) -> None:
    store = MemoryStore()
    await _fill(store)

    class Interrupted(ArchiveRoot):
        def write(self, location: str, header: Any, events: Any) -> None:
            super().write(location, header, events)
            # something else (a scavenge) truncates order-1 before the run
            # truncates: it runs at the run's next await, before the lock
            asyncio.get_running_loop().create_task(store.truncate_stream("order-1", 5))

    root = Interrupted(tmp_path / "archive")
    outcome = await Archiver(store, root).run(Selection(streams=("order-1", "order-2")))
    assert outcome.streams == 1  # order-2; order-1 was cut meanwhile
    archived = ArchivedStore(store, root)
    assert [r.version async for r in archived.read_stream("order-1")] == list(range(5, 13))
    assert [r.version async for r in archived.read_stream("order-2")] == list(range(1, 13))
    assert (await verify_archive(store, root)).clean and (await verify(store)).clean
