"""Stream lifecycle on PostgreSQL: each removal is one transaction that
takes the stream's writer lock (the advisory lock every append of the stream
takes, functions.py), so a removal and the appends around it are strictly
ordered: an append that waited for a hard delete finds the stream's row
tombstoned and is refused (status 4), one that went first is removed with
the rest. The stream's row keeps its version and chain head, so appends
after a soft delete or a truncation go on from there; the cut is inserted in
the same transaction as the rows it removes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from eventfold.store.base import Lifecycle
from eventfold.store.chain import GENESIS
from eventfold.store.checks import validate_stream_id
from eventfold.store.cuts import Cut, CutReason, check_key, check_truncate, cut_time, plan_truncate
from eventfold.store.postgres.errors import translate
from eventfold.store.postgres.schema import Names

Conn = psycopg.AsyncConnection[Any]


class PostgresLifecycle(Lifecycle):
    """The ``StreamLifecycle`` part of ``PostgresStore``, over its pool."""

    _pool: AsyncConnectionPool[Conn]
    _names: Names

    async def truncate_stream(
        self,
        stream_id: str,
        before_version: int,
        *,
        reason: CutReason = "truncated",
        archive: str = "",
        key: bytes | None = None,
    ) -> Cut | None:
        stream_id, before, reason, archive = check_truncate(
            stream_id, before_version, reason, archive
        )
        key = check_key(key)
        self.check_open()
        return await self._cut(stream_id, before, reason, archive, key)

    async def delete_stream(
        self, stream_id: str, *, hard: bool = False, key: bytes | None = None
    ) -> Cut | None:
        validate_stream_id(stream_id)
        key = check_key(key)
        self.check_open()
        return await self._cut(stream_id, None, "tombstoned" if hard else "deleted", "", key)

    async def read_cuts(self, stream_id: str | None = None) -> AsyncIterator[Cut]:
        self.check_open()
        if stream_id is not None:
            validate_stream_id(stream_id)
        query = self._names.format(
            "SELECT stream_id, before_version, anchor, reason, at, archive, signature "
            "FROM {stream_cuts} WHERE %s::text IS NULL OR stream_id = %s::text "
            "ORDER BY stream_id, seq"
        )
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(query, [stream_id, stream_id])
                rows = await cur.fetchall()
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate(exc, "read_cuts") from None
        for r in rows:
            yield Cut(r[0], int(r[1]), bytes(r[2]), r[3], r[4], r[5], r[6])

    async def _cut(
        self,
        stream_id: str,
        before: int | None,
        reason: CutReason,
        archive: str,
        key: bytes | None,
    ) -> Cut | None:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                return await self._remove(conn, stream_id, before, reason, archive, key)
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate(exc, "truncate" if before is not None else "delete") from None

    async def _remove(
        self,
        conn: Conn,
        stream_id: str,
        before: int | None,
        reason: CutReason,
        archive: str,
        key: bytes | None,
    ) -> Cut | None:
        names = self._names
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [names.lock_space, stream_id]
        )
        cur = await conn.execute(
            names.format(
                "SELECT version, hash, first_version, tombstoned FROM {streams} "
                "WHERE stream_id = %s"
            ),
            [stream_id],
        )
        row = await cur.fetchone()
        version, head, floor, tombstoned = (0, GENESIS, 1, False) if row is None else row
        if before is not None:
            if not plan_truncate(stream_id, before, version, floor, tombstoned):
                return None
        elif tombstoned or (reason == "deleted" and floor > version):
            return None
        else:
            before = version + 1
        if before == version + 1:
            anchor = bytes(head)
        else:
            cur = await conn.execute(
                names.format("SELECT hash FROM {events} WHERE stream_id = %s AND version = %s"),
                [stream_id, before - 1],
            )
            found = await cur.fetchone()
            assert found is not None  # versions floor..version are stored
            anchor = bytes(found[0])
        await conn.execute(
            names.format(
                "DELETE FROM {event_tags} t USING {events} e "
                "WHERE e.stream_id = %s AND e.version < %s "
                "AND t.tag = ANY (e.tags) AND t.position = e.position"
            ),
            [stream_id, before],
        )
        await conn.execute(
            names.format("DELETE FROM {events} WHERE stream_id = %s AND version < %s"),
            [stream_id, before],
        )
        cut = Cut(stream_id, before, anchor, reason, cut_time(), archive).signed(key)
        await conn.execute(
            names.format(
                "INSERT INTO {stream_cuts} (stream_id, before_version, anchor, reason, at, "
                "archive, signature) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            ),
            [stream_id, before, anchor, reason, cut.at, archive, cut.signature],
        )
        if row is None:  # a tombstone for a stream never written: version 0
            await conn.execute(
                names.format(
                    "INSERT INTO {streams} (stream_id, version, position, hash, first_version, "
                    "tombstoned) VALUES (%s, 0, 0, %s, 1, true)"
                ),
                [stream_id, GENESIS],
            )
        else:
            await conn.execute(
                names.format(
                    "UPDATE {streams} SET first_version = %s, tombstoned = %s WHERE stream_id = %s"
                ),
                [before, reason == "tombstoned", stream_id],
            )
        return cut
