"""The reading half of the conformance suite on the bus mirror (the query
side's copy of the log), in a SQLite and in a PostgreSQL read model.

(And in a PostgreSQL read model with a hot standby, whose routed views read
the standby.) The mirror is filled the way the query side fills it: what is appended to a
source store travels as bus messages (the wire format the relay publishes)
into ``MirrorStore.take_in``, one message per event, the bus sequence being
the event's position in the source (a memory store, whose positions are
1, 2, 3 ...). Every check is then made on the mirror's own reads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import eventfold
from eventfold.messaging import Incoming, MirrorStore, Topology, event_message
from eventfold.store.api import (
    ANY,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
)
from eventfold.store.capabilities import Capabilities
from eventfold.store.routing import ReplicaHealth, Route
from eventfold.subscriptions import ReadModel, SQLiteReadModel, open_read_model
from eventfold.subscriptions.readmodel_postgres import PostgresReadModel
from eventfold.testing import Opening, ReaderConformance, ReplicaReadsConformance
from tests.conftest import Replication

TOPOLOGY = Topology("conformance")


class FedMirror:
    """A ``MirrorStore`` to read, and a source store whose appends are fed
    into it as bus messages."""

    def __init__(self, mirror: MirrorStore, source: eventfold.EventStore) -> None:
        self.mirror = mirror
        self.source = source
        self.fed = 0

    @property
    def capabilities(self) -> Capabilities:
        return self.mirror.capabilities

    async def _feed(self) -> None:
        items = [
            Incoming(record.position, message.subject, message.headers, message.data)
            async for record in self.source.read_all(from_position=self.fed + 1)
            for message in [event_message(TOPOLOGY, record)]
        ]
        if items:
            taken = await self.mirror.take_in(TOPOLOGY.events_stream, "one", items)
            assert set(taken.verdicts.values()) == {"applied"}, taken
            self.fed = items[-1].seq

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        result = await self.source.append(stream_id, events, expected_version)
        await self._feed()
        return result

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        results = await self.source.append_many(appends)
        await self._feed()
        return results

    def read_stream(self, stream_id: str, **kwargs: Any) -> AsyncIterator[RecordedEvent]:
        return self.mirror.read_stream(stream_id, **kwargs)

    def read_all(self, **kwargs: Any) -> AsyncIterator[RecordedEvent]:
        return self.mirror.read_all(**kwargs)

    async def stream_version(self, stream_id: str) -> int:
        return await self.mirror.stream_version(stream_id)

    async def head_position(self) -> int:
        return await self.mirror.head_position()

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        return await self.mirror.wait_for_events(after_position, timeout)

    def reads(self, route: Route = "replica", **kwargs: Any) -> MirrorStore:
        return self.mirror.reads(route, **kwargs)

    async def replica_health(self) -> list[ReplicaHealth]:
        return await self.mirror.replica_health()

    async def close(self) -> None:
        await self.mirror.close()
        await self.source.close()


class MirrorConformance(ReaderConformance, ReplicaReadsConformance):
    """Each test class provides ``read_model``: a function making the read
    model the mirror lives in."""

    @pytest.fixture
    def open_store(self, read_model: Any) -> Any:
        async def make() -> FedMirror:
            mirror = MirrorStore(read_model(), poll_interval=0.01)
            await mirror.setup()
            return FedMirror(mirror, await eventfold.connect("memory://"))

        return lambda: Opening(make)


class TestMirrorInSQLite(MirrorConformance):
    @pytest.fixture
    def read_model(self, tmp_path: Path) -> Any:
        def make() -> ReadModel:
            return SQLiteReadModel(tmp_path / "reads.db")

        return make


class TestMirrorInPostgres(MirrorConformance):
    @pytest.fixture
    def read_model(self, pg_url: str) -> Any:
        def make() -> ReadModel:
            return open_read_model(pg_url)

        return make


class TestMirrorOnAReplica(MirrorConformance):
    """The mirror in a PostgreSQL read model with a hot standby: routed
    views read the standby."""

    @pytest.fixture
    def read_model(self, replication: Replication, pg_schema: str) -> Any:
        def make() -> ReadModel:
            return PostgresReadModel.from_url(
                replication.primary_url,
                schema=pg_schema,
                replicas=[f"127.0.0.1:{replication.standby.port}"],
            )

        return make
