"""SQLite backend behaviour beyond the shared conformance suite: group commit,
readers beside a writer, opening and refusing files, options, cross-process
wake-ups, plain-SQL access."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

import eventfold
from eventfold import Codec, EventRegistry
from eventfold.compliance.chain import verify
from eventfold.errors import (
    ConditionFailed,
    ConfigurationError,
    DuplicateEventId,
    NotAnEventStore,
    SchemaVersionError,
    StoreClosed,
    StoreError,
    StoreTimeout,
    StreamDeleted,
    WrongExpectedVersion,
)
from eventfold.store.api import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
)
from eventfold.store.dcb import AppendCondition, Query, QueryItem
from eventfold.store.sqlite import SCHEMA_VERSION, SQLiteStore, readers, rows, schema
from eventfold.store.sqlite import store as sqlite_store
from eventfold.store.sqlite.options import parse_sqlite_url
from eventfold.testing.conformance import collect, new_event, numbered, numbers


class Happened(msgspec.Struct, frozen=True):
    n: int


def url_of(path: Path, query: str = "") -> str:
    return f"sqlite:///{path}" + (f"?{query}" if query else "")


def snapshot_of_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


async def make_store_file(path: Path, streams: int = 20, events: int = 50) -> None:
    async with eventfold.connect(url_of(path)) as store:
        for i in range(streams):
            await store.append(f"s-{i}", numbered(events, start=i * events))


# --- group commit -------------------------------------------------------------------


async def test_group_commit_coalesces_concurrent_appends(tmp_path: Path) -> None:
    async with eventfold.connect(url_of(tmp_path / "g.db")) as store:
        assert isinstance(store, SQLiteStore)
        before = store.commit_count
        results = await asyncio.gather(
            *(store.append(f"g-{i}", numbered(1, start=i), NO_STREAM) for i in range(200))
        )
        commits = store.commit_count - before
        assert 1 <= commits <= 20, f"200 concurrent appends took {commits} commits"
        assert [r.version for r in results] == [1] * 200
        assert len({r.position for r in results}) == 200
        records = await collect(store.read_all())
        assert len(records) == 200
        assert {r.stream_id: r.position for r in records} == {
            r.stream_id: r.position for r in results
        }
        by_stream = {r.stream_id: numbers([r])[0] for r in records}
        assert by_stream == {f"g-{i}": i for i in range(200)}


async def _hold_write_lock(path: Path) -> sqlite3.Connection:
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    return raw


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (checked every 10 ms, for up to 30 s)."""
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


async def _park_writer(store: SQLiteStore, path: Path, blocker: str) -> tuple[Any, Any]:
    """Hold the write lock and let the writer take ``blocker``'s append as a
    group of its own: it then waits for the lock, and whatever is queued from
    now on forms the next group. Returns the lock's connection and the append."""
    writer: Any = store._writer
    begun = writer.groups_begun
    raw = await _hold_write_lock(path)
    parked = asyncio.ensure_future(store.append(blocker, numbered(1)))
    await _until(lambda: writer.groups_begun == begun + 1, "the writer to take the blocker")
    return raw, parked


async def _queue(store: SQLiteStore, calls: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Start ``calls`` and wait until each has queued its request."""
    writer: Any = store._writer
    futures = [asyncio.ensure_future(call) for call in calls]
    await _until(lambda: writer._queue.qsize() == len(calls), "every call to be queued")
    return futures


async def _one_group(
    store: SQLiteStore, path: Path, blocker: str, calls: list[Coroutine[Any, Any, Any]]
) -> list[Any]:
    """Outcomes of ``calls`` run as ONE group: the writer is parked on a held
    write lock (appending ``blocker``) while they queue up behind it."""
    raw, parked = await _park_writer(store, path, blocker)
    before = store.commit_count
    futures = await _queue(store, calls)
    raw.execute("ROLLBACK")
    raw.close()
    await parked
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert store.commit_count - before == 2  # the blocker's group, then all of these
    return outcomes


async def test_group_commit_checks_each_condition_against_earlier_appends_of_its_group(
    tmp_path: Path,
) -> None:
    """Conditional appends in ONE group commit: each condition is checked
    against the appends before it in the same group, as if each committed
    alone; a failed one is rolled back alone."""
    path = tmp_path / "g.db"
    async with eventfold.connect(url_of(path)) as store:
        assert isinstance(store, SQLiteStore)
        seat = Query.of(QueryItem(tags=("seat:1",)))
        calls = [
            store.append_events(
                [NewEvent("Taken", b"{}", tags=("seat:1",))], AppendCondition(seat)
            ),
            store.append_events(
                [NewEvent("Taken", b"{}", tags=("seat:1",))], AppendCondition(seat)
            ),
            store.append("log-1", [NewEvent("Noted", b"{}", tags=("seat:1",))]),
            store.append_events(
                [NewEvent("Taken", b"{}", tags=("seat:2",))],
                AppendCondition(Query.of(QueryItem(tags=("seat:2",)))),
            ),
        ]
        first, second, noted, other = await _one_group(store, path, "blocker-1", calls)
        assert isinstance(first, int) and isinstance(other, int)
        assert isinstance(second, ConditionFailed) and second.position == first
        assert noted.position > first
        with pytest.raises(ConditionFailed) as failed:
            await store.append_events([NewEvent("Taken", b"{}")], AppendCondition(seat, first))
        assert failed.value.position == noted.position
        assert [r.type for r in await collect(store.read_all())] == [
            "Happened",
            "Taken",
            "Noted",
            "Taken",
        ]


async def test_a_failing_request_fails_alone_and_later_requests_see_earlier_ones(
    tmp_path: Path,
) -> None:
    path = tmp_path / "g.db"
    async with eventfold.connect(url_of(path)) as store:
        assert isinstance(store, SQLiteStore)
        await store.append("seed-1", numbered(1))
        stored = new_event(n=7)
        original = await store.append("dup-1", [stored])
        twins = numbered(2)
        calls = [
            store.append("a-1", numbered(1), NO_STREAM),
            store.append("a-1", numbered(1, start=1), 1),  # sees the request before it
            store.append("a-1", numbered(1), NO_STREAM),
            store.append("seed-1", numbered(1), 5),
            store.append("dup-2", [NewEvent(stored.type, b'{"n": 99}', event_id=stored.event_id)]),
            store.append_many(
                [StreamAppend("m-1", numbered(2), NO_STREAM), StreamAppend("seed-1", [], 0)]
            ),
            store.append("b-1", numbered(3)),
            store.append("dup-1", [stored], NO_STREAM),  # a replay: the original result
            store.append("twin-1", twins, ANY),
            store.append("twin-1", twins, ANY),  # a retry of the request before it
        ]
        outcomes = await _one_group(store, path, "blocker-1", calls)

        ok_a1, ok_a2, late_a, wrong_seed, dup, many, ok_b, replay, twin, twin_again = outcomes
        assert isinstance(ok_a1, AppendResult) and ok_a1.version == 1
        assert isinstance(ok_a2, AppendResult) and ok_a2.version == 2
        assert isinstance(late_a, WrongExpectedVersion) and late_a.actual == 2
        assert isinstance(wrong_seed, WrongExpectedVersion) and wrong_seed.actual == 1
        assert isinstance(dup, DuplicateEventId) and dup.event_id == stored.event_id
        assert isinstance(many, WrongExpectedVersion) and many.stream_id == "seed-1"
        assert isinstance(ok_b, AppendResult) and ok_b.version == 3
        assert replay == original
        assert isinstance(twin, AppendResult) and twin.version == 2
        assert twin_again == twin

        assert await store.stream_version("m-1") == 0
        assert await store.stream_version("dup-2") == 0
        assert await store.stream_version("seed-1") == 1
        log = [(r.stream_id, r.version) for r in await collect(store.read_all())]
        assert log == [
            ("seed-1", 1),
            ("dup-1", 1),
            ("blocker-1", 1),
            ("a-1", 1),
            ("a-1", 2),
            ("b-1", 1),
            ("b-1", 2),
            ("b-1", 3),
            ("twin-1", 1),
            ("twin-1", 2),
        ]


async def test_a_group_that_all_succeeds_is_written_as_if_request_by_request(
    tmp_path: Path,
) -> None:
    """One group, run in one pass without a savepoint per request: later
    requests see earlier ones, positions follow arrival order, snapshots ride
    along, and a conflict in the next group still fails alone."""
    path = tmp_path / "g.db"
    async with eventfold.connect(url_of(path)) as store:
        assert isinstance(store, SQLiteStore)
        calls = [
            store.append("c-1", numbered(2), NO_STREAM),
            store.append("c-1", numbered(1, start=2), 2),
            store.append_many(
                [StreamAppend("c-2", numbered(1), NO_STREAM), StreamAppend("c-1", numbered(1), 3)]
            ),
            store.save_snapshot(Snapshot("c-1", "state", 4, 1, b"4")),
            store.append("c-1", numbered(1, start=9), STREAM_EXISTS),
        ]
        first, second, many, snapshot, last = await _one_group(store, path, "blocker-1", calls)
        assert (first.version, second.version, last.version) == (2, 3, 5)
        assert [r.version for r in many] == [1, 4]
        assert snapshot is None
        assert first.position < second.position < many[0].position < many[1].position
        assert many[1].position < last.position
        log = [(r.stream_id, r.version) for r in await collect(store.read_all())]
        assert log == [
            ("blocker-1", 1),
            ("c-1", 1),
            ("c-1", 2),
            ("c-1", 3),
            ("c-2", 1),
            ("c-1", 4),
            ("c-1", 5),
        ]
        assert (await store.load_snapshot("c-1", "state")) == Snapshot("c-1", "state", 4, 1, b"4")

        calls = [
            store.append("d-1", numbered(1), NO_STREAM),
            store.append("c-1", numbered(1), 1),  # stale: fails alone
            store.append("d-1", numbered(1), 1),
        ]
        ok, stale, ok_again = await _one_group(store, path, "blocker-2", calls)
        assert isinstance(ok, AppendResult) and isinstance(ok_again, AppendResult)
        assert (ok.version, ok_again.version) == (1, 2)
        assert isinstance(stale, WrongExpectedVersion) and stale.actual == 5
        assert await store.stream_version("c-1") == 5


async def test_a_failed_commit_fails_the_whole_group_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    async with eventfold.connect(url_of(path)) as store:
        assert isinstance(store, SQLiteStore)
        await store.append("before-1", numbered(1))
        head = await store.head_position()
        writer: Any = store._writer
        real_commit = writer._commit

        def failing_commit() -> None:
            raise sqlite3.OperationalError("disk I/O error")

        raw, blocker = await _park_writer(store, path, "blocker-1")
        writer._commit = failing_commit
        futures = await _queue(
            store, [store.append(f"lost-{i}", numbered(2), NO_STREAM) for i in range(10)]
        )
        raw.execute("ROLLBACK")
        raw.close()
        outcomes = await asyncio.gather(blocker, *futures, return_exceptions=True)
        assert all(type(o) is StoreError for o in outcomes), outcomes
        assert "disk I/O error" in str(outcomes[0])
        assert await store.head_position() == head
        assert await collect(store.read_all(from_position=head + 1)) == []

        writer._commit = real_commit
        again = await store.append("lost-0", numbered(2), NO_STREAM)
        assert again.version == 2
    async with eventfold.connect(url_of(path)) as store:
        streams = {r.stream_id for r in await collect(store.read_all())}
        assert streams == {"before-1", "lost-0"}


async def test_a_write_lock_held_past_busy_timeout_fails_the_group_typed(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    async with eventfold.connect(url_of(path), busy_timeout=100) as store:
        raw = await _hold_write_lock(path)
        try:
            outcomes = await asyncio.gather(
                *(store.append(f"x-{i}", numbered(1)) for i in range(5)), return_exceptions=True
            )
        finally:
            raw.execute("ROLLBACK")
            raw.close()
        assert all(type(o) is StoreTimeout for o in outcomes), outcomes
        assert "locked" in str(outcomes[0])
        assert all(o.setting == "busy_timeout" for o in outcomes if isinstance(o, StoreTimeout))
        assert await store.head_position() == 0
        assert (await store.append("x-0", numbered(1))).version == 1


async def test_a_cancelled_append_does_not_disturb_the_writer(tmp_path: Path) -> None:
    async with eventfold.connect(url_of(tmp_path / "c.db")) as store:
        task = asyncio.ensure_future(store.append("c-1", numbered(1)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        result = await store.append("c-2", numbered(1))
        assert result.version == 1


# --- readers beside the writer --------------------------------------------------------


async def test_readers_are_not_blocked_by_a_big_open_write_transaction(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    async with eventfold.connect(url_of(path), busy_timeout=10_000) as store:
        await store.append("r-1", numbered(10))
        await store.save_snapshot(Snapshot("r-1", "s", 10, 1, b"{}"))
        head = await store.head_position()
        # Another connection writes 50,000 rows and keeps its transaction open
        # (large enough to spill pages before commit).
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany(
            "INSERT INTO events (position, stream_id, version, category, type, event_id, "
            "schema_version, recorded_at, hash, metadata, data) VALUES (?, 'big-1', ?, 'big', "
            "'T', ?, 1, 0, zeroblob(32), '{}', ?)",
            (
                (head + i, i, uuid.uuid4().bytes, "{" + '"pad": "' + "x" * 200 + '"}')
                for i in range(1, 50_001)
            ),
        )
        # The store's own writer now waits for that lock...
        pending = asyncio.ensure_future(store.append("r-1", numbered(1), 10))
        await asyncio.sleep(0.05)
        assert not pending.done()

        # ...while every read completes at once and sees only committed data.
        async def reads() -> None:
            assert numbers(await collect(store.read_stream("r-1"))) == list(range(10))
            assert len(await collect(store.read_all())) == 10
            assert await store.stream_version("r-1") == 10
            assert await store.stream_version("big-1") == 0
            assert await store.head_position() == head
            assert await store.load_snapshot("r-1", "s") is not None
            assert await store.wait_for_events(head, 0.01) is False

        # Reads waiting for the writer would wait for ever: the lock is held
        # until after them. 30 s is only a bound on a broken store.
        await asyncio.wait_for(reads(), timeout=30.0)
        assert not pending.done()
        raw.execute("ROLLBACK")
        raw.close()
        assert (await pending).version == 11


# --- reads on the caller's thread ---------------------------------------------------------


async def test_a_long_read_gives_other_tasks_a_turn_between_pages(tmp_path: Path) -> None:
    async with eventfold.connect(url_of(tmp_path / "t.db")) as store:
        await store.append("t-1", numbered(2000))
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        before = ticks
        records = await collect(store.read_all())
        during = ticks - before
        stop.set()
        await task
    # Each page is read without suspending; between pages the loop runs others.
    assert len(records) == 2000
    assert during >= 2000 // readers.INLINE_ROWS - 1


async def reads_before_another_task_runs(read: Callable[[], Coroutine[Any, Any, Any]]) -> int:
    """How many reads a task doing nothing else completes before another
    task, ready all along, gets to run (at most 20: without a turn given by
    the reads, a loop waiting for the other task would never end)."""
    done = 0
    ran_after: list[int] = []

    async def other() -> None:
        ran_after.append(done)

    task = asyncio.ensure_future(other())
    while not ran_after and done < 20:
        await read()
        done += 1
    await task
    return ran_after[0]


async def test_a_task_that_only_reads_lets_other_tasks_run(tmp_path: Path) -> None:
    async with eventfold.connect(url_of(tmp_path / "r.db")) as store:
        await store.append("r-1", numbered(3))
        await store.save_snapshot(Snapshot("r-1", "s", 3, 1, b"{}"))
        reads: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
            "read_stream": lambda: collect(store.read_stream("r-1")),
            "read_all": lambda: collect(store.read_all()),
            "read_stream_data": lambda: collect(store.read_stream_data("r-1")),
            "stream_version": lambda: store.stream_version("r-1"),
            "head_position": store.head_position,
            "load_snapshot": lambda: store.load_snapshot("r-1", "s"),
        }
        for name, read in reads.items():
            assert await reads_before_another_task_runs(read) == 0, name


def lock_out_readers(path: Path) -> sqlite3.Connection:
    """A connection in exclusive locking mode, in a write transaction: every
    other connection finds the database busy until it commits."""
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA locking_mode = EXCLUSIVE")
    raw.execute("BEGIN EXCLUSIVE")
    return raw


async def test_a_busy_database_moves_a_small_read_to_a_read_thread(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    async with eventfold.connect(url_of(path)) as store:
        await store.append("b-1", numbered(3))
    # The read threads wait up to a minute; the caller's thread never waits.
    pool = readers.ReadPool(parse_sqlite_url(url_of(path), {"busy_timeout": 60_000}))
    calls: list[tuple[str, int]] = []

    def head(con: sqlite3.Connection) -> int:
        timeout = con.execute("PRAGMA busy_timeout").fetchone()[0]
        calls.append((threading.current_thread().name, timeout))
        return rows.head_position(con)

    here = threading.current_thread().name
    # Busy when the caller's thread would open its connection: no connection,
    # no wait, the whole read on a read thread.
    raw = lock_out_readers(path)
    read = asyncio.ensure_future(pool.small(head))
    for _ in range(10):  # the loop runs while the read waits on a read thread
        await asyncio.sleep(0)
    assert not read.done() and calls == []
    raw.execute("COMMIT")
    raw.close()
    assert await read == 3
    assert calls[0][0].startswith("eventfold-sqlite-read") and calls[0][1] == 60_000
    # Free: the read runs on the caller's thread, whose connection never waits.
    assert await pool.small(head) == 3
    assert calls[1] == (here, 0)
    # Busy when a query runs there (a database this one's open connections keep
    # from being locked out is stood in for by another, locked file): the read
    # goes on to a read thread.
    other = lock_out_readers(tmp_path / "other.db")

    def head_or_busy(con: sqlite3.Connection) -> int:
        if threading.current_thread().name == here:
            with contextlib.closing(sqlite3.connect(tmp_path / "other.db", timeout=0)) as c:
                c.execute("SELECT count(*) FROM sqlite_master")
        return head(con)

    assert await pool.small(head_or_busy) == 3
    assert calls[2][0].startswith("eventfold-sqlite-read")
    other.close()
    await asyncio.to_thread(pool.close)


# --- paging ----------------------------------------------------------------------------


async def test_pages_are_fetched_lazily_so_a_reader_sees_later_commits(tmp_path: Path) -> None:
    async with eventfold.connect(url_of(tmp_path / "p.db")) as store:
        await store.append("p-1", numbered(3 * rows.PAGE_ROWS))
        seen: list[RecordedEvent] = []
        async for record in store.read_all():
            if not seen:
                await store.append("late-1", [new_event(n=-1)])
            seen.append(record)
        assert len(seen) == 3 * rows.PAGE_ROWS + 1
        assert seen[-1].stream_id == "late-1"


async def test_pages_cut_by_payload_size_lose_and_repeat_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "INLINE_BYTES", 2_000)
    monkeypatch.setattr(rows, "_CHUNK", 7)
    async with eventfold.connect(url_of(tmp_path / "p.db")) as store:
        await store.append("p-1", [new_event(n=i, pad="y" * 90) for i in range(300)])
        await store.append("q-1", [new_event(n=300 + i, pad="y" * 90) for i in range(50)])
        assert numbers(await collect(store.read_all())) == list(range(350))
        assert numbers(await collect(store.read_stream("p-1"))) == list(range(300))
        backwards = await collect(store.read_stream("p-1", backwards=True, limit=250))
        assert numbers(backwards) == list(range(299, 49, -1))
        assert numbers(await collect(store.read_all(categories=["q", "p"], limit=333))) == list(
            range(333)
        )


async def test_category_and_type_filters_across_many_pages(tmp_path: Path) -> None:
    async with eventfold.connect(url_of(tmp_path / "f.db")) as store:
        n = 0
        expected: list[tuple[str, str, int]] = []
        for round_ in range(6):
            for category in ("alpha", "beta", "gamma", "delta"):
                kind = "Even" if round_ % 2 == 0 else "Odd"
                batch = [new_event(kind, n=n + i) for i in range(130)]
                await store.append(f"{category}-{round_}", batch)
                expected += [(category, kind, n + i) for i in range(130)]
                n += 130
        everything = await collect(store.read_all())
        middle = everything[len(everything) // 3].position
        cases: list[dict[str, Any]] = [
            {"categories": ["beta"]},
            {"categories": ["gamma", "alpha"]},
            {"categories": ["alpha", "beta", "gamma", "delta", "nope"]},
            {"categories": [f"c{i}" for i in range(40)] + ["delta"]},  # many: the scan path
            {"types": ["Odd"]},
            {"categories": ["alpha", "delta"], "types": ["Even"]},
            {"categories": ["beta"], "types": ["Odd"], "from_position": middle},
            {"categories": ["alpha", "gamma"], "limit": 1500},
        ]
        for case in cases:
            start = case.get("from_position", 0)
            cats, kinds, limit = case.get("categories"), case.get("types"), case.get("limit")
            want = [
                number
                for (category, kind, number), record in zip(expected, everything, strict=True)
                if record.position >= start
                and (cats is None or category in cats)
                and (kinds is None or kind in kinds)
            ][:limit]
            got = await collect(store.read_all(**case))
            assert numbers(got) == want, case
            assert [r.position for r in got] == sorted({r.position for r in got})


# --- opening files -----------------------------------------------------------------------


async def test_reopening_keeps_events_snapshots_and_order(tmp_path: Path) -> None:
    path = tmp_path / "re.db"
    async with eventfold.connect(url_of(path)) as store:
        first = await store.append("order-1", numbered(3), NO_STREAM)
        await store.append("order-2", numbered(2))
        await store.save_snapshot(Snapshot("order-1", "order", 3, 1, b'{"total": 3}'))
    async with eventfold.connect(url_of(path)) as store:
        assert await store.stream_version("order-1") == 3
        assert await store.load_snapshot("order-1", "order") == Snapshot(
            "order-1", "order", 3, 1, b'{"total": 3}'
        )
        head = await store.head_position()
        more = await store.append("order-1", numbered(1, start=3), 3)
        assert more.version == 4 and more.position > head > first.position
        assert numbers(await collect(store.read_stream("order-1"))) == [0, 1, 2, 3]
        with pytest.raises(WrongExpectedVersion):
            await store.append("order-2", numbered(1), NO_STREAM)


async def test_an_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    async with eventfold.connect(url_of(path)) as store:
        await store.append("e-1", numbered(1))
    assert path.read_bytes().startswith(b"SQLite format 3\x00")


async def test_schema_creation_is_all_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "half.db"
    broken = (*schema._DDL, "CREATE TABLE events (again INTEGER)")
    monkeypatch.setattr(schema, "_DDL", broken)
    with pytest.raises(StoreError):
        await eventfold.connect(url_of(path))
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT name FROM sqlite_master").fetchall() == []
    raw.close()
    monkeypatch.undo()
    async with eventfold.connect(url_of(path)) as store:
        assert (await store.append("h-1", numbered(1))).version == 1


async def test_schema_version_is_recorded_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    await make_store_file(path, streams=1, events=1)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version FROM eventfold_schema").fetchall() == [(SCHEMA_VERSION,)]
        raw.execute("UPDATE eventfold_schema SET version = ?", (SCHEMA_VERSION + 1,))
    raw.close()
    before = snapshot_of_files(tmp_path)
    with pytest.raises(SchemaVersionError) as info:
        await eventfold.connect(url_of(path))
    assert info.value.found == SCHEMA_VERSION + 1
    assert info.value.supported == SCHEMA_VERSION
    assert str(path) in str(info.value)
    assert snapshot_of_files(tmp_path) == before


async def test_a_schema_1_store_is_upgraded_to_tags_and_dcb(tmp_path: Path) -> None:
    """A file written before tags existed: opened, it gains the tags column,
    their index table and the type index in one step; its events read with no
    tags, keep their chain and are matched by queries of types."""
    path = tmp_path / "old.db"
    async with eventfold.connect(url_of(path)) as store:
        await store.append("a-1", numbered(3))
    with sqlite3.connect(path) as raw:  # back to what schema version 1 stored
        raw.execute("DROP TABLE event_tags")
        raw.execute("DROP INDEX events_type")
        raw.execute("ALTER TABLE events DROP COLUMN tags")
        raw.execute("DROP TABLE stream_cuts")
        raw.execute("UPDATE eventfold_schema SET version = 1")
    raw.close()
    async with eventfold.connect(url_of(path)) as store:
        old = await collect(store.read_all())
        assert [r.tags for r in old] == [(), (), ()]
        query = Query.of(QueryItem(types=("Happened",)))
        assert [r.position async for r in store.read(query)] == [r.position for r in old]
        await store.append_events(
            [NewEvent("Tagged", b"{}", tags=("x",))], AppendCondition(query, old[-1].position)
        )
        assert (await verify(store)).clean
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version FROM eventfold_schema").fetchall() == [(SCHEMA_VERSION,)]
        assert raw.execute("SELECT tag FROM event_tags").fetchall() == [("x",)]
    raw.close()


async def test_a_schema_2_store_is_upgraded_to_stream_cuts(tmp_path: Path) -> None:
    """A file written before stream lifecycle existed: opened, it gains the
    cut table; its streams can be truncated and deleted, and verify."""
    path = tmp_path / "old.db"
    async with eventfold.connect(url_of(path)) as store:
        await store.append("a-1", numbered(3))
        await store.append("b-1", numbered(2))
    with sqlite3.connect(path) as raw:  # back to what schema version 2 stored
        raw.execute("DROP TABLE stream_cuts")
        raw.execute("UPDATE eventfold_schema SET version = 2")
    raw.close()
    async with eventfold.connect(url_of(path)) as store:
        cut = await store.truncate_stream("a-1", 3, key=b"k")
        assert cut is not None and cut.before_version == 3
        await store.delete_stream("b-1", hard=True)
        assert [r.version async for r in store.read_stream("a-1")] == [3]
        with pytest.raises(StreamDeleted):
            await store.append("b-1", numbered(1))
        assert (await verify(store)).clean
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version FROM eventfold_schema").fetchall() == [(SCHEMA_VERSION,)]
        assert raw.execute("SELECT count(*) FROM stream_cuts").fetchone() == (2,)
    raw.close()


@pytest.mark.parametrize("damage", ["random_bytes", "truncated", "garbage_pages", "bad_header"])
async def test_files_that_are_not_usable_stores_are_refused_untouched(
    tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "bad.db"
    if damage == "random_bytes":
        path.write_bytes(os.urandom(64 * 1024))
    else:
        await make_store_file(path)
        data = path.read_bytes()
        assert len(data) >= 16 * 4096
        if damage == "truncated":
            data = data[: len(data) // 2]
        elif damage == "garbage_pages":  # keep page 1, overwrite every table's pages
            data = data[:4096] + os.urandom(len(data) - 4096)
        else:
            data = b"SQLite format 2\x00" + data[16:]
        path.write_bytes(data)
    before = snapshot_of_files(tmp_path)
    with pytest.raises(NotAnEventStore) as info:
        await eventfold.connect(url_of(path))
    assert info.value.location == str(path)
    assert str(path) in str(info.value)
    assert snapshot_of_files(tmp_path) == before


async def test_a_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        raw.execute("INSERT INTO customers (name) VALUES ('ana')")
    raw.close()
    before = snapshot_of_files(tmp_path)
    with pytest.raises(NotAnEventStore) as info:
        await eventfold.connect(url_of(path))
    assert "customers" in info.value.reason
    assert snapshot_of_files(tmp_path) == before


async def test_a_row_written_by_someone_else_that_cannot_be_read_is_a_store_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    async with eventfold.connect(url_of(path)) as store:
        await store.append("t-1", numbered(2))
        with sqlite3.connect(path) as raw:
            raw.execute("UPDATE events SET event_id = x'0102' WHERE version = 1")
            raw.execute("UPDATE events SET recorded_at = 'noon' WHERE version = 2")
        raw.close()
        # Ids and times are decoded when read (eventfold.store.lazy): the
        # records come back, and reading the damaged field is the error.
        first, second = await collect(store.read_stream("t-1"))
        assert numbers([first, second]) == [0, 1]
        with pytest.raises(StoreError, match="'t-1' version 1: a stored event id"):
            first.event_id  # noqa: B018
        with pytest.raises(StoreError, match="'t-1' version 2: a stored event time"):
            second.recorded_at  # noqa: B018
        registry = EventRegistry()
        registry.register("Happened")(Happened)
        envelope = Codec(registry).decode(first)
        assert envelope.event == Happened(0)
        with pytest.raises(StoreError, match="a stored event id"):
            envelope.event_id  # noqa: B018


async def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotAnEventStore):
        await eventfold.connect(url_of(tmp_path))


# --- URLs and options ----------------------------------------------------------------------


async def test_relative_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    async with eventfold.connect("sqlite:///sub/rel.db") as store:
        assert isinstance(store, SQLiteStore)
        assert store.path == str(tmp_path / "sub" / "rel.db")
        await store.append("x-1", numbered(1))
    assert (tmp_path / "sub" / "rel.db").is_file()
    absolute = tmp_path / "abs.db"
    assert str(absolute).startswith("/")
    async with eventfold.connect("sqlite:///" + str(absolute)) as store:  # four slashes
        assert isinstance(store, SQLiteStore) and store.path == str(absolute)
    async with eventfold.connect("sqlite:///name%20with%20space.db") as store:
        assert isinstance(store, SQLiteStore)
    assert (tmp_path / "name with space.db").is_file()
    for bad in ["sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite://host/x.db"]:
        with pytest.raises(ConfigurationError):
            await eventfold.connect(bad)


@pytest.mark.parametrize(
    ("url_query", "options", "setting"),
    [
        ("", {"sinchronous": "FULL"}, "sinchronous"),
        ("journal_mode=DELETE", {}, "journal_mode"),
        ("", {"synchronous": "OFF"}, "synchronous"),
        ("synchronous=sometimes", {}, "synchronous"),
        ("", {"busy_timeout": -1}, "busy_timeout"),
        ("busy_timeout=soon", {}, "busy_timeout"),
        ("", {"readers": 0}, "readers"),
        ("synchronous=FULL", {"synchronous": "NORMAL"}, "synchronous"),
    ],
)
async def test_bad_options_are_configuration_errors(
    tmp_path: Path, url_query: str, options: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        await eventfold.connect(url_of(tmp_path / "o.db", url_query), **options)
    assert info.value.setting == setting
    assert setting in str(info.value)
    assert not (tmp_path / "o.db").exists()


@pytest.mark.parametrize(
    ("url_query", "options", "synchronous", "busy_timeout"),
    [
        ("", {}, 2, 5000),
        ("", {"synchronous": "NORMAL"}, 1, 5000),
        ("synchronous=normal&busy_timeout=250", {}, 1, 250),
        ("", {"synchronous": "extra", "busy_timeout": 7}, 3, 7),
    ],
)
async def test_options_are_applied_to_the_connection(
    tmp_path: Path, url_query: str, options: dict[str, Any], synchronous: int, busy_timeout: int
) -> None:
    async with eventfold.connect(url_of(tmp_path / "o.db", url_query), **options) as store:
        assert isinstance(store, SQLiteStore)
        assert await store.pragma("synchronous") == synchronous
        assert await store.pragma("busy_timeout") == busy_timeout
        assert await store.pragma("journal_mode") == "wal"


# --- waiting, plain SQL, closing --------------------------------------------------------------


async def test_wait_for_events_wakes_on_a_local_commit_without_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "POLL_INTERVAL", 30.0)
    async with eventfold.connect(url_of(tmp_path / "w.db")) as store:

        async def append_later() -> None:
            await asyncio.sleep(0.1)
            await store.append("w-1", numbered(1))

        task = asyncio.ensure_future(append_later())
        # Woken by the commit: with nothing to wake it, a wait of 8 s would
        # poll next after 30 s and answer False.
        assert await store.wait_for_events(0, 8.0) is True
        await task


async def test_wait_for_events_sees_an_append_by_another_store_object(tmp_path: Path) -> None:
    url = url_of(tmp_path / "w.db")
    async with eventfold.connect(url) as waiter, eventfold.connect(url) as other:
        await other.append("w-1", numbered(1))
        head = await waiter.head_position()
        assert head == 1

        async def append_later() -> None:
            await asyncio.sleep(0.2)
            await other.append("w-1", numbered(1, start=1))

        task = asyncio.ensure_future(append_later())
        assert await waiter.wait_for_events(head, 30.0) is True
        await task
        assert await waiter.head_position() == 2
        started = time.monotonic()
        assert await waiter.wait_for_events(2, 0.3) is False
        assert time.monotonic() - started >= 0.25  # it waited, and found nothing new


async def test_history_is_queryable_with_plain_sql(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    before = datetime.now(UTC)
    async with eventfold.connect(url_of(path)) as store:
        await store.append(
            "order-1",
            [
                NewEvent(
                    "Placed",
                    msgspec.json.encode({"amount": 12.5, "items": [{"sku": "a"}]}),
                    metadata=b'{"correlation_id": "c-9"}',
                ),
                NewEvent("Paid", b'{"amount": 12.5}'),
            ],
        )
        await store.append("order-2", [NewEvent("Placed", b'{"amount": 3}')])
    with sqlite3.connect(path) as raw:
        placed = raw.execute(
            "SELECT stream_id, json_extract(data, '$.amount') FROM events "
            "WHERE type = 'Placed' ORDER BY position"
        ).fetchall()
        assert placed == [("order-1", 12.5), ("order-2", 3)]
        assert raw.execute(
            "SELECT json_extract(data, '$.items[0].sku'), "
            "json_extract(metadata, '$.correlation_id') FROM events WHERE version = 1 "
            "AND stream_id = 'order-1'"
        ).fetchone() == ("a", "c-9")
        total = raw.execute(
            "SELECT category, sum(json_extract(data, '$.amount')) FROM events "
            "WHERE type = 'Placed' GROUP BY category"
        ).fetchall()
        assert total == [("order", 15.5)]
        (micros,) = raw.execute("SELECT min(recorded_at) FROM events").fetchone()
        assert abs(micros / 1e6 - before.timestamp()) < 60
    raw.close()


async def test_close_finishes_queued_appends_then_refuses_work(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = await eventfold.connect(url_of(path))
    futures = [asyncio.ensure_future(store.append(f"c-{i}", numbered(2))) for i in range(50)]
    await asyncio.sleep(0)  # every append has been queued
    await store.close()
    results = await asyncio.gather(*futures)
    assert [r.version for r in results] == [2] * 50
    await store.close()  # closing twice is fine
    for call in (
        store.append("c-1", numbered(1)),
        store.append_many([StreamAppend("c-1", numbered(1), ANY)]),
        store.stream_version("c-1"),
        store.head_position(),
        store.wait_for_events(0, 0.01),
        store.save_snapshot(Snapshot("c-1", "s", 1, 1, b"{}")),
        store.load_snapshot("c-1", "s"),
        collect(store.read_stream("c-1")),
        collect(store.read_all()),
    ):
        with pytest.raises(StoreClosed):
            await call
    assert not (tmp_path / "c.db-wal").exists()  # closed cleanly: WAL checkpointed
    async with eventfold.connect(url_of(path)) as again:
        assert len(await collect(again.read_all())) == 100


def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Creating the schema and switching to WAL race between processes; every
    opener must wait its turn rather than fail with 'database is locked'."""
    import subprocess
    import sys

    script = (
        "import asyncio, sys, eventfold\n"
        "async def main():\n"
        "    async with eventfold.connect(sys.argv[1]) as store:\n"
        "        await store.append(sys.argv[2], [eventfold.NewEvent('T', b'{}')])\n"
        "asyncio.run(main())\n"
    )
    for round in range(3):
        url = f"sqlite:///{tmp_path / f'race-{round}.db'}"
        procs = [
            subprocess.Popen([sys.executable, "-c", script, url, f"s-{i}"], stderr=subprocess.PIPE)
            for i in range(6)
        ]
        failures = [p.stderr.read().decode() for p in procs if p.wait(timeout=60) != 0]  # type: ignore[union-attr]
        assert not failures, failures[0]
