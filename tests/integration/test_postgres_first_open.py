"""Guarantee: any number of processes may open a new PostgreSQL store at
once. Reading which tables the schema holds must not straddle another
process's migration commit (three replicas starting together on a deploy)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from eventfold.store.postgres.schema import SCHEMA_VERSION, Names, _current_version, migrate


class CommitsAfterFirstStatement:
    """A real connection whose first statement is followed, before the next
    one, by another transaction's commit: the interleaving of two processes
    opening a new store at the same moment, made certain."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], other: psycopg.AsyncConnection[Any]):
        self.conn = conn
        self.other: psycopg.AsyncConnection[Any] | None = other

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        cur = await self.conn.execute(*args, **kwargs)
        if self.other is not None:
            other, self.other = self.other, None
            await other.commit()
        return cur


async def test_opening_while_another_process_commits_the_schema(
    pg_url: str, pg_schema: str
) -> None:
    base = pg_url.split("?")[0]
    names = Names(pg_schema)
    async with (
        await psycopg.AsyncConnection.connect(base) as other,
        await psycopg.AsyncConnection.connect(base, autocommit=True) as conn,
    ):
        await other.execute("SELECT 1")  # a transaction that stays open
        await migrate(other, names)  # its whole migration, not committed yet
        opener = CommitsAfterFirstStatement(conn, other)
        assert await _current_version(opener, names) in (0, SCHEMA_VERSION)  # type: ignore[arg-type]
        assert opener.other is None  # the other process did commit in between
        await migrate(conn, names)  # and the store opens
        cur = await conn.execute(
            sql.SQL("SELECT version FROM {}").format(sql.Identifier(pg_schema, "schema_version"))
        )
        assert await cur.fetchall() == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
