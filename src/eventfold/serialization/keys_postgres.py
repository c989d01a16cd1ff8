"""Subject keys in a table of the PostgreSQL store's schema.

``forget`` deletes the subject's keys and then rewrites the table
(``VACUUM FULL``), so no dead row version holding a key stays in the table's
files. Copies in the write-ahead log, archives and backups are outside what
a database client can erase: wrap keys with a master key kept elsewhere.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg import sql

from eventfold.errors import StoreError
from eventfold.serialization.keys import _new_key, _Wrapper
from eventfold.store.postgres.options import parse


class PostgresKeyStore:
    def __init__(self, url: str, *, master_key: bytes | None = None, **options: Any) -> None:
        conninfo, settings = parse(url, options)
        self._conninfo = conninfo
        self._table = sql.Identifier(settings.schema, "subject_keys")
        self._schema = sql.Identifier(settings.schema)
        self._wrapper = _Wrapper(master_key)
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self._ready = False

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                if not self._ready:
                    await self._ensure_table(conn)
                    self._ready = True
            except psycopg.Error as exc:
                raise StoreError(f"cannot open the key store: {exc}") from None
            self._conn = conn
        return self._conn

    async def _ensure_table(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Create the table if it is not there; DDL (and its privileges) only then,
        so a role that may only read and write the table opens it too."""
        cur = await conn.execute("SELECT to_regclass(%s)", [self._table.as_string(conn)])
        row = await cur.fetchone()
        if row is not None and row[0] is not None:
            return
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " key_id text PRIMARY KEY, subject text NOT NULL, key bytea NOT NULL,"
                " created_at timestamptz NOT NULL DEFAULT clock_timestamp())"
            ).format(self._table)
        )

    async def _query(self, query: sql.Composed, params: list[Any]) -> list[tuple[Any, ...]]:
        async with self._lock:
            conn = await self._connection()
            try:
                cur = await conn.execute(query, params)
                return await cur.fetchall() if cur.description else []
            except psycopg.Error as exc:
                raise StoreError(f"key store: {exc}") from None

    async def key_for(self, subject: str) -> tuple[str, bytes]:
        rows = await self._query(
            sql.SQL(
                "SELECT key_id, key FROM {} WHERE subject = %s ORDER BY created_at DESC LIMIT 1"
            ).format(self._table),
            [subject],
        )
        if rows:
            return rows[0][0], self._wrapper.unwrap(rows[0][0], bytes(rows[0][1]))
        key_id, key = _new_key()
        # Two writers may create a first key for one subject at once: both keys
        # stay valid (each ciphertext names its key), the newest is used next.
        await self._query(
            sql.SQL("INSERT INTO {} (key_id, subject, key) VALUES (%s, %s, %s)").format(
                self._table
            ),
            [key_id, subject, self._wrapper.wrap(key_id, key)],
        )
        return key_id, key

    async def key(self, key_id: str) -> bytes | None:
        rows = await self._query(
            sql.SQL("SELECT key FROM {} WHERE key_id = %s").format(self._table), [key_id]
        )
        return self._wrapper.unwrap(key_id, bytes(rows[0][0])) if rows else None

    async def forget(self, subject: str) -> int:
        rows = await self._query(
            sql.SQL("DELETE FROM {} WHERE subject = %s RETURNING key_id").format(self._table),
            [subject],
        )
        await self._query(sql.SQL("VACUUM FULL {}").format(self._table), [])
        return len(rows)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
