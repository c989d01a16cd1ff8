"""Tampering directly in PostgreSQL is named by verify(), by stream and version."""

from __future__ import annotations

import uuid

import msgspec
import psycopg
import pytest
from psycopg import sql

import eventfold
from eventfold.compliance.chain import Report, take_heads, verify
from eventfold.store import NewEvent


async def filled(url: str) -> None:
    async with eventfold.connect(url) as store:
        for s in range(3):
            await store.append(
                f"acct-{s}",
                [NewEvent("Moved", msgspec.json.encode({"n": i, "to": "x"})) for i in range(5)],
            )


async def tamper(url: str, schema: str, *statements: str, params: tuple[object, ...] = ()) -> None:
    async with await psycopg.AsyncConnection.connect(url.split("?")[0], autocommit=True) as conn:
        for statement in statements:
            await conn.execute(
                sql.SQL(statement).format(events=sql.Identifier(schema, "events")),  # type: ignore[arg-type]
                params or None,
            )


async def report_of(url: str, **kw: object) -> Report:
    async with eventfold.connect(url) as store:
        return await verify(store, **kw)  # type: ignore[arg-type]


def found(report: Report) -> list[tuple[str, int, str]]:
    return [(f.stream_id, f.version, f.problem) for f in report.findings]


async def test_untouched_store_verifies_clean(pg_url: str) -> None:
    await filled(pg_url)
    assert (await report_of(pg_url)).clean


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            """UPDATE {events} SET data = '{{"n": 2, "to": "y"}}'
               WHERE stream_id = 'acct-1' AND version = 3""",
            [("acct-1", 3, "altered")],
        ),
        (
            """UPDATE {events} SET metadata = '{{"actor": "eve"}}'
               WHERE stream_id = 'acct-2' AND version = 5""",
            [("acct-2", 5, "altered")],
        ),
        (
            "DELETE FROM {events} WHERE stream_id = 'acct-0' AND version = 2",
            [("acct-0", 2, "missing")],
        ),
        (
            "UPDATE {events} SET version = 1002 WHERE stream_id = 'acct-1' AND version = 2;"
            "UPDATE {events} SET version = 2 WHERE stream_id = 'acct-1' AND version = 3;"
            "UPDATE {events} SET version = 3 WHERE stream_id = 'acct-1' AND version = 1002",
            [("acct-1", 2, "reordered"), ("acct-1", 3, "reordered")],
        ),
    ],
    ids=["payload", "metadata", "deleted", "swapped"],
)
async def test_direct_edits_are_named(
    pg_url: str, pg_schema: str, statement: str, expected: list[tuple[str, int, str]]
) -> None:
    await filled(pg_url)
    await tamper(pg_url, pg_schema, *statement.split(";"))
    assert found(await report_of(pg_url)) == expected


async def test_forged_event(pg_url: str, pg_schema: str) -> None:
    await filled(pg_url)
    await tamper(
        pg_url,
        pg_schema,
        """INSERT INTO {events} (position, stream_id, version, event_id, type,
               schema_version, data, metadata, recorded_at, hash)
           SELECT max(position) + 1, 'acct-2', 6, %s, 'Moved', 1, '{{"n": 99}}', '{{}}',
                  now(), (SELECT hash FROM {events} WHERE stream_id = 'acct-2' AND version = 5)
           FROM {events}""",
        params=(uuid.uuid4(),),
    )
    assert found(await report_of(pg_url)) == [("acct-2", 6, "altered")]


async def test_truncated_and_deleted_streams_against_a_checkpoint(
    pg_url: str, pg_schema: str
) -> None:
    await filled(pg_url)
    key = b"kept-outside-the-database"
    heads = take_heads(await report_of(pg_url), key)
    await tamper(
        pg_url,
        pg_schema,
        "DELETE FROM {events} WHERE stream_id = 'acct-0' AND version >= 4",
        "DELETE FROM {events} WHERE stream_id = 'acct-2'",
    )
    assert (await report_of(pg_url)).clean
    report = await report_of(pg_url, checkpoint=heads, key=key)
    assert found(report) == [("acct-0", 4, "truncated"), ("acct-2", 1, "truncated")]
