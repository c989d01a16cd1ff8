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

# The tags' part of the chain message (eventfold.store.chain): nothing for an
# event without tags, else a NUL byte and the tags joined by newlines. Takes
# the tags as the append functions receive them: joined by spaces ('' for none).
CHAIN_TAGS = """
CREATE OR REPLACE FUNCTION {chain_tags}(tags text) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $tags$
    SELECT CASE WHEN tags = '' THEN ''::bytea
                ELSE '\\x00'::bytea || convert_to(replace(tags, ' ', E'\\n'), 'UTF8') END
$tags$
"""

# The DCB locks of an append (eventfold.store.dcb.lock_keys): one statement
# takes every key, in the order given (sorted by the client, so that appends
# never deadlock), exclusive where the mode is true, else shared.
LOCK_KEYS = """
    PERFORM CASE WHEN u.m THEN pg_advisory_xact_lock({dcb_space}, u.k)
                 ELSE pg_advisory_xact_lock_shared({dcb_space}, u.k) END
       FROM unnest(lk_keys, lk_modes) AS u(k, m);
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
# because another item of the same request failed, 4 = the stream was
# deleted for good (a tombstone: never written again).
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
    ev_data text[], ev_meta text[], ev_tags text[], lk_keys integer[], lk_modes boolean[],
    channel text
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
    l_dead boolean[];
    dead boolean[];
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
    IF ev_tags IS NULL THEN  -- no event has tags
        ev_tags := array_fill(''::text, ARRAY[coalesce(cardinality(ev_id), 0)]);
    END IF;
    PERFORM pg_advisory_xact_lock({lock_space}, k.h)
       FROM (SELECT DISTINCT hashtext(x) AS h FROM unnest(st_ids) AS x ORDER BY 1) AS k;
    {lock_keys}

    SELECT array_agg(u.i), array_agg(s.version), array_agg(s.position), array_agg(s.hash),
           array_agg(s.tombstoned)
      INTO l_slot, l_v, l_p, l_h, l_dead
      FROM unnest(st_ids) WITH ORDINALITY AS u(id, i)
      JOIN {streams} s ON s.stream_id = u.id;
    dead := array_fill(false, ARRAY[m]);
    cur_v := array_fill(0::bigint, ARRAY[m]);
    cur_p := array_fill(0::bigint, ARRAY[m]);
    cur_h := array_fill({genesis}::bytea, ARRAY[m]);
    rel_p := array_fill(false, ARRAY[m]);
    FOR j IN 1..coalesce(cardinality(l_slot), 0) LOOP
        cur_v[l_slot[j]] := l_v[j];
        cur_p[l_slot[j]] := l_p[j];
        cur_h[l_slot[j]] := l_h[j];
        dead[l_slot[j]] := l_dead[j];
    END LOOP;
    was_v := cur_v;

    SELECT array_agg(e.event_id) INTO stored FROM {event_ids} e WHERE e.event_id = ANY (ev_id);

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
                IF dead[it_slot[k]] OR NOT (expect = -1 OR (expect = -2 AND v = 0)
                        OR (expect = -3 AND v > 0) OR expect = v) THEN
                    bad := k;
                    EXIT;
                END IF;
            END LOOP;
        END IF;
        IF dup OR bad > 0 THEN
            FOR k IN lo..hi LOOP
                o_status[k] := CASE WHEN dup THEN 2 WHEN k <> bad THEN 3
                                    WHEN dead[it_slot[k]] THEN 4 ELSE 1 END;
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
                prev := sha256(prev || {chain_message}(st_ids[i], a_ver[j] + 1 + g, ev_id[k],
                                     ev_type[k], ev_schema[k], j_data[k]::text, j_meta[k]::text)
                               || {chain_tags}(ev_tags[k]));
                ev_hash[k] := prev;
            END LOOP;
            cur_h[i] := prev;
        END LOOP;
        -- the first write: the transaction id is taken here, after the locks
{take_position}
        INSERT INTO {events} (position, stream_id, version, event_id, type, schema_version,
                              data, metadata, hash, recorded_at, tags)
        SELECT base + a.p + g.o, st_ids[a.s], a.v + 1 + g.o, ev_id[a.e + g.o],
               ev_type[a.e + g.o], ev_schema[a.e + g.o], j_data[a.e + g.o],
               j_meta[a.e + g.o], ev_hash[a.e + g.o], at,
               CASE WHEN ev_tags[a.e + g.o] = '' THEN '{{}}'::text[]
                    ELSE string_to_array(ev_tags[a.e + g.o], ' ') END
          FROM unnest(a_pos, a_slot, a_ver, a_at, a_cnt) AS a(p, s, v, e, c)
         CROSS JOIN LATERAL generate_series(0, a.c - 1) AS g(o);
        IF array_to_string(ev_tags, '') <> '' THEN
            INSERT INTO {event_tags} (tag, position, type)
            SELECT w.tag, base + a.p + g.o, ev_type[a.e + g.o]
              FROM unnest(a_pos, a_at, a_cnt) AS a(p, e, c)
             CROSS JOIN LATERAL generate_series(0, a.c - 1) AS g(o)
             CROSS JOIN LATERAL unnest(string_to_array(nullif(ev_tags[a.e + g.o], ''), ' '))
                   AS w(tag);
        END IF;
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
        PERFORM {ensure_partitions}(base);
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
    ev_data text[], ev_meta text[], ev_tags text[], lk_keys integer[], lk_modes boolean[],
    channel text
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
    dead boolean;
    at timestamptz;
    at_us bigint;
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'an eventfold append must be the first write of its transaction'
          USING ERRCODE = 'EF001';
    END IF;
    IF ev_tags IS NULL THEN  -- no event has tags
        ev_tags := array_fill(''::text, ARRAY[n]);
    END IF;
    PERFORM pg_advisory_xact_lock({lock_space}, hashtext(p_stream));
    {lock_keys}
    SELECT s.version, s.position, s.hash, s.tombstoned INTO v, p, h, dead
      FROM {streams} s WHERE s.stream_id = p_stream;
    IF NOT FOUND THEN
        v := 0;
        p := 0;
        h := {genesis}::bytea;
    ELSIF dead THEN
        RETURN QUERY SELECT 1, 4, v, p;
        RETURN;
    END IF;
    IF n > 0 AND EXISTS (SELECT 1 FROM {event_ids} e WHERE e.event_id = ANY (ev_id)) THEN
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
               || {chain_tags}(x.tg)
               ORDER BY x.o)
      INTO rests
      FROM unnest(ev_id, ev_type, ev_schema, j_data, j_meta, ev_tags)
           WITH ORDINALITY AS x(id, ty, sc, d, m, tg, o);
    hashes := array_fill(NULL::bytea, ARRAY[n]);
    FOR g IN 1..n LOOP
        h := sha256(h || rests[g]);
        hashes[g] := h;
    END LOOP;
    -- the first write: the transaction id is taken here, after the lock
{take_position}
    INSERT INTO {events} (position, stream_id, version, event_id, type, schema_version,
                          data, metadata, hash, recorded_at, tags)
    SELECT base + x.o - 1, p_stream, v + x.o, x.id, x.ty, x.sc, x.d, x.m, x.h, at,
           CASE WHEN x.tg = '' THEN '{{}}'::text[] ELSE string_to_array(x.tg, ' ') END
      FROM unnest(ev_id, ev_type, ev_schema, j_data, j_meta, hashes, ev_tags)
           WITH ORDINALITY AS x(id, ty, sc, d, m, h, tg, o);
    IF array_to_string(ev_tags, '') <> '' THEN
        INSERT INTO {event_tags} (tag, position, type)
        SELECT w.tag, base + x.o - 1, x.ty
          FROM unnest(ev_tags, ev_type) WITH ORDINALITY AS x(tg, ty, o),
               unnest(string_to_array(nullif(x.tg, ''), ' ')) AS w(tag);
    END IF;
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


# The DCB append, for a group of requests (group commit) or one: events
# without a stream (stream id '', version = position, each its own hash chain
# from the genesis digest), each request written if no event matching its
# condition is stored after its c_after, earlier requests of the group
# included. Order of steps: the lock keys of the whole group (shared for
# every type and tag written and the global key; exclusive for the keys the
# conditions' events are written under), then, per request and with a fresh
# snapshot (READ COMMITTED: each statement sees what committed before it, so
# every writer that held a conflicting lock before us, and the rows this
# transaction wrote for earlier requests), the id check and the condition
# check, then the insert. The transaction id is taken by the first insert,
# after the locks, so a writer that waits for ours gets a larger id and later
# positions. A failed request writes nothing, so no savepoint is needed.
#
#   requests: rq_count (events), rq_arms (scans of its condition), rq_check
#             (has a condition), rq_all (match-all), rq_after (-1: anywhere)
#   events:   ev_* in request order (ev_tags NULL: no event has tags)
#   scans:    (eventfold.store.dcb.arms) a_by 'type' or 'tag', a_key the type
#             or the first tag, a_types the item's types and a_tags its other
#             tags (both joined by spaces, '' for none), in request order
#
# One row per request: r_status 0 = written (r_position: of its last event),
# 1 = condition failed (r_position: the first conflicting event), 2 = some of
# its event ids are already stored (nothing written; the client decides
# whether it is a retry).
APPEND_EVENTS_SIGNATURE = """
CREATE OR REPLACE FUNCTION {append_events}(
    rq_count integer[], rq_arms integer[], rq_check boolean[], rq_all boolean[],
    rq_after bigint[], ev_id uuid[], ev_type text[], ev_schema integer[], ev_data text[],
    ev_meta text[], ev_tags text[], a_by text[], a_key text[], a_types text[], a_tags text[],
    lk_keys integer[], lk_modes boolean[], channel text
) RETURNS TABLE (r_item integer, r_status integer, r_position bigint)
LANGUAGE plpgsql
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS {body}
"""

APPEND_EVENTS_BODY = """
DECLARE
    n integer := coalesce(cardinality(rq_count), 0);
    r integer;
    ev_lo integer := 1;
    ev_hi integer;
    a_lo integer := 1;
    a_hi integer;
    base bigint;
    rel bigint := 0;
    conflict bigint;
    at timestamptz;
    at_us bigint;
    o_status integer[] := '{{}}';
    o_position bigint[] := '{{}}';
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'an eventfold append must be the first write of its transaction'
          USING ERRCODE = 'EF001';
    END IF;
    IF coalesce(cardinality(ev_id), 0) > 1048575 THEN
        RAISE EXCEPTION 'more than 1048575 events in one transaction'
          USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF ev_tags IS NULL THEN  -- no event has tags
        ev_tags := array_fill(''::text, ARRAY[coalesce(cardinality(ev_id), 0)]);
    END IF;
    {lock_keys}
    FOR r IN 1..n LOOP
        ev_hi := ev_lo + rq_count[r] - 1;
        a_hi := a_lo + rq_arms[r] - 1;
        conflict := NULL;
        IF EXISTS (SELECT 1 FROM {event_ids} e WHERE e.event_id = ANY (ev_id[ev_lo:ev_hi])) THEN
            o_status[r] := 2;
            o_position[r] := 0;
        ELSE
            IF rq_check[r] AND rq_all[r] THEN
                SELECT min(e.position) INTO conflict
                  FROM {events} e WHERE e.position > rq_after[r];
            ELSIF rq_check[r] THEN
                SELECT min(f.p) INTO conflict
                  FROM unnest(a_by[a_lo:a_hi], a_key[a_lo:a_hi], a_types[a_lo:a_hi],
                              a_tags[a_lo:a_hi]) AS a(b, k, ty, tg)
                 CROSS JOIN LATERAL (
                       (SELECT e.position AS p FROM {events} e
                         WHERE a.b = 'type' AND e.type = a.k AND e.position > rq_after[r]
                         ORDER BY e.position LIMIT 1)
                       UNION ALL
                       (SELECT t.position FROM {event_tags} t
                         WHERE a.b = 'tag' AND t.tag = a.k AND t.position > rq_after[r]
                           AND (a.ty = '' OR t.type = ANY (string_to_array(a.ty, ' ')))
                           AND (a.tg = '' OR NOT EXISTS (
                                SELECT 1 FROM unnest(string_to_array(a.tg, ' ')) AS w(tag)
                                 WHERE NOT EXISTS (SELECT 1 FROM {event_tags} u
                                                    WHERE u.tag = w.tag
                                                      AND u.position = t.position)))
                         ORDER BY t.position LIMIT 1)
                       ) AS f;
            END IF;
            IF conflict IS NOT NULL THEN
                o_status[r] := 1;
                o_position[r] := conflict;
            ELSE
                IF base IS NULL THEN
                    -- the first write: the transaction id is taken here, after the locks
{take_position}
                END IF;
                INSERT INTO {events} (position, stream_id, version, event_id, type,
                                      schema_version, data, metadata, hash, recorded_at,
                                      tags)
                SELECT base + rel + x.o - 1, '', base + rel + x.o - 1, x.id, x.ty, x.sc, x.d,
                       x.m,
                       sha256({genesis}::bytea
                              || {chain_message}('', base + rel + x.o - 1, x.id, x.ty, x.sc,
                                                 x.d::text, x.m::text)
                              || {chain_tags}(x.tg)),
                       at,
                       CASE WHEN x.tg = '' THEN '{{}}'::text[] ELSE string_to_array(x.tg, ' ') END
                  FROM unnest(ev_id[ev_lo:ev_hi], ev_type[ev_lo:ev_hi], ev_schema[ev_lo:ev_hi],
                              ev_data[ev_lo:ev_hi]::jsonb[], ev_meta[ev_lo:ev_hi]::jsonb[],
                              ev_tags[ev_lo:ev_hi])
                       WITH ORDINALITY AS x(id, ty, sc, d, m, tg, o);
                IF array_to_string(ev_tags[ev_lo:ev_hi], '') <> '' THEN
                    INSERT INTO {event_tags} (tag, position, type)
                    SELECT w.tag, base + rel + x.o - 1, x.ty
                      FROM unnest(ev_tags[ev_lo:ev_hi], ev_type[ev_lo:ev_hi])
                           WITH ORDINALITY AS x(tg, ty, o),
                           unnest(string_to_array(nullif(x.tg, ''), ' ')) AS w(tag);
                END IF;
                rel := rel + rq_count[r];
                o_status[r] := 0;
                o_position[r] := base + rel - 1;
            END IF;
        END IF;
        ev_lo := ev_hi + 1;
        a_lo := a_hi + 1;
    END LOOP;
    IF rel > 0 AND channel IS NOT NULL THEN
        PERFORM pg_notify(channel, (base + rel - 1)::text);
    END IF;
    RETURN QUERY
        SELECT o.k::integer, o.st, o.pos
          FROM unnest(o_status, o_position) WITH ORDINALITY AS o(st, pos, k);
END
"""


def _parts(names: Names) -> dict[str, sql.Composable]:
    parts: dict[str, sql.Composable] = {
        "chain_hash": names.chain_hash,
        "chain_message": names.chain_message,
        "chain_tags": names.chain_tags,
        "genesis": sql.SQL(GENESIS_SQL),
        "lock_space": sql.Literal(names.lock_space),
        "dcb_space": sql.Literal(names.dcb_space),
        "take_position": names.format(TAKE_POSITION, clock_lock=sql.Literal(names.clock_lock)),
    }
    parts["lock_keys"] = sql.SQL(LOCK_KEYS).format(**parts)
    return parts


async def install(conn: psycopg.AsyncConnection[Any], names: Names) -> None:
    """Create or replace the chain and append functions in ``names``' schema."""
    await conn.execute(names.format(CHAIN_MESSAGE, chain_message=names.chain_message))
    await conn.execute(names.format(CHAIN_TAGS, chain_tags=names.chain_tags))
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
    body = names.format(APPEND_EVENTS_BODY, **_parts(names)).as_string(conn)
    await conn.execute(
        sql.SQL(APPEND_EVENTS_SIGNATURE).format(
            append_events=names.append_events, body=sql.Literal(body)
        )
    )


async def backfill_chain(conn: psycopg.AsyncConnection[Any], names: Names) -> None:
    """Compute the hash chain of every stored event (run once, by migration 2)."""
    body = names.format(BACKFILL_BODY, **_parts(names)).as_string(conn)
    await conn.execute(sql.SQL("DO {}").format(sql.Literal(body)))
