"""Reads on replicas, end to end on a real primary and hot standby: where
routed reads go and what they say, wrappers, a replica that is down, the
read model's replicas (queries and their waits for a position), /status,
the CLI, and the options that configure it all."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from typer.testing import CliRunner

import eventfold
from eventfold.cli import app
from eventfold.errors import ConfigurationError
from eventfold.services import Queries, QueryService
from eventfold.store import DelegatingStore, RecordedEvent
from eventfold.store.capabilities import DataRow, ReplicaReads, StreamDataReader, require
from eventfold.store.lazy import StoredEvent
from eventfold.store.postgres import PostgresStore
from eventfold.store.postgres.options import parse, replica_conninfo
from eventfold.store.routing import ReplicaHealth, poll_until
from eventfold.subscriptions import ProjectionRunner
from eventfold.subscriptions.readmodel_postgres import PostgresReadModel
from eventfold.testing.pgserver import free_port
from tests.conftest import Replication
from tests.unit.test_projection import TALLY_SQL, add, codec, tallies

BOUND = 60.0
"""Seconds a test waits for a condition (a replica's state) at most."""


async def settled(reader: Any) -> list[ReplicaHealth]:
    """``reader.replica_health()`` once every replica is up. A replica's state
    is the monitor's latest check: on a loaded machine one probe can time out
    (down) or find replay a moment behind (lagging) while reads still use it,
    so a test that means "healthy" waits for the state, within BOUND."""
    found: list[ReplicaHealth] = []

    async def up() -> bool:
        nonlocal found
        found = await reader.replica_health()
        return bool(found) and all(health.state == "up" for health in found)

    assert await poll_until(up, BOUND, longest=0.1), f"replicas not up: {found}"
    return found


def standby_name(replication: Replication) -> str:
    return f"127.0.0.1:{replication.standby.port}"


@contextlib.asynccontextmanager
async def replay_paused(replication: Replication) -> AsyncIterator[None]:
    await asyncio.to_thread(replication.standby.wait_replayed)
    async with await psycopg.AsyncConnection.connect(
        replication.standby_url, autocommit=True
    ) as conn:
        await conn.execute("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            await conn.execute("SELECT pg_wal_replay_resume()")


# --- options ----------------------------------------------------------------------


def test_replica_options_parse_and_refuse_what_is_wrong() -> None:
    conninfo, options = parse(
        "postgresql://app:pw@db.example:5432/shop?replicas=r1:5433,r2&on_lag=stale",
        {"replica_wait": "0.5"},
    )
    assert options.replicas == ("r1:5433", "r2")
    assert (options.on_lag, options.replica_wait) == ("stale", 0.5)
    first = psycopg.conninfo.conninfo_to_dict(replica_conninfo(conninfo, "r1:5433"))
    assert (first["host"], first["port"], first["user"], first["dbname"]) == (
        "r1",
        "5433",
        "app",
        "shop",
    )
    assert first["password"] == "pw"
    whole = replica_conninfo(conninfo, "postgresql://reader@r3:6000/shop")
    assert "r3" in whole and "6000" in whole
    for bad in (
        {"on_lag": "later"},
        {"replica_wait": -1},
        {"replica_check_interval": 0},
        {"replicas": 5},
    ):
        with pytest.raises(ConfigurationError):
            parse("postgresql://app@db/shop", bad)
    for replica in ("r1:port", ":5432", "mysql://r1/db"):
        with pytest.raises(ConfigurationError):
            replica_conninfo(conninfo, replica)


# --- the store ----------------------------------------------------------------------


async def test_routed_reads_go_to_the_standby_and_say_so(
    replication: Replication, pg_schema: str
) -> None:
    async with await eventfold.connect(replication.store_url(pg_schema)) as store:
        assert isinstance(store, PostgresStore)
        assert ReplicaReads in store.capabilities
        written = await store.append("order-1", [codec.encode(x) for x in _added(3)])
        view = store.reads("replica", min_position=written.position, wait=30.0)
        assert [r.version async for r in view.read_stream("order-1")] == [1, 2, 3]
        assert view.served is not None
        assert view.served.source == standby_name(replication)
        assert not view.served.fell_back and not view.served.stale
        rows = [p async for p in require(view, StreamDataReader).read_stream_data("order-1")]
        assert [len(page[1]) for page in rows] == [3]
        (health,) = await settled(store)
        assert health.name == standby_name(replication)
        assert not health.replay_paused
        assert health.lag_seconds is not None and health.lag_bytes is not None

        primary = store.reads("primary")
        assert await primary.head_position() == written.position
        assert primary.served is not None and primary.served.source == "primary"


async def test_a_replica_view_reads_lazy_records_and_shares_small_reads(
    replication: Replication, pg_schema: str
) -> None:
    async with await eventfold.connect(replication.store_url(pg_schema)) as store:
        assert isinstance(store, PostgresStore)
        for i in range(8):
            tagged = [
                msgspec.structs.replace(codec.encode(x), tags=(f"g:{i}",)) for x in _added(i + 3)
            ]
            await store.append(f"g-{i}", tagged)
        head = await store.head_position()
        view = store.reads("replica", min_position=head, wait=30.0)
        primary = [r async for r in store.reads("primary").read_all()]
        replica = [r async for r in view.read_all()]
        assert view.served is not None and view.served.source == standby_name(replication)
        assert replica == primary
        assert {type(r) for r in replica} == {StoredEvent}
        assert [r.event_id for r in replica] == [r.event_id for r in primary]
        assert all(r.recorded_at.tzinfo is not None for r in replica)

        async def page(i: int) -> list[RecordedEvent]:
            return [r async for r in view.read_stream(f"g-{i}", limit=20)]

        # Small reads at once on one view share statements, on the standby.
        for _ in range(20):
            for i, records in enumerate(await asyncio.gather(*(page(i) for i in range(8)))):
                assert [type(r) for r in records] == [StoredEvent] * (i + 3)
                assert [r.version for r in records] == list(range(1, i + 4))
                assert {(r.stream_id, r.tags) for r in records} == {(f"g-{i}", (f"g:{i}",))}
            if view._pages.statements > 0:
                break
        assert view._pages.statements > 0
        assert view.served.source == standby_name(replication)


class Tagging(DelegatingStore):
    """A wrapper that changes what it reads: its routed views must too."""

    async def on_read(self, record: RecordedEvent) -> RecordedEvent:
        return msgspec.structs.replace(record, type=f"{record.type}!")

    async def on_read_data(
        self, stream_id: str, first_version: int, rows: list[DataRow]
    ) -> list[DataRow]:
        return [(f"{kind}!", version, data) for kind, version, data in rows]


async def test_a_wrappers_routed_view_reads_through_the_wrapper(
    replication: Replication, pg_schema: str
) -> None:
    async with await eventfold.connect(replication.store_url(pg_schema)) as inner:
        store = Tagging(inner)
        assert ReplicaReads in store.capabilities
        written = await store.append("order-1", [codec.encode(x) for x in _added(2)])
        view = store.reads("replica", min_position=written.position, wait=30.0)
        assert [r.type async for r in view.read_all()] == ["Added!", "Added!"]
        pages = [p async for p in require(view, StreamDataReader).read_stream_data("order-1")]
        assert [row[0] for row in pages[0][1]] == ["Added!", "Added!"]
        assert view.served is not None and view.served.source == standby_name(replication)
        assert await store.replica_health() == await inner.replica_health()  # type: ignore[attr-defined]


async def test_a_replica_down_at_open_leaves_reads_on_the_primary(
    postgres_url: str, pg_schema: str
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    url = f"{postgres_url}?schema={pg_schema}&replicas={nowhere}&connect_timeout=2"
    async with await eventfold.connect(url) as store:
        assert isinstance(store, PostgresStore)
        (health,) = await store.replica_health()
        assert health.state == "down" and health.error
        written = await store.append("order-1", [codec.encode(x) for x in _added(1)])
        view = store.reads("replica", min_position=written.position, wait=0.1)
        assert [r.position async for r in view.read_all()] == [written.position]
        assert view.served is not None
        assert view.served.source == "primary" and view.served.fell_back


# --- the read model's replicas -----------------------------------------------------


async def test_queries_run_on_the_read_model_standby_and_their_waits_check_it(
    replication: Replication, pg_schema: str
) -> None:
    standby = standby_name(replication)
    reads = PostgresReadModel.from_url(
        replication.primary_url, schema=f"{pg_schema}_reads", replicas=standby
    )
    async with eventfold.connect("memory://") as store, reads:
        runner = ProjectionRunner(store, reads, [tallies()], codec, batch_size=10)
        first = await add(store, "acct-1", 1, 2)
        await runner.catch_up()
        found = await runner.query("tallies", TALLY_SQL, min_position=first, timeout=30.0)
        assert found.rows == [("acct-1", 2, 3)]
        assert found.served is not None and found.served.source == standby
        assert [health.name for health in await settled(reads)] == [standby]

        async with replay_paused(replication):
            later = await add(store, "acct-1", 4)
            await runner.catch_up()  # the primary's read model has it; the standby not
            fallback = await runner.query("tallies", TALLY_SQL, min_position=later, timeout=30.0)
            assert fallback.rows == [("acct-1", 3, 7)]
            assert fallback.served is not None
            assert fallback.served.source == "primary" and fallback.served.fell_back
            stale = await runner.query(
                "tallies", TALLY_SQL, min_position=later, timeout=30.0, on_lag="stale"
            )
            assert stale.rows == [("acct-1", 2, 3)]
            assert stale.served is not None
            assert stale.served.source == standby and stale.served.stale
            assert stale.position < later

        queries = Queries()
        queries.add("tallies", "tallies", TALLY_SQL)
        service = QueryService(runner, store, queries)
        await asyncio.to_thread(replication.standby.wait_replayed)
        answer = await service.query("tallies", min_position=later, wait=30.0)
        assert answer.freshness.served is not None
        assert answer.freshness.served.source == standby


async def test_concurrent_first_reads_of_a_tokened_mirror_view_see_the_write(
    replication: Replication, pg_schema: str
) -> None:
    """The query side's mirror on a read model with a standby: reads that
    start together on a fresh view with a position token all wait for the
    token to be resolved; none reads the standby that cannot see the write."""
    from eventfold.messaging import MirrorStore
    from tests.conformance.test_mirror import FedMirror

    reads = PostgresReadModel.from_url(
        replication.primary_url, schema=f"{pg_schema}_mirror", replicas=standby_name(replication)
    )
    mirror = MirrorStore(reads, poll_interval=0.01)
    await mirror.setup()
    fed = FedMirror(mirror, await eventfold.connect("memory://"))
    try:
        await fed.append("order-1", [codec.encode(x) for x in _added(1)])
        async with replay_paused(replication):
            written = await fed.append("order-1", [codec.encode(x) for x in _added(1)])
            view = mirror.reads("replica", min_position=written.position, wait=0.3)

            async def last_position() -> int:
                return [r.position async for r in view.read_stream("order-1")][-1]

            seen = await asyncio.wait_for(
                asyncio.gather(*(last_position() for _ in range(8))), BOUND
            )
            assert seen == [written.position] * 8
            assert view.served is not None and view.served.source == "primary"
    finally:
        await fed.close()


async def test_status_shows_each_replicas_health(replication: Replication, pg_schema: str) -> None:
    reads = PostgresReadModel.from_url(
        f"{replication.primary_url}?schema={pg_schema}_reads"
        f"&replicas={standby_name(replication)}&replica_check_interval=0.1"
    )
    async with await eventfold.connect(replication.store_url(pg_schema)) as store, reads:
        runner = ProjectionRunner(store, reads, [tallies()], codec)
        service = QueryService(runner, store, Queries())
        status = await service.status()
        assert [h.name for h in status.replicas] == [standby_name(replication)]

        async def up() -> bool:
            nonlocal status
            status = await service.status()
            return [h.state for h in status.replicas] == ["up"]

        assert await poll_until(up, BOUND, longest=0.1), status.replicas
        encoded = msgspec.json.decode(msgspec.json.encode(status))
        assert encoded["replicas"][0]["lag_seconds"] is not None


async def test_metrics_show_each_replicas_state_and_lag(
    replication: Replication, pg_schema: str, tmp_path: Path
) -> None:
    from eventfold.examples.shop.services import service
    from eventfold.services import Runtime, ServeConfig
    from eventfold.services.observed import measure

    settings = ServeConfig(
        store=replication.store_url(pg_schema, replica_check_interval="0.1"),
        read_model=f"sqlite:///{tmp_path / 'reads.db'}",
    )
    name = standby_name(replication)
    async with Runtime(service, settings) as runtime:
        samples: dict[str, Any] = {}

        async def up() -> bool:
            nonlocal samples
            samples = {
                s.name: s
                for s in await measure(runtime)
                if s.name.startswith("replica_") and s.labels["side"] == "store"
            }
            return "replica_up" in samples and samples["replica_up"].value == 1.0

        assert await poll_until(up, BOUND, longest=0.1), samples
        assert sorted(samples) == ["replica_lag_bytes", "replica_lag_seconds", "replica_up"]
        assert samples["replica_up"].value == 1.0
        assert samples["replica_up"].labels["replica"] == name


# --- the CLI ------------------------------------------------------------------------


def test_cli_inspection_reads_the_standby_or_the_primary(
    replication: Replication, pg_schema: str
) -> None:
    url = replication.store_url(pg_schema)

    async def fill() -> None:
        async with eventfold.connect(url) as store:
            await store.append("order-1", [codec.encode(x) for x in _added(2)])

    asyncio.run(fill())
    replication.standby.wait_replayed()
    cli = CliRunner()
    for route in ("replica", "primary"):
        result = cli.invoke(app, ["show", "order-1", "--store", url, "--read-from", route])
        assert result.exit_code == 0, result.output
        assert result.output.count("Added") == 2
    refused = cli.invoke(app, ["stats", "--store", url, "--read-from", "anywhere"])
    assert refused.exit_code != 0
    assert "--read-from" in refused.output


def _added(n: int) -> list[Any]:
    from tests.unit.test_projection import Added

    return [Added(i + 1) for i in range(n)]
