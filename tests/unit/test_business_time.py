"""Business time (``occurred_at``) beside recording time (``recorded_at``):
validated when made, read and written; as-of loads, time-travel builds, the
query API and ``eventfold at`` on either clock; loans backfilled after the
fact change what was true on 1 March without rewriting anything."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from typer.testing import CliRunner

import eventfold
from eventfold import InvalidArgument, Metadata, NewEvent, Repository, SerializationError
from eventfold.cli import app
from eventfold.domain.clocks import parse_moment
from eventfold.serialization.codec import decode_metadata
from eventfold.services import Runtime, ServeConfig
from eventfold.services.server import apps
from eventfold.subscriptions import SQLiteReadModel, build_as_of, open_read_model, query_read_model
from tests.unit.lending import Book, BookLent, Lend, Return, books, codec, loans, service

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
BASE = (NOW - dt.timedelta(days=60)).replace(hour=10, minute=0, second=0)


def day(n: int) -> dt.datetime:
    """10:00 UTC on the n-th day of the story (day 0 is 60 days ago)."""
    return BASE + dt.timedelta(days=n)


def on(moment: dt.datetime) -> Metadata:
    return Metadata(actor="desk", occurred_at=moment)


async def lend_and_backfill(repo: Repository[Any, Any, Book]) -> None:
    """Ana borrows the book on day 13 and returns it on day 18, both entered
    as they happen. Then the desk types in a loan it had on paper: Bo had the
    book from day 0 to day 10. Recorded in that order, today."""
    await repo.handle("book-dune", Lend("dune", "ana"), metadata=on(day(13)))
    await repo.handle("book-dune", Return("dune"), metadata=on(day(18)))
    await repo.handle("book-dune", Lend("dune", "bo"), metadata=on(day(0)))
    await repo.handle("book-dune", Return("dune"), metadata=on(day(10)))


def test_occurred_at_is_validated_where_it_is_made() -> None:
    with pytest.raises(InvalidArgument, match="timezone-aware"):
        Metadata(occurred_at=dt.datetime(2026, 3, 1))
    with pytest.raises(InvalidArgument, match="before 1900"):
        Metadata(occurred_at=dt.datetime(1, 1, 1, tzinfo=dt.UTC))
    ahead = Metadata(occurred_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    with pytest.raises(InvalidArgument, match="in the future"):
        codec.encode(BookLent("dune", "ana"), ahead)
    encoded = codec.encode(BookLent("dune", "ana"), on(day(1)))
    assert msgspec.json.decode(encoded.metadata)["occurred_at"] == day(1).isoformat().replace(
        "+00:00", "Z"
    )


async def test_occurred_at_round_trips_and_a_bad_stored_one_is_a_typed_error() -> None:
    async with eventfold.connect("memory://") as store:
        zoned = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
        await store.append("book-a", [codec.encode(BookLent("a", "ana"), on(zoned))])
        await store.append("book-b", [codec.encode(BookLent("b", "bo"))])
        bad = NewEvent(
            type="BookLent",
            data=b'{"book": "c", "member": "cy"}',
            metadata=b'{"occurred_at": "2026-03-01T10:00:00"}',
        )
        await store.append("book-c", [bad])
        records = [r async for r in store.read_all()]
    a, b = codec.decode(records[0]), codec.decode(records[1])
    assert a.metadata.occurred_at == zoned and a.occurred_at == zoned
    assert b.metadata.occurred_at is None and b.occurred_at == b.recorded_at
    with pytest.raises(SerializationError, match="timezone-aware"):
        decode_metadata(records[2])
    # Envelopes decode their metadata when it is first read.
    lazy = codec.decode(records[2])
    assert lazy.event == BookLent("c", "cy")
    with pytest.raises(SerializationError, match="timezone-aware"):
        lazy.metadata  # noqa: B018


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_a_streams_state_as_of_either_clock(backend: str, tmp_path: Path) -> None:
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'lib.db'}"
    async with eventfold.connect(url) as store:
        repo = Repository(store, books, codec)
        await lend_and_backfill(repo)
        # What was true: on day 5 Bo had it; on day 15 Ana (Bo's loan, typed in
        # later, is folded where it happened, not where it was recorded).
        assert (await repo.load("book-dune", as_of=day(5), by="occurred")).state.holder == "bo"
        assert (await repo.load("book-dune", as_of=day(15), by="occurred")).state.holder == "ana"
        after = await repo.load("book-dune", as_of=day(20), by="occurred")
        assert after == (await repo.load("book-dune")) and after.state.holder is None
        before = await repo.load("book-dune", as_of=day(-1), by="occurred")
        assert before.version == 0 and before.state.holder is None
        # Bo's loan alone had happened by day 5: versions 3 (lent), not 4 (returned on day 10).
        assert (await repo.load("book-dune", as_of=day(5), by="occurred")).version == 3
        # What was known: on day 5 nothing had been recorded yet.
        known = await repo.load("book-dune", as_of=day(5))
        assert known.version == 0 and known.state.holder is None
        with pytest.raises(InvalidArgument):
            await repo.load("book-dune", as_of=day(5), by="happened")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            await repo.load("book-dune", as_of=day(5).replace(tzinfo=None), by="occurred")


async def test_a_read_model_built_as_of_either_clock(tmp_path: Path) -> None:
    async with eventfold.connect(f"sqlite:///{tmp_path / 'lib.db'}") as store:
        await lend_and_backfill(Repository(store, books, codec))
        sql = "SELECT member, returned_at FROM {loans} ORDER BY lent_at"
        async with SQLiteReadModel(tmp_path / "day5.db") as report:
            await build_as_of(store, loans, codec, report, time=day(5), by="occurred")
            happened = await query_read_model(report, "loans", sql)
        async with SQLiteReadModel(tmp_path / "known5.db") as report:
            await build_as_of(store, loans, codec, report, time=day(5))
            known = await query_read_model(report, "loans", sql)
        async with SQLiteReadModel(tmp_path / "day15.db") as report:
            build = await build_as_of(store, loans, codec, report, time=day(15), by="occurred")
            later = await query_read_model(report, "loans", sql)
    assert happened.rows == [("bo", None)]  # out with Bo; the return had not happened
    assert known.rows == []  # nothing was recorded by day 5
    assert later.rows == [("bo", day(10).isoformat()), ("ana", None)]
    assert build.as_of_time == f"{day(15).isoformat()} (occurred)"


@contextlib.asynccontextmanager
async def lending(read_model: str, tmp_path: Path) -> AsyncIterator[tuple[Any, Any, Runtime]]:
    settings = ServeConfig(
        store=f"sqlite:///{tmp_path / 'lib.db'}",
        read_model=read_model,
        outcomes="memory://",
        poll_interval=0.05,
        max_wait=5.0,
    )
    async with Runtime(service, settings) as runtime:
        built = apps(runtime)
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(built["command"]), base_url="http://commands"
            ) as commands,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(built["query"]), base_url="http://queries"
            ) as queries,
        ):
            yield commands, queries, runtime


async def send(commands: httpx.AsyncClient, name: str, body: dict[str, str], when: str) -> int:
    answer = await commands.post(
        f"/commands/{name}", json=body, headers={"Eventfold-Occurred-At": when}
    )
    assert answer.status_code == 200, answer.text
    return int(answer.headers["Eventfold-Position"])


async def check_http(commands: httpx.AsyncClient, queries: httpx.AsyncClient) -> None:
    naive = day(0).replace(tzinfo=None).isoformat()  # UTC, as for `eventfold at --time`
    await send(commands, "Lend", {"book": "dune", "member": "ana"}, day(13).isoformat())
    await send(commands, "Return", {"book": "dune"}, day(18).isoformat())
    await send(commands, "Lend", {"book": "dune", "member": "bo"}, naive)
    await send(commands, "Return", {"book": "dune"}, day(10).strftime("%Y-%m-%dT%H:%M:%SZ"))
    token = await send(commands, "Lend", {"book": "emma", "member": "bo"}, day(10).isoformat())

    def state(as_of: str, by: str) -> Any:
        params = {"as_of": as_of, "by": by, "min_position": str(token)}
        return queries.get("/streams/book-dune/state", params=params)

    happened = await state(day(5).isoformat(), "occurred")
    assert happened.status_code == 200, happened.text
    body = happened.json()
    assert (body["state"], body["version"], body["by"]) == ({"holder": "bo"}, 3, "occurred")
    assert (await state(day(5).isoformat(), "recorded")).json()["version"] == 0
    assert (await state(day(15).isoformat(), "occurred")).json()["state"] == {"holder": "ana"}
    # A date alone is its start: day 0 at 00:00, before Bo's loan at 10:00.
    start = await state(day(0).date().isoformat(), "occurred")
    assert start.json()["state"] == {"holder": None} and start.json()["version"] == 0

    async def rows(query: str, params: Any) -> list[dict[str, Any]]:
        answer = await queries.get(
            f"/queries/{query}", params=[*params, ("min_position", str(token))]
        )
        assert answer.status_code == 200, answer.text
        return list(answer.json()["rows"])

    bo_and_emma = [{"book": "dune", "member": "bo"}, {"book": "emma", "member": "bo"}]
    assert await rows("lent_on", [("day", day(0).date().isoformat())]) == bo_and_emma[:1]
    assert await rows("lent_on", [("day", day(10).date().isoformat())]) == bo_and_emma[1:]
    # A time without a zone is UTC here too.
    since = day(13).replace(tzinfo=None).isoformat()
    assert await rows("lent_since", [("at", since)]) == [{"book": "dune", "member": "ana"}]
    lists = await rows("loans_of", [("members", "bo"), ("members", "cy")])
    assert lists == [{"book": "dune", "member": "bo"}, {"book": "emma", "member": "bo"}]
    assert await rows("loans_of", [("members", "cy")]) == []
    history = await queries.get("/streams/book-dune/events")
    first = uuid.UUID(history.json()["events"][0]["event_id"])
    assert await rows("loan", [("event_id", str(first))]) == [{"book": "dune", "member": "ana"}]
    assert history.json()["events"][2]["metadata"]["occurred_at"] == day(0).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    for query, params in [
        ("lent_on", [("day", "first of March")]),
        ("loan", [("event_id", "not-a-uuid")]),
        ("lent_since", [("at", "soon")]),
    ]:
        answer = await queries.get(f"/queries/{query}", params=params)
        assert answer.status_code == 422, answer.text
    listed = {q["name"]: q["params"] for q in (await queries.get("/queries")).json()}
    assert listed["loans_of"] == {"members": "list[str]"} and listed["loan"] == {"event_id": "UUID"}


async def test_http_takes_business_time_and_typed_parameters_on_sqlite(tmp_path: Path) -> None:
    async with lending(f"sqlite:///{tmp_path / 'reads.db'}", tmp_path) as (commands, queries, _):
        await check_http(commands, queries)
        bad = await commands.post(
            "/commands/Lend",
            json={"book": "odyssey", "member": "cy"},
            headers={"Eventfold-Occurred-At": (NOW + dt.timedelta(days=2)).isoformat()},
        )
        assert bad.status_code == 422 and "future" in bad.text
        garbled = await commands.post(
            "/commands/Lend",
            json={"book": "odyssey", "member": "cy"},
            headers={"Eventfold-Occurred-At": "last tuesday"},
        )
        assert garbled.status_code == 422
        nothing = await queries.get("/streams/book-odyssey/events")
        assert nothing.json()["events"] == []


async def test_typed_parameters_on_a_postgres_read_model(pg_url: str, tmp_path: Path) -> None:
    async with lending(pg_url, tmp_path) as (commands, queries, _):
        await check_http(commands, queries)
    async with open_read_model(pg_url) as reads:
        rows = await query_read_model(reads, "loans", "SELECT count(*) FROM {loans}")
    assert rows.rows == [(3,)]


def test_the_command_line_and_http_read_a_time_without_a_zone_alike(tmp_path: Path) -> None:
    assert parse_moment("2026-03-01") == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert parse_moment("2026-03-01T10:00:00") == dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)
    assert parse_moment("2026-03-01T12:00:00+02:00") == parse_moment("2026-03-01T10:00:00Z")
    url = f"sqlite:///{tmp_path / 'lib.db'}"

    async def fill() -> None:
        async with eventfold.connect(url) as store:
            await lend_and_backfill(Repository(store, books, codec))

    asyncio.run(fill())
    runner = CliRunner()
    spec = ["--decider", "tests.unit.lending:books", "--registry", "tests.unit.lending:registry"]
    naive = day(5).replace(tzinfo=None).isoformat()
    out = runner.invoke(
        app,
        ["at", "book-dune", "--store", url, "--time", naive, "--by", "occurred", *spec],
        env={"COLUMNS": "200"},
    )
    assert out.exit_code == 0, out.output
    assert "version 3" in out.output and '"holder": "bo"' in out.output
    assert day(5).isoformat() in out.output
    known = runner.invoke(app, ["at", "book-dune", "--store", url, "--time", naive, *spec])
    assert known.exit_code == 0 and "version 0" in known.output
    for bad in (["--time", "soon"], ["--time", naive, "--by", "happened"]):
        refused = runner.invoke(app, ["at", "book-dune", "--store", url, *bad, *spec])
        assert refused.exit_code == 2, refused.output
    history = runner.invoke(app, ["history", "book-dune", "--store", url], env={"COLUMNS": "200"})
    assert day(0).strftime("%Y-%m-%d %H:%M:%S") in history.output


def test_metadata_with_occurred_at_survives_msgspec() -> None:
    meta = on(day(3))
    assert msgspec.json.decode(msgspec.json.encode(meta), type=Metadata) == meta
