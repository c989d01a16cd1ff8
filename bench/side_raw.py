"""Raw-driver baselines: the least work that stores and reads the same rows,
in eventfold's table layout (same columns, same indexes), with stdlib
``sqlite3`` (WAL, ``synchronous=FULL``) and sync psycopg (autocommit, the
server's fsync and synchronous_commit on). No version checks, no
idempotency, no hash chain (a constant digest), no group commit: one
transaction per append is one COMMIT. Reads fetch the columns a typed event
needs (stream, version, position, type, data) and decode data with msgspec.
Event ids come from eventfold's id generator on this side too (cheaper than
``uuid.uuid4()``), so that neither side pays more than the other for them."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from typing import Any

import psycopg
from psycopg import sql

from bench.backends import PG_EVENTS, PG_SNAPSHOTS, SQLITE_EVENTS, SQLITE_INDEXES, Backend
from bench.common import NOTE, Deposited, Measure, decode_deposited, encode_json, payload
from eventfold.store.ids import new_event_id

HASH = b"\x00" * 32
_SQLITE_INSERT = (
    "INSERT INTO events (stream_id, version, category, type, event_id, schema_version, "
    "recorded_at, hash, metadata, data) VALUES (?, ?, ?, 'Deposited', ?, 1, ?, ?, '{}', ?)"
)
_PG_INSERT = (
    "INSERT INTO {events} (position, stream_id, version, event_id, type, schema_version, "
    "data, metadata, hash) VALUES (%s, %s, %s, %s, 'Deposited', 1, %s::jsonb, '{{}}', %s)"
)
_UPSERT_SQLITE = (
    "INSERT INTO balances (account, amount) VALUES (?, ?) ON CONFLICT (account) "
    "DO UPDATE SET amount = balances.amount + excluded.amount"
)


def _now() -> int:
    return time.time_ns() // 1000


def _sqlite_row(stream: str, version: int, n: int) -> tuple[Any, ...]:
    return (stream, version, "account", new_event_id().bytes, _now(), HASH, payload(n))


class Side:
    name = "raw"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._log: Any = None
        self._log_events = 0
        self._log_sum = 0
        self._position = 0

    # --- SQLite -------------------------------------------------------------------

    def _sqlite(
        self, path: str | None = None, prefix: str = "raw"
    ) -> tuple[sqlite3.Connection, str]:
        path = path or self.backend.sqlite_path(prefix)
        con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = FULL")
        con.execute("PRAGMA busy_timeout = 60000")
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone():
            con.execute(SQLITE_EVENTS)
            for statement in SQLITE_INDEXES:
                con.execute(statement)
        return con, path

    # --- PostgreSQL -----------------------------------------------------------------

    def _pg(
        self, schema: str | None = None, prefix: str = "raw"
    ) -> tuple[psycopg.Connection[Any], str]:
        if schema is None:
            schema = self.backend.pg_schema(prefix)
            with psycopg.connect(self.backend.pg_url, autocommit=True) as conn:
                conn.execute(sql.SQL(PG_EVENTS).format(events=sql.Identifier(schema, "events")))
                conn.execute(
                    sql.SQL("CREATE INDEX ON {} (type, position)").format(
                        sql.Identifier(schema, "events")
                    )
                )
                conn.execute(
                    sql.SQL(PG_SNAPSHOTS).format(snapshots=sql.Identifier(schema, "snapshots"))
                )
        conn = psycopg.connect(self.backend.pg_url, autocommit=True)
        return conn, schema

    def _q(self, schema: str, text: str) -> sql.Composed:
        return sql.SQL(text).format(
            events=sql.Identifier(schema, "events"),
            snapshots=sql.Identifier(schema, "snapshots"),
            balances=sql.Identifier(schema, "balances"),
            checkpoints=sql.Identifier(schema, "checkpoints"),
        )

    def _next(self) -> int:
        self._position += 1
        return self._position

    # --- 1 ------------------------------------------------------------------------------

    def single_appends(self, n: int) -> Measure:
        latencies = []
        if self.backend.kind == "sqlite":
            con, _ = self._sqlite(prefix="raw_single")
            started = time.perf_counter()
            for i in range(1, n + 1):
                t0 = time.perf_counter()
                con.execute("BEGIN")
                con.execute(_SQLITE_INSERT, _sqlite_row("account-1", i, i))
                con.execute("COMMIT")
                latencies.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started
            con.close()
        else:
            conn, schema = self._pg(prefix="raw_single")
            insert = self._q(schema, _PG_INSERT)
            started = time.perf_counter()
            for i in range(1, n + 1):
                t0 = time.perf_counter()
                data = encode_json(Deposited(i, NOTE)).decode()
                conn.execute(
                    insert, (self._next(), "account-1", i, new_event_id(), data, HASH), prepare=True
                )
                latencies.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started
            conn.close()
        return Measure(n, elapsed, latencies)

    # --- 2 ------------------------------------------------------------------------------

    def concurrent(self, writers: int, per_writer: int) -> Measure:
        if self.backend.kind == "sqlite":
            return self._concurrent_sqlite(writers, per_writer)
        return asyncio.run(self._concurrent_pg(writers, per_writer))

    def _concurrent_sqlite(self, writers: int, per_writer: int) -> Measure:
        """One thread and connection per writer, BEGIN IMMEDIATE / INSERT / COMMIT."""
        con, path = self._sqlite(prefix="raw_conc")
        con.close()
        latencies: list[float] = []
        barrier = threading.Barrier(writers + 1)
        ends: list[float] = []

        def writer(w: int) -> None:
            c, _ = self._sqlite(path)
            barrier.wait()
            for i in range(1, per_writer + 1):
                t0 = time.perf_counter()
                c.execute("BEGIN IMMEDIATE")
                c.execute(_SQLITE_INSERT, _sqlite_row(f"account-{w}", i, i))
                c.execute("COMMIT")
                latencies.append(time.perf_counter() - t0)
            ends.append(time.perf_counter())
            c.close()

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in threads:
            t.join()
        return Measure(writers * per_writer, max(ends) - started, latencies)

    async def _concurrent_pg(self, writers: int, per_writer: int) -> Measure:
        """One asyncio task and connection per writer, autocommit INSERTs."""
        conn, schema = self._pg(prefix="raw_conc")
        conn.close()
        insert = self._q(schema, _PG_INSERT)
        conns = [
            await psycopg.AsyncConnection.connect(self.backend.pg_url, autocommit=True)
            for _ in range(writers)
        ]
        latencies: list[float] = []

        async def writer(w: int, c: psycopg.AsyncConnection[Any]) -> None:
            for i in range(1, per_writer + 1):
                t0 = time.perf_counter()
                data = encode_json(Deposited(i, NOTE)).decode()
                await c.execute(
                    insert,
                    (self._next(), f"account-{w}", i, new_event_id(), data, HASH),
                    prepare=True,
                )
                latencies.append(time.perf_counter() - t0)

        try:
            started = time.perf_counter()
            await asyncio.gather(*(writer(w, c) for w, c in enumerate(conns)))
            elapsed = time.perf_counter() - started
        finally:
            for c in conns:
                await c.close()
        return Measure(writers * per_writer, elapsed, latencies)

    # --- 3 ------------------------------------------------------------------------------

    def batch_append(self, n: int, repeat: int) -> list[Measure]:
        out = []
        if self.backend.kind == "sqlite":
            con, _ = self._sqlite(prefix="raw_batch")
            for r in range(repeat + 1):
                stream = f"account-{r}"
                started = time.perf_counter()
                rows = [_sqlite_row(stream, i + 1, i) for i in range(n)]
                con.execute("BEGIN")
                con.executemany(_SQLITE_INSERT, rows)
                con.execute("COMMIT")
                elapsed = time.perf_counter() - started
                if r:
                    out.append(Measure(n, elapsed))
            con.close()
        else:
            conn, schema = self._pg(prefix="raw_batch")
            copy = self._q(
                schema,
                "COPY {events} (position, stream_id, version, event_id, type, schema_version,"
                " data, metadata, hash) FROM STDIN",
            )
            for r in range(repeat + 1):
                stream = f"account-{r}"
                started = time.perf_counter()
                with conn.transaction(), conn.cursor() as cur, cur.copy(copy) as writer:
                    for i in range(n):
                        writer.write_row(
                            (
                                self._next(),
                                stream,
                                i + 1,
                                new_event_id(),
                                "Deposited",
                                1,
                                encode_json(Deposited(i, NOTE)).decode(),
                                "{}",
                                HASH,
                            )
                        )
                elapsed = time.perf_counter() - started
                if r:
                    out.append(Measure(n, elapsed))
            conn.close()
        return out

    # --- 4 ------------------------------------------------------------------------------

    def load(self, n: int, tail: int, loads: int) -> tuple[Measure, Measure]:
        sqlite = self.backend.kind == "sqlite"
        if sqlite:
            con, _ = self._sqlite(prefix="raw_load")
            for stream in ("account-full", "account-snap"):
                con.execute("BEGIN")
                con.executemany(_SQLITE_INSERT, [_sqlite_row(stream, i + 1, i) for i in range(n)])
                con.execute("COMMIT")
            state = sum(range(n))
            con.execute(
                "INSERT INTO snapshots VALUES ('account-snap', 'state', ?, 1, ?)",
                (n, encode_json(state)),
            )
            con.execute("BEGIN")
            con.executemany(
                _SQLITE_INSERT,
                [_sqlite_row("account-snap", n + 1 + i, i) for i in range(tail)],
            )
            con.execute("COMMIT")
            stream_sql = (
                "SELECT data FROM events WHERE stream_id = ? AND version > ? ORDER BY version"
            )
            snap_sql = "SELECT version, state FROM snapshots WHERE stream_id = ? AND name = 'state'"

            def read(stream: str, after: int) -> list[Any]:
                return con.execute(stream_sql, (stream, after)).fetchall()

            def snapshot(stream: str) -> Any:
                return con.execute(snap_sql, (stream,)).fetchone()
        else:
            conn, schema = self._pg(prefix="raw_load")
            for stream in ("account-full", "account-snap"):
                self._copy(conn, schema, [(stream, i + 1, i) for i in range(n)])
            conn.execute(
                self._q(
                    schema, "INSERT INTO {snapshots} VALUES ('account-snap', 'state', %s, 1, %s)"
                ),
                (n, encode_json(sum(range(n)))),
            )
            self._copy(conn, schema, [("account-snap", n + 1 + i, i) for i in range(tail)])
            stream_q = self._q(
                schema,
                "SELECT data::text FROM {events} WHERE stream_id = %s AND version > %s"
                " ORDER BY version",
            )
            snap_q = self._q(
                schema,
                "SELECT version, state FROM {snapshots} WHERE stream_id = %s AND name = 'state'",
            )

            def read(stream: str, after: int) -> list[Any]:
                return conn.execute(stream_q, (stream, after), prepare=True).fetchall()

            def snapshot(stream: str) -> Any:
                return conn.execute(snap_q, (stream,), prepare=True).fetchone()

        def fold(stream: str, use_snapshot: bool) -> int:
            version, total = 0, 0
            if use_snapshot:
                row = snapshot(stream)
                version, total = row[0], int(bytes(row[1]))
            for (data,) in read(stream, version):
                total += decode_deposited(data).amount
            return total

        results = []
        for stream, use, count in (("account-full", False, n), ("account-snap", True, n + tail)):
            fold(stream, use)
            latencies = []
            for _ in range(loads):
                t0 = time.perf_counter()
                fold(stream, use)
                latencies.append(time.perf_counter() - t0)
            results.append(Measure(count * loads, sum(latencies), latencies))
        (con if sqlite else conn).close()
        return results[0], results[1]

    def _copy(
        self, conn: psycopg.Connection[Any], schema: str, rows: list[tuple[str, int, int]]
    ) -> None:
        copy = self._q(
            schema,
            "COPY {events} (position, stream_id, version, event_id, type, schema_version,"
            " data, metadata, hash) FROM STDIN",
        )
        with conn.transaction(), conn.cursor() as cur, cur.copy(copy) as writer:
            for stream, version, n in rows:
                writer.write_row(
                    (
                        self._next(),
                        stream,
                        version,
                        new_event_id(),
                        "Deposited",
                        1,
                        payload(n).decode(),
                        "{}",
                        HASH,
                    )
                )

    # --- 5 and 6 ------------------------------------------------------------------------

    def populate(self, events: int, streams: int) -> None:
        per = events // streams
        self._log_events = streams * per
        self._log_sum = streams * sum(range(per))
        rows = [(f"account-{s}", i + 1, i) for s in range(streams) for i in range(per)]
        rows.sort(key=lambda r: (r[1], r[0]))  # interleaved streams, as written live
        if self.backend.kind == "sqlite":
            con, path = self._sqlite(prefix="raw_log")
            con.execute("BEGIN")
            con.executemany(_SQLITE_INSERT, [_sqlite_row(s, v, n) for s, v, n in rows])
            con.execute("COMMIT")
            con.close()
            self._log = path
        else:
            conn, schema = self._pg(prefix="raw_log")
            self._copy(conn, schema, rows)
            conn.execute("ANALYZE")
            conn.close()
            self._log = schema

    def read_log(self) -> Measure:
        count = total = 0
        if self.backend.kind == "sqlite":
            con, _ = self._sqlite(self._log)
            started = time.perf_counter()
            cur = con.execute(
                "SELECT stream_id, version, position, type, data FROM events ORDER BY position"
            )
            for row in cur:
                total += decode_deposited(row[4]).amount
                count += 1
            elapsed = time.perf_counter() - started
            con.close()
        else:
            conn, schema = self._pg(self._log)
            started = time.perf_counter()
            cur = conn.execute(
                self._q(
                    schema,
                    "SELECT stream_id, version, position, type, data::text FROM {events}"
                    " ORDER BY position",
                )
            )
            for row in cur:
                total += decode_deposited(row[4]).amount
                count += 1
            elapsed = time.perf_counter() - started
            conn.close()
        assert count == self._log_events and total == self._log_sum
        return Measure(count, elapsed)

    def projection(self) -> Measure:
        """Pages of 500 events: read, decode, upsert with executemany, move a
        checkpoint row, COMMIT; the read model in its own file (FULL) or schema."""
        page = 500
        if self.backend.kind == "sqlite":
            con, _ = self._sqlite(self._log)
            rm = sqlite3.connect(self.backend.sqlite_path("raw_reads"), isolation_level=None)
            rm.execute("PRAGMA journal_mode = WAL")
            rm.execute("PRAGMA synchronous = FULL")
            rm.execute("CREATE TABLE balances (account TEXT PRIMARY KEY, amount INTEGER NOT NULL)")
            rm.execute(
                "CREATE TABLE checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL)"
            )
            rm.execute("INSERT INTO checkpoints VALUES ('balances', 0)")
            read_sql = (
                "SELECT stream_id, position, data FROM events WHERE position > ? "
                "ORDER BY position LIMIT ?"
            )
            started = time.perf_counter()
            position = 0
            while True:
                rows = con.execute(read_sql, (position, page)).fetchall()
                if not rows:
                    break
                rm.execute("BEGIN IMMEDIATE")
                rm.executemany(
                    _UPSERT_SQLITE, [(r[0], decode_deposited(r[2]).amount) for r in rows]
                )
                position = rows[-1][1]
                rm.execute(
                    "UPDATE checkpoints SET position = ? WHERE name = 'balances'", (position,)
                )
                rm.execute("COMMIT")
            elapsed = time.perf_counter() - started
            total = rm.execute("SELECT sum(amount) FROM balances").fetchone()[0]
            con.close()
            rm.close()
        else:
            conn, schema = self._pg(self._log)
            rm_schema = self.backend.pg_schema("raw_rm")
            rm = psycopg.connect(self.backend.pg_url, autocommit=True)
            rm.execute(
                self._q(
                    rm_schema,
                    "CREATE TABLE {balances} (account text PRIMARY KEY, amount bigint NOT NULL)",
                )
            )
            rm.execute(
                self._q(
                    rm_schema,
                    "CREATE TABLE {checkpoints} (name text PRIMARY KEY, position bigint NOT NULL)",
                )
            )
            rm.execute(self._q(rm_schema, "INSERT INTO {checkpoints} VALUES ('balances', 0)"))
            read_q = self._q(
                schema,
                "SELECT stream_id, position, data::text FROM {events} WHERE position > %s"
                " ORDER BY position LIMIT %s",
            )
            upsert = self._q(
                rm_schema,
                "INSERT INTO {balances} (account, amount) VALUES (%s, %s) ON CONFLICT (account)"
                " DO UPDATE SET amount = {balances}.amount + excluded.amount",
            )
            move = self._q(
                rm_schema, "UPDATE {checkpoints} SET position = %s WHERE name = 'balances'"
            )
            started = time.perf_counter()
            position = 0
            while True:
                rows = conn.execute(read_q, (position, page), prepare=True).fetchall()
                if not rows:
                    break
                with rm.transaction(), rm.cursor() as cur:
                    cur.executemany(upsert, [(r[0], decode_deposited(r[2]).amount) for r in rows])
                    position = rows[-1][1]
                    cur.execute(move, (position,))
            elapsed = time.perf_counter() - started
            total = rm.execute(self._q(rm_schema, "SELECT sum(amount) FROM {balances}")).fetchone()[
                0
            ]
            conn.close()
            rm.close()
        assert total == self._log_sum, (total, self._log_sum)
        return Measure(self._log_events, elapsed)
