"""`eventfold archive` run the way a user runs it, on a SQLite store: a dry
run that moves nothing, a run with its summary, the list of archived parts,
a stream read back in place, verify (clean, then failing on an edited
archive), and bad input as one-line errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
import zstandard
from typer.testing import CliRunner

import eventfold
from eventfold.cli import app
from eventfold.store.api import NewEvent

runner = CliRunner()


async def _seed(url: str) -> None:
    async with eventfold.connect(url) as store:
        for n in range(1, 4):
            for stream in ("order-1", "order-2", "cart-1"):
                data = msgspec.json.encode({"n": n})
                await store.append(stream, [NewEvent("Added", data)])


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    asyncio.run(_seed(url))
    return url


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["archive", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_dry_run_then_run_then_list_show_and_verify(url: str, tmp_path: Path) -> None:
    root = str(tmp_path / "cold")
    common = ["--store", url, "--root", root]
    code, out = _invoke("run", *common, "--stream", "order-1", "--stream", "cart-1", "--dry-run")
    assert code == 0, out
    assert "order-1" in out and "would archive 6 events of 2 streams" in out
    assert not list(Path(root).glob("seg-*"))

    code, out = _invoke("run", *common, "--stream", "order-1", "--stream", "cart-1")
    assert code == 0, out
    assert "archived 6 events of 2 streams into 1 new segments" in out
    code, out = _invoke("run", *common, "--stream", "order-1", "--no-progress")
    assert code == 0 and "archived 0 events" in out  # done already: nothing twice

    code, out = _invoke("list", *common, "--json")
    assert code == 0, out
    rows = msgspec.json.decode(out)
    assert [(r["stream_id"], r["first"], r["last"]) for r in rows] == [
        ("cart-1", 1, 3),
        ("order-1", 1, 3),
    ]
    code, out = _invoke("list", *common)
    assert code == 0 and "1..3" in out and rows[0]["segment"] in out

    code, out = _invoke("show", "order-1", *common, "--json")
    assert code == 0, out
    shown = msgspec.json.decode(out)
    assert [(r["version"], r["archived"]) for r in shown] == [(1, True), (2, True), (3, True)]
    assert [msgspec.json.decode(r["data"])["n"] for r in shown] == [1, 2, 3]

    code, out = _invoke("verify", *common)
    assert code == 0 and "6 archived events, all intact" in out, out

    segment = next(Path(root).glob("seg-*"))
    lines = zstandard.ZstdDecompressor().decompressobj().decompress(segment.read_bytes())
    edited = lines.replace(b'{\\"n\\":2}', b'{\\"n\\":9}')
    assert edited != lines
    segment.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(edited))
    code, out = _invoke("verify", *common, "--json")
    assert code == 1
    findings = msgspec.json.decode(out)["findings"]
    assert [(f["stream_id"], f["version"], f["problem"]) for f in findings] == [
        ("cart-1", 2, "altered"),
        ("order-1", 2, "altered"),
    ]


def test_a_category_idle_since_and_older_than(url: str, tmp_path: Path) -> None:
    common = ["--store", url, "--root", str(tmp_path / "cold")]
    code, out = _invoke(
        "run", *common, "--category", "order", "--idle-since", "2999-01-01", "--json"
    )
    assert code == 0, out
    assert msgspec.json.decode(out)["events"] == 6
    code, out = _invoke("run", *common, "--older-than", "2999-01-01", "--json")
    assert code == 0 and msgspec.json.decode(out)["events"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "name streams, a category with idle_since, or older_than"),
        (["run", "--idle-since", "2020-01-01"], "idle_since needs a category"),
        (["run", "--stream", "$bad"], "reserved"),
        (["run", "--older-than", "yesterday"], "--older-than"),
        (["verify", "--key-env", "EVENTFOLD_TEST_UNSET_KEY"], "EVENTFOLD_TEST_UNSET_KEY"),
    ],
)
def test_bad_input_is_a_one_line_error(
    url: str, tmp_path: Path, args: list[str], message: str
) -> None:
    code, out = _invoke(*args, "--store", url, "--root", str(tmp_path / "cold"))
    assert code != 0
    assert message in out
    assert "Traceback" not in out


def test_a_root_that_is_a_file_is_an_error(url: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    code, out = _invoke("show", "order-1", "--store", url, "--root", str(tmp_path / "file"))
    assert code == 1 and "ArchiveError" in out
