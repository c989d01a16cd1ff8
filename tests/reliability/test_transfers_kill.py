"""Guarantee: a process manager running in 8 keyed lanes, killed (SIGKILL)
at any point and restarted until done, takes each step exactly once in
effect. Bank transfers (eventfold.examples.transfers): every transfer ends
completed or failed, exactly once; a completed one withdrew and deposited
its amount once each, a failed one neither; no account goes below zero and
no money is made or lost. The checkpoint follows the lanes' exact watermark
and each command carries an idempotency key, so a step redelivered after a
kill changes nothing."""

from __future__ import annotations

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
from eventfold.examples.transfers import Audit, Open, Request, audit, repositories
from tests.conftest import with_params

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = 12
BALANCE = 100
TRANSFERS = 300


async def request_transfers(store_url: str) -> None:
    rng = random.Random(11)
    async with eventfold.connect(store_url) as store:
        accounts, transfers, _ = repositories(store)
        for a in range(ACCOUNTS):
            await accounts.handle(f"account-a{a}", Open(BALANCE))
        for t in range(TRANSFERS):
            source, target = rng.sample(range(ACCOUNTS), 2)
            request = Request(f"t{t}", f"a{source}", f"a{target}", rng.randint(1, 60))
            await transfers.handle(f"transfer-t{t}", request)


def start(store_url: str, checkpoints_url: str, kill: str | None = None, slow: float = 0) -> Any:
    args = [sys.executable, "-m", "tests.reliability.transfer_worker", store_url, checkpoints_url]
    return subprocess.Popen(
        [*args, *([kill] if kill else [])],
        cwd=ROOT,
        env={**os.environ, "EVENTFOLD_TEST_SLOW": str(slow)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: Any, timeout: float = 120) -> int:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode in (0, -signal.SIGKILL), err
    return int(proc.returncode)


async def check_exactly_once(store_url: str) -> Audit:
    async with eventfold.connect(store_url) as store:
        found = await audit(store)
    assert found.problems == [] and found.open == 0, found
    return found


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "postgres":
        base: str = request.getfixturevalue("postgres_url")
        tag = f"{os.getpid()}_{time.monotonic_ns() % 10**9}"
        store = with_params(base, schema=f"tk_store_{tag}")
        return store, with_params(base, schema=f"tk_checkpoints_{tag}")
    return f"sqlite:///{tmp_path / 'events.db'}", f"sqlite:///{tmp_path / 'checkpoints.db'}"


async def test_transfers_in_lanes_take_effect_exactly_once_under_kills(
    urls: tuple[str, str],
) -> None:
    store_url, checkpoints_url = urls
    await request_transfers(store_url)
    seed = int(os.environ.get("EVENTFOLD_TEST_SEED", time.time_ns() % 10**9))
    rng = random.Random(seed)
    kills = 0
    for attempt in range(80):
        # The first runs die at exact points: after a step's append committed
        # but before its checkpoint, and just after a checkpoint was saved.
        if attempt < 4:
            kill = ["append:20", "save:20", "append:30", "save:10"][attempt]
            proc = start(store_url, checkpoints_url, kill)
        elif rng.random() < 0.5:
            proc = start(store_url, checkpoints_url, f"append:{rng.randint(1, 120)}")
        else:
            proc = start(store_url, checkpoints_url, slow=0.002)
            time.sleep(rng.uniform(0.3, 1.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        if finish(proc) == 0:
            break
        kills += 1
    else:
        pytest.fail(f"the transfers never finished (EVENTFOLD_TEST_SEED={seed})")
    print(f"{kills} kills before a run finished (EVENTFOLD_TEST_SEED={seed})")
    assert kills >= 4, f"EVENTFOLD_TEST_SEED={seed}"
    outcome = await check_exactly_once(store_url)
    # Some transfers went through, and the short ones failed.
    assert outcome.completed > 0 and outcome.completed + outcome.failed == TRANSFERS
