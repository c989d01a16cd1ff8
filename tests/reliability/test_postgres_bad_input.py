"""Guarantee: bad input and hostile names (schema names, stream ids, types,
payloads, filters) give typed errors and leave the store unchanged; hostile
strings that are valid input are stored as data and read back unchanged."""

from __future__ import annotations

import asyncio
import decimal
import json
from typing import Any

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from eventfold.errors import ConfigurationError, EventfoldError, InvalidArgument
from eventfold.store.api import NewEvent, StreamAppend
from eventfold.store.url import connect
from eventfold.testing.conformance import collect

HOSTILE = [
    "'; DROP TABLE events; --",
    'x"); DELETE FROM streams; --',
    "%s %(x)s {} {0} $1 $fn$",
    "\\",
    "\u202egnirts-lrt",
    "\U0001f4a5-emoji",
    "a" * 199,
]

stream_ids = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(min_size=0, max_size=210),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30),
)
type_names = st.one_of(st.sampled_from(["T", "Order.Placed:v2", *HOSTILE]), st.text(max_size=30))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
payloads = st.one_of(
    st.dictionaries(st.text(max_size=10), json_values, max_size=4).map(msgspec.json.encode),
    st.binary(max_size=40),
    st.sampled_from(
        [
            b'{"a": "\\u0000"}',
            b'{"a": 1e999999}',
            b'{"a": "\\udc00"}',
            b"\xff\xfe{}",
            b"[]",
            b"null",
            b'{"a": 1',
            b'{"a": 1, "a": 2}',
        ]
    ),
)
attempts = st.tuples(stream_ids, type_names, payloads, payloads)


def same_json_value(stored: str | bytes, sent: bytes) -> bool:
    """Equal as JSON values, numbers compared as exact decimals: jsonb stores
    6.956079313940438e16 as 69560793139404380 (the same decimal number)."""

    def load(text: str | bytes) -> Any:
        return json.loads(text, parse_float=decimal.Decimal, parse_int=decimal.Decimal)

    return bool(load(stored) == load(sent))


async def fingerprint(url: str, schema: str) -> tuple[Any, ...]:
    async with await psycopg.AsyncConnection.connect(url.split("?")[0]) as conn:
        cur = await conn.execute(
            sql.SQL(
                "SELECT (SELECT count(*) FROM {e}), (SELECT coalesce(max(position), 0) FROM {e}),"
                " (SELECT count(*) FROM {s}), (SELECT coalesce(sum(version), 0) FROM {s})"
            ).format(e=sql.Identifier(schema, "events"), s=sql.Identifier(schema, "streams"))
        )
        row = await cur.fetchone()
        assert row is not None
        return tuple(row)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(attempts, min_size=1, max_size=8))
def test_bad_input_is_typed_and_changes_nothing(
    pg_url: str, pg_schema: str, batch: list[tuple[str, str, bytes, bytes]]
) -> None:
    async def run() -> None:
        async with connect(pg_url) as store:
            for stream_id, type_name, data, metadata in batch:
                before = await fingerprint(pg_url, pg_schema)
                event = NewEvent(type_name, data, metadata)
                try:
                    result = await store.append(stream_id, [event])
                except InvalidArgument:
                    assert await fingerprint(pg_url, pg_schema) == before
                    continue
                except EventfoldError as exc:  # pragma: no cover - shows what went wrong
                    pytest.fail(f"unexpected {type(exc).__name__}: {exc}")
                (record,) = await collect(store.read_stream(stream_id, from_version=result.version))
                assert record.stream_id == stream_id and record.type == type_name
                assert same_json_value(record.data, data)
                assert same_json_value(record.metadata, metadata)
                # a retry of what was just stored is recognised as one
                assert await store.append(stream_id, [event]) == result
                # filters are data too
                assert stream_id not in {
                    r.stream_id
                    async for r in store.read_all(
                        categories=[stream_id + "\x01"], types=[stream_id]
                    )
                }

    asyncio.run(run())


async def test_a_bad_event_in_a_multi_stream_append_writes_nothing(
    pg_url: str, pg_schema: str
) -> None:
    async with connect(pg_url) as store:
        await store.append("ok-1", [NewEvent("T", b"{}")])
        before = await fingerprint(pg_url, pg_schema)
        for bad in (
            NewEvent("T", b'{"a": "\\u0000"}'),
            NewEvent("bad type", b"{}"),
            NewEvent("T", b"{}", b"[]"),
        ):
            with pytest.raises(InvalidArgument):
                await store.append_many(
                    [
                        StreamAppend("ok-1", [NewEvent("T", b"{}")], 1),
                        StreamAppend("ok-2", [NewEvent("T", b"{}"), bad]),
                    ]
                )
            assert await fingerprint(pg_url, pg_schema) == before


@pytest.mark.parametrize("schema", ["", "s" * 64, "pg_catalog", "pg_x", "nul\x00byte"])
async def test_unusable_schema_names_are_rejected_before_connecting(
    postgres_url: str, schema: str
) -> None:
    with pytest.raises(ConfigurationError):
        await connect(postgres_url, schema=schema)


async def test_hostile_schema_name_creates_nothing_else(postgres_url: str) -> None:
    schema = "h'); DROP SCHEMA public CASCADE; --"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT nspname FROM pg_namespace ORDER BY 1")
        namespaces = {row[0] for row in await cur.fetchall()}
    async with connect(postgres_url, schema=schema) as store:
        await store.append("a-1", [NewEvent("T", b"{}")])
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT nspname FROM pg_namespace ORDER BY 1")
        assert {row[0] for row in await cur.fetchall()} == namespaces | {schema}
        await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
