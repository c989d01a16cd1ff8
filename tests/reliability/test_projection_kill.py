"""Guarantee: a projection process killed (SIGKILL) at any point, restarted
until done, leaves the read model equal to one built in a single clean run:
each event takes effect exactly once, because the checkpoint moves in the
same transaction as the read-model rows."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import eventfold
from eventfold.subscriptions import SQLiteReadModel, query_read_model
from tests.reliability.projection_worker import BATCH, Moved, codec

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 3000
STREAMS = 17
KILLED_RUNS = 20
"""Runs killed at random points before the one that is left to finish."""


async def make_store(path: Path) -> str:
    url = f"sqlite:///{path}"
    rng = random.Random(7)
    async with eventfold.connect(url) as store:
        for _ in range(0, EVENTS, 50):
            stream = f"acct-{rng.randrange(STREAMS)}"
            batch = [codec.encode(Moved(rng.randint(-100, 100))) for _ in range(50)]
            await store.append(stream, batch)
        assert await store.head_position() == EVENTS
    return url


def start(store_url: str, reads: Path, kill: str | None = None, slow: float = 0.0) -> Any:
    args = [sys.executable, "-m", "tests.reliability.projection_worker", store_url, str(reads)]
    env = {**os.environ, "EVENTFOLD_TEST_SLOW": str(slow)}
    return subprocess.Popen(
        [*args, *([kill] if kill else [])],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: Any, timeout: float = 60) -> int:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode in (0, -signal.SIGKILL), err
    return int(proc.returncode)


async def read_model(path: Path) -> dict[str, Any]:
    async with SQLiteReadModel(path) as reads:
        tally = await query_read_model(
            reads, "tally", "SELECT stream, events, total FROM {tally} ORDER BY stream"
        )
        applied = await query_read_model(reads, "tally", "SELECT COUNT(*) FROM {applied}")
    return {"tally": tally.rows, "applied": applied.scalar(), "position": tally.position}


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return asyncio.run(make_store(tmp_path_factory.mktemp("store") / "events.db"))


@pytest.fixture(scope="module")
def clean(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The read model from one clean run of the same process."""
    path = tmp_path_factory.mktemp("clean") / "clean.db"
    assert finish(start(store_url, path)) == 0
    model = asyncio.run(read_model(path))
    assert model["applied"] == EVENTS and model["position"] == EVENTS
    return model


@pytest.mark.parametrize(
    "kill",
    [
        "sql:3:UPDATE eventfold_build SET position",  # applied, checkpoint not yet written
        "sql:9:COMMIT",  # everything written, not committed
        "sql:6:BEGIN IMMEDIATE",  # just after a commit
        "event:101",  # in the middle of a batch's handlers
    ],
)
async def test_killed_between_apply_and_commit_nothing_counts_twice(
    store_url: str, clean: dict[str, Any], tmp_path: Path, kill: str
) -> None:
    path = tmp_path / "killed.db"
    assert finish(start(store_url, path, kill)) == -signal.SIGKILL
    async with SQLiteReadModel(path) as reads:
        position = await reads.read(
            lambda conn: conn.execute("SELECT MAX(position) FROM eventfold_build").fetchone()[0]
        )
        applied = await reads.read(
            lambda conn: conn.execute("SELECT COUNT(*) FROM applied_v1").fetchone()[0]
        )
    # What survived is exactly what the checkpoint says: whole batches.
    assert applied == position and position % BATCH == 0 and position < EVENTS
    assert finish(start(store_url, path)) == 0
    assert await read_model(path) == clean


async def test_killed_at_random_points_and_restarted_equals_a_clean_run(
    store_url: str, clean: dict[str, Any], tmp_path: Path
) -> None:
    seed = int(os.environ.get("EVENTFOLD_TEST_SEED", time.time_ns() % 10**9))
    rng = random.Random(seed)
    path = tmp_path / "killed.db"
    kills = 0
    for attempt in range(KILLED_RUNS):
        # The first three runs die at an exact point, each a few hundred events
        # in (of 3,000): at least three kills, whatever the random times do later.
        choice = rng.uniform(0.5, 1.0) if attempt < 3 else rng.random()
        if choice < 0.5:
            # At a random moment, while the events are slowed down a little.
            proc = start(store_url, path, slow=0.0003)
            time.sleep(rng.uniform(0.2, 0.9))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        else:
            prefix = rng.choice(["UPDATE eventfold_build SET position", "COMMIT", "BEGIN"])
            kill = (
                f"sql:{rng.randint(1, 8)}:{prefix}"
                if choice < 0.85
                else f"event:{rng.randint(1, 400)}"
            )
            proc = start(store_url, path, kill)
        if finish(proc) == 0:
            break
        kills += 1
    else:
        # Restarted once more and left alone, it finishes from where the kills
        # left it. How far each killed run got depends on the machine's speed
        # (a busy one may kill every timed run before its first batch); that it
        # finishes, and with what, must not.
        assert finish(start(store_url, path)) == 0, f"EVENTFOLD_TEST_SEED={seed}"
    print(f"{kills} kills before a run finished (EVENTFOLD_TEST_SEED={seed})")
    assert kills >= 3, f"EVENTFOLD_TEST_SEED={seed}"
    assert await read_model(path) == clean, f"EVENTFOLD_TEST_SEED={seed}"
