"""Taking a PostgreSQL store back to the layout of schema version 8: one
unpartitioned events table with its unique constraints, no event_ids, no
partitions, as a store written before version 9 has it (for the tests of
migrations from older versions)."""

from __future__ import annotations

from typing import Any

from psycopg import sql

UNPARTITION = (
    "CREATE TABLE {s}.events_plain (LIKE {s}.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
    "INSERT INTO {s}.events_plain SELECT * FROM {s}.events",
    "DROP TABLE {s}.events CASCADE",
    "DROP TABLE {s}.event_ids, {s}.partitions",
    "DROP FUNCTION {s}.ensure_partitions, {s}.events_inserted, {s}.events_deleted",
    "DELETE FROM {s}.settings WHERE key LIKE 'partition%%'",
    "ALTER TABLE {s}.events_plain RENAME TO events",
    "ALTER TABLE {s}.events ADD CONSTRAINT events_pkey PRIMARY KEY (position)",
    "ALTER TABLE {s}.events ADD CONSTRAINT events_stream_version UNIQUE (stream_id, version)",
    "ALTER TABLE {s}.events ADD CONSTRAINT events_event_id UNIQUE (event_id)",
    "CREATE INDEX events_type_position ON {s}.events (type, position)",
    "DELETE FROM {s}.schema_version WHERE version > 8",
)


async def unpartition(conn: Any, schema: str) -> None:
    """``conn``: an autocommit psycopg AsyncConnection; ``schema``: the store's."""
    async with conn.transaction():
        for statement in UNPARTITION:
            await conn.execute(sql.SQL(statement).format(s=sql.Identifier(schema)))
