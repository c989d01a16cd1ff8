"""``eventfold projections``: list with lag, catch-up, rebuild, build-as-of,
against a SQLite store of the shop and SQLite read models."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import eventfold
from eventfold.cli import app
from eventfold.examples.shop.app import Shop
from eventfold.examples.shop.inventory import ReceiveStock, ReserveStock

APP = "eventfold.examples.shop.app:projections"
cli = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = cli.invoke(app, list(args), env={"COLUMNS": "220", "NO_COLOR": "1"})
    return result.exit_code, result.output


@pytest.fixture
def shop(tmp_path: Path) -> dict[str, str]:
    store = tmp_path / "shop.db"

    async def fill() -> str:
        async with eventfold.connect(f"sqlite:///{store}") as events:
            shop = Shop(events)
            await shop.stock.handle("stock-apple", ReceiveStock("apple", 10))
            await shop.stock.handle("stock-apple", ReserveStock("order-1", 4))
            await asyncio.sleep(0.02)
            middle = dt.datetime.now(dt.UTC)
            await asyncio.sleep(0.02)
            await shop.stock.handle("stock-apple", ReserveStock("order-2", 5))
            return middle.isoformat()

    middle = asyncio.run(fill())
    return {
        "store": f"sqlite:///{store}",
        "reads": f"sqlite:///{tmp_path / 'reads.db'}",
        "report": f"sqlite:///{tmp_path / 'report.db'}",
        "report_path": str(tmp_path / "report.db"),
        "middle": middle,
    }


def common(shop: dict[str, str]) -> list[str]:
    return ["--app", APP, "--store", shop["store"], "--read-model", shop["reads"]]


def test_list_catch_up_and_rebuild(shop: dict[str, str]) -> None:
    code, out = invoke("projections", "list", *common(shop))
    assert code == 0, out
    assert "order_summaries" in out and "stock_levels" in out and "nothing yet" in out

    code, out = invoke("projections", "catch-up", *common(shop))
    assert code == 0, out
    assert "build 1 (v1)" in out

    # Behind by one event after a write, and it says so.
    async def one_more() -> None:
        async with eventfold.connect(shop["store"]) as events:
            await Shop(events).stock.handle("stock-apple", ReceiveStock("apple", 1))

    asyncio.run(one_more())
    code, out = invoke("projections", "list", *common(shop))
    assert code == 0, out
    row = next(line for line in out.splitlines() if "stock_levels" in line)
    name, version, serving, position, behind = [c.strip() for c in row.split("│")[1:6]]
    assert (name, version, serving, position, behind) == (
        "stock_levels",
        "1",
        "build 1 (v1)",
        "3",
        "1",  # one event behind, counted
    )

    code, out = invoke("projections", "rebuild", "stock_levels", *common(shop), "--no-progress")
    assert code == 0, out
    assert "stock_levels: build 2 (v1) serves queries now, at position 4" in out
    code, out = invoke("projections", "list", *common(shop))
    assert "build 1 (v1) retired @3" in out


def test_rebuild_shows_a_progress_bar(shop: dict[str, str]) -> None:
    code, out = invoke("projections", "rebuild", "stock_levels", *common(shop), "--progress")
    assert code == 0, out
    assert "rebuild stock_levels" in out and "events" in out and "/s" in out


def test_build_as_of_a_time_and_a_position(shop: dict[str, str]) -> None:
    args = ["--app", APP, "--store", shop["store"], "--no-progress"]
    code, out = invoke(
        "projections", "build-as-of", "stock_levels", *args,
        "--time", shop["middle"], "--into", shop["report"],
    )  # fmt: skip
    assert code == 0, out
    with sqlite3.connect(shop["report_path"]) as db:
        assert db.execute("SELECT sku, on_hand, reserved FROM stock_levels_v1").fetchall() == [
            ("apple", 10, 4)
        ]
    # The same database cannot take the projection twice.
    code, out = invoke(
        "projections", "build-as-of", "stock_levels", *args,
        "--position", "1", "--into", shop["report"],
    )  # fmt: skip
    assert code == 1 and "already holds" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--app", "eventfold.examples.shop.app"], "module:attribute"),
        (["--app", "eventfold.examples.shop.nope:projections"], "cannot import"),
        (["--app", "eventfold.examples.shop.app:nope"], "no attribute"),
        (["--app", "eventfold.examples.shop.app:codec"], "not a ProjectionSet"),
    ],
)
def test_bad_app_options_are_reported(shop: dict[str, str], args: list[str], message: str) -> None:
    code, out = invoke(
        "projections", "list", *args, "--store", shop["store"], "--read-model", shop["reads"]
    )
    assert code == 2 and message in out


def test_unknown_projection_and_missing_moment(shop: dict[str, str]) -> None:
    code, out = invoke("projections", "rebuild", "nope", *common(shop))
    assert code == 2 and "no projection named 'nope'" in out
    code, out = invoke(
        "projections", "build-as-of", "stock_levels", "--app", APP,
        "--store", shop["store"], "--into", shop["report"],
    )  # fmt: skip
    assert code == 2 and "--time" in out


def test_help_lists_the_commands() -> None:
    code, out = invoke("projections", "--help")
    assert code == 0
    for command in ("list", "rebuild", "build-as-of", "catch-up"):
        assert command in out
