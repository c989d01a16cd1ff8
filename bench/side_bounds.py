"""Bounds: the raw driver doing the least work that a store keeping
eventfold's contract cannot avoid, measured in the same run as the sides.

- ``read_log``: the raw driver reading the whole record the store returns for
  every event (stream, version, position, event id as a ``UUID``, type, schema
  version, payload, metadata, time as an aware ``datetime``) and decoding the
  payload; no record or envelope objects, no paging, one cursor. Its ratio to
  the raw read (five columns) is the best a decoded log read of full records
  can reach on this machine.
- ``single_appends`` on SQLite: the statements eventfold's writer runs for a
  lone append (``BEGIN IMMEDIATE``, the log head, the stream's version and
  chain head, the hash link, the insert, ``COMMIT`` at ``synchronous=FULL``)
  on the caller's thread, in an eventfold-made file: the checks' cost without
  the hand-off to the writer thread and back. ``batch_append``: the same for
  one append of N events.
- ``single_appends`` on PostgreSQL: eventfold's own append function for one
  stream (``append_one``: stream lock, version and chain head, id lookup,
  jsonb cast and hash, stream update, NOTIFY) called with a prepared
  statement from one bare asyncio psycopg connection, one event per call; no
  pool, no group commit, no client-side validation. What the guarantees cost
  per append through the asyncio driver that eventfold's async API runs on.
  ``batch_append``: the same function with N events, the arguments encoded by
  eventfold's own encoder; no validation, no pool, no group commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from datetime import datetime
from hashlib import sha256
from typing import Any

import msgspec
import psycopg

from bench.backends import Backend
from bench.common import NOTE, Deposited, Measure, decode_deposited, encode_json
from bench.side_raw import Side as RawSide
from eventfold.store.api import NewEvent, StreamAppend
from eventfold.store.chain import GENESIS, link_message
from eventfold.store.ids import new_event_id
from eventfold.store.postgres.batch import Request, encode_one
from eventfold.store.sqlite.rows import HEAD_SQL, LAST_SQL
from eventfold.store.sqlite.writer import _INSERT as _SQLITE_INSERT

_UUIDS = list[uuid.UUID]
_TIMES = list[datetime]
_SQLITE_RECORD = (
    "SELECT stream_id, version, position, event_id, type, schema_version, "
    "CAST(data AS BLOB), CAST(metadata AS BLOB), recorded_at FROM events ORDER BY position"
)
_PG_RECORD = (
    "SELECT stream_id, version, position, event_id, type, schema_version, "
    "data::text, metadata::text, recorded_at FROM {events} ORDER BY position"
)


class Side:
    name = "bound"

    def __init__(self, backend: Backend, raw: RawSide) -> None:
        self.backend = backend
        self.raw = raw

    def read_log(self) -> Measure:
        count = total = 0
        raw = self.raw
        if self.backend.kind == "sqlite":
            con, _ = raw._sqlite(raw._log)
            started = time.perf_counter()
            cur = con.execute(_SQLITE_RECORD)
            while rows := cur.fetchmany(1000):
                # Ids and times become UUIDs and datetimes column by column in
                # C (msgspec), the cheapest way there is from Python.
                ids = msgspec.convert([r[3] for r in rows], _UUIDS)
                times = msgspec.convert([r[8] / 1e6 for r in rows], _TIMES, strict=False)
                for row in rows:
                    total += decode_deposited(row[6]).amount
                count += len(rows)
                del ids, times
            elapsed = time.perf_counter() - started
            con.close()
        else:
            conn, schema = raw._pg(raw._log)
            started = time.perf_counter()
            # Binary rows: psycopg's C loaders make the UUIDs and datetimes.
            cur = conn.execute(raw._q(schema, _PG_RECORD), binary=True)
            for row in cur:
                total += decode_deposited(row[6]).amount
                count += 1
            elapsed = time.perf_counter() - started
            conn.close()
        assert count == raw._log_events and total == raw._log_sum
        return Measure(count, elapsed)

    def single_appends(self, n: int) -> Measure:
        if self.backend.kind == "sqlite":
            return self._single_sqlite(n)
        return asyncio.run(self._single(n))

    def _single_sqlite(self, n: int) -> Measure:
        path = self.backend.sqlite_path("bound_single")
        asyncio.run(_create_sqlite(path))
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("PRAGMA synchronous = FULL")
        latencies = []
        stream, category, chained = "account-1", "account", GENESIS
        started = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            data = encode_json(Deposited(i, NOTE))
            event_id = new_event_id()
            con.execute("BEGIN IMMEDIATE")
            head = con.execute(HEAD_SQL).fetchone()[0]
            last = con.execute(LAST_SQL, (stream,)).fetchone()
            if (0 if last is None else last[0]) != i:
                raise RuntimeError(f"version check failed at {i}")
            chained = sha256(
                link_message(chained, stream, i + 1, event_id, "Deposited", 1, data, b"{}")
            ).digest()
            con.execute(
                _SQLITE_INSERT,
                (
                    head + 1,
                    stream,
                    i + 1,
                    category,
                    "Deposited",
                    event_id.bytes,
                    1,
                    time.time_ns() // 1000,
                    chained,
                    b"{}",
                    data,
                    None,  # no tags
                ),
            )
            con.execute("COMMIT")
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        con.close()
        return Measure(n, elapsed, latencies)

    async def _single(self, n: int) -> Measure:
        query, schema = await self._schema()
        latencies = []
        conn = await psycopg.AsyncConnection.connect(self.backend.pg_url, autocommit=True)
        try:
            stream = "account-1"
            started = time.perf_counter()
            for i in range(n):
                t0 = time.perf_counter()
                event = NewEvent("Deposited", encode_json(Deposited(i, NOTE)))
                # eventfold's own argument encoding; NOTIFY on commit, as its default does
                args = encode_one(Request([StreamAppend(stream, [event], i)]), "eventfold_bound")
                cur = await conn.execute(query, args, prepare=True)
                row = await cur.fetchone()
                if row is None or row[1] != 0:
                    raise RuntimeError(f"append_one refused append {i}: {row}")
                latencies.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started
        finally:
            await conn.close()
        self.backend.pg_drop(schema)
        return Measure(n, elapsed, latencies)

    def batch_append(self, n: int, repeat: int) -> list[Measure]:
        if self.backend.kind == "sqlite":
            return self._batch_sqlite(n, repeat)
        return asyncio.run(self._batch_pg(n, repeat))

    def _batch_sqlite(self, n: int, repeat: int) -> list[Measure]:
        path = self.backend.sqlite_path("bound_batch")
        asyncio.run(_create_sqlite(path))
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("PRAGMA synchronous = FULL")
        out = []
        for r in range(repeat + 1):
            stream = f"account-{r}"
            started = time.perf_counter()
            con.execute("BEGIN IMMEDIATE")
            head = con.execute(HEAD_SQL).fetchone()[0]
            if con.execute(LAST_SQL, (stream,)).fetchone() is not None:
                raise RuntimeError(f"{stream} exists")
            now = time.time_ns() // 1000
            chained = GENESIS
            rows = []
            for i in range(n):
                data = encode_json(Deposited(i, NOTE))
                event_id = new_event_id()
                chained = sha256(
                    link_message(chained, stream, i + 1, event_id, "Deposited", 1, data, b"{}")
                ).digest()
                rows.append(
                    (
                        head + 1 + i,
                        stream,
                        i + 1,
                        "account",
                        "Deposited",
                        event_id.bytes,
                        1,
                        now,
                        chained,
                        b"{}",
                        data,
                        None,  # no tags
                    )
                )
            con.executemany(_SQLITE_INSERT, rows)
            con.execute("COMMIT")
            elapsed = time.perf_counter() - started
            if r:
                out.append(Measure(n, elapsed))
        con.close()
        return out

    async def _batch_pg(self, n: int, repeat: int) -> list[Measure]:
        query, schema = await self._schema()
        out = []
        conn = await psycopg.AsyncConnection.connect(self.backend.pg_url, autocommit=True)
        try:
            for r in range(repeat + 1):
                started = time.perf_counter()
                events = [NewEvent("Deposited", encode_json(Deposited(i, NOTE))) for i in range(n)]
                # eventfold's own argument encoding (text arrays in one pass).
                args = encode_one(
                    Request([StreamAppend(f"account-{r}", events, 0)]), "eventfold_bound"
                )
                cur = await conn.execute(query, args)
                row = await cur.fetchone()
                if row is None or row[1] != 0:
                    raise RuntimeError(f"append_one refused the batch: {row}")
                elapsed = time.perf_counter() - started
                if r:
                    out.append(Measure(n, elapsed))
        finally:
            await conn.close()
        self.backend.pg_drop(schema)
        return out

    async def _schema(self) -> tuple[str, str]:
        """A fresh eventfold schema, and the statement its store sends for a
        lone append."""
        import eventfold

        schema = self.backend.pg_schema("bound")
        store: Any = await eventfold.connect(f"{self.backend.pg_url}?schema={schema}")
        query: str = store._q.append_one
        await store.close()
        return query, schema


async def _create_sqlite(path: str) -> None:
    """An empty eventfold store file (its schema, WAL mode)."""
    import eventfold

    store = await eventfold.connect(f"sqlite:///{path}")
    await store.close()
