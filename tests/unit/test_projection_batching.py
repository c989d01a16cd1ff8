"""Projection writes are batched: consecutive executions of one statement
whose cursors were dropped go to the driver as one executemany, in order
with the other statements; a cursor the handler keeps gets its own exact
result; a failing statement in a batch is still pinned on its event, the
events before it applied once. On SQLite and PostgreSQL read models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

import eventfold
from eventfold import Codec, Envelope, EventRegistry
from eventfold.subscriptions import (
    Projection,
    ProjectionFailed,
    ProjectionRunner,
    RetryPolicy,
    SQLiteReadModel,
    Tx,
    query_read_model,
)
from eventfold.subscriptions.readmodel import Connection

registry = EventRegistry()


@registry.register("Paid")
class Paid(msgspec.Struct, frozen=True):
    account: str
    amount: int


codec = Codec(registry)


def ledger() -> Projection:
    proj = Projection(
        "ledger",
        tables={
            "balances": "account TEXT PRIMARY KEY, amount BIGINT NOT NULL CHECK (amount < 1000)",
            "counts": "account TEXT PRIMARY KEY, n BIGINT NOT NULL",
        },
    )

    @proj.on(Paid)
    def paid(tx: Tx, env: Envelope[Paid]) -> None:
        # A dropped cursor: batched with the same statement of other events.
        tx.execute(
            "INSERT INTO {balances} (account, amount) VALUES (?, ?) ON CONFLICT (account) "
            "DO UPDATE SET amount = {balances}.amount + excluded.amount",
            (env.event.account, env.event.amount),
        )
        # A kept cursor: its row count is read, so it runs on its own.
        updated = tx.execute(
            "UPDATE {counts} SET n = n + 1 WHERE account = ?", (env.event.account,)
        )
        if updated.rowcount == 0:
            tx.execute("INSERT INTO {counts} (account, n) VALUES (?, 1)", (env.event.account,))

    return proj


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def read_model(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return eventfold.subscriptions.open_read_model(url)
    return SQLiteReadModel(tmp_path / "reads.db")


class Calls:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, read_model: Any) -> None:
        self.execute = self.executemany = 0
        kind = type(read_model._connect("read"))
        real_execute, real_many = kind.raw_execute, kind.raw_executemany

        def execute(conn: Connection, sql: str, params: Any = ()) -> Any:
            self.execute += 1
            return real_execute(conn, sql, params)

        def executemany(conn: Connection, sql: str, rows: Any) -> None:
            self.executemany += 1
            real_many(conn, sql, rows)

        monkeypatch.setattr(kind, "raw_execute", execute)
        monkeypatch.setattr(kind, "raw_executemany", executemany)


async def test_dropped_cursors_are_batched_and_kept_ones_answer_exactly(
    read_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with eventfold.connect("memory://") as store, read_model as reads:
        for i in range(200):
            await store.append(f"pay-{i}", [codec.encode(Paid(f"a{i % 7}", 1))])
        calls = Calls(monkeypatch, reads)
        runner = ProjectionRunner(store, reads, [ledger()], codec, batch_size=100)
        await runner.catch_up()
        balances = await query_read_model(
            reads, "ledger", "SELECT account, amount FROM {balances} ORDER BY account"
        )
        counts = await query_read_model(
            reads, "ledger", "SELECT account, n FROM {counts} ORDER BY account"
        )
    expected = [(f"a{k}", len(range(k, 200, 7))) for k in range(7)]
    assert [tuple(r) for r in balances.rows] == expected
    assert [tuple(r) for r in counts.rows] == expected
    # Each event's upsert waits for the next kept UPDATE: runs of one here,
    # but the handler's statements are never reordered.
    assert calls.execute >= 400


async def test_a_run_of_upserts_is_one_executemany(
    read_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = Projection("sums", tables={"sums": "account TEXT PRIMARY KEY, amount BIGINT NOT NULL"})

    @proj.on(Paid)
    def paid(tx: Tx, env: Envelope[Paid]) -> None:
        tx.execute(
            "INSERT INTO {sums} (account, amount) VALUES (?, ?) ON CONFLICT (account) "
            "DO UPDATE SET amount = {sums}.amount + excluded.amount",
            (env.event.account, env.event.amount),
        )

    async with eventfold.connect("memory://") as store, read_model as reads:
        for i in range(1000):
            await store.append(f"pay-{i}", [codec.encode(Paid(f"a{i % 10}", i))])
        calls = Calls(monkeypatch, reads)
        await ProjectionRunner(store, reads, [proj], codec, batch_size=500).catch_up()
        sums = await query_read_model(reads, "sums", "SELECT sum(amount) FROM {sums}")
    assert sums.scalar() == sum(range(1000))
    assert calls.executemany == 2  # 1,000 upserts in two batches of 500


async def test_a_failing_statement_in_a_batch_is_pinned_on_its_event(read_model: Any) -> None:
    async with eventfold.connect("memory://") as store, read_model as reads:
        for i in range(30):
            # The 18th payment takes account a1 past the CHECK (amount < 1000).
            amount = 950 if i == 17 else 10
            await store.append(f"pay-{i}", [codec.encode(Paid(f"a{i % 2}", amount))])
        runner = ProjectionRunner(
            store, reads, [ledger()], codec, batch_size=30, retry=RetryPolicy(attempts=1)
        )
        with pytest.raises(ProjectionFailed) as caught:
            await runner.catch_up()
        assert caught.value.position == 18 and caught.value.stream_id == "pay-17"
        # The build never went live: read its tables directly.
        balances = await reads.read(
            lambda conn: conn.execute(
                "SELECT account, amount FROM balances_v1 ORDER BY account"
            ).fetchall()
        )
        position = await reads.read(
            lambda conn: conn.execute("SELECT MAX(position) FROM eventfold_build").fetchone()[0]
        )
    # The 17 payments before it are applied, once each.
    assert [tuple(r) for r in balances] == [("a0", 90), ("a1", 80)]
    assert position == 17
