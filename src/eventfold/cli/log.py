"""Commands that look at the log: streams, categories, statistics, one stream,
its audit history, its state at a moment, following the log live, and
read-only SQL."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Annotated, Any, cast

import msgspec
import typer
from rich.markup import escape
from rich.table import Table

from eventfold.cli.common import ClockOption, clock, console, load_object, parse_time, run
from eventfold.cli.stores import ReadFromOption, RegistryOption, StoreOption, open_reader
from eventfold.domain.decider import Decider
from eventfold.domain.events import EventRegistry
from eventfold.repository import Repository
from eventfold.serialization.codec import Codec, decode_metadata
from eventfold.store.api import EventStore, RecordedEvent
from eventfold.store.capabilities import Inspector, SQLReader, require

app = typer.Typer()

TypeOption = Annotated[list[str] | None, typer.Option("--type", help="only these event types")]
CategoryOption = Annotated[
    list[str] | None, typer.Option("--category", help="only these categories")
]


def _when(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _text(raw: bytes | str, width: int = 80) -> str:
    """Stored text for a table cell: shortened, and never read as rich markup."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    return escape(text if len(text) <= width else text[: width - 1] + "…")


@app.command()
def streams(
    store: StoreOption,
    category: Annotated[str | None, typer.Option(help="only this category")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    read_from: ReadFromOption = "replica",
) -> None:
    """List streams, most recently written first."""

    async def main() -> None:
        async with open_reader(store, read_from=read_from) as opened:
            found = await require(opened, Inspector).list_streams(category=category, limit=limit)
        table = Table("stream", "version", "last position", "last written (UTC)")
        for info in found:
            table.add_row(
                escape(info.stream_id),
                str(info.version),
                str(info.last_position),
                _when(info.last_recorded_at),
            )
        console().print(table)

    run(main())


@app.command()
def categories(store: StoreOption, read_from: ReadFromOption = "replica") -> None:
    """List categories with their stream and event counts."""

    async def main() -> None:
        async with open_reader(store, read_from=read_from) as opened:
            found = await require(opened, Inspector).list_categories()
        table = Table("category", "streams", "events")
        for info in found:
            table.add_row(info.category, str(info.streams), str(info.events))
        console().print(table)

    run(main())


@app.command()
def stats(store: StoreOption, read_from: ReadFromOption = "replica") -> None:
    """Store statistics: events, streams, head position, time span, types, size."""

    async def main() -> None:
        async with open_reader(store, read_from=read_from) as opened:
            found = await require(opened, Inspector).stats()
        out = console()
        out.print(f"events          {found.events}")
        out.print(f"streams         {found.streams}")
        out.print(f"head position   {found.head_position}")
        out.print(f"first event     {_when(found.first_recorded_at)}")
        out.print(f"last event      {_when(found.last_recorded_at)}")
        if found.size_bytes is not None:
            out.print(f"size on disk    {found.size_bytes / 1_048_576:.1f} MiB")
        table = Table("type", "events")
        for name, count in found.types.items():
            table.add_row(name, str(count))
        out.print(table)

    run(main())


@app.command()
def show(
    stream: str,
    store: StoreOption,
    registry: RegistryOption = None,
    from_version: Annotated[int, typer.Option("--from", min=0)] = 1,
    to_version: Annotated[int | None, typer.Option("--to", min=0)] = None,
    backwards: Annotated[bool, typer.Option()] = False,
    limit: Annotated[int | None, typer.Option(min=0)] = None,
    read_from: ReadFromOption = "replica",
) -> None:
    """Show a stream's events (decrypted where --registry names personal fields
    and their keys still exist)."""

    async def main() -> None:
        async with open_reader(store, registry, read_from=read_from) as opened:
            table = Table("version", "position", "recorded (UTC)", "type", "data")
            async for r in opened.read_stream(
                stream,
                from_version=from_version,
                to_version=to_version,
                backwards=backwards,
                limit=limit,
            ):
                table.add_row(
                    str(r.version), str(r.position), _when(r.recorded_at), r.type, _text(r.data)
                )
        console().print(table)

    run(main())


@app.command()
def history(stream: str, store: StoreOption, read_from: ReadFromOption = "replica") -> None:
    """The audit timeline of a stream: when recorded, when it happened (if
    the application said), what, who, why, caused by what."""

    async def main() -> None:
        async with open_reader(store, read_from=read_from) as opened:
            table = Table(
                "version",
                "recorded (UTC)",
                "occurred (UTC)",
                "type",
                "actor",
                "reason",
                "causation",
                "correlation",
            )
            async for r in opened.read_stream(stream):
                meta = decode_metadata(r)
                table.add_row(
                    str(r.version),
                    _when(r.recorded_at),
                    _when(meta.occurred_at),
                    r.type,
                    *(
                        _text(value)
                        for value in (
                            meta.actor or "",
                            str(meta.extra.get("reason", "")),
                            meta.causation_id or "",
                            meta.correlation_id or "",
                        )
                    ),
                )
        console().print(table)

    run(main())


@app.command()
def at(
    stream: str,
    store: StoreOption,
    time: Annotated[
        str,
        typer.Option("--time", help="ISO 8601; UTC unless an offset is given; a date is its start"),
    ],
    decider: Annotated[
        str, typer.Option("--decider", help="module:attribute naming the stream's Decider")
    ],
    registry: Annotated[
        str, typer.Option("--registry", help="module:attribute naming the EventRegistry")
    ],
    by: ClockOption = "recorded",
    read_from: ReadFromOption = "replica",
) -> None:
    """The state of a stream as it was at a moment: as recorded by then, or
    (--by occurred) as it had happened by then."""
    moment = parse_time(time)
    basis = clock(by)
    fold = load_object(decider, "--decider")
    events = load_object(registry, "--registry")
    if not isinstance(fold, Decider) or not isinstance(events, EventRegistry):
        raise typer.BadParameter("--decider must name a Decider and --registry an EventRegistry")

    async def main() -> None:
        async with open_reader(store, registry, read_from=read_from) as opened:
            # A load only reads: the view stands in for the store.
            loaded = await Repository(cast(EventStore, opened), fold, Codec(events)).load(
                stream, as_of=moment, by=basis
            )
        state: Any = msgspec.to_builtins(loaded.state)
        console().print(f"{stream} at {moment.isoformat()} ({basis}): version {loaded.version}")
        console().print_json(msgspec.json.encode(state).decode())

    run(main())


@app.command()
def tail(
    store: StoreOption,
    category: CategoryOption = None,
    type: TypeOption = None,
    from_position: Annotated[
        int | None, typer.Option("--from-position", help="default: only new events")
    ] = None,
    seconds: Annotated[
        float | None, typer.Option("--for", help="stop after this many seconds")
    ] = None,
    read_from: ReadFromOption = "replica",
) -> None:
    """Follow the log live, like tail -f."""

    async def main() -> None:
        out = console()
        async with open_reader(store, read_from=read_from) as opened:
            position = await opened.head_position() if from_position is None else from_position - 1
            loop = asyncio.get_running_loop()
            stop = None if seconds is None else loop.time() + seconds
            while stop is None or loop.time() < stop:
                head = await opened.head_position()
                async for r in opened.read_all(
                    from_position=position + 1, categories=category, types=type
                ):
                    if r.position > head:
                        break
                    out.print(_line(r), highlight=False, markup=False)
                # Filtered reads skip events: everything up to the head is seen.
                position = max(position, head)
                wait = 1.0 if stop is None else max(0.0, min(1.0, stop - loop.time()))
                await opened.wait_for_events(position, wait)

    with contextlib.suppress(KeyboardInterrupt):
        run(main())


def _line(r: RecordedEvent) -> str:
    return (
        f"@{r.position} {_when(r.recorded_at)} {r.stream_id} v{r.version} {r.type} {_text(r.data)}"
    )


@app.command()
def sql(
    query: str,
    store: StoreOption,
    limit: Annotated[int, typer.Option(min=1)] = 1000,
    timeout: Annotated[float, typer.Option(min=0.1)] = 30.0,
    read_from: ReadFromOption = "replica",
) -> None:
    """Run one read-only SQL query over the event tables (events, snapshots)."""

    async def main() -> None:
        async with open_reader(store, read_from=read_from) as opened:
            result = await require(opened, SQLReader).sql(query, limit=limit, timeout=timeout)
        table = Table(*result.columns)
        for row in result.rows:
            table.add_row(*("" if v is None else _text(str(v), 200) for v in row))
        console().print(table)
        if result.truncated:
            console().print(f"(first {limit} rows)")

    run(main())
