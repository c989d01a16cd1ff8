"""Tables, the append function and versioned migrations.

Every name that contains the (user-chosen) schema goes through
``psycopg.sql.Identifier``; values are always parameters. Migrations run in
one transaction under an advisory lock derived from the schema name, so two
processes opening the same store at once apply each step exactly once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from eventfold.errors import NotAnEventStore, SchemaVersionError, StoreNotFound
from eventfold.store.postgres import functions

SCHEMA_VERSION = 9
"""The newest schema version this code knows. Bump it (with a migration, even
an empty one) whenever functions.py changes: the functions are reinstalled
whenever migrations run."""

POSITION_BITS = 20
"""position = (transaction id + offset) << POSITION_BITS | index of the row in its transaction."""

MAX_EVENTS_PER_TRANSACTION = (1 << POSITION_BITS) - 1


class Names:
    """Quoted, schema-qualified names of everything the store creates."""

    def __init__(self, schema: str) -> None:
        self.schema_name = schema
        self.schema = sql.Identifier(schema)
        self.events = sql.Identifier(schema, "events")
        self.streams = sql.Identifier(schema, "streams")
        self.snapshots = sql.Identifier(schema, "snapshots")
        self.event_tags = sql.Identifier(schema, "event_tags")
        self.stream_cuts = sql.Identifier(schema, "stream_cuts")
        self.settings = sql.Identifier(schema, "settings")
        self.event_ids = sql.Identifier(schema, "event_ids")
        self.ensure_partitions = sql.Identifier(schema, "ensure_partitions")
        self.versions = sql.Identifier(schema, "schema_version")
        self.append = sql.Identifier(schema, "append_batch")
        self.append_one = sql.Identifier(schema, "append_one")
        self.append_events = sql.Identifier(schema, "append_events")
        self.chain_tags = sql.Identifier(schema, "chain_tags")
        self.chain_hash = sql.Identifier(schema, "chain_hash")
        self.chain_message = sql.Identifier(schema, "chain_message")
        # the last recorded_at handed out, in microseconds since the epoch
        self.clock = sql.Identifier(schema, "recorded_clock")
        self.clock_name = sql.SQL("{}::regclass").format(sql.Literal(self.clock.as_string()))
        digest = hashlib.sha256(f"eventfold:{schema}".encode()).digest()
        # The NOTIFY channel and the migration lock key: fixed-size, derived
        # from the schema name, never the name itself.
        self.channel = "eventfold_" + digest[:10].hex()
        self.lock_key = int.from_bytes(digest[:8], "big", signed=True)
        # first half of the (int4, int4) advisory lock keys that order writers
        # of one stream; the second half is hashtext(stream_id)
        self.lock_space = int.from_bytes(digest[8:12], "big", signed=True)
        # the session lock under which an append takes its transaction id
        # and its recorded_at (functions.TAKE_POSITION)
        self.clock_lock = int.from_bytes(digest[12:20], "big", signed=True)
        # first half of the (int4, int4) advisory lock keys of DCB: types,
        # tags and the global key (eventfold.store.dcb.lock_keys)
        self.dcb_space = int.from_bytes(digest[20:24], "big", signed=True)

    def format(self, template: str, **parts: sql.Composable) -> sql.Composed:
        return sql.SQL(template).format(
            **parts,
            schema=self.schema,
            events=self.events,
            streams=self.streams,
            snapshots=self.snapshots,
            event_tags=self.event_tags,
            stream_cuts=self.stream_cuts,
            settings=self.settings,
            event_ids=self.event_ids,
            ensure_partitions=self.ensure_partitions,
            versions=self.versions,
            append=self.append,
            append_one=self.append_one,
            append_events=self.append_events,
            clock=self.clock,
            clock_name=self.clock_name,
        )


Step = str | Callable[[psycopg.AsyncConnection[Any], "Names"], Awaitable[None]]

_MIGRATION_1: list[Step] = [
    """
    CREATE TABLE {streams} (
        stream_id text COLLATE "C" PRIMARY KEY,
        version bigint NOT NULL CHECK (version > 0),
        position bigint NOT NULL
    )
    """,
    """
    CREATE TABLE {events} (
        position bigint PRIMARY KEY,
        stream_id text COLLATE "C" NOT NULL,
        version bigint NOT NULL CHECK (version > 0),
        event_id uuid NOT NULL,
        type text COLLATE "C" NOT NULL,
        schema_version integer NOT NULL,
        data jsonb NOT NULL,
        metadata jsonb NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT events_stream_version UNIQUE (stream_id, version),
        CONSTRAINT events_event_id UNIQUE (event_id)
    )
    """,
    """
    CREATE TABLE {snapshots} (
        stream_id text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        version bigint NOT NULL,
        schema_version integer NOT NULL,
        state bytea NOT NULL,
        saved_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (stream_id, name)
    )
    """,
    """
    CREATE TABLE {settings} (
        key text COLLATE "C" PRIMARY KEY,
        value bigint NOT NULL
    )
    """,
    "INSERT INTO {settings} (key, value) VALUES ('xid_offset', 0)",
]

# 2: a SHA-256 hash chain per stream (eventfold.store.chain); the
# streams table keeps each chain's head so that appends need not read it.
_MIGRATION_2: list[Step] = [
    "ALTER TABLE {events} ADD COLUMN hash bytea",
    "ALTER TABLE {streams} ADD COLUMN hash bytea",
    functions.install,
    functions.backfill_chain,
    "ALTER TABLE {events} ALTER COLUMN hash SET NOT NULL",
    "ALTER TABLE {streams} ALTER COLUMN hash SET NOT NULL",
]

# 3: append_one, the append function for a lone request to one stream.
_MIGRATION_3: list[Step] = [functions.install]

# 4: append_one computes the chain's messages in one statement.
_MIGRATION_4: list[Step] = [functions.install]

# 5: chain_message, the chain's message format written once in SQL, used by
# chain_hash and append_one (the bytes are unchanged).
_MIGRATION_5: list[Step] = [functions.install]

# 6: recorded_at is taken with the transaction id, after the stream locks,
# never before the last one handed out (functions.TAKE_POSITION): it is
# non-decreasing along the log and every stream.
_MIGRATION_6: list[Step] = [
    "CREATE SEQUENCE IF NOT EXISTS {clock} AS bigint MINVALUE 0 START 0",
    "SELECT setval({clock_name}, greatest(c.last_value, coalesce(("
    " SELECT floor(extract(epoch FROM max(recorded_at)) * 1000000)::bigint FROM {events}), 0)))"
    " FROM {clock} c",
    functions.install,
]

# 7: tags and DCB. A tags column (existing rows get the empty array without a
# rewrite), event_tags (one row per tag and event, with the event's type in
# its index, scanned in position order by DCB queries without visiting the
# events), an index on (type, position) for queries of types alone,
# the append functions taking tags and lock keys (their old signatures
# dropped) and append_events, the conditional append without a stream.
_MIGRATION_7: list[Step] = [
    """ALTER TABLE {events} ADD COLUMN tags text[] COLLATE "C" NOT NULL DEFAULT '{{}}'""",
    """
    CREATE TABLE {event_tags} (
        tag text COLLATE "C" NOT NULL,
        position bigint NOT NULL,
        type text COLLATE "C" NOT NULL,
        PRIMARY KEY (tag, position) INCLUDE (type)
    )
    """,
    "CREATE INDEX events_type_position ON {events} (type, position)",
    "DROP FUNCTION IF EXISTS {append_one}(text, bigint, uuid[], text[], integer[], text[],"
    " text[], text)",
    "DROP FUNCTION IF EXISTS {append}(text[], integer[], integer[], bigint[], integer[],"
    " uuid[], text[], integer[], text[], text[], text)",
    functions.install,
]

# 8: stream lifecycle (eventfold.store.postgres.lifecycle). A stream's row
# keeps its version and chain head when its events are removed, and learns
# the first version still stored and whether it was deleted for good (a
# tombstone of a stream never written has version 0); stream_cuts keeps
# every cut. The append functions refuse tombstoned streams.
_MIGRATION_8: list[Step] = [
    "ALTER TABLE {streams} ADD COLUMN first_version bigint NOT NULL DEFAULT 1,"
    " ADD COLUMN tombstoned boolean NOT NULL DEFAULT false",
    "ALTER TABLE {streams} DROP CONSTRAINT IF EXISTS streams_version_check",
    "ALTER TABLE {streams} ADD CONSTRAINT streams_version_check CHECK (version > 0 OR tombstoned)",
    """
    CREATE TABLE {stream_cuts} (
        seq bigserial PRIMARY KEY,
        stream_id text COLLATE "C" NOT NULL,
        before_version bigint NOT NULL,
        anchor bytea NOT NULL,
        reason text NOT NULL,
        at timestamptz NOT NULL,
        archive text NOT NULL,
        signature text NOT NULL
    )
    """,
    "CREATE INDEX stream_cuts_stream ON {stream_cuts} (stream_id, seq)",
    functions.install,
]


async def _partition_events(conn: psycopg.AsyncConnection[Any], names: Names) -> None:
    from eventfold.store.postgres import partitions

    await partitions.partition_events(conn, names)


# 9: the events table partitioned by range of position, event ids unique
# through the event_ids table (eventfold.store.postgres.partitions).
_MIGRATION_9: list[Step] = [_partition_events, functions.install]

MIGRATIONS: dict[int, Sequence[Step]] = {
    1: _MIGRATION_1,
    2: _MIGRATION_2,
    3: _MIGRATION_3,
    4: _MIGRATION_4,
    5: _MIGRATION_5,
    6: _MIGRATION_6,
    7: _MIGRATION_7,
    8: _MIGRATION_8,
    9: _MIGRATION_9,
}


async def _run_step(conn: psycopg.AsyncConnection[Any], names: Names, step: Step) -> None:
    if isinstance(step, str):
        await conn.execute(names.format(step))
    else:
        await step(conn, names)


async def _current_version(conn: psycopg.AsyncConnection[Any], names: Names) -> int:
    """The applied schema version, 0 for a missing or empty schema.

    Which tables the schema holds is read in one statement, so from one
    snapshot: another process committing the whole schema at that moment is
    seen either not at all (0, then settled under the migration lock) or
    whole, never as tables without their ``schema_version`` table."""
    cur = await conn.execute(
        "SELECT count(*) FILTER (WHERE tablename = 'schema_version'), count(*)"
        " FROM pg_catalog.pg_tables WHERE schemaname = %s",
        [names.schema_name],
    )
    row = await cur.fetchone()
    versions, tables = (0, 0) if row is None else (int(row[0]), int(row[1]))
    if versions == 0:
        if tables != 0:
            raise NotAnEventStore(
                f"schema {names.schema_name!r}",
                "it holds tables but no eventfold schema_version table",
            )
        return 0
    cur = await conn.execute(names.format("SELECT coalesce(max(version), 0) FROM {versions}"))
    row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


async def _fix_xid_offset(conn: psycopg.AsyncConnection[Any], names: Names) -> None:
    """After a logical restore into another cluster the transaction counter
    restarts low; raise the offset so that new positions stay above old ones."""
    await conn.execute(
        names.format(
            """
            UPDATE {settings} s
               SET value = greatest(s.value, m.top + 1 - pg_current_xact_id()::text::bigint)
              FROM (SELECT coalesce(max(position) >> 20, 0) AS top FROM {events}) m
             WHERE s.key = 'xid_offset'
               AND m.top >= pg_current_xact_id()::text::bigint + s.value
            """
        )
    )


async def migrate(conn: psycopg.AsyncConnection[Any], names: Names, *, create: bool = True) -> int:
    """Bring the schema to SCHEMA_VERSION; return the xid offset positions use.
    With ``create=False`` a schema that holds no store raises StoreNotFound.

    ``conn`` must be in autocommit mode; the work runs in its own transaction.
    """
    location = f"schema {names.schema_name!r}"
    async with conn.transaction():
        current = await _current_version(conn, names)
        if current == 0 and not create:
            raise StoreNotFound(location, "no eventfold tables")
        if current == SCHEMA_VERSION:
            # The common case: nothing to apply, no lock needed. The offset
            # check takes a snapshot of max(position) only.
            offset = await _read_offset(conn, names)
            if not await _offset_needs_fixing(conn, names, offset):
                return offset
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [names.lock_key])
        current = await _current_version(conn, names)
        if current > SCHEMA_VERSION:
            raise SchemaVersionError(location, current, SCHEMA_VERSION)
        if current == 0:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = %s",
                [names.schema_name],
            )
            row = await cur.fetchone()
            if row is None or row[0] == 0:
                await conn.execute(names.format("CREATE SCHEMA {schema}"))
            await conn.execute(
                names.format(
                    "CREATE TABLE {versions} ("
                    " version integer PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                await _run_step(conn, names, statement)
            await conn.execute(
                names.format("INSERT INTO {versions} (version) VALUES (%s)"), [version]
            )
        if current < SCHEMA_VERSION:
            await functions.install(conn, names)
        await _fix_xid_offset(conn, names)
        return await _read_offset(conn, names)


async def _read_offset(conn: psycopg.AsyncConnection[Any], names: Names) -> int:
    cur = await conn.execute(names.format("SELECT value FROM {settings} WHERE key = 'xid_offset'"))
    row = await cur.fetchone()
    if row is None:
        raise NotAnEventStore(f"schema {names.schema_name!r}", "the xid_offset setting is missing")
    return int(row[0])


async def _offset_needs_fixing(
    conn: psycopg.AsyncConnection[Any], names: Names, offset: int
) -> bool:
    cur = await conn.execute(
        names.format(
            "SELECT (SELECT coalesce(max(position) >> 20, 0) FROM {events})"
            " >= pg_snapshot_xmax(pg_current_snapshot())::text::bigint + %s"
        ),
        [offset],
    )
    row = await cur.fetchone()
    return bool(row is not None and row[0])
