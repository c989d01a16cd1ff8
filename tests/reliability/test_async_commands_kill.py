"""Guarantee: asynchronous commands under worker SIGKILL. Commands are
accepted onto a JetStream work queue while two worker processes handle
them; the workers are killed at exact points (after a command's events were
appended but before its outcome was recorded; after the outcome was
recorded but before the acknowledgement) and at random, and restarted.
Every accepted command completes exactly once in effect, and its outcome is
readable by id. Real PostgreSQL (store, outcomes) and real NATS."""

from __future__ import annotations

import asyncio
import uuid

import msgspec

import eventfold
from eventfold.messaging import Topology
from eventfold.messaging.jetstream import JetStreamBus
from eventfold.services import CommandBus, CommandQueue, open_outcomes
from tests.conftest import with_params
from tests.reliability.bus_process import Add, commands
from tests.reliability.test_relay_kill import Supervisor

COMMANDS = 80
COUNTERS = 5


async def test_every_accepted_command_completes_once_under_worker_kills(
    postgres_url: str, nats_url: str, nats_prefix: str
) -> None:
    tag = uuid.uuid4().hex[:10]
    store_url = with_params(postgres_url, schema=f"ak_store_{tag}")
    outcomes_url = with_params(postgres_url, schema=f"ak_outcomes_{tag}")
    topology = Topology(nats_prefix)
    outcomes = open_outcomes(outcomes_url)
    async with eventfold.connect(store_url) as store, JetStreamBus(nats_url) as bus:
        command_bus = CommandBus(commands, store, outcomes)
        queue = CommandQueue(command_bus, bus, topology)
        await queue.setup()
        args = [store_url, outcomes_url, nats_url, nats_prefix]
        workers = [
            Supervisor("workers", args, ["handled:3", "recorded:2"]),
            Supervisor("workers", args, ["handled:5", "recorded:4"]),
        ]
        accepted: dict[str, Add] = {}
        try:
            loop = asyncio.get_running_loop()
            began = loop.time()
            kills = [(COMMANDS // 4, workers[0]), (COMMANDS // 2, workers[1])]
            kills.append((COMMANDS * 3 // 4, workers[0]))
            done: set[str] = set()
            while len(done) < COMMANDS or kills:
                assert loop.time() - began < 60, f"{len(done)} of {COMMANDS} commands done"
                if len(accepted) < COMMANDS:
                    n = len(accepted)
                    command = Add(f"c{n % COUNTERS}", n + 1)
                    key = f"key-{n}" if n % 3 == 0 else None
                    outcome = await queue.accept(
                        command_bus.prepare("Add", command, idempotency_key=key)
                    )
                    assert outcome.status == "pending"
                    accepted[outcome.command_id] = command
                for command_id in set(accepted) - done:
                    found = await outcomes.get(command_id)
                    if found is not None and found.outcome.done:
                        done.add(command_id)
                if kills and len(done) >= kills[0][0] and kills[0][1].kill():
                    kills.pop(0)
                for worker in workers:
                    worker.tend()
                await asyncio.sleep(0.02)
        finally:
            for worker in workers:
                worker.stop()
        assert [w.starts for w in workers] == [5, 4]

        events = [r async for r in store.read_all()]
        outcome_of = {}
        for command_id in accepted:
            found = await outcomes.get(command_id)
            assert found is not None, command_id
            outcome_of[command_id] = found.outcome
    await outcomes.close()

    assert {o.status for o in outcome_of.values()} == {"succeeded"}
    # Each command took effect once: one event per accepted command, no more.
    by_command: dict[str, list[int]] = {}
    for record in events:
        extra = msgspec.json.decode(record.metadata)["extra"]
        by_command.setdefault(extra["command_id"], []).append(record.position)
    assert sorted(by_command) == sorted(accepted)
    assert all(len(positions) == 1 for positions in by_command.values())
    # The outcome names the position where the command's event first landed.
    assert {c: o.position for c, o in outcome_of.items()} == {
        c: p[0] for c, p in by_command.items()
    }
    totals: dict[str, int] = {}
    for command in accepted.values():
        totals[f"tick-{command.counter}"] = (
            totals.get(f"tick-{command.counter}", 0) + command.amount
        )
    assert {
        s: sum(msgspec.json.decode(r.data)["n"] for r in events if r.stream_id == s) for s in totals
    } == totals
