"""Guarantee: with the relay killed (SIGKILL) mid-publish and restarted, and
the consumer killed and restarted, while writers keep appending, every
event's effect lands exactly once in the read model and each stream's events
are applied in order. Real PostgreSQL (store, relay checkpoints, read model)
and real NATS JetStream; the relay and the consumer are processes of their
own (tests/reliability/bus_process.py)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import eventfold
from eventfold import EventStore
from eventfold.messaging import Topology
from eventfold.messaging.jetstream import JetStreamBus
from eventfold.subscriptions import open_read_model, query_read_model
from eventfold.subscriptions.errors import ProjectionNotReady
from tests.conftest import with_params
from tests.unit.test_messaging_relay import Ticked, codec

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 4
PER_WRITER = 250
STREAMS = 11


def start(role: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.bus_process", role, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def ended(proc: subprocess.Popen[str], *, stopping: bool = False) -> bool:
    """Whether it ended; it must have been killed, or stopped cleanly (or
    stopped by SIGTERM before it could handle it)."""
    code = proc.poll()
    if code is None:
        return False
    err = proc.stderr.read() if proc.stderr is not None else ""
    allowed = (0, -signal.SIGKILL, -signal.SIGTERM) if stopping else (0, -signal.SIGKILL)
    assert code in allowed, f"exit {code}:\n{err}"
    return True


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise AssertionError("the process did not stop on SIGTERM") from None
    assert ended(proc, stopping=True)


async def write(store: EventStore, writer: int, written: list[int]) -> None:
    rng = random.Random(writer)
    for n in range(PER_WRITER):
        stream = f"tick-{rng.randrange(STREAMS)}"
        await store.append(stream, [codec.encode(Ticked(writer * 10_000 + n))])
        written[0] += 1
        if n % 5 == 0:
            await asyncio.sleep(0.05)


async def applied(reads_url: str) -> int:
    async with open_read_model(reads_url) as reads:
        try:
            result = await query_read_model(reads, "strict_tally", "SELECT COUNT(*) FROM {applied}")
        except ProjectionNotReady:
            return 0
        return int(result.scalar())


class Supervisor:
    """Keeps one process of a role running, killing it at planned moments and
    starting it again with the next planned kill point."""

    def __init__(self, role: str, args: list[str], plan: list[str | None]) -> None:
        self.role = role
        self.args = args
        self.plan = list(plan)
        self.starts = 0
        self.current: str | None = None
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[str]:
        self.current = self.plan.pop(0) if self.plan else None
        self.starts += 1
        return start(self.role, *self.args, *([self.current] if self.current else []))

    def tend(self) -> None:
        if ended(self.proc):
            self.proc = self._start()

    def kill(self) -> bool:
        """SIGKILL it, if it runs and is not headed for a planned death of its
        own (False: not now)."""
        if self.proc.poll() is not None or self.current is not None:
            return False
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        return True

    def stop(self) -> None:
        stop(self.proc)


async def test_relay_and_consumer_killed_and_restarted_apply_every_event_once_in_order(
    postgres_url: str, nats_url: str, nats_prefix: str
) -> None:
    tag = uuid.uuid4().hex[:10]
    store_url = with_params(postgres_url, schema=f"rk_store_{tag}")
    checkpoints_url = with_params(postgres_url, schema=f"rk_relay_{tag}")
    reads_url = with_params(postgres_url, schema=f"rk_reads_{tag}")
    async with eventfold.connect(store_url) as store:
        written = [0]
        writers = asyncio.gather(*(write(store, w, written) for w in range(WRITERS)))
        relay = Supervisor(
            "relay", [store_url, nats_url, nats_prefix, checkpoints_url], ["half:3", "acked:2"]
        )
        consumer = Supervisor("consumer", [reads_url, nats_url, nats_prefix], ["committed:2"])
        try:
            loop = asyncio.get_running_loop()
            began = loop.time()
            total = WRITERS * PER_WRITER
            # Unplanned kills too, while the writers write, at moments the
            # processes cannot foresee.
            kills = [(total // 5, consumer), (total * 2 // 5, relay)]
            kills += [(total * 3 // 5, consumer), (total * 4 // 5, relay)]
            while (done := await applied(reads_url)) < total or kills:
                assert loop.time() - began < 60, f"the read model did not catch up ({done})"
                if kills and written[0] >= kills[0][0] and kills[0][1].kill():
                    kills.pop(0)
                relay.tend()
                consumer.tend()
                await asyncio.sleep(0.05)
            await writers
        finally:
            relay.stop()
            consumer.stop()
        assert (relay.starts, consumer.starts) == (5, 4)
        log = [(r.stream_id, r.version, str(r.event_id)) async for r in store.read_all()]
        versions = {s: v for s, v, _ in log}

    assert len(log) == WRITERS * PER_WRITER
    async with open_read_model(reads_url) as reads:
        rows = await query_read_model(
            reads, "strict_tally", "SELECT event_id, stream_id, version FROM {applied}"
        )
        streams = await query_read_model(
            reads, "strict_tally", "SELECT stream_id, version FROM {streams}"
        )
    # Each event applied once (and the projection checked each stream's order as it went).
    assert sorted(r[0] for r in rows.rows) == sorted(e for _, _, e in log)
    assert {r[0]: int(r[1]) for r in streams.rows} == versions
    # The relay published each event once: the restarts resumed after the stream's tail.
    async with JetStreamBus(nats_url) as bus:
        info = await bus.stream_info(Topology(nats_prefix).events_stream)
        assert info.messages == len(log)
        await bus.delete_stream(info.name)


def test_the_supervisor_notices_a_broken_process(tmp_path: Path) -> None:
    """The harness itself: a process that exits with an error fails the test."""
    proc = start("relay", "nonsense://", "nats://127.0.0.1:1", "x", "memory://")
    proc.wait(timeout=30)
    try:
        ended(proc)
    except AssertionError:
        return
    raise AssertionError("a failing process went unnoticed")
