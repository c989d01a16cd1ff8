"""Read-only SQL over a PostgreSQL store: queries answer, writes and several
statements are refused, and nothing changes."""

import msgspec
import pytest

import eventfold
from eventfold.compliance.inspect import ReadOnlyViolation
from eventfold.errors import InvalidArgument
from eventfold.store import NewEvent


async def filled(url: str) -> None:
    async with eventfold.connect(url) as store:
        for i in range(5):
            await store.append(
                f"order-{i}", [NewEvent("Placed", msgspec.json.encode({"total": i * 10}))]
            )


async def test_history_is_queryable(pg_url: str) -> None:
    await filled(pg_url)
    async with eventfold.connect(pg_url) as store:
        result = await store.sql(
            "SELECT stream_id, (data->>'total')::int AS total FROM events "
            "WHERE (data->>'total')::int >= 20 AND stream_id LIKE 'order-%' ORDER BY position"
        )
        assert result.columns == ["stream_id", "total"]
        assert result.rows == [("order-2", 20), ("order-3", 30), ("order-4", 40)]
        capped = await store.sql("SELECT version FROM events", limit=2)
        assert len(capped.rows) == 2 and capped.truncated


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM events",
        "UPDATE events SET data = '{}'",
        "INSERT INTO snapshots (stream_id, name, version, schema_version, state) "
        "VALUES ('a', 'b', 1, 1, '\\x00')",
        "DROP TABLE events",
        "CREATE TABLE t (x int)",
        "TRUNCATE events",
        "SELECT 1; DELETE FROM events",
        "COMMIT; DELETE FROM events",
        "WITH gone AS (DELETE FROM events RETURNING 1) SELECT count(*) FROM gone",
        "SELEKT nonsense",
    ],
)
async def test_writes_and_several_statements_are_refused(pg_url: str, query: str) -> None:
    await filled(pg_url)
    async with eventfold.connect(pg_url) as store:
        with pytest.raises((ReadOnlyViolation, InvalidArgument)):
            await store.sql(query)
        assert len((await store.sql("SELECT * FROM events")).rows) == 5
        assert (await store.sql("SELECT count(*) FROM snapshots")).rows == [(0,)]


async def test_a_runaway_query_is_stopped(pg_url: str) -> None:
    await filled(pg_url)
    async with eventfold.connect(pg_url) as store:
        with pytest.raises(InvalidArgument, match="longer than"):
            await store.sql("SELECT pg_sleep(5)", timeout=0.2)
        assert len((await store.sql("SELECT * FROM events")).rows) == 5
