"""The partitioned events table (schema version 9): partitions created ahead
of the appends, event ids and stream versions unique across partitions
(tried with concurrent writers and direct inserts), detaching, reading back
and dropping old partitions, a crash in the middle of a detach, and the
migration of an unpartitioned store."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

from eventfold.compliance.chain import verify
from eventfold.errors import DuplicateEventId, EventfoldError, InvalidArgument
from eventfold.store.api import ANY, NO_STREAM, NewEvent, StreamAppend
from eventfold.store.dcb import AppendCondition, Query, QueryItem
from eventfold.store.postgres import PostgresStore, partitions
from eventfold.store.postgres.partitions import (
    detach_before,
    drop_detached,
    list_partitions,
    read_detached,
)
from eventfold.store.postgres.schema import SCHEMA_VERSION
from eventfold.testing.conformance import collect, new_event, numbered, numbers
from eventfold.testing.pgserver import PostgresServer
from tests.partition_helpers import unpartition

WIDTH = 4  # transactions per partition: a new partition every few appends
KEY = b"cut-signing-key"


async def raw(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url.split("?")[0], autocommit=True)


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stores created in this test get partitions of WIDTH transactions."""
    monkeypatch.setattr(partitions, "PARTITION_XIDS", WIDTH)


async def fill(store: PostgresStore, events: int, streams: int) -> None:
    for i in range(events):
        await store.append(f"a-{i % streams}", [new_event(n=i)])


def holding(parts: list[partitions.Partition], position: int) -> partitions.Partition:
    (found,) = [p for p in parts if p.attached and p.low <= position < p.high]
    return found


async def test_appends_land_in_partitions_made_ahead_of_them(
    pg_url: str, pg_schema: str, narrow: None
) -> None:
    async with await PostgresStore.open(pg_url) as store:
        await fill(store, 30, 3)
        everything = await collect(store.read_all())
        parts = await list_partitions(store)
        head = await store.head_position()
    async with await raw(pg_url) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT value FROM {} WHERE key = 'partition_mark'").format(
                sql.Identifier(pg_schema, "settings")
            )
        )
        # the mark is the newest partition's low bound: appends below it
        # (all of them but the one that reaches it) make nothing and lock nothing
        assert await cur.fetchall() == [(max(p.low for p in parts),)]
    assert numbers(everything) == list(range(30))
    assert sum(p.events for p in parts) == 30
    assert len([p for p in parts if p.events]) >= 5  # the log spans many partitions
    for record in everything:
        holding(parts, record.position)  # exactly one partition holds each position
    # the newest partition starts above the head: the next append has its partition
    assert max(p.low for p in parts) > head
    assert all(p.attached for p in parts)


async def test_each_partition_has_its_own_small_indexes(
    pg_url: str, pg_schema: str, narrow: None
) -> None:
    async with await PostgresStore.open(pg_url) as store:
        await fill(store, 12, 2)
        parts = await list_partitions(store)
    async with await raw(pg_url) as conn:
        for p in parts:
            cur = await conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                [pg_schema, p.name],
            )
            defs = " ".join(str(r[0]) for r in await cur.fetchall())
            assert "UNIQUE INDEX" in defs and "(stream_id, version)" in defs
            assert '(type, "position")' in defs or "(type, position)" in defs


async def test_a_duplicate_event_id_fails_in_any_partition(
    pg_url: str, pg_schema: str, narrow: None
) -> None:
    first = new_event(n=1)
    async with await PostgresStore.open(pg_url) as store:
        original = await store.append("a-1", [first], NO_STREAM)
        await fill(store, 3 * WIDTH, 2)  # later appends go to later partitions
        parts = await list_partitions(store)
        head = await store.head_position()
        assert holding(parts, head) != holding(parts, original.position)
        with pytest.raises(DuplicateEventId):
            await store.append("b-1", [first], NO_STREAM)
        # the same append again is a retry: its original result, nothing written
        assert await store.append("a-1", [first], NO_STREAM) == original
        assert len(await collect(store.read_all())) == 1 + 3 * WIDTH
    events = sql.Identifier(pg_schema, "events")
    insert = sql.SQL(
        "INSERT INTO {} (position, stream_id, version, event_id, type, schema_version,"
        " data, metadata, hash) VALUES (%s, %s, %s, %s, 'T', 1, '{{}}', '{{}}', '\\x00')"
    ).format(events)
    async with await raw(pg_url) as conn:
        # a direct insert, in the newest partition, of an id stored in the first
        with pytest.raises(psycopg.errors.UniqueViolation):
            await conn.execute(insert, [head + 1, "c-1", 1, first.event_id])
        # a direct insert repeating version 1 of a-1 in another partition
        with pytest.raises(psycopg.errors.UniqueViolation):
            await conn.execute(insert, [head + 1, "a-1", 1, uuid.uuid4()])
        # a direct insert of a new event is not refused: the checks are not blanket
        await conn.execute(insert, [head + 1, "d-1", 1, uuid.uuid4()])


async def test_concurrent_writers_of_one_id_store_it_once(pg_url: str, narrow: None) -> None:
    async with await PostgresStore.open(pg_url) as store:
        for round_ in range(5):
            event = new_event(n=round_)
            results = await asyncio.gather(
                *(store.append(f"r{round_}-{w}", [event], NO_STREAM) for w in range(8)),
                return_exceptions=True,
            )
            won = [r for r in results if not isinstance(r, BaseException)]
            lost = [r for r in results if isinstance(r, BaseException)]
            assert len(won) == 1, results
            assert all(isinstance(e, DuplicateEventId) for e in lost), lost
        assert len(await collect(store.read_all())) == 5


async def test_concurrent_writers_of_one_stream_get_every_version_once(
    pg_url: str, narrow: None
) -> None:
    async with await PostgresStore.open(pg_url) as store:

        async def writer(w: int) -> None:
            for i in range(10):
                await store.append("s-1", [new_event(w=w, i=i)], ANY)

        await asyncio.gather(*(writer(w) for w in range(6)))
        stream = await collect(store.read_stream("s-1"))
        parts = await list_partitions(store)
    assert [r.version for r in stream] == list(range(1, 61))
    assert len({holding(parts, r.position).name for r in stream}) > 1
    assert (await verify_clean(pg_url)) == 60


async def verify_clean(url: str) -> int:
    async with await PostgresStore.open(url) as store:
        report = await verify(store)
        assert report.clean, report.findings
        return report.events


async def test_detach_read_back_and_drop(pg_url: str, pg_schema: str, narrow: None) -> None:
    async with await PostgresStore.open(pg_url) as store:
        await fill(store, 40, 4)
        before = await collect(store.read_all())
        parts = await list_partitions(store)
        cut = holding(parts, before[19].position).high
        names = await detach_before(store, cut, key=KEY)
        assert names and all(p.high <= cut for p in parts if p.name in names)
        # every stream cut has a signed cut marker after its last detached
        # event, and what remains of each chain verifies from there
        cuts = {c.stream_id: c async for c in store.read_cuts()}
        gone = [r for r in before if r.position < cut]
        for stream in {r.stream_id for r in gone}:
            last = max(r.version for r in gone if r.stream_id == stream)
            assert cuts[stream].before_version == last + 1
            assert cuts[stream].reason == "archived" and cuts[stream].check_signature(KEY)
            assert cuts[stream].archive.startswith(f"postgresql:{pg_schema}.events_")
        report = await verify(store, key=KEY)
        assert report.clean, report.findings
        listed = {p.name: p for p in await list_partitions(store)}
        assert all(not listed[n].attached for n in names)
        remaining = await collect(store.read_all())
        assert [r.position for r in remaining] == [r.position for r in before if r.position >= cut]
        archived = [r for n in names for r in await collect(read_detached(store, n))]
        assert sorted(r.position for r in archived) == [
            r.position for r in before if r.position < cut
        ]
        assert {r.event_id for r in archived} == {r.event_id for r in before if r.position < cut}
        # the streams go on, their versions continue
        result = await store.append("a-0", [new_event(n=99)], 10)
        assert result.version == 11
        with pytest.raises(InvalidArgument):  # still attached
            await collect(read_detached(store, holding(parts, before[-1].position).name))
        with pytest.raises(InvalidArgument):  # not a partition
            await collect(read_detached(store, 'events"; DROP TABLE x; --'))
        with pytest.raises(InvalidArgument):  # the cut-off passes what is final
            await detach_before(store, 1 << 62)
        # tampering with what remains still shows
        async with await raw(pg_url) as conn:
            await conn.execute(
                sql.SQL("UPDATE {} SET data = '{{\"n\": -1}}' WHERE position = %s").format(
                    sql.Identifier(pg_schema, "events")
                ),
                [remaining[0].position],
            )
        problems = {(f.stream_id, f.problem) for f in (await verify(store, key=KEY)).findings}
        assert problems == {(remaining[0].stream_id, "altered")}
        await drop_detached(store, names[0])
        assert names[0] not in {p.name for p in await list_partitions(store)}
        with pytest.raises(InvalidArgument):
            await collect(read_detached(store, names[0]))
    async with await raw(pg_url) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM {})").format(
                sql.Identifier(pg_schema, "event_ids"), sql.Identifier(pg_schema, "events")
            )
        )
        ids, events = (await cur.fetchall())[0]
        assert ids == events == len(remaining) + 1


async def _wait_for_lock_wait(url: str, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with await raw(url) as conn:
        while time.monotonic() < deadline:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE %s",
                [f"%{text}%"],
            )
            row = await cur.fetchone()
            if row is not None and row[0] > 0:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"no session came to wait on a lock in {text!r}")


async def test_a_crash_during_a_detach_leaves_everything_attached(
    dedicated_postgres: PostgresServer, narrow: None
) -> None:
    """The server dies while a detach has already removed the event ids and
    waits to detach the table: after recovery nothing of it is left."""
    url = dedicated_postgres.url() + "?schema=crash"
    async with await PostgresStore.open(url) as store:
        await fill(store, 20, 2)
        before = await collect(store.read_all())
        parts = await list_partitions(store)
    first = holding(parts, before[0].position)
    blocker = await raw(url)
    await blocker.execute("BEGIN")
    await blocker.execute(
        sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(sql.Identifier("crash", first.name))
    )
    store = await PostgresStore.open(url)
    detach = asyncio.create_task(detach_before(store, first.high))
    try:
        await _wait_for_lock_wait(url, "DETACH PARTITION")
        dedicated_postgres.stop("immediate")
        with pytest.raises(EventfoldError):
            await detach
    finally:
        detach.cancel()
        await blocker.close()
        await store.close()
    dedicated_postgres.start()
    async with await PostgresStore.open(url) as store:
        assert await collect(store.read_all()) == before
        assert all(p.attached for p in await list_partitions(store))
        with pytest.raises(DuplicateEventId):  # every id is still known
            await store.append("z-1", [NewEvent("T", b"{}", event_id=before[0].event_id)])
        assert await detach_before(store, first.high) == [first.name]
        assert len(await collect(store.read_all())) == len(before) - first.events
    async with await raw(url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'crash' AND c.relname = 'events'"
        )
        row = await cur.fetchone()
        assert row is not None and row[0] == len(parts) - 1


async def test_an_unpartitioned_store_migrates(pg_url: str, pg_schema: str) -> None:
    """A store of schema version 8 (one events table) opens as version 9:
    every event readable, the chain verifies, ids stay unique, appends go on."""
    async with await PostgresStore.open(pg_url) as store:
        await store.append_many(
            [StreamAppend("a-1", numbered(3)), StreamAppend("b-1", numbered(2))]
        )
        await store.append("a-1", [new_event(text="ünïcode")], 3)
        query = Query.of(QueryItem(types=("Tagged",)))
        await store.append_events(
            [NewEvent("Tagged", b"{}", tags=("x",))], AppendCondition(query, None)
        )
        before = await collect(store.read_all())
    async with await raw(pg_url) as conn:
        await unpartition(conn, pg_schema)
        cur = await conn.execute(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = 'events'",
            [pg_schema],
        )
        assert await cur.fetchall() == [("r",)]  # a plain table, as version 8 had
    async with await PostgresStore.open(pg_url) as store:
        assert await collect(store.read_all()) == before
        assert (await verify(store)).clean
        parts = await list_partitions(store)
        assert parts[0].name == "events_0" and parts[0].events == len(before)
        with pytest.raises(DuplicateEventId):
            await store.append("c-1", [NewEvent("T", b"{}", event_id=before[0].event_id)])
        await store.append("a-1", numbered(2, start=10), 4)
        assert [r.version for r in await collect(store.read_stream("a-1"))] == [1, 2, 3, 4, 5, 6]
        assert [r.tags async for r in store.read(Query.of(QueryItem(tags=("x",))))] == [("x",)]
        report = await verify(store)
        assert report.clean and report.events == len(before) + 2
    async with await raw(pg_url) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT max(version) FROM {}").format(
                sql.Identifier(pg_schema, "schema_version")
            )
        )
        assert await cur.fetchall() == [(SCHEMA_VERSION,)]
        cur = await conn.execute(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = 'events'",
            [pg_schema],
        )
        assert await cur.fetchall() == [("p",)]
