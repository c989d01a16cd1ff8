"""Bank transfers: a process manager that moves money between accounts, one
step at a time, in keyed lanes.

A transfer is requested on a stream of its own (``transfer-<id>``). The
process manager then withdraws the amount from the source account (or, when
the funds are short, marks the transfer failed), deposits it into the
target account, and marks the transfer completed. Every event it reacts to
carries the transfer id, and that is its key: the steps of one transfer
run in order, while many transfers progress at once in ``lanes`` lanes.

Exactly once: each command carries an idempotency key made of the triggering
event's id and the step, and the accounts remember which transfers they
have seen, so a redelivered event (after a crash, with the checkpoint behind
what was done) changes nothing. Before withdrawing, the manager checks that
the transfer is still open: a failure once recorded is never turned into a
withdrawal by a replay that finds money has arrived since.

    accounts, transfers, codec = repositories(store)
    manager = transfer_manager(accounts, transfers)
    await manager.subscribe(store, codec, checkpoints, lanes=8).run()
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import msgspec

from eventfold import CommandRejected, Decider, Envelope, EventRegistry, Repository
from eventfold.serialization.codec import Codec
from eventfold.store.api import EventStore
from eventfold.subscriptions import ProcessContext, ProcessManager

registry = EventRegistry()


@registry.register("AccountOpened")
class AccountOpened(msgspec.Struct, frozen=True):
    balance: int


@registry.register("Withdrawn")
class Withdrawn(msgspec.Struct, frozen=True):
    transfer_id: str
    target: str
    amount: int


@registry.register("Deposited")
class Deposited(msgspec.Struct, frozen=True):
    transfer_id: str
    amount: int


@registry.register("TransferRequested")
class TransferRequested(msgspec.Struct, frozen=True):
    transfer_id: str
    source: str
    target: str
    amount: int


@registry.register("TransferCompleted")
class TransferCompleted(msgspec.Struct, frozen=True):
    pass


@registry.register("TransferFailed")
class TransferFailed(msgspec.Struct, frozen=True):
    reason: str


codec = Codec(registry)

# --- accounts -------------------------------------------------------------------------


class InsufficientFunds(CommandRejected):
    pass


class Account(msgspec.Struct, frozen=True):
    balance: int = 0
    opened: bool = False
    transfers: frozenset[str] = frozenset()
    """Transfers this account has taken part in: a replayed step is a no-op."""


class Open(msgspec.Struct, frozen=True):
    balance: int


class Withdraw(msgspec.Struct, frozen=True):
    transfer_id: str
    target: str
    amount: int


class Deposit(msgspec.Struct, frozen=True):
    transfer_id: str
    amount: int


AccountEvent = AccountOpened | Withdrawn | Deposited


def decide_account(command: Open | Withdraw | Deposit, state: Account) -> list[AccountEvent]:
    match command:
        case Open(balance):
            return [] if state.opened else [AccountOpened(balance)]
        case Withdraw(transfer_id, target, amount):
            if transfer_id in state.transfers:
                return []
            if amount > state.balance:
                raise InsufficientFunds(f"{amount} wanted, {state.balance} available")
            return [Withdrawn(transfer_id, target, amount)]
        case Deposit(transfer_id, amount):
            return [] if transfer_id in state.transfers else [Deposited(transfer_id, amount)]
    raise CommandRejected(f"unknown command {command!r}")


def evolve_account(state: Account, event: AccountEvent) -> Account:
    match event:
        case AccountOpened(balance):
            return Account(balance, True, state.transfers)
        case Withdrawn(transfer_id, _, amount):
            return Account(state.balance - amount, True, state.transfers | {transfer_id})
        case Deposited(transfer_id, amount):
            return Account(state.balance + amount, True, state.transfers | {transfer_id})
    return state


accounts: Decider[Any, AccountEvent, Account] = Decider(decide_account, evolve_account, Account)

# --- transfers ------------------------------------------------------------------------


class Transfer(msgspec.Struct, frozen=True):
    status: str = "new"  # requested, completed, failed


class Request(msgspec.Struct, frozen=True):
    transfer_id: str
    source: str
    target: str
    amount: int


class Complete(msgspec.Struct, frozen=True):
    pass


class Fail(msgspec.Struct, frozen=True):
    reason: str


TransferEvent = TransferRequested | TransferCompleted | TransferFailed


def decide_transfer(command: Request | Complete | Fail, state: Transfer) -> list[TransferEvent]:
    match command:
        case Request(transfer_id, source, target, amount):
            if state.status != "new":
                return []
            if amount <= 0 or source == target:
                raise CommandRejected("a transfer moves a positive amount between two accounts")
            return [TransferRequested(transfer_id, source, target, amount)]
        case Complete():
            return [TransferCompleted()] if state.status == "requested" else []
        case Fail(reason):
            return [TransferFailed(reason)] if state.status == "requested" else []
    raise CommandRejected(f"unknown command {command!r}")


def evolve_transfer(state: Transfer, event: TransferEvent) -> Transfer:
    match event:
        case TransferRequested():
            return Transfer("requested")
        case TransferCompleted():
            return Transfer("completed")
        case TransferFailed():
            return Transfer("failed")
    return state


transfers: Decider[Any, TransferEvent, Transfer] = Decider(
    decide_transfer, evolve_transfer, Transfer
)


def repositories(
    store: EventStore,
) -> tuple[Repository[Any, AccountEvent, Account], Repository[Any, TransferEvent, Transfer], Codec]:
    """The account and transfer repositories over ``store`` (retrying a
    conflict with a concurrent step on the same account a few more times
    than the default: many lanes may touch one account at once)."""
    return (
        Repository(store, accounts, codec, max_retries=20),
        Repository(store, transfers, codec, max_retries=20),
        codec,
    )


def by_transfer(envelope: Envelope[Any]) -> str:
    """The key of the manager's events: the transfer they belong to."""
    transfer_id: str = envelope.event.transfer_id
    return transfer_id


def transfer_manager(
    account_repository: Repository[Any, AccountEvent, Account],
    transfer_repository: Repository[Any, TransferEvent, Transfer],
) -> ProcessManager:
    manager = ProcessManager("transfers", categories=["transfer", "account"], key=by_transfer)

    @manager.on(TransferRequested)
    async def withdraw(ctx: ProcessContext, env: Envelope[TransferRequested]) -> None:
        if (await transfer_repository.load(env.stream_id)).state.status != "requested":
            return  # already completed or failed
        transfer = env.event
        try:
            await ctx.handle(
                account_repository,
                f"account-{transfer.source}",
                Withdraw(transfer.transfer_id, transfer.target, transfer.amount),
                step="withdraw",
            )
        except InsufficientFunds as short:
            await ctx.handle(transfer_repository, env.stream_id, Fail(str(short)), step="fail")

    @manager.on(Withdrawn)
    async def deposit(ctx: ProcessContext, env: Envelope[Withdrawn]) -> None:
        withdrawn = env.event
        await ctx.handle(
            account_repository,
            f"account-{withdrawn.target}",
            Deposit(withdrawn.transfer_id, withdrawn.amount),
            step="deposit",
        )
        with contextlib.suppress(CommandRejected):
            await ctx.handle(
                transfer_repository,
                f"transfer-{withdrawn.transfer_id}",
                Complete(),
                step="complete",
            )

    return manager


# --- checking the outcome ---------------------------------------------------------------


_UNDER_WAY = (
    Counter(TransferRequested=1),
    Counter(TransferRequested=1, Withdrawn=1),
    Counter(TransferRequested=1, Withdrawn=1, Deposited=1),
)


class Audit(msgspec.Struct, frozen=True):
    """What the log says of the transfers: how many completed, failed or are
    still open, and every way in which a step did not take effect exactly
    once (empty when all is well)."""

    completed: int
    failed: int
    open: int
    problems: list[str]


async def audit(store: EventStore) -> Audit:
    """Read the whole log and check: every transfer requested once; a
    completed one withdrew and deposited once each, a failed one neither;
    no account below zero at any point; no money made or lost."""
    steps: dict[str, Counter[str]] = {}
    balances: Counter[str] = Counter()
    opened = 0
    problems: list[str] = []
    async for record in store.read_all(categories=["transfer", "account"]):
        event = codec.decode_event(record)
        kind = type(event).__name__
        if isinstance(event, AccountOpened):
            opened += event.balance
            balances[record.stream_id] += event.balance
            continue
        transfer = record.stream_id.removeprefix("transfer-")
        if isinstance(event, Withdrawn | Deposited):
            transfer = event.transfer_id
            change = -event.amount if isinstance(event, Withdrawn) else event.amount
            balances[record.stream_id] += change
            if balances[record.stream_id] < 0:
                problems.append(f"{record.stream_id} below zero at version {record.version}")
        steps.setdefault(transfer, Counter())[kind] += 1
    completed = failed = open_ = 0
    done = Counter(TransferRequested=1, Withdrawn=1, Deposited=1, TransferCompleted=1)
    refused = Counter(TransferRequested=1, TransferFailed=1)
    for transfer, kinds in sorted(steps.items()):
        if kinds == done:
            completed += 1
        elif kinds == refused:
            failed += 1
        elif kinds in _UNDER_WAY:
            open_ += 1
        else:
            problems.append(f"transfer {transfer}: {dict(kinds)}")
    if sum(balances.values()) != opened:
        problems.append(f"{opened} opened, {sum(balances.values())} held")
    return Audit(completed, failed, open_, problems)
