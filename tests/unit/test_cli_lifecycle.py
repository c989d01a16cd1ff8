"""`eventfold truncate`, `delete-stream`, `cuts` and `scavenge`, run the way
an administrator runs them, on a SQLite store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import eventfold
from eventfold.cli import app
from eventfold.errors import StreamDeleted
from eventfold.testing.conformance import collect, numbered

runner = CliRunner()
ENV = {"CHAIN_KEY": "the chain key", "COLUMNS": "200"}


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'events.db'}"

    async def fill() -> None:
        async with eventfold.connect(url) as store:
            await store.append("order-1", numbered(6))
            await store.append("order-2", numbered(2))
            await store.append("cart-1", numbered(3))

    asyncio.run(fill())
    return url


def versions(url: str, stream: str) -> list[int]:
    async def read() -> list[int]:
        async with eventfold.connect(url) as store:
            return [r.version for r in await collect(store.read_stream(stream))]

    return asyncio.run(read())


def test_truncate_and_delete_show_the_cut(store_url: str) -> None:
    done = runner.invoke(
        app,
        ["truncate", "order-1", "--before", "4", "--store", store_url, "--key-env", "CHAIN_KEY"],
        env=ENV,
    )
    assert done.exit_code == 0, done.output
    assert "order-1: truncated, versions before 4 removed (signed cut" in done.output
    assert versions(store_url, "order-1") == [4, 5, 6]
    again = runner.invoke(app, ["truncate", "order-1", "--before", "4", "--store", store_url])
    assert again.exit_code == 0 and "order-1: nothing to remove" in again.output
    hard = runner.invoke(
        app, ["delete-stream", "cart-1", "--hard", "--store", store_url, "--json"], env=ENV
    )
    assert hard.exit_code == 0, hard.output
    shown = json.loads(hard.output)
    assert (shown["reason"], shown["before_version"], shown["signature"]) == ("tombstoned", 4, "")

    async def refused() -> None:
        async with eventfold.connect(store_url) as store:
            with pytest.raises(StreamDeleted):
                await store.append("cart-1", numbered(1))

    asyncio.run(refused())
    listed = runner.invoke(app, ["cuts", "--store", store_url, "--json"])
    assert [(c["stream_id"], c["reason"]) for c in json.loads(listed.output)] == [
        ("cart-1", "tombstoned"),
        ("order-1", "truncated"),
    ]
    table = runner.invoke(app, ["cuts", "order-1", "--store", store_url], env=ENV)
    assert "order-1" in table.output and "cart-1" not in table.output
    checked = runner.invoke(
        app, ["verify", "--store", store_url, "--key-env", "CHAIN_KEY"], env=ENV
    )
    assert checked.exit_code == 1 and "forged" in checked.output  # cart-1's cut is unsigned
    assert runner.invoke(app, ["verify", "--store", store_url]).exit_code == 0


def test_bad_requests_are_refused_and_change_nothing(store_url: str) -> None:
    for args in (
        ["truncate", "order-1", "--before", "9", "--store", store_url],
        ["truncate", "order-1", "--before", "3", "--store", store_url, "--key-env", "UNSET_KEY"],
        ["delete-stream", "$all", "--store", store_url],
        ["scavenge", "--store", store_url],
        ["scavenge", "--store", store_url, "--category", "order"],
        ["scavenge", "--store", store_url, "--category", "order", "--max-age", "soon"],
    ):
        result = runner.invoke(app, args, env=ENV)
        assert result.exit_code == 1, (args, result.output)
        assert "error:" in result.output and "Traceback" not in result.output
    assert versions(store_url, "order-1") == [1, 2, 3, 4, 5, 6]


def test_scavenge_dry_run_then_for_real(store_url: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[order]\nmax_count = 2\n[cart]\nmax_age = "30d"\n')
    dry = runner.invoke(
        app, ["scavenge", "--store", store_url, "--policy", str(policy), "--dry-run"], env=ENV
    )
    assert dry.exit_code == 0, dry.output
    assert "dry run: 4 events in 1 streams would be removed" in dry.output
    assert "1..4" in dry.output
    assert versions(store_url, "order-1") == [1, 2, 3, 4, 5, 6]
    real = runner.invoke(
        app,
        ["scavenge", "--store", store_url, "--category", "order", "--max-count", "2", "--json"],
        env=ENV,
    )
    assert real.exit_code == 0, real.output
    report = json.loads(real.output)
    assert (report["dry_run"], report["streams"], report["events"]) == (False, 1, 4)
    assert versions(store_url, "order-1") == [5, 6]
    assert versions(store_url, "order-2") == [1, 2]
    done = runner.invoke(app, ["scavenge", "--store", store_url, "--policy", str(policy)])
    assert "nothing to remove" in done.output
