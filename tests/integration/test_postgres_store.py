"""PostgreSQL store behaviour beyond the shared contract: options, schema
management, timeouts, failures, group commit, live wake-ups, plain SQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from typing import Any

import msgspec
import psycopg
import pytest
from psycopg import sql

from eventfold.compliance.chain import verify
from eventfold.errors import (
    ConfigurationError,
    InvalidArgument,
    NotAnEventStore,
    SchemaVersionError,
    StoreClosed,
    StoreError,
    StoreTimeout,
    StreamDeleted,
    WrongExpectedVersion,
)
from eventfold.store.api import NO_STREAM, NewEvent, Snapshot, StreamAppend
from eventfold.store.chain import link_hash, link_message
from eventfold.store.dcb import AppendCondition, Query, QueryItem
from eventfold.store.postgres import PostgresStore
from eventfold.store.postgres.schema import SCHEMA_VERSION
from eventfold.store.url import connect
from eventfold.testing.conformance import collect, new_event, numbered, numbers
from tests.conftest import with_params
from tests.partition_helpers import unpartition


async def raw(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def open_store(url: str, **options: Any) -> PostgresStore:
    store = await connect(url, **options)
    assert isinstance(store, PostgresStore)
    return store


# --- options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"no_such_option": 1},
        {"pool_max_size": "many"},
        {"pool_min_size": 0},
        {"lock_timeout": -1},
        {"statement_timeout": float("nan")},
        {"notify": "perhaps"},
        {"schema": ""},
        {"schema": "s" * 64},
        {"schema": "pg_mine"},
        {"schema": 42},
        {"max_batch_events": 0},
    ],
)
async def test_bad_options_are_configuration_errors(
    postgres_url: str, options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError):
        await connect(postgres_url, **options)


async def test_unknown_url_parameter_is_a_configuration_error(postgres_url: str) -> None:
    with pytest.raises(ConfigurationError):
        await connect(with_params(postgres_url, nonsense="1"))
    with pytest.raises(ConfigurationError):
        await connect(with_params(postgres_url, pool_max_size="x"))


async def test_url_parameters_and_keywords(postgres_url: str, pg_schema: str) -> None:
    url = with_params(
        postgres_url, schema=pg_schema, lock_timeout="2.5", application_name="eventfold-test"
    )
    async with await open_store(url, statement_timeout=7) as store:
        assert store.options.schema == pg_schema
        assert store.options.lock_timeout == 2.5
        assert store.options.statement_timeout == 7.0
        await store.append("a-1", numbered(1))
        async with store._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'),"
                " current_setting('idle_in_transaction_session_timeout'),"
                " current_setting('application_name'), current_setting('TimeZone')"
            )
            assert await cur.fetchone() == ("2500ms", "7s", "1min", "eventfold-test", "UTC")


async def test_timeouts_are_bounded_by_default(pg_url: str) -> None:
    async with await open_store(pg_url) as store, store._pool.connection() as conn:
        cur = await conn.execute(
            "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'),"
            " current_setting('idle_in_transaction_session_timeout')"
        )
        assert await cur.fetchone() == ("5s", "30s", "1min")


async def test_unreachable_server_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        await connect("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2)


# --- schema -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema", ['x"; DROP TABLE victim; --', "a$fn$b'c", "Mixed Case.dots", "ünïcode-schéma"]
)
async def test_hostile_schema_names_are_quoted_never_executed(
    postgres_url: str, schema: str
) -> None:
    async with await raw(postgres_url) as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS public.victim (x int)")
    async with await open_store(postgres_url, schema=schema) as store:
        result = await store.append("order-1", [new_event(n=1)], NO_STREAM)
        assert result.version == 1
        assert numbers(await collect(store.read_all())) == [1]
    async with await raw(postgres_url) as conn:
        cur = await conn.execute("SELECT to_regclass('public.victim') IS NOT NULL")
        assert await cur.fetchone() == (True,)
        cur = await conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "events"))
        )
        assert await cur.fetchone() == (1,)
        await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


async def test_open_twice_and_concurrently_is_safe(pg_url: str, pg_schema: str) -> None:
    stores = await asyncio.gather(*(open_store(pg_url) for _ in range(6)))
    try:
        await stores[0].append("a-1", numbered(1))
        assert await stores[5].stream_version("a-1") == 1
    finally:
        for store in stores:
            await store.close()
    async with await open_store(pg_url) as again:
        assert await again.stream_version("a-1") == 1
    async with await raw(pg_url.split("?")[0]) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT version FROM {}").format(sql.Identifier(pg_schema, "schema_version"))
        )
        assert await cur.fetchall() == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


async def test_open_from_several_processes_at_once(pg_url: str, pg_schema: str) -> None:
    script = (
        "import asyncio, sys\n"
        "from eventfold.store.url import connect\n"
        "async def main():\n"
        "    async with connect(sys.argv[1]) as store:\n"
        "        await store.stream_version('x-1')\n"
        "asyncio.run(main())\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, pg_url], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    async with await raw(pg_url.split("?")[0]) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT version FROM {}").format(sql.Identifier(pg_schema, "schema_version"))
        )
        assert await cur.fetchall() == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


async def test_newer_schema_version_is_refused(pg_url: str, pg_schema: str) -> None:
    async with await open_store(pg_url) as store:
        await store.append("a-1", numbered(1))
    async with await raw(pg_url.split("?")[0]) as conn:
        await conn.execute(
            sql.SQL("INSERT INTO {} (version) VALUES (99)").format(
                sql.Identifier(pg_schema, "schema_version")
            )
        )
    with pytest.raises(SchemaVersionError) as info:
        await connect(pg_url)
    assert info.value.found == 99


async def test_foreign_schema_is_not_an_event_store(pg_url: str, pg_schema: str) -> None:
    async with await raw(pg_url.split("?")[0]) as conn:
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
        await conn.execute(
            sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(pg_schema, "events"))
        )
    with pytest.raises(NotAnEventStore):
        await connect(pg_url)


async def test_positions_stay_above_restored_rows(pg_url: str, pg_schema: str) -> None:
    """After a logical restore into a cluster whose transaction counter is
    lower, new positions must still sort after the restored ones."""
    async with await open_store(pg_url) as store:
        await store.append("a-1", numbered(1))
    async with await raw(pg_url.split("?")[0]) as conn:
        await conn.execute(
            sql.SQL("UPDATE {} SET position = position + ((10000000::bigint) << 20)").format(
                sql.Identifier(pg_schema, "events")
            )
        )
    async with await open_store(pg_url) as store:
        (restored,) = await collect(store.read_all())
        result = await store.append("a-1", numbered(1, start=1), 1)
        assert result.position > restored.position
        assert numbers(await collect(store.read_all())) == [0, 1]
        assert await store.head_position() == result.position


async def test_upgrade_from_schema_version_1_fills_the_hash_chain(
    pg_url: str, pg_schema: str
) -> None:
    async with await open_store(pg_url) as store:
        await store.append_many(
            [StreamAppend("a-1", numbered(3)), StreamAppend("b-1", numbered(2))]
        )
        await store.append("a-1", [new_event(text="ünïcode")])
        before = [link async for link in store.read_chain()]
    schema = sql.Identifier(pg_schema)
    async with await raw(pg_url.split("?")[0]) as conn:  # back to what version 1 stored
        await unpartition(conn, pg_schema)
        await _undo_tags(conn, pg_schema)
        for table in ("events", "streams"):
            await conn.execute(
                sql.SQL("ALTER TABLE {} DROP COLUMN hash").format(sql.Identifier(pg_schema, table))
            )
        await conn.execute(
            sql.SQL("DELETE FROM {}.schema_version WHERE version > 1").format(schema)
        )
    async with await open_store(pg_url) as store:
        assert [link async for link in store.read_chain()] == before
        report = await verify(store)
        assert report.clean and report.events == 6
        await store.append("a-1", numbered(1))
        assert (await verify(store)).clean


async def _undo_lifecycle(conn: Any, pg_schema: str) -> None:
    """Take a store back to what schema version 7 stored: no stream cuts."""
    for statement in (
        "DROP TABLE {}.stream_cuts",
        "ALTER TABLE {}.streams DROP CONSTRAINT streams_version_check",
        "ALTER TABLE {}.streams DROP COLUMN first_version, DROP COLUMN tombstoned",
        "ALTER TABLE {}.streams ADD CONSTRAINT streams_version_check CHECK (version > 0)",
    ):
        await conn.execute(sql.SQL(statement).format(sql.Identifier(pg_schema)))


async def _undo_tags(conn: Any, pg_schema: str) -> None:
    """Take a store back to what schema version 6 stored: no tags, no DCB."""
    await _undo_lifecycle(conn, pg_schema)
    for statement in (
        "DROP TABLE {}.event_tags",
        "DROP INDEX {}.events_type_position",
        "ALTER TABLE {}.events DROP COLUMN tags",
        "DROP FUNCTION {}.append_events",
    ):
        await conn.execute(sql.SQL(statement).format(sql.Identifier(pg_schema)))


async def test_upgrade_from_schema_version_6_adds_tags_and_dcb(pg_url: str, pg_schema: str) -> None:
    """Events stored before tags existed read with no tags, keep their chain,
    and are matched by queries of types; new appends carry tags."""
    async with await open_store(pg_url) as store:
        await store.append("a-1", numbered(3))
    async with await raw(pg_url.split("?")[0]) as conn:
        await unpartition(conn, pg_schema)
        await _undo_tags(conn, pg_schema)
        await conn.execute(
            sql.SQL("DELETE FROM {}.schema_version WHERE version > 6").format(
                sql.Identifier(pg_schema)
            )
        )
    async with await open_store(pg_url) as store:
        old = [r async for r in store.read_all()]
        assert [r.tags for r in old] == [(), (), ()]
        query = Query.of(QueryItem(types=("Happened",)))
        assert [r.position async for r in store.read(query)] == [r.position for r in old]
        await store.append_events(
            [NewEvent("Tagged", b"{}", tags=("x",))], AppendCondition(query, old[-1].position)
        )
        assert (await verify(store)).clean
        assert [r.tags async for r in store.read(Query.of(QueryItem(tags=("x",))))] == [("x",)]


async def test_upgrade_from_schema_version_7_adds_stream_lifecycle(
    pg_url: str, pg_schema: str
) -> None:
    """A store from before stream lifecycle: its streams can be truncated and
    deleted after the upgrade, the append functions refuse a tombstone, and
    the chain verifies."""
    async with await open_store(pg_url) as store:
        await store.append("a-1", numbered(3))
        await store.append("b-1", numbered(2))
    async with await raw(pg_url.split("?")[0]) as conn:
        await unpartition(conn, pg_schema)
        await _undo_lifecycle(conn, pg_schema)
        await conn.execute(
            sql.SQL("DELETE FROM {}.schema_version WHERE version > 7").format(
                sql.Identifier(pg_schema)
            )
        )
    async with await open_store(pg_url) as store:
        cut = await store.truncate_stream("a-1", 3, key=b"k")
        assert cut is not None and [r.version async for r in store.read_stream("a-1")] == [3]
        await store.delete_stream("b-1", hard=True)
        with pytest.raises(StreamDeleted):
            await store.append("b-1", numbered(1))
        with pytest.raises(StreamDeleted):  # the batch function too
            await store.append_many(
                [StreamAppend("a-1", numbered(1)), StreamAppend("b-1", numbered(1))]
            )
        assert (await store.append("a-1", numbered(1), 3)).version == 4
        assert (await verify(store, key=b"k")).clean is False  # b-1's cut is unsigned
        assert (await verify(store)).clean


async def test_tampering_in_sql_shows_in_the_chain(pg_url: str, pg_schema: str) -> None:
    async with await open_store(pg_url) as store:
        await store.append("a-1", numbered(3))
        await store.append("b-1", numbered(2))
        async with await raw(pg_url.split("?")[0]) as conn:
            events = sql.Identifier(pg_schema, "events")
            await conn.execute(
                sql.SQL(
                    """UPDATE {} SET data = '{{"n": 99}}' WHERE stream_id = 'a-1' AND version = 2"""
                ).format(events)
            )
            await conn.execute(
                sql.SQL("DELETE FROM {} WHERE stream_id = 'b-1' AND version = 1").format(events)
            )
        report = await verify(store)
        problems = {(f.stream_id, f.version, f.problem) for f in report.findings}
        assert ("a-1", 2, "altered") in problems
        assert ("b-1", 1, "missing") in problems


@pytest.mark.parametrize(
    ("stream_id", "version", "type", "schema_version", "data", "metadata"),
    [
        ("a-1", 1, "T", 1, '{"n": 1}', "{}"),
        ("ünï-çødé-☃", 2**40, "Item.Added:v-2", 2**31 - 1, '{"t": "é \\n \\" \u2603"}', "{}"),
        ("x" * 200, 7, "T", 3, "{}", '{"actor": "ana", "extra": {"k": "ü"}}'),
        ("s-1", 2, "T", 1, '{"big": ' + '"' + "z" * 100_000 + '"}', '{"a": 1}'),
    ],
)
async def test_the_sql_chain_format_is_the_python_one(
    pg_url: str,
    pg_schema: str,
    stream_id: str,
    version: int,
    type: str,
    schema_version: int,
    data: str,
    metadata: str,
) -> None:
    """chain_message and chain_hash, the SQL side of the chain, build the bytes
    and digests of eventfold.store.chain for any input (the conformance suite
    checks the digests stored by appends)."""
    async with await open_store(pg_url):
        pass  # creates the schema and its functions
    event_id = uuid.uuid4()
    prev = bytes(range(32))
    args = [stream_id, version, event_id, type, schema_version, data, metadata]
    async with await raw(pg_url.split("?")[0]) as conn:
        cur = await conn.execute(
            sql.SQL(
                "SELECT {}(%s, %s, %s, %s, %s, %s, %s), {}(%s, %s, %s, %s, %s, %s, %s, %s)"
            ).format(
                sql.Identifier(pg_schema, "chain_message"),
                sql.Identifier(pg_schema, "chain_hash"),
            ),
            [*args, prev, *args],
        )
        message, digest = await cur.fetchone() or (None, None)
    assert link_message(prev, *args) == prev + bytes(message)
    assert link_hash(prev, *args) == bytes(digest)


# --- timeouts and failures ------------------------------------------------------------


async def test_lock_timeout_is_a_store_error_and_writes_nothing(
    pg_url: str, pg_schema: str
) -> None:
    async with await open_store(pg_url, lock_timeout=0.2) as store:
        await store.append("locked-1", numbered(1))
        async with await raw(pg_url.split("?")[0]) as holder, holder.transaction():
            await holder.execute(
                sql.SQL("SELECT * FROM {} WHERE stream_id = 'locked-1' FOR UPDATE").format(
                    sql.Identifier(pg_schema, "streams")
                )
            )
            with pytest.raises(StoreTimeout, match="lock_timeout") as info:
                await store.append("locked-1", numbered(1), 1)
            assert info.value.setting == "lock_timeout"
        assert await store.stream_version("locked-1") == 1
        assert (await store.append("locked-1", numbered(1), 1)).version == 2


async def test_statement_timeout_is_a_store_error(pg_url: str, pg_schema: str) -> None:
    async with await open_store(pg_url, lock_timeout=0, statement_timeout=0.2) as store:
        await store.append("a-1", numbered(1))
        async with await raw(pg_url.split("?")[0]) as holder, holder.transaction():
            await holder.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.Identifier(pg_schema, "events")
                )
            )
            with pytest.raises(StoreTimeout, match="statement_timeout"):
                await collect(store.read_stream("a-1"))
        assert len(await collect(store.read_stream("a-1"))) == 1


async def test_killed_connections_give_typed_errors_then_recover(
    pg_url: str, postgres_url: str
) -> None:
    name = f"victim-{uuid.uuid4().hex[:8]}"
    async with await open_store(
        with_params(pg_url, application_name=name), pool_min_size=2
    ) as store:
        await store.append("k-1", numbered(1))
        async with await raw(postgres_url) as admin:
            cur = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                [name],
            )
            row = await cur.fetchone()
            assert row is not None and row[0] >= 1
        for _ in range(3):
            try:
                await store.append("k-1", numbered(1))
            except StoreError:
                continue  # a dead pooled connection: typed, never a driver error
        version = await store.stream_version("k-1")
        assert 2 <= version <= 4
        assert len(await collect(store.read_stream("k-1"))) == version


async def test_closed_store_refuses_every_operation(pg_url: str) -> None:
    store = await open_store(pg_url)
    await store.close()
    await store.close()
    with pytest.raises(StoreClosed):
        await collect(store.read_stream("a-1"))
    with pytest.raises(StoreClosed):
        await store.head_position()
    with pytest.raises(StoreClosed):
        await store.wait_for_events(0, 0.01)
    with pytest.raises(StoreClosed):
        await store.save_snapshot(Snapshot("a-1", "s", 1, 1, b"{}"))


# --- payloads ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b'{"text": "nul \\u0000 inside"}', b'{"n": 1e999999}', b'{"s": "\\ud800"}'],
)
async def test_payloads_postgres_refuses_are_invalid_arguments(pg_url: str, data: bytes) -> None:
    async with await open_store(pg_url) as store:
        await store.append("p-1", numbered(1))
        head = await store.head_position()
        with pytest.raises(InvalidArgument):
            await store.append("p-1", [NewEvent("T", data)])
        assert await store.head_position() == head
        assert await store.stream_version("p-1") == 1


async def test_snapshot_input_is_checked(pg_url: str) -> None:
    async with await open_store(pg_url) as store:
        for bad in [
            Snapshot("bad id", "s", 1, 1, b""),
            Snapshot("a-1", "", 1, 1, b""),
            Snapshot("a-1", "s", -1, 1, b""),
            Snapshot("a-1", "s", 1, 2**40, b""),
            Snapshot("a-1", "s", 1, 1, "text"),  # type: ignore[arg-type]
            "not a snapshot",
        ]:
            with pytest.raises(InvalidArgument):
                await store.save_snapshot(bad)  # type: ignore[arg-type]
        await store.save_snapshot(Snapshot("a-1", "s", 3, 1, b"\x00\xffbinary"))
        assert await store.load_snapshot("a-1", "s") == Snapshot(
            "a-1", "s", 3, 1, b"\x00\xffbinary"
        )


async def test_schema_version_beyond_int32_is_rejected(pg_url: str) -> None:
    async with await open_store(pg_url) as store:
        with pytest.raises(InvalidArgument):
            await store.append("a-1", [NewEvent("T", b"{}", schema_version=2**31)])
        assert await store.head_position() == 0


# --- group commit ---------------------------------------------------------------------


async def test_group_commit_shares_transactions(pg_url: str, pg_schema: str) -> None:
    async with await open_store(pg_url) as store:
        results = await asyncio.gather(
            *(store.append(f"g-{i}", numbered(1), NO_STREAM) for i in range(64))
        )
        committer = store._committer
        assert committer.requests == 64
        assert committer.batches < 64
        async with await raw(pg_url.split("?")[0]) as conn:
            cur = await conn.execute(
                sql.SQL("SELECT count(DISTINCT position >> 20) FROM {}").format(
                    sql.Identifier(pg_schema, "events")
                )
            )
            row = await cur.fetchone()
            assert row is not None and row[0] < 64  # fewer transactions than appends
        assert sorted(r.position for r in results) == [
            r.position for r in await collect(store.read_all())
        ]


async def test_a_failing_request_does_not_affect_its_group(pg_url: str) -> None:
    async with await open_store(pg_url) as store:
        await store.append("taken-1", numbered(1))
        bad_payload = NewEvent("T", b'{"x": "\\u0000"}')
        outcomes = await asyncio.gather(
            *(store.append(f"ok-{i}", numbered(1), NO_STREAM) for i in range(10)),
            store.append("taken-1", numbered(1), NO_STREAM),
            store.append("bad-1", [bad_payload]),
            *(store.append(f"ok-{i}", numbered(1), NO_STREAM) for i in range(10, 20)),
            return_exceptions=True,
        )
        assert isinstance(outcomes[10], WrongExpectedVersion)
        assert isinstance(outcomes[11], InvalidArgument)
        good = outcomes[:10] + outcomes[12:]
        assert all(not isinstance(o, BaseException) and o.version == 1 for o in good)
        assert await store.stream_version("bad-1") == 0
        assert len(await collect(store.read_all())) == 21


async def test_append_many_in_a_group_stays_atomic(pg_url: str) -> None:
    async with await open_store(pg_url) as store:
        await store.append("stock-1", numbered(1))
        good = [
            store.append_many(
                [StreamAppend(f"order-{i}", numbered(2), NO_STREAM), StreamAppend(f"x-{i}", [])]
            )
            for i in range(5)
        ]
        bad = store.append_many(
            [StreamAppend("order-x", numbered(2), NO_STREAM), StreamAppend("stock-1", [], 7)]
        )
        outcomes = await asyncio.gather(*good, bad, return_exceptions=True)
        assert isinstance(outcomes[-1], WrongExpectedVersion)
        assert outcomes[-1].stream_id == "stock-1"
        assert await store.stream_version("order-x") == 0
        assert all(not isinstance(o, BaseException) for o in outcomes[:-1])


async def test_without_group_commit_every_append_is_its_own_transaction(pg_url: str) -> None:
    async with await open_store(pg_url, group_commit=False) as store:
        await asyncio.gather(*(store.append(f"g-{i}", numbered(1)) for i in range(10)))
        assert store._committer.batches == 0
        assert len(await collect(store.read_all())) == 10


# --- caller's transactions, visibility, wake-ups ------------------------------------------


async def test_append_within_a_callers_transaction(pg_url: str) -> None:
    base = pg_url.split("?")[0]
    async with await open_store(pg_url) as store, await raw(base) as conn:
        async with conn.transaction():
            (result,) = await store.append_within(conn, [StreamAppend("t-1", numbered(2))])
            assert result.version == 2
            assert await store.stream_version("t-1") == 0  # not committed yet
        assert await store.stream_version("t-1") == 2
        with pytest.raises(psycopg.errors.QueryCanceled):
            async with conn.transaction():
                await store.append_within(conn, [StreamAppend("t-2", numbered(1))])
                await conn.execute("SET LOCAL statement_timeout = 1")
                await conn.execute("SELECT pg_sleep(1)")
        assert await store.stream_version("t-2") == 0
        async with conn.transaction():
            with pytest.raises(WrongExpectedVersion):
                await store.append_within(conn, [StreamAppend("t-1", numbered(1), 1)])


async def test_readers_wait_for_their_own_writes(pg_url: str) -> None:
    """A store's own append is visible to its whole-log reads right after the
    append returns, even while an older transaction holds readers back."""
    base = pg_url.split("?")[0]
    async with await open_store(pg_url) as store, await raw(base) as older:
        await older.execute("BEGIN")
        await older.execute("SELECT pg_current_xact_id()")  # an older transaction id

        async def finish_later() -> None:
            await asyncio.sleep(0.2)
            await older.execute("COMMIT")

        task = asyncio.create_task(finish_later())
        result = await store.append("w-1", numbered(1))
        assert await store.head_position() == result.position
        assert task.done()
        await task


async def test_wait_for_events_wakes_on_another_stores_append(pg_url: str) -> None:
    async with await open_store(pg_url) as reader, await open_store(pg_url) as writer:
        assert await reader.wait_for_events(0, 0.05) is False

        async def later() -> None:
            await asyncio.sleep(0.1)
            await writer.append("w-1", numbered(1))

        task = asyncio.create_task(later())
        assert await reader.wait_for_events(0, 30) is True
        await task
        head = await reader.head_position()
        assert await reader.wait_for_events(head, 0.05) is False


async def test_wait_for_events_waits_until_visible(pg_url: str) -> None:
    """A notified commit that an older open transaction still hides is not
    reported until readers can see it."""
    base = pg_url.split("?")[0]
    async with (
        await open_store(pg_url) as reader,
        await open_store(pg_url) as writer,
        await raw(base) as older,
    ):
        assert await reader.wait_for_events(0, 0.01) is False  # listening from here on
        await older.execute("BEGIN")
        await older.execute("SELECT pg_current_xact_id()")
        await writer.append("w-1", numbered(1))
        assert await reader.wait_for_events(0, 0.2) is False
        assert reader._listener is not None and reader._listener.notified > 0

        async def finish_later() -> None:
            await asyncio.sleep(0.1)
            await older.execute("COMMIT")

        task = asyncio.create_task(finish_later())
        assert await reader.wait_for_events(0, 30) is True
        await task


async def test_wait_for_events_polls_without_notify(pg_url: str) -> None:
    async with (
        await open_store(pg_url, notify=False, poll_interval=0.05) as reader,
        await open_store(pg_url, notify=False) as writer,
    ):

        async def later() -> None:
            await asyncio.sleep(0.1)
            await writer.append("w-1", numbered(1))

        task = asyncio.create_task(later())
        assert await reader.wait_for_events(0, 30) is True
        await task


# --- plain SQL over the payload (the queries shown in docs/postgres.md) --------------------


async def test_payloads_are_queryable_with_plain_sql(pg_url: str, pg_schema: str) -> None:
    async with await open_store(pg_url) as store:
        await store.append(
            "order-1",
            [
                NewEvent("OrderPlaced", msgspec.json.encode({"total": 10, "status": "new"})),
                NewEvent("OrderPaid", msgspec.json.encode({"status": "paid"})),
            ],
        )
        await store.append(
            "order-2", [NewEvent("OrderPlaced", msgspec.json.encode({"total": 5, "status": "new"}))]
        )
    schema = sql.Identifier(pg_schema)
    async with await raw(pg_url.split("?")[0]) as conn:
        await conn.execute(sql.SQL("SET search_path = {}").format(schema))
        cur = await conn.execute(
            """
            SELECT stream_id, data->>'total' AS total
              FROM events
             WHERE type = 'OrderPlaced'
               AND recorded_at >= now() - interval '1 day' AND recorded_at < now() + interval '1 s'
             ORDER BY position
            """
        )
        assert await cur.fetchall() == [("order-1", "10"), ("order-2", "5")]
        cur = await conn.execute(
            """
            SELECT version, type, data->'status' AS status, recorded_at
              FROM events
             WHERE stream_id = 'order-1' AND data ? 'status'
             ORDER BY version
            """
        )
        assert [(v, t, s) for v, t, s, _ in await cur.fetchall()] == [
            (1, "OrderPlaced", "new"),
            (2, "OrderPaid", "paid"),
        ]
        cur = await conn.execute(
            """
            SELECT date_trunc('day', recorded_at AT TIME ZONE 'UTC') AS day, type, count(*)
              FROM events
             GROUP BY 1, 2
             ORDER BY 1, 2
            """
        )
        rows = await cur.fetchall()
        assert [(t, n) for _, t, n in rows] == [("OrderPaid", 1), ("OrderPlaced", 2)]


async def test_event_ids_of_random_streams_round_trip(pg_url: str) -> None:
    async with await open_store(pg_url) as store:
        event = NewEvent("T", b'{"a":1}', event_id=uuid.uuid4())
        await store.append("r-1", [event])
        (record,) = await collect(store.read_all())
        assert record.event_id == event.event_id
        assert isinstance(record.data, str)


async def test_append_within_must_be_the_first_write(pg_url: str) -> None:
    """A transaction that already holds an id may be older than a writer of the
    same stream it would wait for: its positions could then contradict the
    stream's versions, so it is refused."""
    base = pg_url.split("?")[0]
    async with await open_store(pg_url) as store, await raw(base) as conn:
        async with conn.transaction():
            await conn.execute("CREATE TEMP TABLE scratch (x int)")
            await conn.execute("INSERT INTO scratch VALUES (1)")
            with pytest.raises(InvalidArgument, match="first write"):
                await store.append_within(conn, [StreamAppend("t-1", numbered(1))])
        assert await store.stream_version("t-1") == 0


# --- small reads share statements -------------------------------------------------------


async def test_concurrent_small_reads_share_statements_and_each_gets_its_own_page(
    pg_url: str,
) -> None:
    async with await open_store(pg_url) as store:
        for i in range(12):
            await store.append(f"g-{i}", numbered(20 + i))

        async def page(i: int, start: int, limit: int | None) -> tuple[int, list[int]]:
            stream = f"g-{i}" if i < 12 else f"missing-{i}"
            records = await collect(store.read_stream(stream, from_version=start, limit=limit))
            assert all(r.stream_id == stream for r in records)
            return i, numbers(records)

        # Several rounds of 14 readers at once, each reading a different
        # range; two streams do not exist.
        for start, limit in [(1, 10), (5, 50), (19, 3), (1, None)]:
            found = await asyncio.gather(*(page(i, start, limit) for i in range(14)))
            for i, got in found:
                last = 20 + i if i < 12 else 0
                top = last if limit is None else min(last, start - 1 + limit)
                assert got == list(range(start - 1, top)), (i, start, limit)
        assert store._pages.statements > 0  # some reads went out together
        versions = [r.version async for r in store.read_stream("g-3", from_version=10, limit=5)]
        assert versions == [10, 11, 12, 13, 14]
