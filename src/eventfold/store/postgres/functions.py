"""The server-side code of the store: the append functions and the hash
chain's functions, installed (again) whenever a migration runs.

Bodies are string literals built with psycopg.sql: the schema's identifiers are
quoted inside them and the whole body is then quoted as a literal, so no
user-chosen name can end a dollar quote or reach SQL unquoted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from eventfold.store.postgres.schema import Names

GENESIS_SQL = "'\\x" + "00" * 32 + "'"
"""The chain's previous hash for a stream's first event: 32 zero bytes."""

# chain_message builds exactly the bytes of eventfold.store.chain.link_message
# without the previous digest (stream, version, the 16 bytes of the id, type,
# schema version, the data's byte length, data, metadata): the one SQL
# definition of the format. A plain SQL function, so the planner inlines it
# where append_one calls it for every event in one statement; chain_hash
# prefixes the previous digest and hashes it with SHA-256. The conformance
# suite checks the stored digests against the Python definition.
CHAIN_MESSAGE = """
CREATE OR REPLACE FUNCTION {chain_message}(
    stream_id text, version bigint, event_id uuid, type text,
    schema_version integer, data text, metadata text
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $message$
    SELECT convert_to(E'\\n' || stream_id || E'\\n' || version::text || E'\\n', 'UTF8')
        || uuid_send(event_id)
        || convert_to(
            E'\\n' || type || E'\\n' || schema_version::text || E'\\n'
            || octet_length(convert_to(data, 'UTF8'))::text || E'\\n' || data || metadata,
            'UTF8'
        )
$message$
"""

CHAIN_HASH_SIGNATURE = """
CREATE OR REPLACE FUNCTION {chain_hash}(
    prev bytea, stream_id text, version bigint, event_id uuid, type text,
    schema_version integer, data text, metadata text
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS {body}
"""

CHAIN_HASH_BODY = """
    SELECT sha256(
        prev || {chain_message}(stream_id, version, event_id, type, schema_version, data, metadata)
    )
"""

# Fills the chain of events stored before the chain existed (schema version 1).
BACKFILL_BODY = """
DECLARE
    r record;
    prev bytea;
    current_stream text;
BEGIN
    FOR r IN SELECT e.position, e.stream_id, e.version, e.event_id, e.type,
                    e.schema_version, e.data::text AS d, e.metadata::text AS m
               FROM {events} e ORDER BY e.stream_id, e.version LOOP
        IF current_stream IS DISTINCT FROM r.stream_id THEN
            prev := {genesis}::bytea;
            current_stream := r.stream_id;
        END IF;
        prev := {chain_hash}(prev, r.stream_id, r.version, r.event_id, r.type,
                             r.schema_version, r.d, r.m);
        UPDATE {events} SET hash = prev WHERE position = r.position;
        UPDATE {streams} SET hash = prev WHERE stream_id = r.stream_id;
    END LOOP;
END
"""


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
# versions (and chain heads), one looks up stored event ids, a loop without
# SQL decides every request against the running versions, one statement
# normalises the payloads as jsonb, a loop extends each stream's hash chain,
# one INSERT writes all accepted events and two statements move the streams on.
# A failed request never writes, so no savepoint is needed (a subtransaction
# per request would also overflow PostgreSQL's subxid cache in big groups). An
# unexpected error (a payload jsonb refuses, a concurrent transaction storing
# the same event id in another stream) aborts the whole statement; the client
# then runs the requests one by one.
APPEND_SIGNATURE = """
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

APPEND_BODY = """
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
    l_h bytea[];
    cur_h bytea[];
    ev_hash bytea[];
    j_data jsonb[];
    j_meta jsonb[];
    prev bytea;
    g integer;
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
    new_h bytea[] := '{{}}';
    upd_h bytea[] := '{{}}';
    at timestamptz;
    at_us bigint;
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'an eventfold append must be the first write of its transaction'
          USING ERRCODE = 'EF001';
    END IF;
    PERFORM pg_advisory_xact_lock({lock_space}, k.h)
       FROM (SELECT DISTINCT hashtext(x) AS h FROM unnest(st_ids) AS x ORDER BY 1) AS k;

    SELECT array_agg(u.i), array_agg(s.version), array_agg(s.position), array_agg(s.hash)
      INTO l_slot, l_v, l_p, l_h
      FROM unnest(st_ids) WITH ORDINALITY AS u(id, i)
      JOIN {streams} s ON s.stream_id = u.id;
    cur_v := array_fill(0::bigint, ARRAY[m]);
    cur_p := array_fill(0::bigint, ARRAY[m]);
    cur_h := array_fill({genesis}::bytea, ARRAY[m]);
    rel_p := array_fill(false, ARRAY[m]);
    FOR j IN 1..coalesce(cardinality(l_slot), 0) LOOP
        cur_v[l_slot[j]] := l_v[j];
        cur_p[l_slot[j]] := l_p[j];
        cur_h[l_slot[j]] := l_h[j];
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
        -- payloads as jsonb will store them (and read them back), then each
        -- stream's hash chain over exactly that text
        SELECT array_agg(ev_data[x]::jsonb ORDER BY x), array_agg(ev_meta[x]::jsonb ORDER BY x)
          INTO j_data, j_meta
          FROM generate_series(1, cardinality(ev_id)) AS x;
        ev_hash := array_fill(NULL::bytea, ARRAY[cardinality(ev_id)]);
        FOR j IN 1..na LOOP
            i := a_slot[j];
            prev := cur_h[i];
            FOR g IN 0..a_cnt[j] - 1 LOOP
                k := a_at[j] + g;
                prev := {chain_hash}(prev, st_ids[i], a_ver[j] + 1 + g, ev_id[k], ev_type[k],
                                     ev_schema[k], j_data[k]::text, j_meta[k]::text);
                ev_hash[k] := prev;
            END LOOP;
            cur_h[i] := prev;
        END LOOP;
        -- the first write: the transaction id is taken here, after the locks
{take_position}
        INSERT INTO {events} (position, stream_id, version, event_id, type, schema_version,
                              data, metadata, hash, recorded_at)
        SELECT base + a.p + g.o, st_ids[a.s], a.v + 1 + g.o, ev_id[a.e + g.o],
               ev_type[a.e + g.o], ev_schema[a.e + g.o], j_data[a.e + g.o],
               j_meta[a.e + g.o], ev_hash[a.e + g.o], at
          FROM unnest(a_pos, a_slot, a_ver, a_at, a_cnt) AS a(p, s, v, e, c)
         CROSS JOIN LATERAL generate_series(0, a.c - 1) AS g(o);
        FOR i IN 1..m LOOP
            IF cur_v[i] <> was_v[i] THEN
                IF was_v[i] = 0 THEN
                    nn := nn + 1;
                    new_ids[nn] := st_ids[i];
                    new_v[nn] := cur_v[i];
                    new_p[nn] := base + cur_p[i];
                    new_h[nn] := cur_h[i];
                ELSE
                    nu := nu + 1;
                    upd_ids[nu] := st_ids[i];
                    upd_v[nu] := cur_v[i];
                    upd_p[nu] := base + cur_p[i];
                    upd_h[nu] := cur_h[i];
                END IF;
            END IF;
        END LOOP;
        IF nn > 0 THEN
            INSERT INTO {streams} (stream_id, version, position, hash)
            SELECT * FROM unnest(new_ids, new_v, new_p, new_h);
        END IF;
        IF nu > 0 THEN
            UPDATE {streams} s SET version = u.v, position = u.p, hash = u.h
              FROM unnest(upd_ids, upd_v, upd_p, upd_h) AS u(id, v, p, h)
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


# The transaction id (so the positions) and recorded_at, taken together under
# a lock held for these few statements only, so that recorded_at follows the
# positions' order along the whole log (and so along every stream): whoever
# takes a transaction id after us also takes the time after us. The time is
# the clock after the locks, and never before the last one handed out (kept
# in a sequence, which no transaction rolls back), should the clock go back.
# The lock is a session lock (a transaction lock would serialise all writers
# until commit), so it is released on every way out, a cancel included.
TAKE_POSITION = """
    BEGIN
        PERFORM pg_advisory_lock({clock_lock});
        SELECT (pg_current_xact_id()::text::bigint + s.value) << 20 INTO base
          FROM {settings} s WHERE s.key = 'xid_offset';
        SELECT greatest(floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
                        c.last_value)
          INTO at_us FROM {clock} c;
        PERFORM setval({clock_name}, at_us);
        PERFORM pg_advisory_unlock({clock_lock});
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock({clock_lock});
        RAISE;
    END;
    at := timestamptz 'epoch' + at_us * interval '1 microsecond';
"""


# The append function for one request to one stream, the common case of a
# lone append (no other request queued, group commit off, or inside a
# caller's transaction). Same rules, same order of steps and same result row
# as append_batch for a group of that one request, in fewer statements: no
# arrays of requests to walk, the payloads cast to jsonb in one step, the
# stream row read and written directly.
APPEND_ONE_SIGNATURE = """
CREATE OR REPLACE FUNCTION {append_one}(
    p_stream text, p_expected bigint, ev_id uuid[], ev_type text[], ev_schema integer[],
    ev_data text[], ev_meta text[], channel text
) RETURNS TABLE (r_item integer, r_status integer, r_version bigint, r_position bigint)
LANGUAGE plpgsql
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS {body}
"""

APPEND_ONE_BODY = """
DECLARE
    n integer := coalesce(cardinality(ev_id), 0);
    v bigint;
    p bigint;
    h bytea;
    base bigint;
    hashes bytea[];
    rests bytea[];
    j_data jsonb[];
    j_meta jsonb[];
    g integer;
    at timestamptz;
    at_us bigint;
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'an eventfold append must be the first write of its transaction'
          USING ERRCODE = 'EF001';
    END IF;
    PERFORM pg_advisory_xact_lock({lock_space}, hashtext(p_stream));
    SELECT s.version, s.position, s.hash INTO v, p, h
      FROM {streams} s WHERE s.stream_id = p_stream;
    IF NOT FOUND THEN
        v := 0;
        p := 0;
        h := {genesis}::bytea;
    END IF;
    IF n > 0 AND EXISTS (SELECT 1 FROM {events} e WHERE e.event_id = ANY (ev_id)) THEN
        RETURN QUERY SELECT 1, 2, v, p;
        RETURN;
    END IF;
    IF NOT (p_expected = -1 OR (p_expected = -2 AND v = 0)
            OR (p_expected = -3 AND v > 0) OR p_expected = v) THEN
        RETURN QUERY SELECT 1, 1, v, p;
        RETURN;
    END IF;
    IF n = 0 THEN
        RETURN QUERY SELECT 1, 0, v, p;
        RETURN;
    END IF;
    IF n > 1048575 THEN
        RAISE EXCEPTION 'more than 1048575 events in one transaction'
          USING ERRCODE = 'program_limit_exceeded';
    END IF;
    -- payloads as jsonb will store them (and read them back), then the hash
    -- chain over exactly that text: every event's chain_message in one
    -- statement (the function is inlined), the loop then only chains digests
    j_data := ev_data::jsonb[];
    j_meta := ev_meta::jsonb[];
    SELECT array_agg(
               {chain_message}(p_stream, v + x.o, x.id, x.ty, x.sc, x.d::text, x.m::text)
               ORDER BY x.o)
      INTO rests
      FROM unnest(ev_id, ev_type, ev_schema, j_data, j_meta)
           WITH ORDINALITY AS x(id, ty, sc, d, m, o);
    hashes := array_fill(NULL::bytea, ARRAY[n]);
    FOR g IN 1..n LOOP
        h := sha256(h || rests[g]);
        hashes[g] := h;
    END LOOP;
    -- the first write: the transaction id is taken here, after the lock
{take_position}
    INSERT INTO {events} (position, stream_id, version, event_id, type, schema_version,
                          data, metadata, hash, recorded_at)
    SELECT base + x.o - 1, p_stream, v + x.o, x.id, x.ty, x.sc, x.d, x.m, x.h, at
      FROM unnest(ev_id, ev_type, ev_schema, j_data, j_meta, hashes)
           WITH ORDINALITY AS x(id, ty, sc, d, m, h, o);
    IF v = 0 THEN
        INSERT INTO {streams} (stream_id, version, position, hash)
        VALUES (p_stream, n, base + n - 1, h);
    ELSE
        UPDATE {streams} SET version = v + n, position = base + n - 1, hash = h
         WHERE stream_id = p_stream;
    END IF;
    IF channel IS NOT NULL THEN
        PERFORM pg_notify(channel, (base + n - 1)::text);
    END IF;
    RETURN QUERY SELECT 1, 0, v + n, base + n - 1;
END
"""


def _parts(names: Names) -> dict[str, sql.Composable]:
    return {
        "chain_hash": names.chain_hash,
        "chain_message": names.chain_message,
        "genesis": sql.SQL(GENESIS_SQL),
        "lock_space": sql.Literal(names.lock_space),
        "take_position": names.format(TAKE_POSITION, clock_lock=sql.Literal(names.clock_lock)),
    }


async def install(conn: psycopg.AsyncConnection[Any], names: Names) -> None:
    """Create or replace the chain and append functions in ``names``' schema."""
    await conn.execute(names.format(CHAIN_MESSAGE, chain_message=names.chain_message))
    body = names.format(CHAIN_HASH_BODY, **_parts(names)).as_string(conn)
    await conn.execute(
        sql.SQL(CHAIN_HASH_SIGNATURE).format(chain_hash=names.chain_hash, body=sql.Literal(body))
    )
    body = names.format(APPEND_BODY, **_parts(names)).as_string(conn)
    await conn.execute(
        sql.SQL(APPEND_SIGNATURE).format(append=names.append, body=sql.Literal(body))
    )
    body = names.format(APPEND_ONE_BODY, **_parts(names)).as_string(conn)
    await conn.execute(
        sql.SQL(APPEND_ONE_SIGNATURE).format(append_one=names.append_one, body=sql.Literal(body))
    )


async def backfill_chain(conn: psycopg.AsyncConnection[Any], names: Names) -> None:
    """Compute the hash chain of every stored event (run once, by migration 2)."""
    body = names.format(BACKFILL_BODY, **_parts(names)).as_string(conn)
    await conn.execute(sql.SQL("DO {}").format(sql.Literal(body)))
