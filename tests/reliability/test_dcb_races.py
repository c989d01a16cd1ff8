"""DCB under concurrency, by trying to break it.

- Racing writer processes (``dcb_writer.py``) append with random
  overlapping conditions, recording the position each read; the verifier
  (``eventfold.testing.conformance.violations``) finds no event matching a
  committed append's query between its ``after`` and its own position, on
  SQLite and PostgreSQL. (Racing asyncio tasks on every backend:
  ``DCBConformance::test_racing_writers_keep_every_condition``.)
- Writer processes with disjoint tags never fail.
- PostgreSQL: a writer holding a transaction open (its locks held) does not
  delay a writer whose condition cannot overlap, and does delay one whose
  condition overlaps, which then fails; readers never see a position late,
  with stream appends, unconditional and conditional DCB appends mixed and
  committing out of order on purpose.
"""

from __future__ import annotations

import asyncio
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from eventfold.compliance.chain import verify
from eventfold.errors import ConditionFailed
from eventfold.store.api import NewEvent, RecordedEvent
from eventfold.store.dcb import AppendCondition, Query, QueryItem
from eventfold.store.postgres import PostgresStore
from eventfold.store.postgres.batch import EventsRequest
from eventfold.store.url import connect
from eventfold.testing.conformance import collect, tagged, violations

WRITER = Path(__file__).with_name("dcb_writer.py")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dcb.db'}"
    pg: str = request.getfixturevalue("pg_url")
    return pg


def run_writers(url: str, mode: str, writers: int, count: int) -> list[tuple[int, int]]:
    """Run writer processes to the end, started together once every one is
    connected (a process takes far longer to start than to run its appends:
    started one by one they would not overlap); (ok, failed) of each."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(WRITER), url, str(w), mode, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    deadline = time.monotonic() + 120
    for proc in procs:
        _wait_ready(proc, deadline, procs)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        done = [line.split() for line in out.splitlines() if line.startswith("done ")]
        assert len(done) == 1, out
        results.append((int(done[0][2]), int(done[0][3])))
    return results


def _wait_ready(proc: subprocess.Popen[str], deadline: float, procs: list[Any]) -> None:
    """Wait (until ``deadline``) for the writer's ``ready`` line; on none,
    stop every writer and fail with what it wrote to stderr."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        seen = selector.select(timeout=max(0.0, deadline - time.monotonic()))
    line = proc.stdout.readline() if seen else ""
    if line != "ready\n":
        for each in procs:
            each.kill()
        _, err = proc.communicate()
        pytest.fail(f"a writer did not start: {line!r} {err}")


def pairs_whole(records: list[RecordedEvent]) -> None:
    """Every append of two ``Claimed`` events is stored whole and adjacent."""
    parts: dict[tuple[int, int], list[int]] = {}
    for r in records:
        if r.type == "Claimed":
            data = msgspec.json.decode(r.data)
            parts.setdefault((data["writer"], data["n"]), []).append(data["part"])
    assert all(sorted(p) == [0, 1] for p in parts.values()), "half of an append is stored"


async def test_racing_writer_processes_keep_every_condition(url: str) -> None:
    async with connect(url):
        pass  # the schema exists before the writers race
    results = run_writers(url, "race", writers=4, count=48)
    async with connect(url) as store:
        records = await collect(store.read_all())
        assert violations(records) == []
        pairs_whole(records)
        assert (await verify(store)).clean
    ok = sum(r[0] for r in results)
    assert ok == sum(1 for r in records if r.type == "Claimed") // 2
    assert ok > 0 and sum(r[1] for r in results) > 0, "no race happened"


async def test_writer_processes_with_disjoint_tags_never_fail(url: str) -> None:
    async with connect(url):
        pass
    results = run_writers(url, "disjoint", writers=4, count=30)
    assert results == [(30, 0)] * 4


# --- PostgreSQL: who waits for whom --------------------------------------------------


async def _raw(pg_url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(pg_url.split("?")[0], autocommit=False)


async def test_postgres_non_overlapping_conditions_never_wait(pg_url: str) -> None:
    """A conditional append holding its locks in an open transaction: a
    writer whose condition cannot overlap completes meanwhile; writers whose
    conditions overlap (two other processes' store objects) are seen waiting
    on its lock, and then fail, seeing its event."""
    async with connect(pg_url) as opened, connect(pg_url) as one, connect(pg_url) as two:
        store = opened
        assert isinstance(store, PostgresStore)
        course = Query.of(QueryItem(types=("Joined",), tags=("course:c1",)))
        other = Query.of(QueryItem(types=("Joined",), tags=("course:c2",)))
        by_type = Query.of(QueryItem(types=("Joined",)))
        conn = await _raw(pg_url)
        try:
            held = await store.append_events_within(
                conn, [tagged("Joined", "course:c1", "student:s1")], AppendCondition(course)
            )
            # Disjoint: its own tag, the same type written; and a stream append.
            free = await store.append_events(
                [tagged("Joined", "course:c2", "student:s1")], AppendCondition(other)
            )
            await store.append("order-1", [tagged("Placed")])
            # Overlapping: the same course, and every event of the type.
            same = asyncio.create_task(
                one.append_events([tagged("Joined", "course:c1")], AppendCondition(course))
            )
            typed = asyncio.create_task(
                two.append_events([tagged("Joined")], AppendCondition(by_type))
            )
            await _until_waiting_on_advisory_locks(pg_url, 2, [same, typed])
            assert not same.done() and not typed.done()
            await conn.commit()
        finally:
            await conn.close()
        with pytest.raises(ConditionFailed) as failed:
            await same
        assert failed.value.position == held
        with pytest.raises(ConditionFailed) as failed:
            await typed
        assert failed.value.position == held
        assert free > held  # a later transaction id: a later position


async def _until_waiting_on_advisory_locks(
    pg_url: str, count: int, tasks: list[asyncio.Task[Any]]
) -> None:
    """Wait (30 s at most) until ``count`` sessions wait for an advisory
    lock; fail if a task ends first (it did not wait)."""
    async with await psycopg.AsyncConnection.connect(pg_url.split("?")[0], autocommit=True) as conn:
        for _ in range(3000):
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
            )
            row = await cur.fetchone()
            if row is not None and row[0] >= count:
                return
            for task in tasks:
                if task.done():
                    raise AssertionError(f"an overlapping writer did not wait: {task!r}")
            await asyncio.sleep(0.01)
    raise AssertionError(f"{count} writers never waited for the open transaction's lock")


async def test_postgres_no_position_appears_late(pg_url: str) -> None:
    """Transactions commit out of order on purpose (held open while later
    ones commit), with stream appends and unconditional and conditional DCB
    appends mixed: readers following the log and a query, reading while the
    held one is open and after it commits, see every event once, in order,
    never a position before one they already saw; a naive reader (ordered by
    position, no snapshot bound) sees a later position first."""
    async with connect(pg_url) as opened, connect(pg_url) as reader:
        store = opened
        assert isinstance(store, PostgresStore)
        everything: list[int] = []
        queried: list[int] = []
        query = Query.of(QueryItem(tags=("k",)), QueryItem(types=("Placed",)))
        naive_saw_late = 0
        ends = {"all": 0, "query": 0}

        async def follow() -> None:
            """One step of a follower of the log and one of the query (on a
            store object of their own, as another process's would be)."""
            async for r in reader.read_all(from_position=ends["all"] + 1):
                everything.append(r.position)
                ends["all"] = r.position
            async for r in reader.read(query, from_position=ends["query"] + 1):
                queried.append(r.position)
                ends["query"] = r.position

        async with await psycopg.AsyncConnection.connect(
            pg_url.split("?")[0], autocommit=True
        ) as watcher:
            naive = psycopg.sql.SQL("SELECT position FROM {} ORDER BY position").format(
                psycopg.sql.Identifier(store.options.schema, "events")
            )
            for round_ in range(6):
                conn = await _raw(pg_url)
                try:
                    condition = (
                        None
                        if round_ % 2
                        else AppendCondition(Query.of(QueryItem(tags=(f"own:{round_}",))))
                    )
                    held = await store.append_events_within(
                        conn, [tagged("Noted", "k", n=round_)], condition
                    )
                    await follow()
                    await asyncio.gather(
                        store.append("order-1", [tagged("Placed", n=round_)]),
                        store.append_events([tagged("Noted", "k", "x")]),
                        store.append_events(
                            [tagged("Noted", "k", f"own2:{round_}")],
                            AppendCondition(Query.of(QueryItem(tags=(f"own2:{round_}",)))),
                        ),
                    )
                    await follow()  # the later ones are committed, the held one is not
                    seen = [row[0] for row in await (await watcher.execute(naive)).fetchall()]
                    naive_saw_late += held not in seen and max(seen) > held
                    await conn.commit()
                finally:
                    await conn.close()
                await follow()
        final = [r.position for r in await collect(store.read_all())]
        assert everything == final, "a follower of the log skipped or repeated an event"
        expected = [r.position for r in await collect(store.read(query))]
        assert queried == expected, "a follower of the query skipped or repeated an event"
        assert naive_saw_late == 6, "the held transactions did not commit out of order"


async def test_postgres_identical_retries_racing_store_once(pg_url: str) -> None:
    """The same DCB append sent twice at once (a client retrying while the
    first is in flight): one is stored, both get its position."""
    async with connect(pg_url) as store:
        events = [tagged("Registered", "username:ana"), NewEvent("Welcomed", b"{}")]
        condition = AppendCondition(Query.of(QueryItem(tags=("username:ana",))))
        first, second = await asyncio.gather(
            store.append_events(events, condition), store.append_events(events, condition)
        )
        assert first == second
        assert len(await collect(store.read_all())) == 2


async def test_postgres_group_commit_checks_each_condition_against_earlier_requests(
    pg_url: str,
) -> None:
    """DCB appends grouped in one transaction (as group commit does): each
    request's condition sees the requests before it; a failed one writes
    nothing; the others commit."""
    async with connect(pg_url) as opened:
        store = opened
        assert isinstance(store, PostgresStore)
        seat = Query.of(QueryItem(tags=("seat:1",)))
        other = Query.of(QueryItem(types=("Taken",), tags=("seat:2",)))
        group = [
            EventsRequest([tagged("Taken", "seat:1")], AppendCondition(seat)),
            EventsRequest([tagged("Taken", "seat:1")], AppendCondition(seat)),
            EventsRequest([tagged("Taken", "seat:2"), tagged("Noted")], AppendCondition(other)),
            EventsRequest([tagged("Noted", "seat:1")], None),
            EventsRequest([tagged("Taken")], AppendCondition(Query.all(), 0)),
        ]
        first, second, third, fourth, fifth = await store._run_events(group)
        assert isinstance(first, int) and isinstance(third, int) and isinstance(fourth, int)
        assert isinstance(second, ConditionFailed) and second.position == first
        assert isinstance(fifth, ConditionFailed) and fifth.position == first
        assert first < third - 1 < third < fourth
        records = await collect(store.read_all())
        assert [r.position for r in records] == [first, third - 1, third, fourth]
        assert (await verify(store)).clean
