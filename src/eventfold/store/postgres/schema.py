"""Tables, the append function and versioned migrations.

Every name that contains the (user-chosen) schema goes through
``psycopg.sql.Identifier``; values are always parameters. Migrations run in
one transaction under an advisory lock derived from the schema name, so two
processes opening the same store at once apply each step exactly once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from eventfold.errors import NotAnEventStore, SchemaVersionError

SCHEMA_VERSION = 1
"""The newest schema version this code knows."""

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
        self.settings = sql.Identifier(schema, "settings")
        self.versions = sql.Identifier(schema, "schema_version")
        self.append = sql.Identifier(schema, "append_batch")
        digest = hashlib.sha256(f"eventfold:{schema}".encode()).digest()
        # The NOTIFY channel and the migration lock key: fixed-size, derived
        # from the schema name, never the name itself.
        self.channel = "eventfold_" + digest[:10].hex()
        self.lock_key = int.from_bytes(digest[:8], "big", signed=True)
        # first half of the (int4, int4) advisory lock keys that order writers
        # of one stream; the second half is hashtext(stream_id)
        self.lock_space = int.from_bytes(digest[8:12], "big", signed=True)

    def format(self, template: str, **parts: sql.Composable) -> sql.Composed:
        return sql.SQL(template).format(
            **parts,
            schema=self.schema,
            events=self.events,
            streams=self.streams,
            snapshots=self.snapshots,
            settings=self.settings,
            versions=self.versions,
            append=self.append,
        )


# The append function: takes a whole group of append requests as flat arrays
# and decides each on its own, in order, in one transaction.
#
#   streams: st_ids, the distinct streams of the group
#   items:   it_req (request number, contiguous), it_slot (index into st_ids),
#            it_expected (>= 0 exact, -1 ANY, -2 NO_STREAM, -3 STREAM_EXISTS),
#            it_count (number of events)
#   events:  ev_* in item order; no event id appears twice in a group
#
# One row per item: r_status 0 = written (r_version, r_position: the stream's
# version and last position after it), 1 = wrong expected version (r_version =
# the actual version), 2 = some event ids of the request are already stored
# (nothing written; the client decides whether it is a retry), 3 = not written
# because another item of the same request failed.
#
# Order: writers of one stream are serialised by transaction-level advisory
# locks, taken (in one order, so groups never deadlock) BEFORE the transaction
# has an id: advisory locks need none. The id is taken by the first write,
# after the locks, so whoever writes a stream after us gets a larger id; as
# positions are (id << 20 | index), a stream's versions and positions agree.
# A transaction that already has an id when it gets here (the caller wrote
# something first) is refused, since its id may be older than a writer it
# waited for.
#
# The work is set-based: one statement takes the locks, one reads the streams'
# versions, one looks up stored event ids, a loop without SQL decides every
# request against the running versions, one INSERT writes all accepted events
# and two statements move the streams on. A failed request never writes, so no
# savepoint is needed (a subtransaction per request would also overflow
# PostgreSQL's subxid cache in big groups). An unexpected error (a payload
# jsonb refuses, a concurrent transaction storing the same event id in another
# stream) aborts the whole statement; the client then runs the requests one by
# one.
_APPEND_SIGNATURE = """
CREATE OR REPLACE FUNCTION {append}(
    st_ids text[], it_req integer[], it_slot integer[], it_expected bigint[],
    it_count integer[], ev_id uuid[], ev_type text[], ev_schema integer[],
    ev_data text[], ev_meta text[], channel text
) RETURNS TABLE (r_item integer, r_status integer, r_version bigint, r_position bigint)
LANGUAGE plpgsql
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS {body}
"""

_APPEND_BODY = """
DECLARE
    n integer := coalesce(cardinality(it_slot), 0);
    m integer := coalesce(cardinality(st_ids), 0);
    base bigint;
    rel bigint := 0;
    cur_v bigint[];
    cur_p bigint[];
    rel_p boolean[];
    was_v bigint[];
    l_slot integer[];
    l_v bigint[];
    l_p bigint[];
    stored uuid[];
    i integer;
    j integer;
    k integer;
    lo integer := 1;
    hi integer;
    ev_lo integer := 1;
    ev_hi integer;
    ev_at integer;
    cnt integer;
    v bigint;
    expect bigint;
    bad integer;
    dup boolean;
    na integer := 0;
    a_pos bigint[] := '{{}}';
    a_slot integer[] := '{{}}';
    a_ver bigint[] := '{{}}';
    a_at integer[] := '{{}}';
    a_cnt integer[] := '{{}}';
    o_status integer[] := '{{}}';
    o_version bigint[] := '{{}}';
    o_position bigint[] := '{{}}';
    o_rel boolean[] := '{{}}';
    nn integer := 0;
    nu integer := 0;
    new_ids text[] := '{{}}';
    new_v bigint[] := '{{}}';
    new_p bigint[] := '{{}}';
    upd_ids text[] := '{{}}';
    upd_v bigint[] := '{{}}';
    upd_p bigint[] := '{{}}';
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'an eventfold append must be the first write of its transaction'
          USING ERRCODE = 'EF001';
    END IF;
    PERFORM pg_advisory_xact_lock({lock_space}, k.h)
       FROM (SELECT DISTINCT hashtext(x) AS h FROM unnest(st_ids) AS x ORDER BY 1) AS k;

    SELECT array_agg(u.i), array_agg(s.version), array_agg(s.position)
      INTO l_slot, l_v, l_p
      FROM unnest(st_ids) WITH ORDINALITY AS u(id, i)
      JOIN {streams} s ON s.stream_id = u.id;
    cur_v := array_fill(0::bigint, ARRAY[m]);
    cur_p := array_fill(0::bigint, ARRAY[m]);
    rel_p := array_fill(false, ARRAY[m]);
    FOR j IN 1..coalesce(cardinality(l_slot), 0) LOOP
        cur_v[l_slot[j]] := l_v[j];
        cur_p[l_slot[j]] := l_p[j];
    END LOOP;
    was_v := cur_v;

    SELECT array_agg(e.event_id) INTO stored FROM {events} e WHERE e.event_id = ANY (ev_id);

    WHILE lo <= n LOOP
        -- the request: items lo..hi, events ev_lo..ev_hi
        hi := lo;
        ev_hi := ev_lo + it_count[lo] - 1;
        WHILE hi < n AND it_req[hi + 1] = it_req[lo] LOOP
            hi := hi + 1;
            ev_hi := ev_hi + it_count[hi];
        END LOOP;
        dup := false;
        IF stored IS NOT NULL THEN
            FOR j IN ev_lo..ev_hi LOOP
                IF ev_id[j] = ANY (stored) THEN
                    dup := true;
                    EXIT;
                END IF;
            END LOOP;
        END IF;
        bad := 0;
        IF NOT dup THEN
            FOR k IN lo..hi LOOP
                v := cur_v[it_slot[k]];
                expect := it_expected[k];
                IF NOT (expect = -1 OR (expect = -2 AND v = 0)
                        OR (expect = -3 AND v > 0) OR expect = v) THEN
                    bad := k;
                    EXIT;
                END IF;
            END LOOP;
        END IF;
        IF dup OR bad > 0 THEN
            FOR k IN lo..hi LOOP
                o_status[k] := CASE WHEN dup THEN 2 WHEN k = bad THEN 1 ELSE 3 END;
                o_version[k] := cur_v[it_slot[k]];
                o_position[k] := cur_p[it_slot[k]];
                o_rel[k] := rel_p[it_slot[k]];
            END LOOP;
        ELSE
            ev_at := ev_lo;
            FOR k IN lo..hi LOOP
                cnt := it_count[k];
                i := it_slot[k];
                IF cnt > 0 THEN
                    na := na + 1;
                    a_pos[na] := rel;
                    a_slot[na] := i;
                    a_ver[na] := cur_v[i];
                    a_at[na] := ev_at;
                    a_cnt[na] := cnt;
                    cur_v[i] := cur_v[i] + cnt;
                    rel := rel + cnt;
                    cur_p[i] := rel - 1;
                    rel_p[i] := true;
                END IF;
                o_status[k] := 0;
                o_version[k] := cur_v[i];
                o_position[k] := cur_p[i];
                o_rel[k] := rel_p[i];
                ev_at := ev_at + cnt;
            END LOOP;
        END IF;
        lo := hi + 1;
        ev_lo := ev_hi + 1;
    END LOOP;

    IF na > 0 THEN
        IF rel > 1048575 THEN
            RAISE EXCEPTION 'more than 1048575 events in one transaction'
              USING ERRCODE = 'program_limit_exceeded';
        END IF;
        -- the first write: the transaction id is taken here, after the locks
        SELECT (pg_current_xact_id()::text::bigint + s.value) << 20 INTO base
          FROM {settings} s WHERE s.key = 'xid_offset';
        INSERT INTO {events} (position, stream_id, version, event_id, type, schema_version,
                              data, metadata)
        SELECT base + a.p + g.o, st_ids[a.s], a.v + 1 + g.o, ev_id[a.e + g.o],
               ev_type[a.e + g.o], ev_schema[a.e + g.o], ev_data[a.e + g.o]::jsonb,
               ev_meta[a.e + g.o]::jsonb
          FROM unnest(a_pos, a_slot, a_ver, a_at, a_cnt) AS a(p, s, v, e, c)
         CROSS JOIN LATERAL generate_series(0, a.c - 1) AS g(o);
        FOR i IN 1..m LOOP
            IF cur_v[i] <> was_v[i] THEN
                IF was_v[i] = 0 THEN
                    nn := nn + 1;
                    new_ids[nn] := st_ids[i];
                    new_v[nn] := cur_v[i];
                    new_p[nn] := base + cur_p[i];
                ELSE
                    nu := nu + 1;
                    upd_ids[nu] := st_ids[i];
                    upd_v[nu] := cur_v[i];
                    upd_p[nu] := base + cur_p[i];
                END IF;
            END IF;
        END LOOP;
        IF nn > 0 THEN
            INSERT INTO {streams} (stream_id, version, position)
            SELECT * FROM unnest(new_ids, new_v, new_p);
        END IF;
        IF nu > 0 THEN
            UPDATE {streams} s SET version = u.v, position = u.p
              FROM unnest(upd_ids, upd_v, upd_p) AS u(id, v, p)
             WHERE s.stream_id = u.id;
        END IF;
        IF channel IS NOT NULL THEN
            -- one notification per call, delivered at commit; the payload is the
            -- last position written so listeners can tell whether it concerns them
            PERFORM pg_notify(channel, (base + rel - 1)::text);
        END IF;
    END IF;
    RETURN QUERY
        SELECT o.k::integer, o.st, o.ver, CASE WHEN o.r THEN base + o.pos ELSE o.pos END
          FROM unnest(o_status, o_version, o_position, o_rel)
               WITH ORDINALITY AS o(st, ver, pos, r, k);
END
"""


_MIGRATION_1 = [
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
    _APPEND_SIGNATURE,
]

MIGRATIONS: dict[int, Sequence[str]] = {1: _MIGRATION_1}


async def _run_step(conn: psycopg.AsyncConnection[Any], names: Names, statement: str) -> None:
    if "{body}" in statement:
        # The body is a string literal holding quoted identifiers: quote it as
        # a literal too (never dollar-quote text that contains a user's name).
        body = names.format(_APPEND_BODY, lock_space=sql.Literal(names.lock_space)).as_string(conn)
        composed = sql.SQL(statement).format(append=names.append, body=sql.Literal(body))
        await conn.execute(composed)
    else:
        await conn.execute(names.format(statement))


async def _current_version(conn: psycopg.AsyncConnection[Any], names: Names) -> int:
    """The applied schema version, 0 for a missing or empty schema."""
    cur = await conn.execute(
        "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = %s",
        [names.schema_name, "schema_version"],
    )
    row = await cur.fetchone()
    if row is None or row[0] == 0:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = %s",
            [names.schema_name],
        )
        row = await cur.fetchone()
        if row is not None and row[0] != 0:
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


async def migrate(conn: psycopg.AsyncConnection[Any], names: Names) -> int:
    """Bring the schema to SCHEMA_VERSION; return the xid offset positions use.

    ``conn`` must be in autocommit mode; the work runs in its own transaction.
    """
    location = f"schema {names.schema_name!r}"
    async with conn.transaction():
        current = await _current_version(conn, names)
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
