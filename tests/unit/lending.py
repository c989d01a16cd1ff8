"""A small lending library for the business-time tests: a book's stream
holds its loans and returns; the ``loans`` projection keeps each loan's
period in business time (when it happened, not when it was typed in)."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from eventfold import Codec, CommandRejected, Decider, Envelope, EventRegistry, Projection, Tx
from eventfold.services import Commands, Queries, ServiceDefinition

registry = EventRegistry()


@registry.register("BookLent")
class BookLent(msgspec.Struct, frozen=True):
    book: str
    member: str


@registry.register("BookReturned")
class BookReturned(msgspec.Struct, frozen=True):
    book: str
    member: str


class Book(msgspec.Struct, frozen=True):
    holder: str | None = None


class Lend(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    book: str
    member: str


class Return(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    book: str


def decide(command: Lend | Return, state: Book) -> list[BookLent | BookReturned]:
    if isinstance(command, Lend):
        if state.holder is not None:
            raise CommandRejected(f"{command.book} is out with {state.holder}")
        return [BookLent(command.book, command.member)]
    if state.holder is None:
        raise CommandRejected(f"{command.book} is not out")
    return [BookReturned(command.book, state.holder)]


def evolve(state: Book, event: BookLent | BookReturned) -> Book:
    return Book(event.member if isinstance(event, BookLent) else None)


books: Decider[Lend | Return, BookLent | BookReturned, Book] = Decider(decide, evolve, Book)
codec = Codec(registry)

loans = Projection(
    "loans",
    version=1,
    categories=["book"],
    tables={
        "loans": "event_id TEXT PRIMARY KEY, book TEXT NOT NULL, member TEXT NOT NULL, "
        "lent_on DATE NOT NULL, lent_at TIMESTAMPTZ NOT NULL, returned_at TIMESTAMPTZ"
    },
)


def _text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


@loans.on(BookLent)
def lent(tx: Tx, env: Envelope[BookLent]) -> None:
    tx.execute(
        "INSERT INTO {loans} (event_id, book, member, lent_on, lent_at) VALUES (?, ?, ?, ?, ?)",
        (
            str(env.event_id),
            env.event.book,
            env.event.member,
            env.occurred_at.astimezone(dt.UTC).date().isoformat(),
            _text(env.occurred_at),
        ),
    )


@loans.on(BookReturned)
def returned(tx: Tx, env: Envelope[BookReturned]) -> None:
    tx.execute(
        "UPDATE {loans} SET returned_at = ? WHERE book = ? AND member = ? AND returned_at IS NULL",
        (_text(env.occurred_at), env.event.book, env.event.member),
    )


commands = Commands(codec)
commands.register(Lend, books, stream=lambda c: f"book-{c.book}")
commands.register(Return, books, stream=lambda c: f"book-{c.book}")

queries = Queries()
queries.add(
    "lent_since",
    "loans",
    "SELECT book, member FROM {loans} WHERE lent_at >= ? ORDER BY lent_at",
    params={"at": dt.datetime},
)
queries.add(
    "lent_on",
    "loans",
    "SELECT book, member FROM {loans} WHERE lent_on = ? ORDER BY book, member",
    params={"day": dt.date},
)
queries.add(
    "loans_of",
    "loans",
    "SELECT book, member FROM {loans} WHERE member IN (?) ORDER BY lent_at",
    params={"members": list[str]},
)
queries.add(
    "loan",
    "loans",
    "SELECT book, member FROM {loans} WHERE event_id = ?",
    params={"event_id": uuid.UUID},
)
queries.state("book", books)

service = ServiceDefinition(
    codec, commands=commands, projections=[loans], queries=queries, title="lending"
)
