"""``eventfold dev postgres``: start prints a URL that a store opens, the
data outlives a stop and a start, status tells, stop stops."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

import eventfold
from eventfold import NewEvent
from eventfold.cli import app
from tests.conftest import postgres_unavailable


def dev(*args: str) -> Result:
    """``eventfold dev postgres ARGS`` (the server it starts is a process of
    its own, as from a shell)."""
    return CliRunner().invoke(app, ["dev", "postgres", *args], env={"COLUMNS": "200"})


async def append_and_count(url: str) -> int:
    async with eventfold.connect(url) as store:
        await store.append("note-1", [NewEvent(type="Noted", data=b'{"text": "hello"}')])
        return len([r async for r in store.read_stream("note-1")])


@pytest.fixture
def project(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder to run in. Not under tmp_path: the server runs as
    another user when the tests run as root, and every pytest session that
    starts takes the group and other bits off pytest's temporary root."""
    folder = Path(tempfile.mkdtemp(prefix="eventfold-dev-"))
    monkeypatch.chdir(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_start_stop_status_and_the_data_survives(project: Path) -> None:
    started = dev("start")
    if started.exit_code != 0:
        postgres_unavailable(started.stderr)
    try:
        url = started.stdout.strip()
        assert url.startswith("postgresql://postgres@127.0.0.1:") and "\n" not in url
        assert "created and running" in started.stderr
        assert (project / ".eventfold" / "postgres" / "data" / "PG_VERSION").exists()
        assert asyncio.run(append_and_count(url)) == 1

        again = dev("start")  # already running: the same URL
        assert again.exit_code == 0 and again.stdout.strip() == url
        assert dev("status").stdout.strip() == f"running: {url}"
        assert dev("url").stdout.strip() == url

        stopped = dev("stop")
        assert stopped.exit_code == 0 and stopped.stdout.strip() == "stopped"
        status = dev("status")
        assert status.exit_code == 1 and status.stdout.strip() == f"stopped: {url}"

        restarted = dev("start")
        assert restarted.stdout.strip() == url and "created" not in restarted.stderr
        assert asyncio.run(append_and_count(url)) == 2  # the first event is still there
        refused = dev("start", "--port", "1")
        assert refused.exit_code == 1 and "listens on port" in refused.stderr
    finally:
        dev("stop")
    assert dev("status").exit_code == 1


def test_a_folder_of_its_own_and_nothing_to_stop(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    assert dev("stop", "--dir", str(folder)).stdout.strip() == f"no server in {folder}"
    missing = dev("status", "--dir", str(folder))
    assert missing.exit_code == 1 and dev("url", "--dir", str(folder)).exit_code == 1
    assert not folder.exists()
