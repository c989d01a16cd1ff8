"""The command line is an audit tool: it never reports success on nothing.
Read-only commands on a missing store fail and create nothing; errors are
one line, shown as written; every list and show command has --json; tables
never cut a value short; --version and -h work."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

import eventfold
from eventfold.cli import app
from eventfold.store.api import NewEvent
from tests.unit.test_cli_log import registry, store_url  # noqa: F401 (fixture)

runner = CliRunner()
ACCOUNTS = ("--decider", "tests.unit.test_cli_log:accounts")
REGISTRY = ("--registry", "tests.unit.test_cli_log:registry")
APP = ("--app", "eventfold.examples.shop.app:projections")


def read_only_commands(url: str, tmp_path: Path) -> list[list[str]]:
    """Every command that only reads the event store, with its arguments."""
    reads = f"sqlite:///{tmp_path / 'reads.db'}"
    return [
        ["verify", "--store", url],
        ["streams", "--store", url],
        ["categories", "--store", url],
        ["stats", "--store", url],
        ["show", "member-1", "--store", url],
        ["history", "member-1", "--store", url],
        ["sql", "SELECT 1", "--store", url],
        ["export", str(tmp_path / "out.jsonl"), "--store", url, "--no-progress"],
        ["at", "member-1", "--store", url, "--time", "2030-01-01", *ACCOUNTS, *REGISTRY],
        ["tail", "--store", url, "--for", "0"],
        ["forget", "m-1", "--store", url],
        ["projections", "list", *APP, "--store", url, "--read-model", reads],
        ["projections", "catch-up", *APP, "--store", url, "--read-model", reads],
    ]


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("index", range(13))
def test_read_only_commands_on_a_missing_store_fail_and_create_nothing(
    tmp_path: Path, index: int
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'typo.db'}"
    args = read_only_commands(url, tmp_path)[index]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "StoreNotFound" in result.output
    assert "nothing was created" in result.output
    assert "all intact" not in result.output
    assert files_in(data) == set()


def test_an_empty_file_is_no_store_and_stays_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    result = runner.invoke(app, ["verify", "--store", f"sqlite:///{empty}"])
    assert result.exit_code == 1 and "StoreNotFound" in result.output
    assert empty.stat().st_size == 0
    assert files_in(tmp_path) == {"empty.db"}


def test_a_memory_store_is_never_there_for_a_read_only_command() -> None:
    result = runner.invoke(app, ["verify", "--store", "memory://"])
    assert result.exit_code == 1 and "StoreNotFound" in result.output


def test_read_only_commands_on_postgres_create_no_schema(pg_url: str, pg_schema: str) -> None:
    result = runner.invoke(app, ["streams", "--store", pg_url])
    assert result.exit_code == 1 and "StoreNotFound" in result.output, result.output

    async def schema_exists() -> bool:
        async with await psycopg.AsyncConnection.connect(pg_url.split("?")[0]) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = %s", [pg_schema]
            )
            row = await cur.fetchone()
            return bool(row and row[0])

    assert not asyncio.run(schema_exists())


def test_opening_with_create_false_finds_an_existing_store(pg_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        for url in (pg_url, f"sqlite:///{tmp_path / 'e.db'}"):
            async with eventfold.connect(url) as store:
                await store.append("a-1", [NewEvent("A", b"{}")])
            async with eventfold.connect(url, create=False) as store:
                assert await store.head_position() > 0

    asyncio.run(main())


def test_error_text_is_shown_as_written_on_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}?synchronous=[bold]"
    result = runner.invoke(app, ["streams", "--store", url], env={"COLUMNS": "40"})
    assert result.exit_code == 1
    assert "not '[bold]'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_verify_with_an_unset_key_variable_is_a_one_line_error(store_url: str) -> None:  # noqa: F811
    os.environ.pop("EVENTFOLD_TEST_UNSET_KEY", None)
    result = runner.invoke(
        app, ["verify", "--store", store_url, "--key-env", "EVENTFOLD_TEST_UNSET_KEY"]
    )
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == [
        "error: ConfigurationError: EVENTFOLD_TEST_UNSET_KEY is empty or not set"
    ]


def test_version_and_short_help() -> None:
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.strip() == f"eventfold {eventfold.__version__}"
    for args in (["-h"], ["streams", "-h"], ["projections", "-h"], ["projections", "list", "-h"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert "Usage:" in result.output


def as_json(*args: str) -> object:
    result = runner.invoke(app, [*args, "--json"], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_every_list_and_show_command_speaks_json(store_url: str, tmp_path: Path) -> None:  # noqa: F811
    streams = as_json("streams", "--store", store_url)
    assert [s["stream_id"] for s in streams] == ["member-1", "member-2"]  # type: ignore[index,union-attr]
    assert as_json("categories", "--store", store_url) == [
        {"category": "member", "streams": 2, "events": 4}
    ]
    stats = as_json("stats", "--store", store_url)
    assert stats["events"] == 4 and stats["types"] == {"Joined": 2, "Paid": 2}  # type: ignore[index,call-overload]
    shown = as_json("show", "member-1", "--store", store_url, *REGISTRY)
    assert [e["type"] for e in shown] == ["Joined", "Paid", "Paid"]  # type: ignore[index,union-attr]
    assert shown[0]["data"] == {"member": "m-1", "email": "ada@secret.org"}  # type: ignore[index]
    history = as_json("history", "member-1", "--store", store_url)
    assert history[0]["actor"] == "ana" and history[0]["reason"] == "signup"  # type: ignore[index]
    result = as_json("sql", "SELECT type, count(*) AS n FROM events GROUP BY type", "--store",
                     store_url)  # fmt: skip
    assert result == {"columns": ["type", "n"], "rows": [["Joined", 2], ["Paid", 2]],
                      "truncated": False}  # fmt: skip
    verified = as_json("verify", "--store", store_url)
    assert verified == {"clean": True, "streams": 2, "events": 4, "findings": []}
    state = as_json("at", "member-1", "--store", store_url, "--time", "2100-01-01", *ACCOUNTS,
                    *REGISTRY)  # fmt: skip
    assert state["version"] == 3 and state["state"]["paid"] == 350  # type: ignore[index,call-overload]
    tail = runner.invoke(
        app, ["tail", "--store", store_url, "--from-position", "1", "--for", "0", "--json"]
    )
    lines = [json.loads(line) for line in tail.output.splitlines()]
    assert [line["version"] for line in lines if line["stream_id"] == "member-1"] == [1, 2, 3]


def test_tables_never_cut_values_short(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    stream = "order-" + "x" * 60
    kind = "OrderPlacedWithAVeryLongTypeName"

    async def fill() -> None:
        async with eventfold.connect(url) as store:
            await store.append(stream, [NewEvent(kind, b'{"note": "[red]kept[/red]"}')])

    asyncio.run(fill())
    cases = {
        "streams": (["streams", "--store", url], {0: stream}),
        "show": (["show", stream, "--store", url], {3: kind, 4: '{"note":"[red]kept[/red]"}'}),
        "history": (["history", stream, "--store", url], {3: kind}),
        "sql": (
            ["sql", "SELECT stream_id, type, data FROM events", "--store", url],
            {0: stream, 1: kind, 2: '{"note":"[red]kept[/red]"}'},
        ),
    }
    for args, columns in cases.values():
        result = runner.invoke(app, args, env={"COLUMNS": "40"})
        assert result.exit_code == 0, result.output
        assert "…" not in result.output
        for index, value in columns.items():
            assert column_text(result.output, index) == value, (args, result.output)


def column_text(table: str, index: int) -> str:
    """The text of one column of a table's body rows, folded pieces joined
    (spaces dropped: a fold may fall on one)."""
    pieces = [
        line.split("│")[index + 1]
        for line in table.splitlines()
        if line.startswith("│") and line.count("│") > index + 1
    ]
    return "".join(pieces).replace(" ", "")
