"""Read-only SQL over a SQLite store: plain queries answer, anything that would
write or reach outside is refused, and the file is unchanged afterwards."""

import hashlib
from pathlib import Path

import msgspec
import pytest

import eventfold
from eventfold.compliance.inspect import ReadOnlyViolation
from eventfold.errors import InvalidArgument
from eventfold.store import NewEvent


async def filled(path: Path) -> str:
    url = f"sqlite:///{path}"
    async with eventfold.connect(url) as store:
        for i in range(5):
            await store.append(
                f"order-{i}", [NewEvent("Placed", msgspec.json.encode({"total": i * 10}))]
            )
    return url


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_history_is_queryable(tmp_path: Path) -> None:
    url = await filled(tmp_path / "s.db")
    async with eventfold.connect(url) as store:
        result = await store.sql(
            "SELECT stream_id, json_extract(data, '$.total') AS total FROM events "
            "WHERE json_extract(data, '$.total') >= 20 ORDER BY position"
        )
        assert result.columns == ["stream_id", "total"]
        assert result.rows == [("order-2", 20), ("order-3", 30), ("order-4", 40)]
        capped = await store.sql("SELECT position FROM events", limit=2)
        assert capped.rows == [(1,), (2,)] and capped.truncated


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM events",
        "UPDATE events SET data = '{}'",
        "INSERT INTO snapshots VALUES ('a', 'b', 1, 1, x'00')",
        "DROP TABLE events",
        "CREATE TABLE t (x)",
        "ATTACH DATABASE 'other.db' AS other",
        "PRAGMA query_only = OFF",
        "PRAGMA writable_schema = ON",
        "SELECT load_extension('x')",
        "WITH x AS (SELECT 1) DELETE FROM events",
    ],
)
async def test_writes_and_escapes_are_refused(tmp_path: Path, query: str) -> None:
    path = tmp_path / "s.db"
    url = await filled(path)
    before = digest(path)
    async with eventfold.connect(url) as store:
        with pytest.raises((ReadOnlyViolation, InvalidArgument)):
            await store.sql(query)
        assert len((await store.sql("SELECT * FROM events")).rows) == 5
    assert digest(path) == before
    assert not (tmp_path / "other.db").exists()


async def test_several_statements_and_runaway_queries_are_refused(tmp_path: Path) -> None:
    url = await filled(tmp_path / "s.db")
    async with eventfold.connect(url) as store:
        with pytest.raises(InvalidArgument):
            await store.sql("SELECT 1; DELETE FROM events")
        with pytest.raises(InvalidArgument, match="longer than"):
            await store.sql(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
                "SELECT count(*) FROM n",
                timeout=0.2,
            )
        with pytest.raises(InvalidArgument):
            await store.sql("SELEKT nonsense")
        assert len((await store.sql("SELECT * FROM events")).rows) == 5
